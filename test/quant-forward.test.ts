// The quantized forward pass (SPEC 4) and the fast evaluator: the layers the search sees, 32 bits
// everywhere matches the full-precision forward; reused prefixes, early stops, hardest-first order
// and resumed evaluations give the same results and decisions, as do dac2020 passes with fast
// convolutions and a margin; seeded stochastic rounding evaluates the same in any order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildModel } from '../src/models/factory.js';
import { ModelQuantizer, quantLayers } from '../src/quant/quantized-forward.js';
import { type BitConfig, type BitLists, bitsFromLists, uniformBits } from '../src/quant/config.js';
import { FastEvaluator } from '../src/search/fast-evaluator.js';
import { give, Tensor } from '../src/tensor/index.js';
import { assertClose, syntheticImages } from './helpers.js';
import { predictedClass } from '../src/models/metrics.js';

test('ShallowCapsNet layers for the search: parameter counts, routing layers and iterations', () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 });
  assert.deepEqual(
    quantLayers(model).map((l) => [l.name, l.paramCount, l.routes, l.iterations]),
    [
      ['conv', 256 * 81 + 256, false, 0],
      ['primary', 256 * 256 * 81 + 256, true, 1],
      ['digit', 1152 * 8 * 160 + 160, true, 3],
    ],
  );
});

test('with every bit count at 32 the quantized forward matches the full-precision forward', () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 3 });
  model.eval();
  const src = syntheticImages(8, 5);
  const x = Tensor.zeros([8, 28, 28, 1]);
  for (let i = 0; i < 8; i++) src.writeImage(i, x.data, i * 784);
  const fp = model.forward(x, false).clone();
  for (const method of ['truncation', 'round_to_nearest', 'stochastic_rounding'] as const) {
    const q = new ModelQuantizer(model, method, 'none', 42);
    q.applyWeights(uniformBits(q.layers, 32));
    const out = model.forward(x, { training: false, quant: q.hooks(uniformBits(q.layers, 32), 0) });
    assertClose(out, fp, `${method} at 32 bits`, 1e-4, 1e-5);
    give(out.data);
    q.restore();
  }
});

test('the fast evaluator: reuse and early stops change no accuracy and no decision', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 7 });
  const src = syntheticImages(120, 9);
  const quantizer = new ModelQuantizer(model, 'round_to_nearest', 'none', 42);
  const plain = new FastEvaluator(model, quantizer, src, { batchSize: 40, cacheMB: 0, earlyStop: false });
  const fast = new FastEvaluator(model, quantizer, src, { batchSize: 40, cacheMB: 512, earlyStop: true });
  const lists = (l: BitLists) => bitsFromLists(quantizer.layers, l);
  const configs: BitConfig[] = [
    uniformBits(quantizer.layers, 8),
    lists({ weightBits: [8, 8, 8], actBits: [8, 8, 4], routingBits: [8, 4] }), // reuses conv + primary
    lists({ weightBits: [8, 8, 8], actBits: [8, 3, 3], routingBits: [3, 3] }), // reuses conv
    lists({ weightBits: [8, 8, 2], actBits: [8, 3, 3], routingBits: [3, 3] }),
    uniformBits(quantizer.layers, 1),
  ];
  for (const bits of configs) {
    const full = await plain.evaluate(bits);
    const reused = await fast.evaluate(bits);
    assert.equal(reused.accuracy, full.accuracy, `same accuracy for ${JSON.stringify(bits)}`);
    for (const threshold of [0, full.accuracy, full.accuracy + 0.5, 100]) {
      const pass = (a: number) => a >= threshold;
      const e = await fast.evaluate(bits, (lo, hi) => pass(lo) === pass(hi));
      assert.equal(pass(e.lower), pass(full.accuracy), `same decision at threshold ${threshold}`);
      if (!e.exact) assert.ok(e.seen < e.total && e.lower <= full.accuracy && full.accuracy <= e.upper);
    }
  }
  assert.ok(fast.stats.stagesReused > 0, 'leading layers were reused');
  fast.clear();
  quantizer.restore();
});

