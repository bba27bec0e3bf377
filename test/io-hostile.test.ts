// Hostile inputs (issue 11): files small enough to pass any size check that would still make a
// naive reader run out of memory, time or stack. Each one is built here byte by byte and must
// fail (or load) quickly, with an error that names the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { unpickle, type PyValue } from '../src/io/pickle.js';
import { readCheckpoint, type CheckpointValue } from '../src/io/pt.js';
import { REFUSAL_REASON, resolveTorchGlobal } from '../src/io/torch-globals.js';
import { ZipReader, zipBytes } from '../src/io/zip.js';
import { crc32 } from '../src/io/crc32.js';
import { FileFormatError } from '../src/io/byte-source.js';

// Pickle opcodes used below.
const PROTO = 0x80;
const STOP = 0x2e; // .
const MARK = 0x28; // (
const TUPLE = 0x74; // t
const EMPTY_TUPLE = 0x29; // )
const EMPTY_LIST = 0x5d; // ]
const EMPTY_DICT = 0x7d; // }
const APPEND = 0x61; // a
const APPENDS = 0x65; // e
const SETITEM = 0x73; // s
const POP = 0x30; // 0
const BINPUT = 0x71; // q
const BINGET = 0x68; // h
const MEMOIZE = 0x94;
const BININT = 0x4a; // J
const BININT1 = 0x4b; // K
const LONG = 0x4c; // L
const LONG4 = 0x8b;
const SHORT_BINUNICODE = 0x8c;
const GLOBAL = 0x63; // c
const BINPERSID = 0x51; // Q
const REDUCE = 0x52; // R
const NEWFALSE = 0x89;

type Part = number | Uint8Array | string | readonly Part[];

/** Bytes from opcodes (numbers), raw bytes and latin-1 text, flattened in order. */
function bytesOf(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  const add = (p: Part): void => {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') for (const c of p) out.push(c.charCodeAt(0));
    else if (p instanceof Uint8Array) for (const b of p) out.push(b);
    else for (const q of p) add(q);
  };
  parts.forEach(add);
  return Uint8Array.from(out);
}

const str = (s: string): Part => [SHORT_BINUNICODE, s.length, s];
const int32 = (n: number): Part => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n, true);
  return [BININT, b];
};
const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};
const tuple = (...items: Part[]): Part => [MARK, ...items, TUPLE];

const SOURCE = 'hostile.pkl';
const load = (bytes: Uint8Array): PyValue =>
  unpickle(bytes, { source: SOURCE, resolveGlobal: resolveTorchGlobal, refusalReason: REFUSAL_REASON }).value;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qcapsnets-hostile-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
let fileCount = 0;

/** Writes a torch.save-style ZIP checkpoint holding `pickle` and the given storages. */
function checkpointFile(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}): string {
  const file = path.join(tmp, `hostile${fileCount++}.pt`);
  const entries = [
    { name: 'hostile/data.pkl', data: pickle },
    ...Object.entries(storages).map(([key, data]) => ({ name: `hostile/data/${key}`, data })),
    { name: 'hostile/version', data: new TextEncoder().encode('3\n') },
  ];
  fs.writeFileSync(file, zipBytes(entries));
  return file;
}

/** {'x': <value>} as a checkpoint pickle. */
const dictOf = (value: Part): Uint8Array => bytesOf(PROTO, 2, EMPTY_DICT, str('x'), value, SETITEM, STOP);

/** A float32 tensor of `shape`/`stride` over storage '0' of `numel` elements. */
function tensorPickle(shape: number[], stride: number[], numel: number, offset = 0): Uint8Array {
  const storage = [
    tuple(str('storage'), GLOBAL, 'torch\nFloatStorage\n', str('0'), str('cpu'), int32(numel)),
    BINPERSID,
  ];
  const args = tuple(storage, int32(offset), tuple(...shape.map(int32)), tuple(...stride.map(int32)), NEWFALSE);
  return dictOf([GLOBAL, 'torch._utils\n_rebuild_tensor_v2\n', args, REDUCE]);
}

const floats = (n: number): Uint8Array => new Uint8Array(new Float32Array(n).fill(1.5).buffer);

