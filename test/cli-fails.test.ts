// The command line fails well: bad data, output folders it cannot write and a full disk are one
// line `qcapsnets: error: ...` naming the file or flag, exit 2, no stack trace unless --verbose,
// nothing written when the problem is found before the work, and no partial file (earlier good
// files kept) when it is found during it. The full disk and the read-only folder are real: small
// tmpfs mounts (root, as here and in CI).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeStateDict } from '../src/io/pt.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { buildModel } from '../src/models/factory.js';
import { nativeRequired } from './helpers.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

/** The error lines of a run that must have failed with exit 2 and exactly one of them. */
function oneError(r: ReturnType<typeof run>, what: string): string {
  assert.equal(r.status, 2, `${what}: exit 2\n${r.stdout}\n${r.stderr}`);
  // (training's progress lines go to stderr too, before the error)
  const lines = r.stderr.trim().split('\n');
  const at = lines.findIndex((l) => l.startsWith('qcapsnets: error: '));
  assert.equal(at, lines.length - 1, `${what}: one error line, the last\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n {4}at /, `${what}: no stack trace`);
  return lines[at];
}

/** An IDX file pair (raw) of `n` blank 28x28 images labelled 0..9 in turn. */
function writeIdx(dir: string, images: string, labels: string, n: number): void {
  const head = (magic: number, dims: number[]) => {
    const b = Buffer.alloc(4 + 4 * dims.length);
    b.writeUInt32BE(magic, 0);
    dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
    return b;
  };
  writeFileSync(join(dir, images), Buffer.concat([head(0x803, [n, 28, 28]), Buffer.alloc(n * 784)]));
  writeFileSync(
    join(dir, labels),
    Buffer.concat([head(0x801, [n]), Buffer.from(Array.from({ length: n }, (_, i) => i % 10))]),
  );
}

const TRAIN = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'] as const;
const TEST = ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'] as const;

test('a split of 0 images, truncated data, --verbose: one line before any work, no models written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-fails-data-'));
  try {
    const net = join(dir, 'net.pt');
    writeStateDict(net, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 }).stateDict());
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    writeIdx(empty, ...TRAIN, 0);
    writeIdx(empty, ...TEST, 0);
    const data = ['--dataset', 'fashion-mnist', '--data-dir', empty];
    const out = join(dir, 'out');
    const emptyTest = new RegExp(`${TEST[0]}: the test split of fashion-mnist holds 0 images; expected at least one`);
    for (const cmd of [['evaluate'], ['search', '--output-dir', out]])
      assert.match(oneError(run([...cmd, ...data, '--trained-weights-path', net]), cmd[0]), emptyTest);
    assert.match(oneError(run(['train', ...data, '--full-precision-filename', join(out, 'm.pt')]), 'train'), emptyTest);
    assert.ok(!existsSync(out) || readdirSync(out).length === 0, 'nothing written');

    // training images missing but test images there: the training split is named
    writeIdx(empty, ...TEST, 20);
    assert.match(
      oneError(run(['train', ...data, '--full-precision-filename', join(out, 'm.pt')]), 'train on 0'),
      new RegExp(`${TRAIN[0]}: the train split of fashion-mnist holds 0 images`),
    );
    assert.ok(!existsSync(join(out, 'm.pt')) && !existsSync(join(out, 'm.ckpt.safetensors')));

    // an IDX file cut short (an interrupted copy or download): the file and what is wrong
    writeFileSync(
      join(empty, TEST[0]),
      Buffer.alloc(1000, 0).fill(Buffer.from([0, 0, 8, 3, 0, 0, 0, 20, 0, 0, 0, 28, 0, 0, 0, 28]), 0, 16),
    );
    const truncated = run(['evaluate', ...data, '--trained-weights-path', net]);
    assert.match(oneError(truncated, 'truncated'), new RegExp(`${TEST[0]}: .*truncated`));
    // --verbose: the same line, then the stack
    const verbose = run(['evaluate', ...data, '--trained-weights-path', net, '--verbose']);
    assert.equal(verbose.status, 2);
    assert.equal(verbose.stderr.split('\n')[0], oneError(truncated, 'truncated'));
    assert.match(verbose.stderr, /\n {4}at /, 'the stack trace with --verbose');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A tmpfs of `size` at a new folder, unmounted and removed by the returned function; null
 *  (and the test skipped, or failed where QCAPS_REQUIRE_NATIVE=1 asks for every test) when this
 *  machine does not let us mount one. */
function tmpfs(t: TestContext, size: string, readOnly = false): { dir: string; done: () => void } | null {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-tmpfs-'));
  const opts = `size=${size}${readOnly ? ',ro' : ''}`;
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    const why = `cannot mount a tmpfs here (${(r.stderr || r.error?.message || '').trim()}): needs root`;
    if (nativeRequired()) assert.fail(why);
    t.skip(why);
    return null;
  }
  return {
    dir,
    done: () => {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// 8 batches of 20 digits, a checkpoint every 3: the second (batch 6) does not fit beside the first
const trainFlags = (file: string) =>
  ['train', '--dataset', 'mnist', '--epochs', '1', '--train-limit', '160', '--test-limit', '20'].concat([
    '--batch-size',
    '20',
    '--threads',
    '1',
    '--checkpoint-every',
    '3',
    '--full-precision-filename',
    file,
  ]);

test('a full disk: the file that did not fit is named, no partial file, the last checkpoint kept', (t) => {
  // a ShallowCapsNet checkpoint is 97.7 MB: one fits in 120 MB, its replacement's temporary not
  const fs = tmpfs(t, '120m');
  if (!fs) return;
  try {
    const ckpt = join(fs.dir, 'm.ckpt.safetensors');
    const r = run(trainFlags(join(fs.dir, 'm.pt')));
    const line = oneError(r, 'ENOSPC');
    assert.ok(line.includes(`${ckpt}: cannot write it: ENOSPC`), line);
    assert.match(r.stdout, /Checkpoint at epoch 1, batch 3 \(step 3\) saved to /);
    assert.deepEqual(readdirSync(fs.dir), ['m.ckpt.safetensors'], 'no temporary file left');
    const state = JSON.parse(readSafetensors(ckpt).metadata.state) as { epoch: number; batch: number };
    assert.deepEqual([state.epoch, state.batch], [1, 3], 'the checkpoint of batch 3 is whole');

    // a checkpoint of another model: one error naming the flags and what the checkpoint holds
    const other = run([
      ...trainFlags(join(fs.dir, 'n.pt')),
      ...['--model-args', '28', '1', '10', '8', '--decoder-args', '8', '784', '--resume', ckpt],
    ]);
    assert.equal(other.status, 2, other.stderr);
    assert.match(
      other.stderr,
      /--resume .*m\.ckpt\.safetensors: the checkpoint belongs to a different run:\n {2}--model ShallowCapsNet --model-args 28 1 10 8: the checkpoint has ShallowCapsNet 28 1 10 16\n/,
    );
    assert.doesNotMatch(other.stderr, /\n {4}at /);
  } finally {
    fs.done();
  }
});

test('a search on a full disk names its file; a read-only folder fails before any work', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-fails-out-'));
  const full = tmpfs(t, '64k');
  const ro = full && tmpfs(t, '1m', true);
  try {
    if (!full || !ro) return;
    const net = join(dir, 'net.pt');
    writeStateDict(net, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 }).stateDict());
    const search = ['search', '--dataset', 'mnist', '--trained-weights-path', net, '--test-limit', '30'].concat([
      '--quantization-method',
      'round_to_nearest',
      '--accuracy-tolerance',
      '50',
      '--memory-budget',
      '3',
    ]);
    const r = run([...search, '--output-dir', full.dir]);
    const line = oneError(r, 'search ENOSPC');
    assert.match(line, new RegExp(`${full.dir}/net_[^ ]+: cannot write it: ENOSPC`));
    assert.ok(
      readdirSync(full.dir).every((n) => !n.endsWith('.tmp')),
      'no temporary file left',
    );

    for (const [args, flag] of [
      [[...search, '--output-dir', ro.dir], '--output-dir'],
      [trainFlags(join(ro.dir, 'm.pt')), '--full-precision-filename'],
      [trainFlags(join(ro.dir, 'sub', 'm.pt')), '--full-precision-filename'],
    ] as const) {
      const bad = run([...args]);
      assert.match(
        oneError(bad, flag),
        new RegExp(`${flag} .*: the folder ${ro.dir} is not writable \\(a read-only file system\\)`),
      );
      assert.doesNotMatch(bad.stdout + bad.stderr, /Step 0|STEP1|full-precision accuracy/, 'before any work');
    }
  } finally {
    ro?.done();
    full?.done();
    rmSync(dir, { recursive: true, force: true });
  }
});
