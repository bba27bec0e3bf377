// trainModel: full-precision training as the reference's main.py + full_precision_training +
// full_precision_test (SPEC 3):
//   - Adam over the model's then the decoder's parameters, lr = lr0 * decay_rate^(step /
//     decay_steps) for the step with 0-based global index `step` (schedule.ts);
//   - loss = margin + regularization_scale * reconstruction (trainingStep), hard margins for the
//     last floor(epochs / 2) epochs with hardTraining;
//   - after each epoch a full test pass; when its accuracy beats the best so far (strictly, the
//     best starting at 0) the MODEL's state_dict is written to fullPrecisionFilename (the
//     reference saves model.state_dict() only; the decoder is for training and lives in the
//     checkpoint);
//   - after each epoch, every checkpointEvery steps within one, and on abort, a resumable
//     checkpoint (checkpoint.ts) that makes a resumed run take exactly the steps of an
//     uninterrupted one.
// Every option is checked before any work starts, errors naming the option (TrainOptions.lr);
// files are written atomically.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { augmentationFor } from '../data/augment.js';
import { DataLoader } from '../data/loader.js';
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { trainingStep } from '../models/training-step.js';
import { writeStateDict } from '../io/pt.js';
import { kernels } from '../tensor/kernels.js';
import { Adam } from '../tensor/ops/adam.js';
import { give } from '../tensor/pool.js';
import { NonFiniteValueError } from '../tensor/tensor.js';
import {
  adamNames,
  checkResumable,
  defaultCheckpointPath,
  type EpochProgress,
  readTrainingCheckpoint,
  restoreAdam,
  type RunIdentity,
  type RunSettings,
  type TrainingState,
  writeTrainingCheckpoint,
} from './checkpoint.js';
import {
  checkDecoderFits,
  checkModelFitsDataset,
  checkOutputPath,
  checkPositiveInteger,
  TRAIN_OPTION_NAMES,
} from './checks.js';
import { countCorrect } from '../models/metrics.js';
import { evaluateModel } from './evaluate.js';
import { resolveModules, resolveSettings, type TrainOptions } from './options.js';
import { ProgressReporter } from './progress.js';
import { isHardEpoch, learningRate } from './schedule.js';
import type { EpochSummary, TrainSummary } from './summary.js';

const emptyProgress = (): EpochProgress => ({
  batches: 0,
  images: 0,
  lossSum: 0,
  marginSum: 0,
  reconSum: 0,
  accuracySum: 0,
  seconds: 0,
});

/** The run's model, decoder, data and settings, as a checkpoint records them. */
export function runIdentity(
  model: CapsNet,
  decoder: CapsDecoder,
  data: { train: Dataset; test: Dataset },
  s: RunSettings,
): RunIdentity {
  return {
    model: { kind: model.kind, args: [...model.args] },
    decoder: { kind: decoder.kind, args: [...decoder.args] },
    dataset: { name: data.train.name, trainCount: data.train.count, testCount: data.test.count },
    settings: {
      epochs: s.epochs,
      lr: s.lr,
      batchSize: s.batchSize,
      regularizationScale: s.regularizationScale,
      decaySteps: s.decaySteps,
      decayRate: s.decayRate,
      hardTraining: s.hardTraining,
      seed: s.seed,
      testBatchSize: s.testBatchSize,
    },
  };
}

