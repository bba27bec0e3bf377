// Every input the fuzzer (npm run fuzz) found failing, saved under fixtures/fuzz/ as
// <reader>-<hash><ext>.gz (gzip, as some are megabytes of zeros), now ends in the reader's own
// error: a FileFormatError naming the file. What each one was:
//   run-8566465a03122b7d: the training state's 'batch' nested 100,000 deep, which the error
//     message printed with JSON.stringify (a stack overflow);
//   quantized-11f992b59ccdc826, quantized-6379c004b2113c1b: a tensor's __metadata__ shape
//     nested 100,000 deep, compared and printed with Array.prototype.join (a stack overflow);
//   quantized-8be143302ceea07b: model_args [18, 4294967295, 2, 2], a model built (its weights
//     allocated) from the metadata alone before any tensor was compared with the file;
//   eval-cache-7c78af4c8da24526: an evaluation cache line whose bits `w` nest an array 100,000
//     deep, printed by checkBitConfig's message (a stack overflow); lines now hold flat
//     arrays of numbers before their bits are checked;
//   eval-cache-17d381ed5c1061ed: a cache header whose approximateMarginImages nests 100,000
//     deep, printed with JSON.stringify in the "made with" message; arrays and objects are now
//     only named there.
// Each is run twice: here (the error itself) and in the fuzzer's worker, with its time limit and
// its allocation limit (an allocation beyond what the file could hold is a failure even when
// the reader turns V8's RangeError into its own error).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { READERS, runReader } from '../bench/fuzz/readers.js';
import { FuzzSlot } from '../bench/fuzz/run.js';
import { buildModel, leastParameterCount } from '../src/models/factory.js';

const fixtures = fileURLToPath(new URL('../../fixtures/fuzz/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'qcaps-fuzz-regressions-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const saved = readdirSync(fixtures).sort();
const slot = new FuzzSlot();
after(() => slot.close());

test('fixtures/fuzz holds the saved inputs, each named after a reader', () => {
  assert.ok(saved.length >= 3, `only ${saved.length} saved inputs`);
  for (const name of saved) {
    const reader = /^(.+)-[0-9a-f]{16}\./.exec(name)?.[1];
    assert.ok(reader !== undefined && READERS[reader], `${name}: not <reader>-<hash><ext>[.gz]`);
  }
});

for (const name of saved) {
  test(`${name}: a FileFormatError naming the file`, async () => {
    const reader = /^(.+)-[0-9a-f]{16}\./.exec(name)![1];
    const raw = readFileSync(join(fixtures, name));
    const file = join(dir, name.replace(/\.gz$/, ''));
    writeFileSync(file, name.endsWith('.gz') ? gunzipSync(raw) : raw);
    const bytes = readFileSync(file);
    const { outcome, message } = runReader(reader, file);
    assert.equal(outcome, 'typed', `${reader} on ${name}: ${outcome} ${message}`);
    const guarded = await slot.run(reader, 0, new Uint8Array(bytes));
    assert.equal(guarded.kind, 'typed', `${reader} on ${name} in the fuzz worker: ${guarded.kind} ${guarded.message}`);
  });
}

test('leastParameterCount (the quantized reader check of model_args) is a lower bound', () => {
  for (const [name, args] of [
    ['ShallowCapsNet', [18, 1, 2, 2]],
    ['ShallowCapsNet', [28, 3, 5, 7]],
    ['ShallowCapsNet', [28, 1, 10, 16]],
    ['DeepCaps', [28, 1, 10, 32]],
    ['DeepCaps', [28, 3, 5, 7]],
  ] as const) {
    let total = 0;
    for (const [, t] of buildModel(name, args).stateDict()) total += t.data.length;
    const least = leastParameterCount(name, args);
    assert.ok(least <= total && least > 0.5 * total, `${name} [${args.join(', ')}]: ${least} of ${total}`);
  }
});
