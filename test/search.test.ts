// The Q-CapsNets search's decisions (SPEC 5) on scripted accuracies: step 1's binary search,
// step 2's memory pattern and its unreachable-budget error, branch A (activation bits, then
// routing bits; dac2020's mapping of DeepCaps' routing bits), branch B (weight bits) and a
// step-1 target that even 32 bits miss. The fast evaluator is tested in quant-forward.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type BitConfig, type BitLists, bitsToLists, type QuantLayerInfo } from '../src/quant/config.js';
import { memoryBits, runSearch } from '../src/search/qcapsnets.js';
import type { Evaluation, Evaluator } from '../src/search/evaluator.js';

const shallowLayers: QuantLayerInfo[] = [
  { name: 'conv', paramCount: 20992, routes: false, iterations: 0, capsule: false },
  { name: 'primary', paramCount: 5308672, routes: true, iterations: 1, capsule: true },
  { name: 'digit', paramCount: 1474720, routes: true, iterations: 3, capsule: true },
];
const deepLayers: QuantLayerInfo[] = [
  { name: 'conv1', paramCount: 1536, routes: false, iterations: 0, capsule: false },
  { name: 'block1', paramCount: 50000, routes: false, iterations: 0, capsule: true },
  { name: 'block2', paramCount: 40000, routes: false, iterations: 0, capsule: true },
  { name: 'block3', paramCount: 70000, routes: false, iterations: 0, capsule: true },
  { name: 'block4', paramCount: 90000, routes: true, iterations: 3, capsule: true },
  { name: 'capsLayer', paramCount: 160000, routes: true, iterations: 3, capsule: true },
];

/** An evaluator whose accuracy is a function of the bits; records what it was asked. */
class Scripted implements Evaluator {
  asked: BitLists[] = [];
  constructor(private readonly f: (b: BitLists) => number) {}
  async evaluate(bits: BitConfig): Promise<Evaluation> {
    this.asked.push(bitsToLists(bits));
    const a = this.f(bitsToLists(bits));
    return { accuracy: a, lower: a, upper: a, exact: true, seen: 100, total: 100, seconds: 0 };
  }
}
const quiet = { info: () => {} };

test('step 2 memory pattern: falling by one per layer over 5 layers, gentler when the last would go below 0', () => {
  // 3 layers of 1e6 parameters, 6 MB = 48e6 bits: ((N+1) + N + (N-1)) * 1e6 <= 48e6 -> N = 16
  assert.deepEqual(memoryBits([1e6, 1e6, 1e6], 6), [16, 15, 14]);
  // 6 layers, 12 MB: [N, N-1, N-2, N-3, N-4, N-4] with 6N - 8 + 6 <= 96 -> N = 17
  assert.deepEqual(memoryBits([1e6, 1e6, 1e6, 1e6, 1e6, 1e6], 12), [17, 16, 15, 14, 13, 13]);
  // 0.5 MB = 4e6 bits: [1, 0, -1] would end below 0, so the slope shrinks until [1, 0, 0]
  assert.deepEqual(memoryBits([1e6, 1e6, 1e6], 0.5), [1, 0, 0]);
  assert.throws(
    () => memoryBits([1e6, 1e6, 1e6], 0.3),
    /memoryBudgetMB 0.3 cannot be met: even 1 bit per parameter needs 0.375 MB; use a budget of at least 0.375 MB/,
  );
});

test('step 1 binary search keeps the smallest N that stays above the target', async () => {
  // accuracy 90 from 7 uniform bits up, 50 below
  const ev = new Scripted((b) => (Math.min(...b.actBits) >= 7 ? 90 : 50));
  const r = await runSearch(
    shallowLayers,
    { fpAccuracy: 90, tolerance: 2, memoryBudgetMB: 200, compat: 'none' },
    ev,
    quiet,
  );
  const step1Tries = ev.asked
    .filter((b) => b.weightBits.every((w) => w === b.weightBits[0]) && b.actBits.every((a) => a === b.weightBits[0]))
    .map((b) => b.actBits[0]);
  assert.deepEqual(step1Tries.slice(0, 6), [32, 16, 8, 4, 6, 7]);
  assert.deepEqual(bitsToLists(r.steps[0].bits).actBits, [7, 7, 7]);
  assert.equal(r.steps[0].accuracy, 90);
});

