// The fuzz harness itself (bench/fuzz): each kind of failure is reported as that kind, so a
// clean campaign means clean readers, not a blind harness.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { classifyError } from '../bench/fuzz/readers.js';
import { FuzzSlot } from '../bench/fuzz/run.js';
import { FileFormatError } from '../src/io/byte-source.js';

const slot = new FuzzSlot(64, new URL('./fuzz-harness-readers.js', import.meta.url).href);
after(() => slot.close());
const input = new Uint8Array([1, 2, 3, 4]);

test('a typed error, an engine TypeError, a hang, an oversized allocation and a dying worker', async () => {
  assert.equal((await slot.run('typed', 1, input, 1000)).kind, 'typed');
  const typeError = await slot.run('type-error', 2, input, 1000);
  assert.equal(typeError.kind, 'uncaught');
  assert.match(typeError.message, /TypeError: Cannot read properties of undefined/);
  assert.equal((await slot.run('hang', 3, input, 500)).kind, 'hang');
  const big = await slot.run('oversized', 4, input, 1000);
  assert.equal(big.kind, 'oversized');
  assert.match(big.message, /new Float64Array\(4294967295\) of 34359738360 bytes for an input of 4 bytes/);
  assert.equal((await slot.run('crash', 5, input, 20_000)).kind, 'crash');
  // the slot works again after the hang and the crash
  assert.equal((await slot.run('typed', 6, input, 1000)).kind, 'typed');
});

test("only a FileFormatError naming the file, with no engine error inside, is the reader's own", () => {
  const file = '/tmp/x.pt';
  assert.equal(classifyError(new FileFormatError(file, `${file}: bad`), file).outcome, 'typed');
  assert.equal(classifyError(new FileFormatError('other', 'other: bad'), file).outcome, 'uncaught');
  assert.equal(classifyError(new Error(`${file}: bad`), file).outcome, 'uncaught');
  assert.equal(classifyError(new RangeError('Invalid array length'), file).outcome, 'uncaught');
  const wrapped = new FileFormatError(file, `${file}: bad`, { cause: new TypeError('x is undefined') });
  assert.equal(classifyError(wrapped, file).outcome, 'uncaught');
  const overflow = new FileFormatError(file, `${file}: ${new RangeError('Maximum call stack size exceeded').message}`);
  assert.equal(classifyError(overflow, file).outcome, 'uncaught');
});
