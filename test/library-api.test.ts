// The library's entry point (src/index.ts) as a program uses it: each model describes its own
// quantization layers; quantize() gives a QuantizedModel that computes what the search's
// evaluator computes and leaves the float model as it was; searchModel() reports progress per
// phase; every function rejects bad arguments with an error that names the argument.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bitsFromLists,
  bitsToLists,
  buildModel,
  type DeepCaps,
  type LayerBits,
  evaluateFullPrecision,
  quantize,
  searchModel,
  type SearchProgress,
  uniformBits,
  models,
  quant,
  Tensor,
} from '../src/index.js';
import { ModelQuantizer } from '../src/quant/quantized-forward.js';
import { FastEvaluator } from '../src/search/fast-evaluator.js';
import { defaultThreads } from '../src/tensor/kernels.js';
import { syntheticImages } from './helpers.js';

test('each model describes its quantization layers, with iterations read from its routing layers', () => {
  const shallow = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  assert.deepEqual(
    shallow.quantLayers.map((l) => [l.name, l.routes, l.iterations, l.capsule]),
    [
      ['conv', false, 0, false],
      ['primary', true, 1, true],
      ['digit', true, 3, true],
    ],
  );
  assert.equal(
    shallow.quantLayers.reduce((n, l) => n + l.paramCount, 0),
    shallow.parameterCount(),
  );
  const deep = buildModel('DeepCaps', [28, 1, 10, 32]) as DeepCaps;
  assert.deepEqual(
    deep.quantLayers.map((l) => [l.name, l.routes, l.iterations, l.capsule]),
    [
      ['conv1', false, 0, false],
      ['block1', false, 0, true],
      ['block2', false, 0, true],
      ['block3', false, 0, true],
      ['block4', true, 3, true],
      ['capsLayer', true, 3, true],
    ],
  );
  assert.deepEqual(deep.routingLayerNames, ['block4', 'capsLayer']);
  assert.equal(deep.capsLayer.iterations, deep.quantLayers[5].iterations);
});

test('a QuantizedModel computes what the search evaluates, never writes the float model, and holds its own weights', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 7 });
  const data = syntheticImages(60, 3);
  const before = model.parameters().map((p) => p.param.data.slice());
  const bits = bitsFromLists(model.quantLayers, { weightBits: [6, 5, 4], actBits: [6, 6, 5], routingBits: [5, 4] });
  for (const method of ['truncation', 'round_to_nearest', 'stochastic_rounding'] as const) {
    const q = quantize(model, bits, { method, seed: 11 });
    const got = q.evaluate(data, { batchSize: 20 });
    const quantizer = new ModelQuantizer(model, method, 'none', 11);
    const ev = new FastEvaluator(model, quantizer, data, {
      batchSize: 20,
      cacheMB: 0,
      earlyStop: false,
      order: 'dataset',
    });
    const want = await ev.evaluate(bits);
    quantizer.restore();
    assert.equal(got.accuracy, want.accuracy, method);
    assert.equal(got.total, 60);
  }
  model.parameters().forEach((p, i) => assert.deepEqual(p.param.data, before[i], `${p.name} unchanged`));

  // stateDict holds the quantized weights (multiples of 2^-6 in conv), the float model keeps its own
  const q = quantize(model, bits, { method: 'round_to_nearest' });
  const w = q.stateDict().get('conv.conv.weight') ?? q.stateDict().get('conv.weight');
  assert.ok(w, 'the state_dict names the first conv weight');
  for (const v of w.data) assert.equal(v * 64, Math.round(v * 64));
  model.parameters().forEach((p, i) => assert.deepEqual(p.param.data, before[i], `${p.name} unchanged`));

  // a value: training the float model further changes neither the QuantizedModel's weights nor
  // its answers; a new quantize() takes the new weights
  const x = new Tensor(new Float32Array(4 * 784), [4, 28, 28, 1]);
  for (let i = 0; i < 4; i++) data.writeImage(i, x.data, i * 784);
  const held = q.stateDict();
  const capsBefore = q.forward(x).data.slice();
  const first = model.parameters()[0];
  first.param.data.fill(0.25);
  const name = [...held.keys()].find((k) => k.startsWith(first.name.split('.')[0]) && k.endsWith('weight'));
  assert.ok(name);
  assert.deepEqual(q.stateDict().get(name)!.data, held.get(name)!.data, `${name} is held at quantize() time`);
  assert.deepEqual(q.forward(x).data, capsBefore, 'the same class capsules after the float model changed');
  const again = quantize(model, bits, { method: 'round_to_nearest' }).stateDict().get(name)!;
  assert.ok(
    again.data.every((v) => v === 0.25),
    `${name}: a new quantize() takes the float model as it is now`,
  );
});

test('a quantized forward sets no process-wide kernel state: float forwards around it keep their bits', () => {
  const model = buildModel('DeepCaps', [28, 1, 10, 32], { seed: 2 });
  const data = syntheticImages(4, 8);
  const x = new Tensor(new Float32Array(4 * 784), [4, 28, 28, 1]);
  for (let i = 0; i < 4; i++) data.writeImage(i, x.data, i * 784);
  model.eval();
  const before = model.forward(x, false).data.slice();
  // dac2020 arithmetic: im2col only and exact fixed-point convolutions inside the quantized forward
  const q = quantize(model, uniformBits(model.quantLayers, 7), { method: 'truncation', compat: 'dac2020' });
  q.forward(x);
  assert.deepEqual(model.forward(x, false).data, before, 'the float forward after a quantized one');
});

