// Every input the fuzzer (npm run fuzz) found failing, saved under fixtures/fuzz/ as
// <reader>-<hash><ext>.gz (gzip, as some are megabytes of zeros), now ends in the reader's own
// error: a FileFormatError naming the file. What each one was:
//   run-8566465a03122b7d: the training state's 'batch' nested 100,000 deep, which the error
//     message printed with JSON.stringify (a stack overflow);
//   quantized-11f992b59ccdc826, quantized-6379c004b2113c1b: a tensor's __metadata__ shape
//     nested 100,000 deep, compared and printed with Array.prototype.join (a stack overflow).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { READERS, runReader } from '../bench/fuzz/readers.js';

const fixtures = fileURLToPath(new URL('../../fixtures/fuzz/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'qcaps-fuzz-regressions-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const saved = readdirSync(fixtures).sort();

test('fixtures/fuzz holds the saved inputs, each named after a reader', () => {
  assert.ok(saved.length >= 3, `only ${saved.length} saved inputs`);
  for (const name of saved) {
    const reader = /^(.+)-[0-9a-f]{16}\./.exec(name)?.[1];
    assert.ok(reader !== undefined && READERS[reader], `${name}: not <reader>-<hash><ext>[.gz]`);
  }
});

for (const name of saved) {
  test(`${name}: a FileFormatError naming the file`, () => {
    const reader = /^(.+)-[0-9a-f]{16}\./.exec(name)![1];
    const raw = readFileSync(join(fixtures, name));
    const file = join(dir, name.replace(/\.gz$/, ''));
    writeFileSync(file, name.endsWith('.gz') ? gunzipSync(raw) : raw);
    const { outcome, message } = runReader(reader, file);
    assert.equal(outcome, 'typed', `${reader} on ${name}: ${outcome} ${message}`);
  });
}
