// Bad input to trainModel / evaluateModel is refused before any work starts, with an error
// that names the option (or file) and what was expected, and leaves no file behind.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Dataset, type Split } from '../src/data/index.js';
import { buildDecoder, buildModel } from '../src/models/index.js';
import { evaluateModel, trainModel, type TrainOptions } from '../src/train/index.js';

const dir = mkdtempSync(join(tmpdir(), 'qcaps-train-errors-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function blank(name: string, split: Split, side: number, channels: number, count = 4): Dataset {
  const labels = Int32Array.from({ length: count }, (_, i) => i % 10);
  const pixels = new Uint8Array(count * side * side * channels);
  return new Dataset({ name, split, height: side, width: side, channels, pixels, labels });
}

const mnistTrain = blank('mnist', 'train', 28, 1);
const mnistTest = blank('mnist', 'test', 28, 1);
const cifarTrain = blank('cifar10', 'train', 64, 3);
const cifarTest = blank('cifar10', 'test', 64, 3);
const shallow = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
const fc = buildDecoder('FCDecoder', [16, 784]);

const opts = (extra: Partial<TrainOptions>): TrainOptions => ({
  model: shallow,
  decoder: fc,
  train: mnistTrain,
  test: mnistTest,
  epochs: 1,
  fullPrecisionFilename: join(dir, 'model.pt'),
  progress: 'none',
  log: () => undefined,
  ...extra,
});

async function refused(extra: Partial<TrainOptions>, pattern: RegExp): Promise<void> {
  await assert.rejects(trainModel(opts(extra)), pattern);
  assert.deepEqual(
    readdirSync(dir).filter((f) => f !== 'other.pt'),
    [],
    'no file is written',
  );
}

test('non-positive or non-integer options name their option', async () => {
  await refused({ epochs: 0 }, /TrainOptions\.epochs must be a positive integer, got 0/);
  await refused({ epochs: 2.5 }, /TrainOptions\.epochs must be a positive integer, got 2\.5/);
  await refused({ lr: 0 }, /TrainOptions\.lr must be a positive number, got 0/);
  await refused({ lr: -0.001 }, /TrainOptions\.lr must be a positive number/);
  await refused({ lr: NaN }, /TrainOptions\.lr must be a positive number, got NaN/);
  await refused({ batchSize: 0 }, /TrainOptions\.batchSize must be a positive integer, got 0/);
  await refused({ testBatchSize: -5 }, /TrainOptions\.testBatchSize must be a positive integer/);
  await refused({ logInterval: 0 }, /TrainOptions\.logInterval must be a positive integer/);
  await refused({ checkpointEvery: -1 }, /TrainOptions\.checkpointEvery must be an integer >= 0, got -1/);
  await refused({ checkpointEvery: 1.5 }, /TrainOptions\.checkpointEvery must be an integer >= 0, got 1\.5/);
  // an empty split would average over nothing (NaN%) and write a model of it
  await refused(
    { test: blank('mnist', 'test', 28, 1, 0) },
    /TrainOptions\.test \(mnist\/test from .*\) holds 0 images/,
  );
  await refused(
    { train: blank('mnist', 'train', 28, 1, 0) },
    /TrainOptions\.train \(mnist\/train from .*\) holds 0 images/,
  );
  await refused({ decaySteps: 0 }, /TrainOptions\.decaySteps must be a positive number/);
  await refused({ decayRate: -1 }, /TrainOptions\.decayRate must be a positive number/);
  await refused({ regularizationScale: -1 }, /TrainOptions\.regularizationScale must be a non-negative number/);
  await refused({ seed: 1.5 }, /TrainOptions\.seed must be an integer/);
  await refused({ threads: 0 }, /TrainOptions\.threads must be a positive integer/);
});

test('model input size vs dataset: 28x28x1 model on 64x64x3 images and the reverse', async () => {
  await refused(
    { train: cifarTrain, test: cifarTest },
    /ShallowCapsNet takes 28x28x1 images \(model\.args 28 1 10 16.*\) but cifar10\/train has 64x64x3 images; use model\.args 64 3 10 16/,
  );
  const deep64 = buildModel('DeepCaps', [64, 3, 10, 32]);
  await refused(
    { model: deep64, decoder: { name: 'ConvDecoder64', args: [32, 3] } },
    /DeepCaps takes 64x64x3 images .* but mnist\/train has 28x28x1 images; use model\.args 28 1 10 32/,
  );
  await refused({ test: cifarTest }, /but cifar10\/test has 64x64x3 images/);
  await refused(
    { model: { name: 'ShallowCapsNet', args: [28, 1, 3, 16] } },
    /3 classes \(model\.args 28 1 3 16: num_classes 3\) but mnist\/train has 10 classes \(labels in \[0, 3\]\); use num_classes 10/,
  );
});

test('decoder vs model and images', async () => {
  await refused(
    { decoder: { name: 'FCDecoder', args: [8, 784] } },
    /FCDecoder reads capsules of dimension 8 \(decoder\.args 8 784\) but ShallowCapsNet gives 16/,
  );
  await refused(
    { decoder: { name: 'FCDecoder', args: [16, 4096] } },
    /FCDecoder \(decoder\.args 16 4096\) reconstructs 4096 values per image but mnist images are 28x28x1; use decoder ConvDecoder28 16 1, or FCDecoder 16 784/,
  );
  await refused(
    { decoder: { name: 'ConvDecoder64', args: [16, 1] } },
    /ConvDecoder64 \(decoder\.args 16 1\) reconstructs 64x64x1 values per image but mnist images are 28x28x1/,
  );
  await refused({ decoder: { name: 'ConvDecoder28', args: [16, 3] } }, /reconstructs 28x28x3 values per image/);
  await refused({ decoder: { name: 'NoDecoder', args: [16, 784] } }, /unknown decoder 'NoDecoder'/);
});

test('output and resume files', async () => {
  await refused(
    { fullPrecisionFilename: join(dir, 'missing', 'model.pt') },
    /TrainOptions\.fullPrecisionFilename .*missing\/model\.pt: folder .*missing does not exist/,
  );
  await refused({ fullPrecisionFilename: dir }, /TrainOptions\.fullPrecisionFilename .* is a folder/);
  await refused(
    { resume: join(dir, 'nothing.ckpt.safetensors') },
    /TrainOptions\.resume .*nothing\.ckpt\.safetensors: no such file/,
  );
  writeFileSync(join(dir, 'other.pt'), 'not a checkpoint');
  await refused(
    { resume: join(dir, 'other.pt') },
    /TrainOptions\.resume .*other\.pt: not a qcapsnets training checkpoint/,
  );
});

test('resuming with different options names them', async () => {
  const runDir = mkdtempSync(join(tmpdir(), 'qcaps-train-resume-'));
  try {
    const base = opts({ fullPrecisionFilename: join(runDir, 'm.pt'), batchSize: 4 });
    const ctl = new AbortController();
    ctl.abort();
    const s = await trainModel({ ...base, signal: ctl.signal });
    assert.equal(s.interrupted, true);
    assert.deepEqual(readdirSync(runDir), ['m.ckpt.safetensors']);
    await assert.rejects(
      trainModel({ ...base, lr: 0.002, seed: 1, resume: true }),
      /different run:\n {2}TrainOptions\.lr 0\.002: the checkpoint used 0\.001\n {2}TrainOptions\.seed 1: the checkpoint used 42\n.*only TrainOptions\.epochs may grow, and TrainOptions\.lr shrink/,
    );
    await assert.rejects(
      trainModel({ ...base, decoder: { name: 'ConvDecoder28', args: [16, 1] }, resume: true }),
      /decoder ConvDecoder28 decoder\.args 16 1: the checkpoint has FCDecoder 16 784/,
    );
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }
});

test('evaluateModel refuses a dataset of another size and a bad batch size', async () => {
  await assert.rejects(evaluateModel(shallow, cifarTest, 100), /takes 28x28x1 images .* cifar10\/test has 64x64x3/);
  await assert.rejects(
    evaluateModel(shallow, mnistTest, 0),
    /evaluateModel: batchSize must be a positive integer, got 0/,
  );
  const r = await evaluateModel(shallow, mnistTest, 3);
  assert.equal(r.total, 4);
  assert.equal(r.accuracy, (r.correct * 100) / 4);
  assert.ok(Number.isFinite(r.loss) && r.loss > 0);
});

test('a non-finite loss stops training with the epoch and step, keeping the last checkpoint and the best model', async () => {
  const out = mkdtempSync(join(dir, 'nan-'));
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const decoder = buildDecoder('FCDecoder', [16, 784]);
  const train = blank('mnist', 'train', 28, 1, 8);
  const file = join(out, 'model.pt');
  // after the first step of epoch 2 a weight turns NaN (as a diverging run's would): the
  // next step's loss is NaN
  const run = trainModel(
    opts({
      model,
      decoder,
      train,
      epochs: 3,
      batchSize: 4,
      fullPrecisionFilename: file,
      onStep: (r) => {
        if (r.epoch === 2 && r.batch === 1)
          model
            .parameters()
            .find((p) => p.name === 'digit.weight')!
            .param.data.fill(NaN);
      },
    }),
  );
  await assert.rejects(run, (err: Error) => {
    assert.equal(err.name, 'NonFiniteTrainingError');
    assert.match(
      err.message,
      /^non-finite output \(margin loss: capsules \[4, 10, 16\] has a non-finite value \(NaN\).*\) at epoch 2, batch 2 \(step 4\); training stopped before the update/,
    );
    assert.match(err.message, /The last good checkpoint is .*model\.ckpt\.safetensors, /);
    assert.match(err.message, /; resume from that checkpoint with a smaller learning rate\.$/);
    // the best model is named when there is one on disk (epoch 1's test pass on blank images
    // may have found nothing better than 0%)
    assert.equal(/the best model .*model\.pt/.test(err.message), existsSync(file), err.message);
    return true;
  });
  // the checkpoint on disk is epoch 1's, finite
  const { readSafetensors } = await import('../src/io/safetensors.js');
  for (const [name, t] of readSafetensors(join(out, 'model.ckpt.safetensors')).tensors)
    assert.ok(t.data.every(Number.isFinite), `${name} finite`);
  // and the run continues from the checkpoint with a smaller learning rate
  const resumed = await trainModel(
    opts({
      model: buildModel('ShallowCapsNet', [28, 1, 10, 16]),
      decoder: buildDecoder('FCDecoder', [16, 784]),
      train,
      epochs: 3,
      batchSize: 4,
      lr: 0.0001,
      fullPrecisionFilename: file,
      resume: true,
    }),
  );
  assert.equal(resumed.resumedFrom?.epoch, 2);
  assert.equal(resumed.epochs.length, 3);
});
