// Hostile pickles run nothing (issue 11, item 2). fixtures/hostile/ holds pickles written by
// tools/make-hostile-pickles.py whose payload, under Python's pickle.loads, calls os.system,
// posix.system, builtins.eval or subprocess.Popen (the script's --verify proves each one does)
// through GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ and NEWOBJ_EX; each as a raw
// pickle and as a torch.save ZIP checkpoint. Every payload would create the file
// qcaps-hostile-ran-<route> in the working directory: the tests load the fixtures with the
// working directory set to an empty temporary folder and check it stays empty. Zip bombs,
// storages larger than their records and 100,000-deep pickles: test/io-hostile.test.ts (here:
// unclosed 100,000-deep pickles and lying ZIP sizes through the checkpoint reader, and gzip
// IDX bombs).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileFormatError } from '../src/io/byte-source.js';
import { unpickle } from '../src/io/pickle.js';
import { readCheckpoint, readStateDict } from '../src/io/pt.js';
import { REFUSAL_REASON, resolveTorchGlobal } from '../src/io/torch-globals.js';
import { zipBytes } from '../src/io/zip.js';
import { readIdxFile } from '../src/data/idx.js';
import { gzipSync } from 'node:zlib';

const fixtures = fileURLToPath(new URL('../../fixtures/hostile/', import.meta.url));
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Each route and the global its pickle loads first (the one that must be refused). */
const ROUTES: Record<string, string> = {
  'global-os-system': 'os.system',
  'stack-global-posix-system': 'posix.system',
  'reduce-builtins-eval': 'builtins.eval',
  'reduce-subprocess-popen': 'subprocess.Popen',
  'build-os-system': 'os.system',
  'inst-os-system': 'os.system',
  'obj-posix-system': 'posix.system',
  'newobj-builtins-eval': 'builtins.eval',
  'newobj-ex-subprocess-popen': 'subprocess.Popen',
};

