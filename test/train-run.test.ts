// trainModel on a small subset (real Fashion-MNIST when installed, else synthetic 28x28 images
// of the same format): the loss falls, the same seed gives the same run, an interrupted run
// resumed from its checkpoint takes exactly the steps of an uninterrupted one, and the best
// model file loads back (readStateDict + loadStateDict) with the same test accuracy.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Dataset, DEFAULT_DATA_DIRS, loadDataset, Rng, type Split } from '../src/data/index.js';
import { readStateDict } from '../src/io/index.js';
import { buildModel } from '../src/models/index.js';
import {
  evaluateModel,
  readTrainingCheckpoint,
  trainModel,
  type StepReport,
  type TrainOptions,
} from '../src/train/index.js';

const work = mkdtempSync(join(tmpdir(), 'qcaps-train-'));
after(() => rmSync(work, { recursive: true, force: true }));
let runCount = 0;
const freshDir = () => {
  const d = join(work, `run${runCount++}`);
  rmSync(d, { recursive: true, force: true });
  return mkdtempSync(d);
};

/** Synthetic 28x28 'fashion-mnist' images: a class-dependent bar plus noise. */
function synthetic(split: Split, count: number): Dataset {
  const rng = new Rng(split === 'train' ? 1 : 2);
  const pixels = new Uint8Array(count * 784);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const label = i % 10;
    labels[i] = label;
    for (let p = 0; p < 784; p++) {
      const y = Math.floor(p / 28);
      const x = p % 28;
      const on = Math.abs(x - (4 + 2 * label)) < 2 || (label >= 5 && Math.abs(y - 20) < 2);
      pixels[i * 784 + p] = Math.min(255, (on ? 200 : 0) + rng.int(40));
    }
  }
  return new Dataset({ name: 'fashion-mnist', split, height: 28, width: 28, channels: 1, pixels, labels });
}

const haveFashion = existsSync(DEFAULT_DATA_DIRS['fashion-mnist']);
const subset = (split: Split, count: number) =>
  haveFashion ? loadDataset('fashion-mnist', split, { limit: count }) : synthetic(split, count);
const train = subset('train', 48);
const test40 = subset('test', 40);

const base = (dir: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  model: { name: 'ShallowCapsNet', args: [28, 1, 10, 16] },
  decoder: { name: 'FCDecoder', args: [16, 784] },
  train,
  test: test40,
  epochs: 2,
  batchSize: 8,
  testBatchSize: 20,
  decaySteps: 4,
  fullPrecisionFilename: join(dir, 'model.pt'),
  progress: 'none',
  log: () => undefined,
  ...extra,
});

async function run(opts: TrainOptions) {
  const steps: StepReport[] = [];
  const summary = await trainModel({ ...opts, onStep: (r) => steps.push(r) });
  return { summary, steps, losses: steps.map((s) => s.loss) };
}

const withoutTimes = (epochs: { seconds: number; testSeconds: number; imagesPerSecond: number }[]) =>
  epochs.map((e) => ({ ...e, seconds: 0, testSeconds: 0, imagesPerSecond: 0 }));

test('the loss falls over a few steps on one batch', async () => {
  const dir = freshDir();
  const { losses, steps } = await run(
    base(dir, { train: subset('train', 16), batchSize: 16, epochs: 5, augment: null, test: subset('test', 10) }),
  );
  assert.equal(losses.length, 5);
  assert.ok(losses[4] < losses[0] * 0.9, `losses ${losses.join(', ')}`);
  assert.ok(steps[4].marginLoss < steps[0].marginLoss);
});

let reference: Awaited<ReturnType<typeof run>>;
let referenceDir = '';

test('seeded: the same seed gives the same run, another seed another', async () => {
  referenceDir = freshDir();
  reference = await run(base(referenceDir));
  const again = await run(base(freshDir()));
  assert.equal(reference.losses.length, 12);
  assert.deepEqual(again.losses, reference.losses);
  assert.deepEqual(withoutTimes(again.summary.epochs), withoutTimes(reference.summary.epochs));
  // learning rate per step: lr0 * 0.96^(step / 4)
  reference.steps.forEach((s, k) => assert.equal(s.lr, 0.001 * 0.96 ** (k / 4)));
  assert.deepEqual(
    reference.steps.map((s) => s.globalStep),
    Array.from({ length: 12 }, (_, k) => k),
  );
  const other = await run(base(freshDir(), { seed: 7, epochs: 1 }));
  assert.notDeepEqual(other.losses, reference.losses.slice(0, 6));
});

