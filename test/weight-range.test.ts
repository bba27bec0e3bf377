// The 'mse' weight range rule of the 'dynamic' format (docs/quantization.md "The weight range
// rule"): each weight tensor's fractional length the one of [f_max, f_max + 8] whose
// round-to-nearest values have the least squared error. The rule on hand-made tensors and on
// both backends, mse without 'dynamic' refused everywhere, quantize, the packed file and the
// evaluation cache naming the rule only under mse, a search, and a fine-tuning step. Small
// models and a few images (ONNX and C of an mse model: test/export-dynamic.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import { readSafetensorsRaw, writeSafetensorsRaw } from '../src/io/safetensors.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { buildModel, copyModel } from '../src/models/factory.js';
import { type Calibration, calibrate } from '../src/quant/calibration.js';
import { type BitConfig, bitsFromLists, uniformBits } from '../src/quant/config.js';
import {
  DYNAMIC_MAX_FRAC,
  dynamicFracBits,
  dynamicRange,
  maxAbsOf,
  mseFracBits,
  tensorFracBits,
} from '../src/quant/dynamic.js';
import { parameterQuantizers } from '../src/quant/quantized-forward.js';
import { quantize } from '../src/quant/quantized-model.js';
import { EvalCache } from '../src/search/eval-cache.js';
import { finetune } from '../src/search/finetune.js';
import { searchModel } from '../src/search/search-model.js';
import { sensitivityAnalysis } from '../src/search/sensitivity.js';
import { runSweep } from '../src/search/sweep.js';
import { settingsRecord } from '../src/cli/flags.js';
import { parseCommandLine } from '../src/cli/parse.js';
import { openEvalCache } from '../src/cli/sweep-job.js';
import { checkFlagValues } from '../src/cli/validate.js';
import { typescriptKernels } from '../src/tensor/kernels-ts.js';
import { loadDataset } from '../src/data/load.js';
import { requireBothBackends, syntheticImages } from './helpers.js';

const images = syntheticImages(8, 4);

/** A ShallowCapsNet (28 1 10 4) whose primary and digit weights each hold one outlier, 12 times
 *  the tensor's largest magnitude: the shape of trained weights that the 'mse' rule is for. */
function withOutliers(seed: number): CapsNet {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed });
  for (const p of model.parameters())
    if (p.name === 'primary.conv3d.weight' || p.name === 'digit.weight') p.param.data[3] = 12 * maxAbsOf(p.param.data);
  return model;
}

const model = withOutliers(11);
const cal = calibrate(model, images, 4);
const dynamicBits = (m: CapsNet): BitConfig =>
  bitsFromLists(m.quantLayers, { weightBits: [6, 4, 4], actBits: [6, 6, 6], routingBits: [6, 6] }, 'bits', 'dynamic');