/** Trains `opts.model` with `opts.decoder` on `opts.train`, testing on `opts.test` after each epoch. */
export async function trainModel(opts: TrainOptions): Promise<TrainSummary> {
  const started = Date.now();
  // ---- checks, before anything is written
  const s = resolveSettings(opts);
  const { model, decoder } = resolveModules(opts, s.seed);
  if (!opts.train || !opts.test) throw new Error('trainModel: needs the train and the test dataset');
  for (const [ds, name] of [
    [opts.train, 'TrainOptions.train'],
    [opts.test, 'TrainOptions.test'],
  ] as const)
    if (ds.count === 0)
      throw new Error(`${name} (${ds.name}/${ds.split} from ${ds.source}) holds 0 images; expected at least one`);
  checkModelFitsDataset(model, opts.train);
  checkModelFitsDataset(model, opts.test);
  checkDecoderFits(decoder, model, opts.train);
  const modelFile = checkOutputPath(opts.fullPrecisionFilename ?? './model.pt', 'TrainOptions.fullPrecisionFilename');
  const checkpointFile = checkOutputPath(
    opts.checkpointFilename ?? defaultCheckpointPath(modelFile),
    'TrainOptions.checkpointFilename',
  );
  if (checkpointFile === modelFile)
    throw new Error(
      `TrainOptions.checkpointFilename and fullPrecisionFilename are both ${modelFile}; choose another checkpoint name`,
    );
  if (opts.threads !== undefined) kernels().setThreads(checkPositiveInteger(opts.threads, 'TrainOptions.threads'));
  const augment = opts.augment !== undefined ? opts.augment : augmentationFor(opts.train.name);
  const loader = new DataLoader(opts.train, { batchSize: s.batchSize, seed: s.seed, augment, shuffle: true });
  const batchesPerEpoch = loader.batchesPerEpoch;
  const totalSteps = s.epochs * batchesPerEpoch;

  const params = [...model.parameters(), ...decoder.parameters()];
  const adam = new Adam(
    params.map((p) => p.param),
    { lr: s.lr },
  );
  const names = adamNames(model, decoder);
  const grads = params.map((p) => p.grad);

  // ---- resume
  let epoch = 1;
  let fromBatch = 0;
  let globalStep = 0;
  let bestAccuracy = 0;
  let bestEpoch: number | null = null;
  let history: EpochSummary[] = [];
  let partial: EpochProgress | null = null;
  let resumedFrom: TrainSummary['resumedFrom'] = null;
  let resumeFile = '';
  if (opts.resume) {
    const ckpt =
      typeof opts.resume === 'object'
        ? opts.resume
        : readTrainingCheckpoint(
            resolve(opts.resume === true ? checkpointFile : opts.resume),
            TRAIN_OPTION_NAMES.resume,
          );
    const file = ckpt.file;
    checkResumable(ckpt, runIdentity(model, decoder, opts, s), TRAIN_OPTION_NAMES);
    model.loadStateDict(ckpt.model, `checkpoint ${file}`);
    decoder.loadStateDict(ckpt.decoder, `checkpoint ${file}`);
    restoreAdam(adam, names, ckpt, file);
    ({ epoch, batch: fromBatch, globalStep, bestAccuracy, bestEpoch, history, partial } = ckpt.state);
    if (!(Number.isInteger(fromBatch) && fromBatch >= 0 && fromBatch <= batchesPerEpoch))
      throw new Error(
        `checkpoint ${file}: batch ${fromBatch} is outside the epoch's ${batchesPerEpoch} batches (0 to ${batchesPerEpoch})`,
      );
    resumeFile = file;
    if (globalStep !== (epoch - 1) * batchesPerEpoch + fromBatch)
      throw new Error(
        `checkpoint ${file}: inconsistent position (epoch ${epoch}, batch ${fromBatch}, step ${globalStep})`,
      );
    resumedFrom = { epoch, batch: fromBatch };
  }

  const sink = opts.log ?? ((line: string) => void process.stdout.write(line + '\n'));
  const progress = new ProgressReporter(
    opts.progress ?? 'auto',
    opts.progressStream ?? process.stderr,
    s.logInterval,
    sink,
  );
  const snapshot = (e: number, b: number, p: EpochProgress | null): TrainingState => ({
    ...runIdentity(model, decoder, opts, s),
    epoch: e,
    batch: b,
    globalStep,
    adam: { step: adam.step, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps },
    loader: { seed: s.seed, epoch: e - 1, nextBatch: b },
    bestAccuracy,
    bestEpoch,
    history,
    partial: p,
    modelFile,
  });
  const summary = (interrupted: boolean): TrainSummary => ({
    epochs: history,
    bestAccuracy,
    bestEpoch,
    modelFile,
    checkpointFile,
    resumedFrom,
    interrupted,
    globalStep,
    totalSeconds: (Date.now() - started) / 1000,
  });
  if (resumedFrom) progress.log(`Resuming from ${resumeFile}: epoch ${epoch}, batch ${fromBatch} (step ${globalStep})`);

  // ---- epochs
  for (; epoch <= s.epochs; epoch++, fromBatch = 0, partial = null) {
    const hard = isHardEpoch(epoch, s.epochs, s.hardTraining);
    const acc = partial ?? emptyProgress();
    const epochStart = performance.now() - acc.seconds * 1000;
    let lastLr = learningRate(Math.max(0, globalStep - 1), s.lr, s.decayRate, s.decaySteps);
    model.train();
    decoder.train();
    if (opts.signal?.aborted) {
      writeTrainingCheckpoint(checkpointFile, model, decoder, adam, snapshot(epoch, fromBatch, acc));
      progress.log(`Interrupted at epoch ${epoch}, batch ${fromBatch}; checkpoint saved to ${checkpointFile}`);
      return summary(true);
    }
    for await (const batch of loader.batches(epoch - 1, fromBatch)) {
      const B = batch.labels.length;
      model.zeroGrad();
      decoder.zeroGrad();
      adam.lr = lastLr = learningRate(globalStep, s.lr, s.decayRate, s.decaySteps);
      // a non-finite output, loss or gradient stops training before it reaches the weights: the
      // last checkpoint and the best model on disk stay as they were
      const stop = (what: string) => {
        progress.finishEpoch();
        return new NonFiniteTrainingError(
          what,
          epoch,
          batch.batchIndex + 1,
          globalStep + 1,
          existsSync(checkpointFile) ? checkpointFile : null,
          bestEpoch !== null && existsSync(modelFile) ? modelFile : null,
        );
      };
      let r: ReturnType<typeof trainingStep>;
      try {
        r = trainingStep(model, decoder, batch.images, batch.labels, {
          regularizationScale: s.regularizationScale,
          hard,
        });
      } catch (err) {
        if (err instanceof NonFiniteValueError) throw stop(`output (${err.message})`);
        throw err;
      }
      const bad = !Number.isFinite(r.loss) ? 'loss' : firstNonFinite(params, grads);
      if (bad !== null) {
        give(r.caps.data);
        throw stop(bad);
      }
      adam.update(grads);
      const batchAccuracy = countCorrect(r.caps, batch.labels) / B;
      give(r.caps.data);
      acc.batches++;
      acc.images += B;
      acc.lossSum += r.loss;
      acc.marginSum += r.marginLoss;
      acc.reconSum += r.reconLoss;
      acc.accuracySum += batchAccuracy;
      acc.seconds = (performance.now() - epochStart) / 1000;
      const done = batch.batchIndex + 1;
      const perBatch = acc.seconds / acc.batches;
      const report = {
        epoch,
        epochs: s.epochs,
        batch: done,
        batches: batchesPerEpoch,
        globalStep,
        totalSteps,
        loss: r.loss,
        marginLoss: r.marginLoss,
        reconLoss: r.reconLoss,
        batchAccuracy,
        epochAccuracy: acc.accuracySum / acc.batches,
        imagesPerSecond: acc.images / acc.seconds,
        etaSeconds: perBatch * (batchesPerEpoch - done),
        lr: lastLr,
      };
      globalStep++;
      progress.step(report);
      opts.onStep?.(report);
      // every checkpointEvery steps, unless the epoch ends here (its own checkpoint follows)
      if (s.checkpointEvery > 0 && globalStep % s.checkpointEvery === 0 && done < batchesPerEpoch) {
        writeTrainingCheckpoint(checkpointFile, model, decoder, adam, snapshot(epoch, done, acc));
        progress.log(`Checkpoint at epoch ${epoch}, batch ${done} (step ${globalStep}) saved to ${checkpointFile}`);
      }
      if (opts.signal?.aborted) {
        progress.finishEpoch();
        writeTrainingCheckpoint(checkpointFile, model, decoder, adam, snapshot(epoch, done, acc));
        progress.log(`Interrupted at epoch ${epoch}, batch ${done}; checkpoint saved to ${checkpointFile}`);
        return summary(true);
      }
    }
    progress.finishEpoch();
    const seconds = acc.seconds;
    progress.log(`Time elapsed for epoch ${epoch}: ${seconds.toFixed(0)}s.`);

    const testStart = performance.now();
    const test = await evaluateModel(model, opts.test, s.testBatchSize, {
      onBatch: (done, total) => progress.testing(done, total, epoch),
    });
    progress.finishEpoch();
    const testSeconds = (performance.now() - testStart) / 1000;
    progress.log(`Test: [Loss: ${test.loss.toFixed(6)}]`);
    progress.log(`Test Accuracy: ${test.correct}/${test.total} (${test.accuracy.toFixed(2)}%)`);
    const best = test.accuracy > bestAccuracy;
    if (best) {
      bestAccuracy = test.accuracy;
      bestEpoch = epoch;
      writeStateDict(modelFile, model.stateDict());
      progress.log(`Best model so far saved to ${modelFile}`);
    }
    const n = Math.max(1, acc.batches);
    const record: EpochSummary = {
      epoch,
      hard,
      trainLoss: acc.lossSum / n,
      trainMarginLoss: acc.marginSum / n,
      trainReconLoss: acc.reconSum / n,
      trainAccuracy: (acc.accuracySum / n) * 100,
      testAccuracy: test.accuracy,
      testCorrect: test.correct,
      testTotal: test.total,
      testLoss: test.loss,
      seconds,
      testSeconds,
      imagesPerSecond: seconds > 0 ? acc.images / seconds : 0,
      lastLr,
      best,
    };
    history = [...history, record];
    writeTrainingCheckpoint(checkpointFile, model, decoder, adam, snapshot(epoch + 1, 0, null));
    opts.onEpoch?.(record);
  }
  progress.log(`Best Full-Precision Accuracy: ${bestAccuracy}% (epoch ${bestEpoch ?? '-'})`);
  return summary(false);
}