const work = mkdtempSync(join(tmpdir(), 'qcaps-hostile-cwd-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Runs `fn` with the working directory set to an empty folder; returns what appeared there. */
function inEmptyFolder(fn: () => void): string[] {
  const dir = mkdtempSync(join(work, 'run-'));
  const before = process.cwd();
  process.chdir(dir);
  try {
    fn();
  } finally {
    process.chdir(before);
  }
  return readdirSync(dir);
}

function assertRefused(err: unknown, file: string, global: string): true {
  assert.ok(err instanceof FileFormatError, `expected a FileFormatError, got ${String(err)}`);
  assert.ok(err.message.startsWith(`${file}: `), `the error does not name ${file}: ${err.message}`);
  assert.ok(
    err.message.includes(`refusing to load global '${global}'`),
    `the error does not name ${global}: ${err.message}`,
  );
  return true;
}

test('the fixtures are all there (tools/make-hostile-pickles.py)', () => {
  const names = readdirSync(fixtures).sort();
  const expected = Object.keys(ROUTES)
    .flatMap((r) => [`${r}.pkl`, `${r}.pt`])
    .sort();
  assert.deepEqual(names, expected);
});

describe('every route is refused with the global named, and nothing runs', () => {
  for (const [route, global] of Object.entries(ROUTES)) {
    test(`${route}: the raw pickle is refused at ${global}`, () => {
      const file = join(fixtures, `${route}.pkl`);
      const bytes = new Uint8Array(readFileSync(file));
      const appeared = inEmptyFolder(() =>
        assert.throws(
          () => unpickle(bytes, { source: file, resolveGlobal: resolveTorchGlobal, refusalReason: REFUSAL_REASON }),
          (err) => assertRefused(err, file, global),
        ),
      );
      assert.deepEqual(appeared, [], 'the payload left a marker file');
    });

    test(`${route}: the torch.save checkpoint is refused at ${global}`, () => {
      const file = join(fixtures, `${route}.pt`);
      const appeared = inEmptyFolder(() =>
        assert.throws(
          () => readCheckpoint(file),
          (err) => assertRefused(err, file, global),
        ),
      );
      assert.deepEqual(appeared, [], 'the payload left a marker file');
    });
  }
});

test('the CLI refuses every hostile checkpoint with a one-line error naming the global, and runs nothing', () => {
  for (const [route, global] of Object.entries(ROUTES)) {
    const file = join(fixtures, `${route}.pt`);
    const dir = mkdtempSync(join(work, 'cli-'));
    const r = spawnSync(process.execPath, [cli, 'evaluate', '--trained-weights-path', file, '--dataset', 'mnist'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.notEqual(r.status, 0, `${route}: exit status ${r.status}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${route}: expected one line on stderr, got:\n${r.stderr}`);
    assert.match(
      lines[0],
      new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: refusing to load global '${global}'`),
    );
    assert.deepEqual(readdirSync(dir), [], `${route}: the payload left a marker file`);
  }
});

describe('hostile sizes and nesting through the checkpoint reader (a typed error, quickly)', () => {
  const dir = mkdtempSync(join(work, 'sizes-'));
  const checkpoint = (name: string, entries: { name: string; data: Uint8Array }[]): string => {
    const file = join(dir, name);
    writeFileSync(file, zipBytes(entries));
    return file;
  };
  const assertTyped = (file: string, pattern: RegExp) => {
    const start = performance.now();
    assert.throws(
      () => readStateDict(file),
      (err) => {
        assert.ok(err instanceof FileFormatError, `expected a FileFormatError, got ${String(err)}`);
        assert.ok(err.message.startsWith(`${file}: `), err.message);
        assert.match(err.message, pattern);
        return true;
      },
    );
    assert.ok(performance.now() - start < 5000, `${file} took ${(performance.now() - start).toFixed(0)} ms`);
  };

  // (closed chains, 100,000 nested lists and tuples, are in test/io-hostile.test.ts)
  test('a pickle of 100,000 unclosed MARKs / EMPTY_LISTs inside a checkpoint', () => {
    const deep = 100_000;
    for (const [name, open] of [
      ['marks.pt', 0x28],
      ['lists.pt', 0x5d],
    ] as const) {
      const pickle = new Uint8Array(deep + 5).fill(open);
      pickle.set([0x80, 2], 0);
      pickle.set([0x4e, 0x2e], deep + 3); // NONE, STOP: the unclosed containers are left on the stack
      const file = checkpoint(name, [{ name: 'archive/data.pkl', data: pickle }]);
      // STOP with 100,000 items left on the stack: None, which holds no state_dict
      assertTyped(file, /top level is not a dict/);
    }
  });

  test('a ZIP entry whose declared sizes lie (bigger and smaller than its data)', () => {
    const good = zipBytes([{ name: 'archive/data.pkl', data: new Uint8Array([0x80, 2, 0x7d, 0x2e]) }]);
    const dv = new DataView(good.buffer, good.byteOffset, good.byteLength);
    let central = good.length - 4;
    while (central > 0 && dv.getUint32(central, true) !== 0x02014b50) central--; // the central directory entry
    for (const [name, size] of [
      ['huge.pt', 0xfffffff0],
      ['short.pt', 1],
    ] as const) {
      const bytes = Uint8Array.from(good);
      const v = new DataView(bytes.buffer);
      v.setUint32(central + 20, size, true); // compressed size
      v.setUint32(central + 24, size, true); // uncompressed size
      const file = join(dir, name);
      writeFileSync(file, bytes);
      assertTyped(file, /ZIP|truncated|size/);
    }
  });

  test('a gzip IDX file that inflates past the size its header declares, or declares more than gzip can hold', () => {
    const header = (dims: number[]) => {
      const b = Buffer.alloc(4 + 4 * dims.length);
      b[2] = 0x08;
      b[3] = dims.length;
      dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
      return b;
    };
    const bomb = join(dir, 'bomb-images-idx3-ubyte.gz'); // 10 values, then 64 MiB of zeros
    writeFileSync(bomb, gzipSync(Buffer.concat([header([10]), Buffer.alloc(64 << 20)])));
    const huge = join(dir, 'huge-images-idx3-ubyte.gz'); // 2^36 values in 40 bytes
    writeFileSync(huge, gzipSync(Buffer.concat([header([65536, 65536, 16]), Buffer.alloc(100)])));
    for (const [file, pattern] of [
      [bomb, /gzip data inflates to more than the 18 bytes its header declares/],
      [huge, /gzip data of \d+ bytes cannot hold the 68719476752 bytes its header declares/],
    ] as const) {
      const start = performance.now();
      assert.throws(
        () => readIdxFile(file),
        (err) => err instanceof FileFormatError && err.message.startsWith(`${file}: `) && pattern.test(err.message),
      );
      assert.ok(performance.now() - start < 2000, `${file}: ${(performance.now() - start).toFixed(0)} ms`);
    }
  });
});
