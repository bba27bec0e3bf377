// safetensors: reading a file encoded by the fixture script (F32/F16/BF16/F64/I64 + metadata),
// round trips, header layout, clear errors for truncated or malformed files, atomic writes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import type { StateDict } from '../src/io/pt.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../../fixtures/io/${name}`, import.meta.url));
const expected = JSON.parse(fs.readFileSync(fixture('tiny.expected.json'), 'utf8')) as Record<
  string,
  { dtype: string; shape: number[]; values: (number | string)[] }
>;

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'qcapsnets-st-'));
}

/** A safetensors file from a header (object, or raw text) and a data buffer. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: number): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerLength ?? json.length));
  return Buffer.concat([length, json, data]);
}

test('reads F32/F16/BF16/F64/I64 tensors and metadata exactly', () => {
  const { tensors, metadata } = readSafetensors(fixture('tiny.safetensors'));
  assert.deepEqual(metadata, { format: 'pt', source: 'make-io-fixtures' });
  assert.deepEqual([...tensors.keys()], ['conv.weight', 'f16', 'bf16', 'f64', 'counts', 'bn.num_batches_tracked']);
  for (const [name, got] of tensors) {
    const want = expected[name];
    assert.equal(got.dtype, want.dtype, name);
    assert.deepEqual(got.shape, want.shape, name);
    assert.deepEqual(got.data, Float32Array.from(want.values.map(Number)), name);
    if (want.dtype === 'int64') assert.deepEqual(got.integers, BigInt64Array.from(want.values.map((v) => BigInt(v))));
  }
});

test('write -> read round trip with metadata; header padded to 8 bytes', () => {
  const dir = tempDir();
  const file = path.join(dir, 'weights.safetensors');
  const tensors: StateDict = new Map([
    ['a', { dtype: 'float32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4.5]) }],
    ['b.scalar', { dtype: 'float32', shape: [], data: Float32Array.from([-1]) }],
    ['c', { dtype: 'float64', shape: [1], data: Float32Array.from([0.25]) }],
    ['n', { dtype: 'int64', shape: [1], data: Float32Array.from([3]), integers: BigInt64Array.from([2n ** 62n]) }],
    ['empty', { dtype: 'float32', shape: [0], data: new Float32Array(0) }],
  ]);
  writeSafetensors(file, tensors, { epoch: '3' });
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  assert.equal(headerLength % 8, 0);
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  assert.deepEqual(header.a, { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] });
  assert.equal(header.c.dtype, 'F64');
  assert.equal(header.n.dtype, 'I64');

  const back = readSafetensors(file);
  assert.deepEqual(back.metadata, { epoch: '3' });
  assert.deepEqual(back.tensors.get('a'), tensors.get('a'));
  assert.deepEqual(back.tensors.get('b.scalar'), tensors.get('b.scalar'));
  assert.deepEqual(back.tensors.get('c'), tensors.get('c'));
  assert.deepEqual(back.tensors.get('empty'), tensors.get('empty'));
  assert.equal(back.tensors.get('n')!.integers![0], 2n ** 62n);
  fs.rmSync(dir, { recursive: true });
});

test('truncated and malformed files are errors naming the file', () => {
  const dir = tempDir();
  const write = (name: string, bytes: Uint8Array): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    return file;
  };
  const good = fs.readFileSync(fixture('tiny.safetensors'));
  const cut = write('cut.safetensors', good.subarray(0, good.length - 4));
  assert.throws(
    () => readSafetensors(cut),
    (e: Error) => e.message.startsWith(`${cut}: truncated: tensor`),
  );
  const cutHeader = write('cut-header.safetensors', good.subarray(0, 40));
  assert.throws(() => readSafetensors(cutHeader), /cut-header\.safetensors: truncated: header says/);
  assert.throws(
    () => readSafetensors(write('tiny.safetensors', good.subarray(0, 5))),
    /tiny\.safetensors: truncated: 5 bytes/,
  );

  const notJson = write('json.safetensors', rawFile('{no'));
  assert.throws(() => readSafetensors(notJson), /json\.safetensors: safetensors header is not valid UTF-8 JSON/);
  const huge = write('huge.safetensors', rawFile({}, undefined, 2 ** 40));
  assert.throws(() => readSafetensors(huge), /huge\.safetensors: safetensors header length \d+ is implausible/);
  const dtype = write(
    'dtype.safetensors',
    rawFile({ x: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
  );
  assert.throws(() => readSafetensors(dtype), /dtype\.safetensors: tensor 'x': dtype 'C64' is not supported/);
  const size = write(
    'size.safetensors',
    rawFile({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
  );
  assert.throws(
    () => readSafetensors(size),
    /size\.safetensors: tensor 'x': data_offsets span 8 bytes but shape \[3\] of F32 needs 12/,
  );
  const meta = write('meta.safetensors', rawFile({ __metadata__: { a: 1 } }));
  assert.throws(() => readSafetensors(meta), /meta\.safetensors: __metadata__ value for 'a' must be a string/);
  fs.rmSync(dir, { recursive: true });
});

test('writes are atomic: invalid input leaves no file behind', () => {
  const dir = tempDir();
  const file = path.join(dir, 'bad.safetensors');
  const bad: StateDict = new Map([
    ['ok', { dtype: 'float32', shape: [1], data: Float32Array.from([1]) }],
    ['w', { dtype: 'float32', shape: [5], data: new Float32Array(2) }],
  ]);
  assert.throws(
    () => writeSafetensors(file, bad),
    /bad\.safetensors: tensor 'w': shape \[5\] needs 5 values, data has 2/,
  );
  assert.deepEqual(fs.readdirSync(dir), []);
  fs.rmSync(dir, { recursive: true });
});
