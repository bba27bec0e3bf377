// The CI slice of npm run fuzz: 2,000 inputs across every reader from a fixed seed, run in a
// worker with the fuzzer's time and allocation limits; none may hang, crash, escape as an
// error that is not the reader's own, or allocate more than its file could hold. (The full
// campaign, 100,000+ inputs: npm run fuzz -- --json.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { READER_NAMES } from '../bench/fuzz/readers.js';
import { runFuzz, scaledInputs } from '../bench/fuzz/run.js';

test('2,000 mutated inputs (seed 20260611): 0 hangs, 0 crashes, 0 uncaught, 0 oversized', async () => {
  const inputs = scaledInputs(2000);
  const report = await runFuzz({ seed: 20260611, inputs, saveDir: null });
  const failures = report.failures.map((f) => `${f.kind} ${f.reader} #${f.index}: ${f.message}`).join('\n');
  assert.equal(report.failures.length, 0, `failing inputs (rerun with npm run fuzz -- --seed 20260611):\n${failures}`);
  assert.equal(
    report.inputs,
    Object.values(inputs).reduce((a, b) => a + b, 0),
  );
  for (const r of READER_NAMES) {
    const f = report.readers[r];
    assert.ok(f.inputs >= 1, `${r}: no inputs`);
    assert.equal(f.ok + f.typed, f.inputs, `${r}: ${JSON.stringify(f)}`);
  }
  // the mutations reach past the first check: some inputs still load, most are refused
  const all = Object.values(report.readers);
  assert.ok(all.reduce((a, f) => a + f.ok, 0) > 100, 'almost no mutated input was valid');
  assert.ok(all.reduce((a, f) => a + f.typed, 0) > 1000, 'almost no mutated input was refused');
});