test("the 'mse' rule on hand-made tensors: outliers saturate for finer steps, a uniform tensor keeps the max rule's, ties take the smaller f", () => {
  // 999 small values and one outlier: the max rule spends the range on the outlier
  const outlier = Float32Array.from({ length: 1000 }, (_, i) => ((i % 41) - 20) / 200);
  outlier[500] = 0.7;
  const fMax = dynamicFracBits(4, 0.7);
  assert.equal(fMax, 3);
  const f = mseFracBits(4, outlier);
  assert.ok(f > fMax, `an outlier tensor: f ${f} > the max rule's ${fMax}`);
  // the choice is the least of the errors, which the kernel sums
  const errors = new Float64Array(9);
  typescriptKernels.fracErrors(outlier, outlier.length, fMax, 9, 4, errors);
  assert.equal(f, fMax + errors.indexOf(Math.min(...errors)));
  assert.ok(errors[f - fMax] < errors[0]);
  // by hand at f_max: each value rounded on the grid of 2^-3, nothing saturates
  const step = 2 ** -fMax;
  const { lo, hi } = dynamicRange(4, fMax);
  let e0 = 0;
  for (const x of outlier) {
    const q = Math.min(hi, Math.max(lo, Math.round(x / step) * step)); // no ties among these values
    e0 += (q - x) ** 2;
  }
  assert.ok(Math.abs(errors[0] - e0) <= 1e-12 * e0, `E(f_max) ${errors[0]} against ${e0} by hand`);
  // NaN values are left out, as the max rule leaves them out
  const withNaN = Float32Array.from([NaN, ...outlier]);
  assert.equal(mseFracBits(4, withNaN), f);

  // values spread evenly over the range: saturating any of them costs more than finer steps save
  const uniform = Float32Array.from({ length: 256 }, (_, i) => (i - 128) / 128);
  assert.equal(mseFracBits(4, uniform), dynamicFracBits(4, 1));
  assert.equal(mseFracBits(8, uniform), dynamicFracBits(8, 1));

  // a tie: at f = 2 the two -0.375s round (ties to even) to -0.5 and -0.6875 to -0.75; at f = 3
  // -0.6875 saturates to -0.5 and the rest is exact: both 0.03515625
  const tie = Float32Array.of(-0.6875, -0.375, -0.375);
  typescriptKernels.fracErrors(tie, 3, 2, 2, 3, errors);
  assert.deepEqual([errors[0], errors[1]], [0.03515625, 0.03515625]);
  assert.equal(dynamicFracBits(3, 0.6875), 2);
  assert.equal(mseFracBits(3, tie), 2, 'equal errors: the smaller f');
  // a tensor of zeros: every candidate is exact, so f_max = w - 1
  assert.equal(mseFracBits(5, new Float32Array(10)), 4);
  // the candidates stop at the clamp
  assert.equal(mseFracBits(4, Float32Array.of(2 ** -80, -(2 ** -81))), DYNAMIC_MAX_FRAC);
  // 'max' is dynamicFracBits of the largest magnitude
  assert.equal(tensorFracBits('max', 4, outlier), fMax);
  assert.equal(tensorFracBits('mse', 4, outlier), f);
});

test('fracErrors: the native kernel gives the TypeScript sums bit for bit', (t) => {
  const both = requireBothBackends(t);
  if (!both) return;
  const [native, ts] = both;
  let s = 7;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const x = Float32Array.from({ length: 20011 }, () => (rnd() + rnd() + rnd() - 1.5) * 0.05);
  x[5] = 0.9;
  x[6] = -1.25;
  x[7] = NaN;
  for (let i = 8; i < 40; i++) x[i] = (i - 24) / 16; // ties of round-to-nearest at small f
  for (const [width, frac0, count] of [
    [1, -3, 9],
    [3, 2, 9],
    [4, 3, 5],
    [8, 7, 9],
    [26, 25, 9],
    [32, 30, 3],
    [6, 60, 5],
  ]) {
    const a = new Float64Array(count);
    const b = new Float64Array(count);
    native.fracErrors(x, x.length, frac0, count, width, a);
    ts.fracErrors(x, x.length, frac0, count, width, b);
    assert.deepEqual([...a], [...b], `width ${width}, frac0 ${frac0}`);
  }
});