test('searchModel reports each phase and returns the chosen models as QuantizedModels', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 5 });
  const data = syntheticImages(40, 9);
  const phases: SearchProgress['phase'][] = [];
  const r = await searchModel(model, data, {
    method: 'truncation',
    memoryBudgetMB: 3,
    batchSize: 20,
    onProgress: (p) => {
      if (phases[phases.length - 1] !== p.phase) phases.push(p.phase);
      assert.ok(p.batch >= 0 && p.batch <= p.batches);
    },
  });
  assert.deepEqual(phases.slice(0, 3), ['full-precision', 'step1', 'step2']);
  assert.equal(r.fullPrecisionAccuracy, evaluateFullPrecision(model, data, { batchSize: 20 }).accuracy);
  assert.ok(r.models.length >= 1);
  for (const m of r.models) {
    assert.equal(m.model.method, 'truncation');
    assert.ok(m.memoryMB > 0);
  }
});

test('bad arguments: errors name the argument', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const ok = uniformBits(model.quantLayers, 8);
  const edited = (i: number, change: Partial<LayerBits>) => ok.map((b, k) => (k === i ? { ...b, ...change } : b));
  assert.throws(
    () => quantize(model, ok.slice(0, 2), { method: 'truncation' }),
    /bits: expected one record per layer \(conv, primary, digit\), got 2/,
  );
  assert.throws(
    () => quantize(model, edited(1, { name: 'digit' }), { method: 'truncation' }),
    /bits\[1\]: expected layer 'primary', got 'digit'/,
  );
  assert.throws(
    () => quantize(model, edited(1, { act: 40 }), { method: 'truncation' }),
    /bits\[1\] \(primary\)\.act: expected an integer number of fractional bits in \[0, 32\], got 40/,
  );
  assert.throws(
    () => quantize(model, edited(2, { routing: -1 }), { method: 'truncation' }),
    /bits\[2\] \(digit\)\.routing/,
  );
  assert.throws(
    () => quantize(model, edited(0, { routing: 4 }), { method: 'truncation' }),
    /bits\[0\] \(conv\)\.routing: the layer does not route, expected null, got 4/,
  );
  assert.throws(
    () => bitsFromLists(model.quantLayers, { ...bitsToLists(ok), weightBits: [8, 8] }),
    /bits\.weightBits: expected 3 bit counts \(conv, primary, digit\), got 2/,
  );
  assert.throws(
    () => quantize(model, ok, { method: 'nearest' as never }),
    /options\.method: unknown quantization method 'nearest'; expected one of truncation/,
  );
  const data = syntheticImages(10, 1);
  await assert.rejects(
    searchModel(model, data, { method: 'truncation', tolerance: 0 }),
    /tolerance 0: expected a percentage in \(0, 100\)/,
  );
  await assert.rejects(
    searchModel(model, data, { method: 'truncation', memoryBudgetMB: 0.1 }),
    /memoryBudgetMB 0.1 cannot be met/,
  );
  await assert.rejects(searchModel(model, data, { method: 'truncation', batchSize: 0 }), /options\.batchSize 0/);
  await assert.rejects(searchModel(model, { ...data, count: 0 }, { method: 'truncation' }), /test images are empty/);
  await assert.rejects(
    searchModel(model, { ...data, height: 32, width: 32 }, { method: 'truncation' }),
    /the test images are 32x32x1, the model takes 28x28x1/,
  );
  assert.throws(
    () => quantize(model, ok, { method: 'truncation' }).evaluate({ ...data, channels: 3 }),
    /QuantizedModel.evaluate: the images are 28x28x3, the model takes 28x28x1/,
  );
});

test("docs/machines.md: the default thread count it states is the code's", () => {
  const readme = readFileSync(
    join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'docs', 'machines.md'),
    'utf8',
  );
  assert.match(readme, /default is every core, at most 8/);
  assert.doesNotMatch(readme, /the default is 1\b/);
  if (process.env.QCAPS_THREADS === undefined) assert.equal(defaultThreads(), Math.min(8, availableParallelism()));
});

test("activation memory: elements per image at each layer's activation points, x (a_l + 1) bits", async () => {
  const shallow = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  // conv output 20x20x256; primary votes 6x6x32 capsules of 8; digit votes 1152 x 10 x 16
  assert.deepEqual(quant.activationCounts(shallow), [20 * 20 * 256, 6 * 6 * 32 * 8, 1152 * 10 * 16]);
  assert.equal(quant.activationMemoryBits([10, 20], [3, 0]), 10 * 4 + 20 * 1);
  const deep = buildModel('DeepCaps', [28, 1, 10, 32]);
  assert.equal(quant.activationCounts(deep)[0], 28 * 28 * 128, 'conv1 output');
  // the search reports it for every step, beside the weight memory
  const data = syntheticImages(20, 4);
  const r = await searchModel(shallow, data, { method: 'truncation', memoryBudgetMB: 3, batchSize: 20 });
  const counts = quant.activationCounts(shallow);
  for (const s of r.search.steps) {
    assert.equal(s.activationKB, quant.activationMemoryBits(counts, quant.bitsToLists(s.bits).actBits) / 8000, s.step);
    assert.ok(s.activationReduction! > 1, s.step);
  }
});

test('modelOfStateDict reads the model and its arguments from a state_dict', () => {
  for (const [name, args] of [
    ['ShallowCapsNet', [28, 1, 10, 16]],
    ['ShallowCapsNet', [64, 3, 10, 16]],
    ['DeepCaps', [28, 1, 10, 32]],
    ['DeepCaps', [64, 3, 10, 32]],
  ] as const)
    assert.deepEqual(models.modelOfStateDict(buildModel(name, [...args]).stateDict()), { name, args: [...args] });
  assert.equal(models.modelOfStateDict(new Map([['fc.weight', { shape: [2, 2] }]])), null);
});