/** Training met a non-finite loss or gradient (SPEC 3's losses diverged: usually a learning
 *  rate too large). Nothing was written after the last good state. */
export class NonFiniteTrainingError extends Error {
  constructor(
    /** 'loss', 'output (...)' (the model's capsules), or the gradient's parameter name */
    readonly what: string,
    readonly epoch: number,
    /** 1-based batch of the epoch, and optimizer step */
    readonly batch: number,
    readonly step: number,
    /** the last checkpoint written (null: none yet) and the best model so far (null: none) */
    readonly checkpointFile: string | null,
    readonly bestModelFile: string | null,
  ) {
    super(
      `non-finite ${what === 'loss' || what.startsWith('output') ? what : `gradient of ${what}`} at epoch ${epoch}, batch ${batch} (step ${step}); ` +
        `training stopped before the update. ` +
        (checkpointFile ? `The last good checkpoint is ${checkpointFile}` : 'No checkpoint was written yet') +
        (bestModelFile ? `, the best model ${bestModelFile}` : ', and there is no best model yet') +
        `; resume${checkpointFile ? ' from that checkpoint' : ''} with a smaller learning rate.`,
    );
    this.name = 'NonFiniteTrainingError';
  }
}

/** The name of the first parameter whose gradient holds NaN or Infinity, or null. */
function firstNonFinite(params: readonly { name: string }[], grads: readonly { data: Float32Array }[]): string | null {
  for (let k = 0; k < grads.length; k++) {
    const g = grads[k].data;
    let sum = 0;
    for (let i = 0; i < g.length; i++) sum += g[i] * 0; // NaN * 0 and Infinity * 0 are NaN
    if (sum !== 0) return params[k].name;
  }
  return null;
}