test("weightRange 'mse' without 'dynamic' is one error, in the library and on the command line", async () => {
  const fixed = uniformBits(model.quantLayers, 6);
  assert.throws(
    () => quantize(model, fixed, { method: 'round_to_nearest', weightRange: 'mse' }),
    /^Error: quantize: options.weightRange 'mse' chooses 'dynamic' weight tensors' fractional lengths; every layer's bits are 'fixed'/,
  );
  assert.throws(
    () =>
      quantize(model, dynamicBits(model), {
        method: 'round_to_nearest',
        calibration: cal,
        weightRange: 'min' as 'max',
      }),
    /^Error: quantize: options.weightRange min: expected one of max, mse$/,
  );
  const rejected =
    /options.weightRange 'mse' with numberFormat 'fixed': the weight range rule chooses 'dynamic' tensors' fractional lengths/;
  await assert.rejects(searchModel(model, images, { method: 'round_to_nearest', weightRange: 'mse' }), rejected);
  await assert.rejects(
    sensitivityAnalysis(model, images, { method: 'round_to_nearest', bits: [4], weightRange: 'mse' }),
    rejected,
  );
  const header = openEvalCache(null, {
    model,
    modelSha256: 'ab',
    test: loadDataset('mnist', 'test', { limit: 8 }),
    compat: 'none',
    seed: 1,
    batchSize: 4,
    earlyStop: true,
    approximateMarginImages: 0,
    calibration: null,
  }).header;
  await assert.rejects(
    runSweep(model, images, {
      grid: { tolerances: [50], memoryBudgetsMB: [2], methods: ['truncation'] },
      shard: null,
      compat: 'none',
      seed: 1,
      batchSize: 4,
      cacheMB: 0,
      earlyStop: true,
      weightRange: 'mse',
      evalCache: EvalCache.inMemory(header),
    }),
    rejected,
  );
  await assert.rejects(
    finetune(
      model,
      fixed,
      { train: loadDataset('mnist', 'test', { limit: 4 }), test: loadDataset('mnist', 'test', { limit: 4 }) },
      {
        method: 'round_to_nearest',
        epochs: 1,
        weightRange: 'mse',
      },
    ),
    /^Error: finetune: options.weightRange 'mse' chooses 'dynamic' weight tensors' fractional lengths; every layer's bits are 'fixed'/,
  );
  const flags = (args: string[]) => {
    const cl = parseCommandLine(args);
    checkFlagValues(cl.command, cl.options);
    return cl;
  };
  for (const command of ['search', 'sweep', 'sensitivity'])
    assert.throws(
      () => flags([command, '--weight-range', 'mse']),
      /^Error: --weight-range mse with --number-format fixed: the rule chooses the fractional length of each 'dynamic' weight tensor; give --number-format dynamic \(or leave --weight-range out\)$/,
      command,
    );
  assert.throws(
    () => flags(['search', '--number-format', 'dynamic', '--weight-range', 'rms']),
    /^Error: --weight-range rms: expected one of max, mse$/,
  );
  assert.throws(() => flags(['evaluate', '--weight-range', 'mse']), /--weight-range applies to/);
  // the settings a run records name the rule only when it is not the default
  const given = flags(['search', '--number-format', 'dynamic', '--weight-range', 'mse']);
  assert.equal(settingsRecord('search', given.options)['weight-range'], 'mse');
  const plain = flags(['search', '--number-format', 'dynamic']);
  assert.ok(!('weight-range' in settingsRecord('search', plain.options)), 'no weight-range under the default');
});

