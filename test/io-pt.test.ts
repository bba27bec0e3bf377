// PyTorch checkpoints: exact values from torch.save fixtures (zip and legacy formats,
// non-contiguous and offset views, float64/float16/bfloat16/int64), nested checkpoints,
// rejection of malicious pickles, truncation/corruption errors, write -> read round trips,
// atomic writes, and (when /usr/bin/python3 has torch) torch.load of what we write.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../src/io/atomic-write.js';
import { ZipReader } from '../src/io/zip.js';
import { fileSource } from '../src/io/byte-source.js';
import {
  isNamedTensor,
  pickStateDict,
  readCheckpoint,
  readStateDict,
  writeStateDict,
  type CheckpointDict,
  type NamedTensor,
  type StateDict,
} from '../src/io/pt.js';
import { PYTORCH, requirePackages, skipUnless, SYSTEM_PYTHON } from './requirements.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../../fixtures/io/${name}`, import.meta.url));
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

interface Expected {
  dtype: string;
  shape: number[];
  values: (number | string)[];
}
const expected = JSON.parse(fs.readFileSync(fixture('tiny.expected.json'), 'utf8')) as Record<string, Expected>;

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'qcapsnets-io-'));
}

function assertMatchesExpected(sd: StateDict): void {
  assert.deepEqual([...sd.keys()], Object.keys(expected));
  for (const [name, want] of Object.entries(expected)) {
    const got = sd.get(name) as NamedTensor;
    assert.equal(got.dtype, want.dtype, `${name} dtype`);
    assert.deepEqual(got.shape, want.shape, `${name} shape`);
    if (want.dtype === 'int64') {
      assert.deepEqual(got.integers, BigInt64Array.from(want.values.map((v) => BigInt(v))), `${name} integers`);
      assert.deepEqual(got.data, Float32Array.from(want.values.map(Number)), `${name} data`);
    } else {
      assert.deepEqual(got.data, Float32Array.from(want.values as number[]), `${name} values`);
    }
  }
}

test('reads torch.save state_dict with exact values (strides, offsets, dtypes)', () => {
  const sd = readStateDict(fixture('tiny.pt'));
  assertMatchesExpected(sd);
  // Spot checks of the tricky entries.
  assert.deepEqual(Array.from(sd.get('transposed')!.data.subarray(0, 3)), [-0.5, 0, 0.5]);
  assert.deepEqual(Array.from(sd.get('window')!.data), [2, 2.25, 2.5, 3.5, 3.75, 4, 5, 5.25, 5.5]);
  assert.equal(sd.get('counts')!.integers![2], 2n ** 53n + 1n);
  assert.equal(sd.get('bn.num_batches_tracked')!.integers![0], 2n);
  assert.equal(sd.get('f64')!.data[0], Math.fround(0.1));
});

test('reads the legacy (non-zip) torch.save format', () => {
  assertMatchesExpected(readStateDict(fixture('tiny-legacy.pt')));
});