test('fast evaluator: a try that returns to an earlier configuration reuses its leading layers (step 3B)', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 5 });
  const src = syntheticImages(120, 3);
  const quantizer = new ModelQuantizer(model, 'round_to_nearest', 'none', 42);
  const plain = new FastEvaluator(model, quantizer, src, { batchSize: 40, cacheMB: 0, earlyStop: false });
  const a = { actBits: [8, 8, 8], routingBits: [8, 8] };
  // 3B: [8,8,8] passes, [7,7,7] and [8,7,7] fail, then [8,8,7] shares [8,8,8]'s conv and primary
  const tries = [
    [8, 8, 8],
    [7, 7, 7],
    [8, 7, 7],
    [8, 8, 7],
  ].map((w) => bitsFromLists(quantizer.layers, { ...a, weightBits: w }));
  for (const [cacheMB, reusesLast] of [
    [512, true],
    [6, false], // room for one prefix of the primary capsules (4.4 MB): [8,7,7]'s displaced [8,8,8]'s
  ] as const) {
    const fast = new FastEvaluator(model, quantizer, src, { batchSize: 40, cacheMB, earlyStop: true });
    for (const [i, bits] of tries.entries()) {
      const before = { ...fast.stats };
      const e = await fast.evaluate(bits);
      assert.equal(e.accuracy, (await plain.evaluate(bits)).accuracy, `cache ${cacheMB} MB, try ${i}: same accuracy`);
      if (i === tries.length - 1)
        assert.equal(
          fast.stats.stagesRun - before.stagesRun,
          reusesLast ? 3 : 9,
          `cache ${cacheMB} MB: the last try runs ${reusesLast ? 'only the digit layer' : 'every layer'}`,
        );
    }
    fast.clear();
  }
  quantizer.restore();
});

test('fast evaluator: hardest images first after the full-precision pass, stopped evaluations resume', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 23 });
  const src = syntheticImages(100, 29);
  const quantizer = new ModelQuantizer(model, 'round_to_nearest', 'dac2020', 0);
  const inOrder = new FastEvaluator(model, quantizer, src, {
    batchSize: 20,
    cacheMB: 0,
    earlyStop: false,
    order: 'dataset',
  });
  const ranked = new FastEvaluator(model, quantizer, src, { batchSize: 20, cacheMB: 64, earlyStop: true });
  const fpInOrder = await inOrder.evaluateFullPrecision();
  const fp = await ranked.evaluateFullPrecision();
  assert.equal(fp.accuracy, fpInOrder.accuracy);
  assert.deepEqual(
    inOrder.imageOrder,
    Int32Array.from({ length: 100 }, (_, i) => i),
  );
  // the ranking puts every misclassified image before every correct one
  const order = ranked.imageOrder;
  assert.deepEqual(
    [...order].sort((a, b) => a - b),
    [...inOrder.imageOrder],
    'a permutation',
  );
  const x = Tensor.zeros([100, 28, 28, 1]);
  for (let i = 0; i < 100; i++) src.writeImage(i, x.data, i * 784);
  model.eval();
  const caps = model.forward(x, false);
  const right = [...order].map((i) => predictedClass(caps, i) === src.labels[i]);
  give(caps.data);
  const firstRight = right.indexOf(true);
  assert.ok(firstRight > 0 && right.slice(firstRight).every((r) => r), 'misclassified images come first');

  for (const b of [32, 6, 4, 2]) {
    const bits = uniformBits(quantizer.layers, b);
    const full = await inOrder.evaluate(bits);
    for (const threshold of [full.accuracy - 3, full.accuracy, full.accuracy + 3]) {
      const pass = (a: number) => a >= threshold;
      const e = await ranked.evaluate(bits, (lo, hi) => pass(lo) === pass(hi));
      assert.equal(pass(e.lower), pass(full.accuracy), `${b} bits, threshold ${threshold}: same decision`);
      if (e.exact) assert.equal(e.accuracy, full.accuracy);
      else assert.ok(e.lower <= full.accuracy && full.accuracy <= e.upper);
    }
    // what an early stop left is run now, and only that
    const early = await ranked.evaluate(bits, () => true);
    assert.ok(!early.exact && early.seen === 20, 'decided after the first batch');
    const before = ranked.stats.batchesRun;
    const rest = await ranked.evaluate(bits);
    assert.equal(rest.accuracy, full.accuracy, `${b} bits: the resumed pass is exact`);
    assert.ok(rest.exact && rest.seen === 100);
    assert.equal(ranked.stats.batchesRun - before, (100 - (rest.resumedAfter ?? 0)) / 20, 'no batch runs twice');
    assert.equal(rest.resumedAfter, 20);
  }
  ranked.clear();
  quantizer.restore();
});

