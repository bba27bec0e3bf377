// The non-executing pickle VM and the state_dict pickle writer: literal decoding for
// protocols 2 and 4 (bytes from CPython's pickle.dumps), refusal of globals outside the
// allow-list, truncation errors, and writer output read back through the VM.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PyDict, PyTuple, unpickle, type PyValue } from '../src/io/pickle.js';
import { pickleStateDict } from '../src/io/pickle-writer.js';
import { REFUSAL_REASON, StorageRef, TensorRef, resolveTorchGlobal } from '../src/io/torch-globals.js';
import { StorageRegistry } from '../src/io/tensor-data.js';

const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const read = (bytes: Uint8Array, source = 'test.pkl'): PyValue =>
  unpickle(bytes, { source, resolveGlobal: resolveTorchGlobal, refusalReason: REFUSAL_REASON }).value;

// pickle.dumps({'a': [1, -2, 300, 70000, -70000, 2**70, -2**70], 'b': (1.5, True, None), 'c': 'héllo',
//               'd': b'\x00\xff', 'e': {1: 'x'}, 'f': [(1, 2, 3, 4)]}, protocol=2)
const PROTOCOL_2 =
  '80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101004a90eefeff8a090000000000000000408a09000000' +
  '0000000000c0655801000000627103473ff8000000000000884e8771045801000000637105580600000068c3a96c6c6f71065801000000' +
  '647107635f636f646563730a656e636f64650a7108580300000000c3bf710958060000006c6174696e31710a86710b52710c5801000000' +
  '65710d7d710e4b01580100000078710f7358010000006671105d7111284b014b024b034b0474711261752e';
// The same object plus 'g': set(), protocol=4 (FRAME, SHORT_BINUNICODE, MEMOIZE, SHORT_BINBYTES, EMPTY_SET).
const PROTOCOL_4 =
  '80049583000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101004a90eefeff8a0900000000000000004' +
  '08a090000000000000000c0658c016294473ff8000000000000884e87948c0163948c0668c3a96c6c6f948c016494430200ff948c' +
  '0165947d944b018c017894738c0166945d94284b014b024b034b047494618c0167948f94752e';

function checkDecoded(value: PyValue): void {
  assert.ok(value instanceof PyDict);
  assert.deepEqual(value.get('a'), [1, -2, 300, 70000, -70000, 2n ** 70n, -(2n ** 70n)]);
  const b = value.get('b');
  assert.ok(b instanceof PyTuple);
  assert.deepEqual(b.items, [1.5, true, null]);
  assert.equal(value.get('c'), 'héllo');
  assert.deepEqual(value.get('d'), Uint8Array.from([0x00, 0xff]));
  const e = value.get('e');
  assert.ok(e instanceof PyDict);
  assert.equal(e.get(1), 'x');
  const f = value.get('f');
  assert.ok(Array.isArray(f) && f[0] instanceof PyTuple);
  assert.deepEqual(f[0].items, [1, 2, 3, 4]);
}

test('decodes protocol 2 literals, containers and _codecs.encode bytes', () => {
  checkDecoded(read(hex(PROTOCOL_2)));
});

test('decodes protocol 4 (frames, memoize, short strings, sets)', () => {
  const value = read(hex(PROTOCOL_4));
  checkDecoded(value);
  assert.deepEqual((value as PyDict).get('g'), []);
});

test('refuses a GLOBAL outside the allow-list, naming it', () => {
  const evil = Buffer.from('\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.', 'latin1');
  assert.throws(
    () => read(evil, 'evil.pkl'),
    /^Error: evil\.pkl: refusing to load global 'os\.system' \(only state_dict contents are allowed\)$/,
  );
});

test('refuses a STACK_GLOBAL outside the allow-list, naming it', () => {
  const evil = Buffer.from('\x80\x04\x8c\x08builtins\x8c\x04exec\x93\x8c\x01x\x85R.', 'latin1');
  assert.throws(() => read(evil, 'evil.pkl'), /evil\.pkl: refusing to load global 'builtins\.exec'/);
});

test('REDUCE on a non-callable and BUILD on a plain value are errors', () => {
  assert.throws(
    () => read(Buffer.from('\x80\x02K\x01)R.', 'latin1')),
    /REDUCE on a value that is not an allowed callable/,
  );
  assert.throws(() => read(Buffer.from('\x80\x02K\x01}b.', 'latin1')), /BUILD on number is not supported/);
});

test('a truncated pickle is an error naming the source', () => {
  const bytes = hex(PROTOCOL_2);
  assert.throws(() => read(bytes.subarray(0, 40), 'cut.pkl'), /^Error: cut\.pkl: truncated pickle/);
  assert.throws(() => read(bytes.subarray(0, bytes.length - 1), 'cut.pkl'), /^Error: cut\.pkl: truncated pickle/);
});

test('copyreg extension codes (EXT1) and unknown opcodes are refused', () => {
  assert.throws(
    () => read(Buffer.from('\x80\x02\x82\x01)R.', 'latin1'), 'ext.pkl'),
    /ext\.pkl: unsupported pickle opcode 0x82/,
  );
  assert.throws(() => read(Buffer.from('\x80\x02\xff.', 'latin1')), /unsupported pickle opcode 0xff/);
});

test('persistent ids need a handler', () => {
  assert.throws(() => read(Buffer.from('\x80\x02K\x01Q.', 'latin1')), /unexpected persistent id/);
});

test('the state_dict writer produces tensors the reader rebuilds, large numel via LONG1', () => {
  const bytes = pickleStateDict([
    { name: 'w', storageClass: 'FloatStorage', storageKey: '0', storageNumel: 6, shape: [2, 3] },
    { name: 'big', storageClass: 'FloatStorage', storageKey: '1', storageNumel: 2 ** 33, shape: [2 ** 31, 4] },
    { name: 'n', storageClass: 'LongStorage', storageKey: '2', storageNumel: 1, shape: [] },
    { name: 'x5', storageClass: 'DoubleStorage', storageKey: '3', storageNumel: 32, shape: [2, 2, 2, 2, 2] },
  ]);
  const registry = new StorageRegistry('w.pkl');
  const { value } = unpickle(bytes, {
    source: 'w.pkl',
    resolveGlobal: resolveTorchGlobal,
    persistentLoad: (pid) => registry.load(pid),
  });
  assert.ok(value instanceof PyDict && value.ordered);
  const tensor = (name: string): TensorRef => {
    const t = value.get(name);
    assert.ok(t instanceof TensorRef);
    return t;
  };
  assert.deepEqual(
    [tensor('w').shape, tensor('w').stride],
    [
      [2, 3],
      [3, 1],
    ],
  );
  assert.deepEqual(tensor('big').stride, [4, 1]);
  assert.equal(tensor('big').storage.numel, 2 ** 33);
  assert.deepEqual([tensor('n').shape, tensor('n').storage.dtype], [[], 'int64']);
  assert.deepEqual(tensor('x5').stride, [16, 8, 4, 2, 1]);
  assert.ok(tensor('x5').storage instanceof StorageRef && tensor('x5').storage.dtype === 'float64');
});