test("quantize under 'mse': each dynamic tensor at the rule's f, outliers' tensors finer; the packed file names the rule, reloads to the same model, and a lying file is still refused", () => {
  const bits = dynamicBits(model);
  const qMax = quantize(model, bits, { method: 'round_to_nearest', calibration: cal });
  const qMse = quantize(model, bits, { method: 'round_to_nearest', calibration: cal, weightRange: 'mse' });
  assert.equal(qMax.weightRange, 'max');
  assert.equal(qMse.weightRange, 'mse');
  let finer = 0;
  for (const p of model.parameters()) {
    const w = qMse.bitsOf(p.name).weight;
    assert.equal(qMse.weightSpec(p.name)!.frac, mseFracBits(w, p.param.data), p.name);
    assert.equal(qMax.weightSpec(p.name)!.frac, dynamicFracBits(w, maxAbsOf(p.param.data)), p.name);
    if (qMse.weightSpec(p.name)!.frac > qMax.weightSpec(p.name)!.frac) finer++;
  }
  for (const name of ['primary.conv3d.weight', 'digit.weight'])
    assert.ok(qMse.weightSpec(name)!.frac > qMax.weightSpec(name)!.frac, `${name}: finer than the max rule's`);
  assert.ok(finer >= 2);
  // activations and routing: the calibration's max rule either way
  assert.deepEqual(qMse.activationSpec('digit', 'votes'), qMax.activationSpec('digit', 'votes'));
  const w = (q: typeof qMse) => q.stateDict().get('digit.weight')!.data;
  assert.notDeepEqual(w(qMse), w(qMax), 'other quantized weights');

  const dir = mkdtempSync(join(tmpdir(), 'qcaps-weight-range-'));
  try {
    const file = join(dir, 'mse.safetensors');
    writeQuantizedModel(file, qMse);
    const { quantized: r, info } = readQuantizedModel(file);
    assert.equal(info.metadata.weight_range, 'mse');
    assert.equal(info.weightRange, 'mse');
    assert.equal(r.weightRange, 'mse');
    // the stored fractional lengths (not the max rule's) are what the reader uses
    assert.equal(info.tensors['digit.weight'].frac_bits, qMse.weightSpec('digit.weight')!.frac);
    for (const p of qMse.integers) assert.deepEqual(r.weightSpec(p.name), qMse.weightSpec(p.name), p.name);
    const x = sourceBatch(images, 0, 8);
    assert.deepEqual(r.forward(x).data, qMse.forward(x).data);
    assert.deepEqual(r.evaluate(images, { batchSize: 4 }), qMse.evaluate(images, { batchSize: 4 }));
    // a 'max' file is as before: no weight_range
    const maxFile = join(dir, 'max.safetensors');
    writeQuantizedModel(maxFile, qMax);
    assert.ok(!('weight_range' in readQuantizedModel(maxFile).info.metadata));
    assert.equal(readQuantizedModel(maxFile).info.weightRange, 'max');
    // lies: a rule that is not one, mse in a 'fixed' file, a point's fraction the calibration
    // does not give
    const raw = readSafetensorsRaw(file);
    const rewrite = (name: string, md: Record<string, string>) => {
      const f = join(dir, name);
      writeSafetensorsRaw(f, [...raw.tensors], md);
      return f;
    };
    assert.throws(
      () => readQuantizedModel(rewrite('rule.safetensors', { ...raw.metadata, weight_range: 'rms' })),
      /rule\.safetensors: __metadata__ weight_range 'rms': expected 'mse' \(or no weight_range: 'max'\)/,
    );
    const fixedFile = join(dir, 'fixed.safetensors');
    writeQuantizedModel(fixedFile, quantize(model, uniformBits(model.quantLayers, 5), { method: 'round_to_nearest' }));
    const fixedRaw = readSafetensorsRaw(fixedFile);
    writeSafetensorsRaw(fixedFile, [...fixedRaw.tensors], { ...fixedRaw.metadata, weight_range: 'mse' });
    assert.throws(
      () => readQuantizedModel(fixedFile),
      /fixed\.safetensors: __metadata__ weight_range 'mse' without number_format 'dynamic'/,
    );
    const acts = JSON.parse(raw.metadata.activation_frac_bits) as Record<string, number>;
    const [key] = Object.keys(acts);
    assert.throws(
      () =>
        readQuantizedModel(
          rewrite('acts.safetensors', {
            ...raw.metadata,
            activation_frac_bits: JSON.stringify({ ...acts, [key]: acts[key] + 1 }),
          }),
        ),
      /acts\.safetensors: __metadata__ activation_frac_bits\[.*\] is .*, but the calibration's range .* gives/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an 'mse' search: its models carry the rule, and its evaluation cache is not shared with a 'max' one", async () => {
  const search = (weightRange: 'max' | 'mse', evalCache?: EvalCache) =>
    searchModel(model, images, {
      method: 'round_to_nearest',
      numberFormat: 'dynamic',
      calibration: cal,
      weightRange,
      memoryBudgetMB: 2,
      tolerance: 50,
      batchSize: 4,
      evalCache,
    });
  const mse = await search('mse');
  for (const m of mse.models) {
    assert.equal(m.model.weightRange, 'mse');
    for (const p of model.parameters())
      assert.equal(
        m.model.weightSpec(p.name)!.frac,
        mseFracBits(m.model.bitsOf(p.name).weight, p.param.data),
        `${m.kind} ${p.name}`,
      );
  }
  // the reported accuracy is the model's own
  const m = mse.models[0];
  assert.equal(m.model.evaluate(images, { batchSize: 4, order: mse.imageOrder }).accuracy, m.accuracy);

  // the cache header names the rule under 'mse' only
  const header = (weightRange?: 'max' | 'mse') =>
    openEvalCache(null, {
      model,
      modelSha256: 'ab',
      test: loadDataset('mnist', 'test', { limit: 8 }),
      compat: 'none',
      seed: 1,
      batchSize: 4,
      earlyStop: true,
      approximateMarginImages: 0,
      calibration: cal,
      weightRange,
    }).header;
  assert.equal(header('mse').weightRange, 'mse');
  assert.deepEqual(header('max'), header(undefined));
  assert.ok(!('weightRange' in header('max')));
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-weight-range-cache-'));
  try {
    const file = join(dir, 'evals.jsonl');
    const layers = { layers: model.quantLayers, images: 8 };
    EvalCache.open(file, header('mse'), layers).close();
    assert.match(readFileSync(file, 'utf8').split('\n')[0], /"weightRange":"mse"/);
    assert.throws(
      () => EvalCache.open(file, header('max'), layers),
      /evals\.jsonl: made with weightRange "mse", this run has weightRange "max"/,
    );
    const maxFile = join(dir, 'max.jsonl');
    EvalCache.open(maxFile, header('max'), layers).close();
    assert.throws(
      () => EvalCache.open(maxFile, header('mse'), layers),
      /max\.jsonl: made with weightRange "max", this run has weightRange "mse"/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await assert.rejects(
    search('max', EvalCache.inMemory({ ...header('mse'), batchSize: 4, seed: mse.models[0].model.seed })),
    /searchModel: options.evalCache holds evaluations with the 'mse' weight range rule, options.weightRange is 'max'/,
  );
});

test("fine-tuning under 'mse': each step's exponents by the rule from the latent weights, the clipped gradients at its bounds", async () => {
  const data = { train: loadDataset('mnist', 'test', { limit: 8 }), test: loadDataset('mnist', 'test', { limit: 4 }) };
  const start = withOutliers(13);
  const calibration: Calibration = calibrate(start, data.train, 4);
  const bits = dynamicBits(start);
  const before = copyModel(start);
  const q = await finetune(start, bits, data, {
    method: 'round_to_nearest',
    calibration,
    weightRange: 'mse',
    epochs: 1,
    batchSize: 4,
    lr: 0.01,
    progress: 'none',
    augment: null,
    log: () => {},
  });
  assert.equal(q.weightRange, 'mse');
  // the caller's model is not written
  for (const p of start.parameters())
    assert.deepEqual(p.param.data, before.parameters().find((b) => b.name === p.name)!.param.data);
  // the quantizers a step applies (and whose [lo, hi] clip the gradients) follow the rule
  const r = { method: 'round_to_nearest' as const, compat: 'none' as const, seed: 1, calibration };
  const mse = parameterQuantizers(start, { ...r, weightRange: 'mse' }, bits);
  const max = parameterQuantizers(start, r, bits);
  const i = mse.findIndex((p) => p.param.name === 'digit.weight');
  assert.equal(mse[i].frac, mseFracBits(4, start.parameters()[i].param.data));
  assert.ok(mse[i].spec!.hi < max[i].spec!.hi, 'a narrower range: the outlier saturates and its gradient is clipped');
  assert.deepEqual({ lo: mse[i].spec!.lo, hi: mse[i].spec!.hi }, dynamicRange(4, mse[i].frac!));
});