test('resume: interrupted mid-epoch and continued gives the uninterrupted run exactly', async () => {
  // interrupt after step 9 (epoch 2, batch 3 of 6)
  const dir2 = freshDir();
  const ctl = new AbortController();
  const part1: number[] = [];
  const s1 = await trainModel({
    ...base(dir2),
    signal: ctl.signal,
    onStep: (r) => {
      part1.push(r.loss);
      if (r.globalStep === 8) ctl.abort();
    },
  });
  assert.equal(s1.interrupted, true);
  assert.equal(s1.globalStep, 9);
  assert.equal(s1.epochs.length, 1);
  const ckpt = readTrainingCheckpoint(s1.checkpointFile);
  assert.equal(ckpt.state.epoch, 2);
  assert.equal(ckpt.state.batch, 3);
  assert.equal(ckpt.state.adam.step, 9);
  // continue in fresh objects (built from the names, as the CLI does)
  const part2 = await run(base(dir2, { resume: true }));
  assert.deepEqual(part2.summary.resumedFrom, { epoch: 2, batch: 3 });
  assert.deepEqual([...part1, ...part2.losses], reference.losses);
  assert.deepEqual(withoutTimes(part2.summary.epochs), withoutTimes(reference.summary.epochs));
  assert.equal(part2.summary.bestAccuracy, reference.summary.bestAccuracy);
  // final weights equal
  const a = readTrainingCheckpoint(part2.summary.checkpointFile);
  const b = readTrainingCheckpoint(reference.summary.checkpointFile);
  for (const [name, t] of b.model) assert.deepEqual(a.model.get(name)!.data, t.data, name);
  for (const [name, t] of b.adamV) assert.deepEqual(a.adamV.get(name)!.data, t.data, name);
});

test('resume at an epoch boundary with more --epochs continues the run', async () => {
  const dir = freshDir();
  const one = await run(base(dir, { epochs: 1 }));
  assert.equal(one.summary.interrupted, false);
  const more = await run(base(dir, { epochs: 2, resume: join(dir, 'model.ckpt.safetensors') }));
  assert.deepEqual([...one.losses, ...more.losses], reference.losses);
  assert.deepEqual(more.summary.resumedFrom, { epoch: 2, batch: 0 });
});

test('the best model file is the model state_dict only, and loads back with the same accuracy', async () => {
  const { summary } = reference;
  assert.ok(summary.bestEpoch !== null);
  const accuracies = summary.epochs.map((e) => e.testAccuracy);
  assert.equal(summary.bestAccuracy, Math.max(...accuracies));
  assert.equal(summary.bestEpoch, accuracies.indexOf(summary.bestAccuracy) + 1);
  assert.deepEqual(
    summary.epochs.map((e) => e.best),
    accuracies.map((a, i) => a > Math.max(0, ...accuracies.slice(0, i))),
  );
  const sd = readStateDict(summary.modelFile);
  assert.deepEqual([...sd.keys()].sort(), [
    'conv.conv.bias',
    'conv.conv.weight',
    'digit.bias',
    'digit.weight',
    'primary.bias',
    'primary.conv3d.weight',
  ]);
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 });
  model.loadStateDict(sd, summary.modelFile);
  const result = await evaluateModel(model, test40, 20);
  const best = summary.epochs[summary.bestEpoch! - 1];
  assert.equal(result.accuracy, best.testAccuracy);
  assert.equal(result.correct, best.testCorrect);
  assert.equal(result.total, 40);
  assert.ok(Math.abs(result.loss - best.testLoss) < 1e-12);
  assert.equal(result.accuracy, (result.correct * 100) / 40);
  // only the model, the checkpoint, nothing partial
  assert.deepEqual(readdirSync(referenceDir).sort(), ['model.ckpt.safetensors', 'model.pt']);
});