test('branch A: 3A lowers activation bits layer by layer, routing bits follow, 4A lowers routing of iterating layers', async () => {
  // passes while every activation has >= 5 bits and every routing >= 3 bits
  const ev = new Scripted((b) => (Math.min(...b.actBits) >= 5 && Math.min(...b.routingBits) >= 3 ? 95 : 10));
  const r = await runSearch(
    shallowLayers,
    { fpAccuracy: 95, tolerance: 2, memoryBudgetMB: 200, compat: 'none' },
    ev,
    quiet,
  );
  assert.equal(r.branch, 'A');
  const s1 = bitsToLists(r.steps[0].bits).actBits[0];
  assert.equal(s1, 5);
  const step3A = r.steps.find((s) => s.step === 'step3A')!;
  assert.deepEqual(bitsToLists(step3A.bits).actBits, [5, 5, 5]);
  assert.deepEqual(
    bitsToLists(step3A.bits).routingBits,
    [5, 5],
    'routing bits follow the activation bits of primary and digit',
  );
  const step4A = r.steps.find((s) => s.step === 'step4A')!;
  // only digit iterates (primary routes once): its routing bits go down to 3
  assert.deepEqual(bitsToLists(step4A.bits).routingBits, [5, 3]);
  assert.equal(r.models[0].kind, 'satisfied');
});

test("dac2020 compatibility maps DeepCaps' step-3A routing bits as the reference code does", async () => {
  // activation bits of deeper layers may go lower than earlier ones
  const f = (b: BitLists) => (b.actBits.every((a, i) => a >= 8 - i) ? 90 : 10);
  const fixed = await runSearch(
    deepLayers,
    { fpAccuracy: 90, tolerance: 2, memoryBudgetMB: 10, compat: 'none' },
    new Scripted(f),
    quiet,
  );
  const compat = await runSearch(
    deepLayers,
    { fpAccuracy: 90, tolerance: 2, memoryBudgetMB: 10, compat: 'dac2020' },
    new Scripted(f),
    quiet,
  );
  const a = bitsToLists(fixed.steps.find((s) => s.step === 'step3A')!.bits);
  const b = bitsToLists(compat.steps.find((s) => s.step === 'step3A')!.bits);
  assert.deepEqual(a.actBits, b.actBits);
  assert.deepEqual(a.routingBits, [a.actBits[4], a.actBits[5]], 'block4 and capsLayer');
  assert.deepEqual(b.routingBits, [b.actBits[1], b.actBits[2]], 'the reference reads block1 and block2');
});

test('branch B: 3B lowers weight bits from the step-1 configuration; memory and accuracy models', async () => {
  // memory budget forces low weight bits that miss the target; accuracy needs >= 6 weight bits
  const ev = new Scripted((b) => (Math.min(...b.weightBits) >= 6 && Math.min(...b.actBits) >= 4 ? 92 : 20));
  const r = await runSearch(
    shallowLayers,
    { fpAccuracy: 92, tolerance: 1, memoryBudgetMB: 2, compat: 'none' },
    ev,
    quiet,
  );
  assert.equal(r.branch, 'B');
  assert.deepEqual(
    r.models.map((m) => m.kind),
    ['memory', 'accuracy'],
  );
  assert.deepEqual(bitsToLists(r.models[1].result.bits).weightBits, [6, 6, 6]);
  assert.ok(r.models[0].result.memoryMB <= 2);
});

test('when even 32 bits miss the step-1 target the search says so and keeps 32 bits', async () => {
  const ev = new Scripted(() => 10);
  const r = await runSearch(
    shallowLayers,
    { fpAccuracy: 90, tolerance: 2, memoryBudgetMB: 200, compat: 'none' },
    ev,
    quiet,
  );
  assert.match(r.notes[0], /even 32 bits miss the step-1 target/);
  assert.deepEqual(bitsToLists(r.steps[0].bits).weightBits, [32, 32, 32]);
  await assert.rejects(
    runSearch(shallowLayers, { fpAccuracy: 90, tolerance: 120, memoryBudgetMB: 200, compat: 'none' }, ev, quiet),
    /tolerance 120: expected a percentage in \(0, 100\)/,
  );
});