test('dac2020: passes with fast convolutions and a margin decide as exact passes do', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 11 });
  const src = syntheticImages(80, 13);
  const quantizer = new ModelQuantizer(model, 'round_to_nearest', 'dac2020', 0);
  const exact = new FastEvaluator(model, quantizer, src, { batchSize: 40, cacheMB: 0, earlyStop: false });
  const approx = new FastEvaluator(model, quantizer, src, {
    batchSize: 40,
    cacheMB: 256,
    earlyStop: true,
    approximateMargin: 2.5,
  });
  for (const b of [32, 8, 5, 3]) {
    const bits = uniformBits(quantizer.layers, b);
    const full = await exact.evaluate(bits);
    for (const threshold of [
      full.accuracy - 5,
      full.accuracy - 1,
      full.accuracy,
      full.accuracy + 1,
      full.accuracy + 5,
    ]) {
      const pass = (a: number) => a > threshold;
      const e = await approx.evaluate(bits, (lo, hi) => pass(lo) === pass(hi));
      assert.equal(pass(e.lower), pass(full.accuracy), `${b} bits, threshold ${threshold}`);
      if (e.exact) assert.equal(e.accuracy, full.accuracy);
      else assert.ok(e.lower <= full.accuracy && full.accuracy <= e.upper);
    }
    assert.equal((await approx.evaluate(bits)).accuracy, full.accuracy, 'without a decision the pass is exact');
  }
  assert.ok(approx.stats.approximateRedone > 0, 'close calls were evaluated again exactly');
  assert.equal(quantizer.fastConv, false);
  approx.clear();
  quantizer.restore();
});

test('stochastic rounding with the same seed gives the same evaluation every time, in any order', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 17 });
  const src = syntheticImages(60, 19);
  const bits = uniformBits(quantLayers(model), 4);
  const run = async (seed: number, warm: boolean) => {
    const q = new ModelQuantizer(model, 'stochastic_rounding', 'none', seed);
    const ev = new FastEvaluator(model, q, src, { batchSize: 20, cacheMB: 0, earlyStop: false });
    if (warm) await ev.evaluate(uniformBits(q.layers, 6)); // another evaluation first
    const e = await ev.evaluate(bits);
    const x = Tensor.zeros([20, 28, 28, 1]);
    for (let i = 0; i < 20; i++) src.writeImage(i, x.data, i * 784);
    q.applyWeights(bits);
    const caps = model.forward(x, { training: false, quant: q.hooks(bits, 0) }).clone();
    q.restore();
    return { accuracy: e.accuracy, caps };
  };
  const a = await run(42, false);
  const b = await run(42, true);
  const c = await run(43, false);
  assert.equal(a.accuracy, b.accuracy);
  assert.deepEqual(a.caps.data, b.caps.data);
  assert.notDeepEqual(a.caps.data, c.caps.data, 'another seed draws other roundings');
});
