// The C export's command `qcaps IMAGES [N]` against a hostile user: a bad N (0, -1, abc, past
// the file's count), an empty file, a truncated or malformed IDX file and raw pixels that are
// NaN, infinite or far outside [0, 1] are each one line on stderr naming N or the file, a
// non-zero exit and nothing on stdout; qcaps_infer itself has no undefined behaviour on such
// images. The binary is built with AddressSanitizer and UBSan (where cc has them) and no run
// may print a sanitizer report.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildCBinary, C_FUZZ_IMAGE, cFinding, runCBinary, SANITIZE_FLAGS } from '../bench/fuzz/c-binary.js';

const SIZE = C_FUZZ_IMAGE.height * C_FUZZ_IMAGE.width * C_FUZZ_IMAGE.channels;
const dir = mkdtempSync(join(tmpdir(), 'qcaps-hostile-c-'));
let built: { cDir: string; binary: string; sanitized: boolean };

before(() => {
  try {
    built = { ...buildCBinary(dir), sanitized: true };
  } catch (err) {
    // a compiler without the sanitizers still checks the messages and the exit codes
    if (!/sanitize|asan|ubsan/i.test((err as Error).message)) throw err;
    built = { ...buildCBinary(mkdtempSync(join(dir, 'plain-')), []), sanitized: false };
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

function idx(dims: number[], values: number): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.alloc(values, 128)]);
}

function raw(values: number[]): Buffer {
  return Buffer.from(Float32Array.from(values).buffer);
}

function file(name: string, bytes: Buffer): string {
  const f = join(dir, name);
  writeFileSync(f, bytes);
  return f;
}

/** The binary refused: exit `status`, nothing on stdout, one line on stderr naming `subject`
 *  and matching `message`, no sanitizer report. */