test('reads a nested checkpoint and picks sub-dicts', () => {
  const checkpoint = readCheckpoint(fixture('checkpoint.pt')) as CheckpointDict;
  assert.equal(checkpoint.get('epoch'), 3);
  assert.equal(checkpoint.get('best_acc'), 0.875);
  assert.equal(checkpoint.get('note'), 'hello');
  assertMatchesExpected(pickStateDict(checkpoint, 'model'));
  assertMatchesExpected(readStateDict(fixture('checkpoint.pt'))); // 'model' found automatically
  const optimizer = checkpoint.get('optimizer') as CheckpointDict;
  const group = (optimizer.get('param_groups') as CheckpointDict[])[0];
  assert.deepEqual(group.get('betas'), [0.9, 0.99]);
  assert.equal(group.get('foreach'), null);
  const state = pickStateDict(checkpoint, ['optimizer', 'state', '6']);
  assert.deepEqual([...state.keys()], ['step', 'exp_avg', 'exp_avg_sq']);
  assert.ok(isNamedTensor(state.get('step')));
  assert.throws(
    () => pickStateDict(checkpoint, 'nope', 'ck.pt'),
    /ck\.pt: no key 'nope' in top level \(keys: model, optimizer/,
  );
  assert.throws(
    () => pickStateDict(checkpoint, 'optimizer', 'ck.pt'),
    /ck\.pt: 'optimizer' entry 'state' is not a tensor/,
  );
});

test('refuses pickles that reference other globals, naming the global and the file', () => {
  assert.throws(
    () => readStateDict(fixture('malicious-global.pt')),
    (err: Error) =>
      err.message ===
      `${fixture('malicious-global.pt')}: refusing to load global 'os.system' (only state_dict contents are allowed)`,
  );
  assert.throws(
    () => readStateDict(fixture('malicious-stack-global.pt')),
    /malicious-stack-global\.pt: refusing to load global 'builtins\.eval'/,
  );
});

test('truncated and corrupted checkpoints are errors naming the file', () => {
  const dir = tempDir();
  const bytes = fs.readFileSync(fixture('tiny.pt'));
  const cut = path.join(dir, 'cut.pt');
  fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
  assert.throws(
    () => readStateDict(cut),
    (err: Error) => err.message.startsWith(`${cut}: truncated`),
  );

  const legacyCut = path.join(dir, 'legacy-cut.pt');
  const legacy = fs.readFileSync(fixture('tiny-legacy.pt'));
  fs.writeFileSync(legacyCut, legacy.subarray(0, legacy.length - 10));
  assert.throws(
    () => readStateDict(legacyCut),
    (err: Error) => err.message.startsWith(`${legacyCut}: truncated`),
  );

  const corrupt = path.join(dir, 'corrupt.pt');
  const flipped = Buffer.from(bytes);
  const zip = ZipReader.open(fileSource(fixture('tiny.pt')));
  flipped[zip.dataOffset('tiny/data/0')] ^= 0x40;
  zip.close();
  fs.writeFileSync(corrupt, flipped);
  assert.throws(() => readStateDict(corrupt), /corrupt\.pt: ZIP entry 'tiny\/data\/0' is corrupted: CRC-32/);

  const empty = path.join(dir, 'empty.pt');
  fs.writeFileSync(empty, '');
  assert.throws(() => readStateDict(empty), /empty\.pt: file is empty/);
  const junk = path.join(dir, 'junk.pt');
  fs.writeFileSync(junk, 'hello world');
  assert.throws(() => readStateDict(junk), /junk\.pt: not a PyTorch checkpoint/);
  fs.rmSync(dir, { recursive: true });
});

test('write -> read round trip keeps names, shapes, dtypes and values', () => {
  const dir = tempDir();
  const file = path.join(dir, 'model.v1.pt');
  const sd: StateDict = new Map([
    ['layer.weight', { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 1e-8, -0, Infinity]) }],
    ['scalar', { dtype: 'float32', shape: [], data: Float32Array.from([42]) }],
    ['empty', { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) }],
    ['wide', { dtype: 'float64', shape: [2], data: Float32Array.from([0.1, 2]) }],
    [
      'steps',
      { dtype: 'int64', shape: [2], data: Float32Array.from([0, 0]), integers: BigInt64Array.from([2n ** 60n, -5n]) },
    ],
    ['mask', { dtype: 'bool', shape: [3], data: Float32Array.from([1, 0, 1]) }],
    ['ünïcode name', { dtype: 'float32', shape: [1], data: Float32Array.from([NaN]) }],
  ]);
  writeStateDict(file, sd);
  const zip = ZipReader.open(fileSource(file));
  assert.deepEqual(zip.names().slice(0, 2), ['model.v1/data.pkl', 'model.v1/byteorder']);
  assert.ok(zip.has('model.v1/version') && zip.has('model.v1/data/6'));
  assert.equal(new TextDecoder().decode(zip.read('model.v1/version')), '3\n');
  for (const name of zip.names()) assert.equal(zip.dataOffset(name) % 64, 0);
  zip.close();

  const back = readStateDict(file);
  assert.deepEqual([...back.keys()], [...sd.keys()]);
  assert.deepEqual(back.get('layer.weight'), sd.get('layer.weight'));
  assert.deepEqual(back.get('scalar'), sd.get('scalar'));
  assert.deepEqual(back.get('empty'), sd.get('empty'));
  assert.deepEqual(back.get('wide'), sd.get('wide'));
  assert.deepEqual(back.get('steps')!.integers, BigInt64Array.from([2n ** 60n, -5n]));
  assert.equal(back.get('steps')!.dtype, 'int64');
  assert.deepEqual(back.get('mask')!.integers, BigInt64Array.from([1n, 0n, 1n]));
  assert.ok(Number.isNaN(back.get('ünïcode name')!.data[0]));

  // Rewriting what was read from torch's fixture gives the same tensors.
  const again = path.join(dir, 'again.pt');
  writeStateDict(again, readStateDict(fixture('tiny.pt')));
  assertMatchesExpectedLoosely(readStateDict(again));
  fs.rmSync(dir, { recursive: true });
});