/** Runs `fn`, checks it throws an Error whose message starts with `file: ` and matches `pattern`. */
function assertFileError(fn: () => unknown, file: string, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    assert.ok(
      err instanceof FileFormatError,
      `expected the reader's own FileFormatError, got ${err.constructor.name}: ${err.message}`,
    );
    assert.ok(err.message.startsWith(`${file}: `), `error does not name ${file}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

/** Runs `fn` and fails if it took longer than `ms`: a guard against the super-linear blow-ups
 *  these inputs caused (tens of seconds to minutes), set far above a normal run (well under a
 *  second) so that a busy machine does not fail it. */
function quickly<T>(what: string, fn: () => T, ms = 10_000): T {
  const start = performance.now();
  const result = fn();
  const took = performance.now() - start;
  assert.ok(took < ms, `${what} took ${took.toFixed(0)} ms`);
  return result;
}

// 1. Memo references are shared, not copied.

function doublingLists(levels: number, memoize: boolean): Uint8Array {
  const put = (i: number): Part => (memoize ? MEMOIZE : [BINPUT, i]);
  const parts: Part[] = [EMPTY_LIST, put(0), POP];
  for (let i = 1; i <= levels; i++) parts.push(EMPTY_LIST, MARK, BINGET, i - 1, BINGET, i - 1, APPENDS, put(i), POP);
  parts.push(BINGET, levels);
  return bytesOf(parts);
}

function checkDoubling(value: unknown, levels: number): void {
  let node = value;
  for (let i = 0; i < levels; i++) {
    assert.ok(Array.isArray(node) && node.length === 2, `level ${i} is a list of two`);
    assert.equal(node[0], node[1], `level ${i} holds the same list twice`);
    node = node[0];
  }
  assert.deepEqual(node, []);
}

test('a pickle of lists holding the previous list twice (60 levels) stays small', () => {
  for (const memoize of [false, true]) {
    const body = doublingLists(60, memoize);
    assert.ok(body.length < 1024);
    const value = quickly('unpickle', () => load(bytesOf(PROTO, 4, body, STOP)));
    checkDoubling(value, 60);
    const file = checkpointFile(bytesOf(PROTO, 4, EMPTY_DICT, str('x'), body, SETITEM, STOP));
    const checkpoint = quickly('readCheckpoint', () => readCheckpoint(file));
    assert.ok(checkpoint instanceof Map);
    checkDoubling(checkpoint.get('x'), 60);
  }
});

test('a list that contains itself is refused when converting, naming the file', () => {
  const body = [EMPTY_LIST, BINPUT, 0, BINGET, 0, APPEND];
  const value = load(bytesOf(PROTO, 2, body, STOP));
  assert.ok(Array.isArray(value) && value[0] === value);
  const file = checkpointFile(dictOf(body));
  assertFileError(() => readCheckpoint(file), file, /'x\[0\]' contains itself/);
});

// 2. Tensor views far larger than their storage.

test('a stride-0 view of shape [46000, 46000] over 12 elements is refused before materialising', () => {
  const file = checkpointFile(tensorPickle([46000, 46000], [0, 0], 12), { '0': floats(12) });
  quickly('readCheckpoint', () =>
    assertFileError(() => readCheckpoint(file), file, /tensor 'x' has shape \[46000, 46000\].*storage '0' of only 12/),
  );
});

test('a view of shape [1e6, 1e6] is refused with an error naming the file and tensor', () => {
  const file = checkpointFile(tensorPickle([1e6, 1e6], [0, 0], 12), { '0': floats(12) });
  quickly('readCheckpoint', () =>
    assertFileError(
      () => readCheckpoint(file),
      file,
      /tensor 'x' has shape \[1000000, 1000000\], 1000000000000 elements/,
    ),
  );
});

test('a view reaching past its storage in any dim is refused', () => {
  for (const [shape, stride] of [
    [
      [2, 3],
      [100, 1],
    ],
    [
      [3, 2],
      [1, 100],
    ],
    [[13], [1]],
  ]) {
    const file = checkpointFile(tensorPickle(shape, stride, 12), { '0': floats(12) });
    assertFileError(() => readCheckpoint(file), file, /tensor 'x' reads storage '0' up to element \d+/);
  }
  const file = checkpointFile(tensorPickle([2, 3], [1, 2], 12, 6), { '0': floats(12) }); // last = 6 + 1 + 4 = 11
  const checkpoint = readCheckpoint(file) as Map<string, CheckpointValue>;
  assert.ok(checkpoint.get('x'));
});

test('a small legitimate stride-0 (expanded) view still loads', () => {
  const file = checkpointFile(tensorPickle([100, 100], [0, 1], 100), { '0': floats(100) });
  const tensor = (readCheckpoint(file) as Map<string, CheckpointValue>).get('x') as { data: Float32Array };
  assert.equal(tensor.data.length, 10000);
});

test('many stride-0 views over one tiny storage are refused once their total is too large', () => {
  const one = (i: number): Part => [
    str(`t${i}`),
    GLOBAL,
    'torch._utils\n_rebuild_tensor_v2\n',
    tuple(
      [tuple(str('storage'), GLOBAL, 'torch\nFloatStorage\n', str('0'), str('cpu'), int32(12)), BINPERSID],
      int32(0),
      tuple(int32(2048), int32(4096)),
      tuple(int32(0), int32(0)),
      NEWFALSE,
    ),
    REDUCE,
    SETITEM,
  ];
  const pickle = bytesOf(PROTO, 2, EMPTY_DICT, [...Array(64).keys()].map(one), STOP);
  const file = checkpointFile(pickle, { '0': floats(12) });
  quickly('readCheckpoint', () =>
    assertFileError(() => readCheckpoint(file), file, /tensors so far need \d+ elements in all/),
  );
});

test('a storage that declares more elements than its record holds names the file and the storage', () => {
  const file = checkpointFile(tensorPickle([12], [1], 1000), { '0': floats(12) });
  assertFileError(() => readCheckpoint(file), file, /storage '0' declares 1000 float32 elements.*has only 48 bytes/);
  const negative = checkpointFile(tensorPickle([12], [1], -5), { '0': floats(12) });
  assertFileError(() => readCheckpoint(negative), negative, /storage '0' declares an invalid element count -5/);
});

// 3. Huge integers.

test('LONG4 with a 256 KiB body decodes in linear time; longer than 1 MiB is refused', () => {
  const n = 256 * 1024;
  const body = new Uint8Array(n);
  body[n - 1] = 0x01;
  const value = quickly('LONG4 256 KiB', () => load(bytesOf(LONG4, u32(n), body, STOP)));
  assert.equal(value, 1n << BigInt(8 * (n - 1)));
  const minusOne = load(bytesOf(LONG4, u32(n), new Uint8Array(n).fill(0xff), STOP));
  assert.equal(minusOne, -1);
  const negative = new Uint8Array(n);
  negative[n - 1] = 0x80;
  assert.equal(load(bytesOf(LONG4, u32(n), negative, STOP)), -(1n << BigInt(8 * n - 1)));
  assert.equal(load(bytesOf(LONG4, u32(3), [0xff, 0xff, 0x7f], STOP)), 0x7fffff);
  assert.equal(load(bytesOf(LONG4, u32(2), [0x00, 0x80], STOP)), -32768);
  assertFileError(() => load(bytesOf(LONG4, u32(2 * 1024 * 1024), STOP)), SOURCE, /LONG4 integer of 2097152 bytes/);
});

test('a decimal LONG literal of 100,000 digits is refused quickly', () => {
  const digits = '7'.repeat(100_000);
  quickly('LONG', () => assertFileError(() => load(bytesOf(LONG, digits, 'L\n', STOP)), SOURCE, /longer than 4300/));
  assert.equal(load(bytesOf(LONG, '-12345678901234567890L\n', STOP)), -12345678901234567890n);
});

// 4. Zip bombs.

/** A one-entry ZIP archive whose entry is deflated `data`, declaring `declaredSize` bytes. */
function deflateZip(name: string, data: Uint8Array, declaredSize: number): Uint8Array {
  const compressed = zlib.deflateRawSync(data);
  const nameBytes = new TextEncoder().encode(name);
  const crc = crc32(data);
  const local = new Uint8Array(30 + nameBytes.length);
  const l = new DataView(local.buffer);
  l.setUint32(0, 0x04034b50, true);
  l.setUint16(4, 20, true);
  l.setUint16(8, 8, true);
  l.setUint32(14, crc, true);
  l.setUint32(18, compressed.length, true);
  l.setUint32(22, declaredSize, true);
  l.setUint16(26, nameBytes.length, true);
  local.set(nameBytes, 30);
  const central = new Uint8Array(46 + nameBytes.length);
  const c = new DataView(central.buffer);
  c.setUint32(0, 0x02014b50, true);
  c.setUint16(4, 20, true);
  c.setUint16(6, 20, true);
  c.setUint16(10, 8, true);
  c.setUint32(16, crc, true);
  c.setUint32(20, compressed.length, true);
  c.setUint32(24, declaredSize, true);
  c.setUint16(28, nameBytes.length, true);
  c.setUint32(42, 0, true);
  central.set(nameBytes, 46);
  const end = new Uint8Array(22);
  const e = new DataView(end.buffer);
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, 1, true);
  e.setUint16(10, 1, true);
  e.setUint32(12, central.length, true);
  e.setUint32(16, local.length + compressed.length, true);
  return bytesOf(local, compressed, central, end);
}

test('a deflated entry that inflates past its declared size is stopped at that size', () => {
  const zeros = new Uint8Array(8 * 1024 * 1024);
  const zip = deflateZip('bomb', zeros, 4);
  assert.ok(zip.length < 20_000);
  quickly('inflate', () =>
    assertFileError(
      () => ZipReader.fromBytes(zip, 'bomb.zip').read('bomb'),
      'bomb.zip',
      /'bomb' inflates to more than the 4 bytes/,
    ),
  );
  const honest = ZipReader.fromBytes(deflateZip('ok', zeros.subarray(0, 100_000), 100_000), 'ok.zip');
  assert.equal(honest.read('ok').length, 100_000);
});

test('a declared size beyond the 1032:1 ratio of deflate is refused before inflating', () => {
  const zip = deflateZip('bomb', new Uint8Array(1000), 0xfffffff0);
  assertFileError(
    () => ZipReader.fromBytes(zip, 'ratio.zip').read('bomb'),
    'ratio.zip',
    /'bomb' declares 4294967280 bytes from only \d+ compressed bytes/,
  );
});

// 5. Deep nesting.

const DEEP = 100_000;

test('100,000 nested lists (EMPTY_LIST + APPEND) unpickle, and conversion refuses them by depth', () => {
  const body = [Array<number>(DEEP).fill(EMPTY_LIST), Array<number>(DEEP - 1).fill(APPEND)];
  const value = quickly('unpickle', () => load(bytesOf(PROTO, 2, body, STOP)));
  let node = value;
  let depth = 1;
  while (Array.isArray(node) && node.length === 1) {
    node = node[0];
    depth++;
  }
  assert.equal(depth, DEEP);
  const file = checkpointFile(dictOf(body));
  quickly('readCheckpoint', () => assertFileError(() => readCheckpoint(file), file, /nested deeper than 1000 levels/));
});

test('100,000 nested tuples (MARK ... TUPLE) unpickle, and conversion refuses them by depth', () => {
  const body = [Array<number>(DEEP).fill(MARK), EMPTY_TUPLE, Array<number>(DEEP).fill(TUPLE)];
  quickly('unpickle', () => load(bytesOf(PROTO, 2, body, STOP)));
  const file = checkpointFile(dictOf(body));
  quickly('readCheckpoint', () => assertFileError(() => readCheckpoint(file), file, /nested deeper than 1000 levels/));
  const key = checkpointFile(bytesOf(PROTO, 2, EMPTY_DICT, body, str('v'), SETITEM, STOP));
  assertFileError(() => readCheckpoint(key), key, /dict key nests tuples deeper than 1000 levels/);
});

test('APPENDS with 300,000 items does not overflow the stack', () => {
  const items = Array<Part>(300_000).fill([BININT1, 7]);
  const value = quickly('unpickle', () => load(bytesOf(PROTO, 2, EMPTY_LIST, MARK, items, APPENDS, STOP)));
  assert.ok(Array.isArray(value) && value.length === 300_000);
});

/** A legacy (pre-1.6, non-ZIP) torch.save file: five pickles, then each storage's count and data. */
function legacyFile(objectPickle: Uint8Array, count: number, data: Uint8Array): string {
  const file = path.join(tmp, `legacy${fileCount++}.pt`);
  const magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
  const countBytes = new Uint8Array(8);
  new DataView(countBytes.buffer).setBigInt64(0, BigInt(count), true);
  const bytes = bytesOf(
    [PROTO, 2, 0x8a, 10, magic, STOP],
    [PROTO, 2, 0x4d, 0xe9, 0x03, STOP], // BININT2 1001
    [PROTO, 2, EMPTY_DICT, STOP],
    objectPickle,
    [PROTO, 2, EMPTY_LIST, str('0'), APPEND, STOP],
    countBytes,
    data,
  );
  fs.writeFileSync(file, bytes);
  return file;
}

test('a legacy storage that declares more elements than its data holds names the file and the storage', () => {
  const ok = legacyFile(tensorPickle([12], [1], 12), 12, floats(12));
  const tensor = (readCheckpoint(ok) as Map<string, CheckpointValue>).get('x') as { data: Float32Array };
  assert.equal(tensor.data.length, 12);
  const file = legacyFile(tensorPickle([12], [1], 1000), 12, floats(12));
  assertFileError(() => readCheckpoint(file), file, /storage '0' declares 1000 float32 elements.*holds only 12/);
  const huge = legacyFile(tensorPickle([12], [1], 12), 2 ** 40, floats(12));
  assertFileError(() => readCheckpoint(huge), huge, /truncated: storage '0' needs 4398046511104 bytes/);
});