function refused(args: string[], status: number, subject: string, message: RegExp): void {
  const r = runCBinary(built.binary, args);
  assert.equal(cFinding(r, subject), null, `qcaps ${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.status, status, `qcaps ${args.join(' ')}: exit ${status}\n${r.stderr}`);
  assert.equal(r.stdout, '', 'no output');
  assert.match(r.stderr, message);
}

test('N: 0, -1, abc, an empty string and a count past the file are refused; a valid N classifies N images', () => {
  const images = file('three.idx', idx([3, 18, 18], 3 * SIZE));
  for (const n of ['0', '-1', 'abc', '', '1x', ' 2', '+1'])
    refused([images, n], 2, `N '${n}'`, /expected a whole number of images from 1 up/);
  for (const n of ['4', '99999999999999999999999'])
    refused([images, n], 2, `N ${n}`, new RegExp(`three\\.idx holds only 3 images`));
  for (const [n, lines] of [
    ['1', 1],
    ['3', 3],
    [null, 3],
  ] as const) {
    const r = runCBinary(built.binary, n === null ? [images] : [images, n]);
    assert.equal(cFinding(r, images), null, r.stderr);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, lines);
  }
});

test('empty, truncated and malformed files: one line naming the file, before any output', () => {
  refused([file('empty', Buffer.alloc(0))], 1, 'empty', /empty: holds no images/);
  refused([file('zero.idx', idx([0, 18, 18], 0))], 1, 'zero.idx', /zero\.idx: holds no images/);
  // the header declares 3 images, the file holds 2 and a half: nothing is classified
  refused(
    [file('short.idx', idx([3, 18, 18], 2.5 * SIZE))],
    1,
    'short.idx',
    /short\.idx: truncated: its IDX header declares 3 images, it holds 2/,
  );
  refused([file('huge-count.idx', idx([0xffffffff, 18, 18], SIZE))], 1, 'huge-count.idx', /declares 4294967295 images/);
  refused([file('one-dim.idx', idx([324], 324))], 1, 'one-dim.idx', /IDX of 1 dimensions, expected images/);
  refused([file('no-dims.idx', idx([], 8))], 1, 'no-dims.idx', /IDX of 0 dimensions/);
  // sizes whose product wraps around 2^64 to the model's image size
  refused(
    [file('wrap.idx', idx([1, 0x10000, 0x10000, 0x10000, 0x10000, 324], SIZE))],
    1,
    'wrap.idx',
    /images of more than the 324 values the model takes/,
  );
  refused([file('other.idx', idx([1, 9, 9], 81))], 1, 'other.idx', /images of 81 values, the model takes 324/);
  refused([file('large.idx', idx([1, 28, 28], 784))], 1, 'large.idx', /images of more than the 324 values/);
  refused([file('odd.f32', Buffer.alloc(4 * SIZE + 4))], 1, 'odd.f32', /not a multiple of 324 float32 values/);
  refused([join(dir, 'missing')], 1, 'missing', /missing: cannot open it/);
});

test('raw pixels NaN, infinite, 1e30 or outside [0, 1]: the image and value are named, nothing classified', () => {
  const good = Array.from({ length: SIZE }, (_, i) => (i % 7) / 7);
  for (const [name, bad, shown] of [
    ['nan', NaN, 'nan'],
    ['inf', Infinity, 'inf'],
    ['minus-inf', -Infinity, '-inf'],
    ['big', 1e30, '1e\\+30'],
    ['negative', -0.5, '-0.5'],
    ['above-one', 1.5, '1.5'],
  ] as const) {
    const second = good.slice();
    second[17] = bad;
    const f = file(`${name}.f32`, raw([...good, ...second]));
    refused([f], 1, f, new RegExp(`${name}\\.f32: image 1, value 17 is ${shown}: expected pixels in \\[0, 1\\]`));
  }
  // N 1 checks (and classifies) only the first image
  const f = file('first-good.f32', raw([...good, ...good.map(() => NaN)]));
  const r = runCBinary(built.binary, [f, '1']);
  assert.equal(cFinding(r, f), null, r.stderr);
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim().split('\n').length, 1);
});

test('qcaps_infer on NaN, infinite and 1e30 pixels: no undefined behaviour (to_integers saturates)', (t) => {
  if (!built.sanitized) t.diagnostic('cc has no sanitizers here: the run is checked for its exit only');
  const driver = `#include <math.h>
#include <stdio.h>
#include "qcaps_model.h"
int main(void) {
  static float image[QCAPS_IMAGE_SIZE];
  float lengths[QCAPS_CLASSES];
  const float values[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 3e38f, 1e10f};
  int v, k;
  for (v = 0; v < 7; v++) {
    for (k = 0; k < QCAPS_IMAGE_SIZE; k++) image[k] = k % 2 ? values[v] : 0.5f;
    printf("%d\\n", qcaps_infer(image, lengths));
  }
  return 0;
}
`;
  writeFileSync(join(built.cDir, 'driver.c'), driver);
  const flags = built.sanitized ? SANITIZE_FLAGS : [];
  const cc = spawnSync(
    'cc',
    ['-std=c99', '-O1', '-g', '-Wall', '-Wextra', ...flags, '-o', 'driver', 'driver.c', 'qcaps_model.c', '-lm'],
    { cwd: built.cDir, encoding: 'utf8' },
  );
  assert.equal(cc.status, 0, cc.stderr);
  const r = runCBinary(join(built.cDir, 'driver'), []);
  assert.equal(cFinding(r, 'driver'), null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  const predictions = r.stdout.trim().split('\n').map(Number);
  assert.equal(predictions.length, 7);
  assert.ok(
    predictions.every((p) => p === 0 || p === 1),
    r.stdout,
  );
});

test('the harness sees undefined behaviour: a float-to-int overflow is a sanitizer finding', (t) => {
  if (!built.sanitized) return t.skip('cc has no sanitizers here');
  writeFileSync(
    join(dir, 'ub.c'),
    '#include <stdlib.h>\nint main(int c, char **v) { (void)v; return (int)(atof("1e30") * c) & 1; }\n',
  );
  const cc = spawnSync('cc', ['-std=c99', ...SANITIZE_FLAGS, '-o', 'ub', 'ub.c'], { cwd: dir, encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  const finding = cFinding(runCBinary(join(dir, 'ub'), []), 'ub');
  assert.match(finding ?? '', /sanitizer report: .*runtime error/);
});