/** After a rewrite float16/bfloat16 tensors come back as float32 (same values). */
function assertMatchesExpectedLoosely(sd: StateDict): void {
  for (const [name, want] of Object.entries(expected)) {
    const got = sd.get(name)!;
    assert.deepEqual(got.shape, want.shape);
    assert.deepEqual(got.data, Float32Array.from(want.values.map(Number)), name);
  }
}

test('writes are atomic: a failed write leaves no file and keeps an existing one', () => {
  const dir = tempDir();
  const file = path.join(dir, 'model.pt');
  const bad: StateDict = new Map([['w', { dtype: 'float32', shape: [2, 2], data: new Float32Array(3) }]]);
  assert.throws(() => writeStateDict(file, bad), /model\.pt: tensor 'w': shape \[2, 2\] needs 4 values, data has 3/);
  assert.deepEqual(fs.readdirSync(dir), []);

  const good: StateDict = new Map([['w', { dtype: 'float32', shape: [1], data: Float32Array.from([7]) }]]);
  writeStateDict(file, good);
  const before = fs.readFileSync(file);
  assert.throws(
    () =>
      writeFileAtomic(file, function* () {
        yield new Uint8Array(1000);
        throw new Error('disk on fire');
      }),
    /disk on fire/,
  );
  assert.deepEqual(fs.readFileSync(file), before, 'previous file untouched');
  assert.deepEqual(fs.readdirSync(dir), ['model.pt'], 'no temporary file left behind');
  fs.rmSync(dir, { recursive: true });
});

test('torch.load(weights_only=True) + load_state_dict accept what we write', (t) => {
  const python = SYSTEM_PYTHON;
  const skip = skipUnless(PYTORCH);
  if (skip) return t.skip(`${skip} (other checks use committed fixtures)`);
  requirePackages(PYTORCH);
  const dir = tempDir();
  const file = path.join(dir, 'from-typescript.pt');
  writeStateDict(file, readStateDict(fixture('tiny.pt')));
  const run = spawnSync(python, [path.join(repoRoot, 'tools/make-io-fixtures.py'), '--verify', file], {
    encoding: 'utf8',
  });
  assert.equal(run.status, 0, `verify failed:\n${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /^OK /);
  fs.rmSync(dir, { recursive: true });
});

test("atomic writes: a killed writer's temporary file is removed by the next write; file-system errors name the file", () => {
  const dir = tempDir();
  const file = path.join(dir, 'model.pt');
  // a process that has exited: its pid names a stale temporary file
  const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  const stale = path.join(dir, `.model.pt.${Number(gone.stdout.trim())}.0badf00d.tmp`);
  const live = path.join(dir, `.model.pt.${process.ppid}.0badf00d.tmp`); // a running process
  fs.writeFileSync(stale, new Uint8Array(100));
  fs.writeFileSync(live, new Uint8Array(100));
  writeStateDict(file, new Map([['w', { dtype: 'float32', shape: [1], data: Float32Array.from([1]) }]]));
  assert.deepEqual(fs.readdirSync(dir).sort(), [path.basename(live), 'model.pt'].sort());
  // a folder in place of the file: the error names it
  const folder = path.join(dir, 'folder.pt');
  fs.mkdirSync(folder);
  assert.throws(
    () => writeFileAtomic(folder, () => [new Uint8Array(1)]),
    (err: Error) =>
      err.message.startsWith(`${folder}: cannot write it: `) &&
      !fs.readdirSync(dir).some((n) => n.includes('folder.pt.')),
  );
  fs.rmSync(dir, { recursive: true });
});
