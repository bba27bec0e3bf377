// The loop of one training run (trainModel, trainer.ts, checks the options and restores a
// resumed position before): epochs of optimizer steps, a test pass after each, the best model
// and the checkpoints written, and the summary. Each epoch takes the steps an uninterrupted
// run would, from wherever the position says.
import { existsSync } from 'node:fs';
import type { Batch, DataLoader } from '../data/loader.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { countCorrect } from '../models/metrics.js';
import { trainingStep } from '../models/training-step.js';
import type { Parameter, QuantHooks } from '../nn/module.js';
import { writeStateDict } from '../io/pt.js';
import type { Adam } from '../tensor/ops/adam.js';
import { give } from '../tensor/pool.js';
import type { Tensor } from '../tensor/tensor.js';
import { NonFiniteValueError } from '../tensor/tensor.js';
import { type EpochProgress, runIdentity, type TrainingState, writeTrainingCheckpoint } from './checkpoint.js';
import { evaluateModel } from './evaluate.js';
import { firstNonFinite, NonFiniteTrainingError } from './non-finite.js';
import type { ResolvedSettings, TrainOptions } from './options.js';
import { ProgressReporter, type StepReport } from './progress.js';
import { isHardEpoch, learningRate } from './schedule.js';
import type { EpochSummary, TrainSummary } from './summary.js';

/** What a run trains with, checked and built before anything is written (trainer.ts). */
export interface TrainingSetup {
  opts: TrainOptions;
  s: ResolvedSettings;
  model: CapsNet;
  decoder: CapsDecoder;
  loader: DataLoader;
  /** the model's then the decoder's parameters, Adam's order, and their gradients */
  params: Parameter[];
  grads: Tensor[];
  adam: Adam;
  /** where the best model goes (null: a variant's run, which keeps none) */
  modelFile: string | null;
  /** where checkpoints go (null: none are written) */
  checkpointFile: string | null;
  /** Date.now() as trainModel was called */
  started: number;
}

/** Where a run starts: epoch 1 batch 0, or a checkpoint's position and records. */
export interface RunPosition {
  /** 1-based epoch to run next (or in progress) and its next batch index (0-based) */
  epoch: number;
  fromBatch: number;
  globalStep: number;
  bestAccuracy: number;
  bestEpoch: number | null;
  history: EpochSummary[];
  /** the sums of the epoch in progress (null: none yet) */
  partial: EpochProgress | null;
  resumedFrom: TrainSummary['resumedFrom'];
  /** the checkpoint resumed from ('' when none) */
  resumeFile: string;
}

const emptyProgress = (): EpochProgress => ({
  batches: 0,
  images: 0,
  lossSum: 0,
  marginSum: 0,
  reconSum: 0,
  accuracySum: 0,
  seconds: 0,
});

/** The epoch in progress: its margins, sums, start time and last learning rate. */
interface Epoch {
  hard: boolean;
  acc: EpochProgress;
  start: number;
  lastLr: number;
}

export class TrainingRun {
  private readonly progress: ProgressReporter;
  private epoch: number;
  private fromBatch: number;
  private globalStep: number;
  private bestAccuracy: number;
  private bestEpoch: number | null;
  private history: EpochSummary[];
  private partial: EpochProgress | null;

  constructor(
    private readonly setup: TrainingSetup,
    private readonly position: RunPosition,
  ) {
    ({
      epoch: this.epoch,
      fromBatch: this.fromBatch,
      globalStep: this.globalStep,
      bestAccuracy: this.bestAccuracy,
      bestEpoch: this.bestEpoch,
      history: this.history,
      partial: this.partial,
    } = position);
    const { opts, s } = setup;
    const sink = opts.log ?? ((line: string) => void process.stdout.write(line + '\n'));
    this.progress = new ProgressReporter(
      opts.progress ?? 'auto',
      opts.progressStream ?? process.stderr,
      s.logInterval,
      sink,
    );
  }

  /** Trains the remaining epochs; stops early (interrupted) when the abort signal fires. */
  async run(): Promise<TrainSummary> {
    const { s } = this.setup;
    const { resumedFrom, resumeFile } = this.position;
    if (resumedFrom)
      this.progress.log(
        `Resuming from ${resumeFile}: epoch ${this.epoch}, batch ${this.fromBatch} (step ${this.globalStep})`,
      );
    for (; this.epoch <= s.epochs; this.epoch++, this.fromBatch = 0, this.partial = null) {
      const epoch = this.startEpoch();
      if (!(await this.trainEpoch(epoch))) return this.summary(true);
      await this.testEpoch(epoch);
    }
    if (!this.setup.opts.variant)
      this.progress.log(`Best Full-Precision Accuracy: ${this.bestAccuracy}% (epoch ${this.bestEpoch ?? '-'})`);
    return this.summary(false);
  }

  private startEpoch(): Epoch {
    const { s, model, decoder } = this.setup;
    const acc = this.partial ?? emptyProgress();
    const epoch: Epoch = {
      hard: isHardEpoch(this.epoch, s.epochs, s.hardTraining),
      acc,
      start: performance.now() - acc.seconds * 1000,
      lastLr: learningRate(Math.max(0, this.globalStep - 1), s.lr, s.decayRate, s.decaySteps),
    };
    model.train();
    decoder.train();
    return epoch;
  }

  /** The epoch's optimizer steps from this.fromBatch, with the checkpoints every
   *  checkpointEvery steps; false when the abort signal stopped it (its checkpoint written). */
  private async trainEpoch(epoch: Epoch): Promise<boolean> {
    const { opts, s, loader } = this.setup;
    if (opts.signal?.aborted) {
      this.interrupt(this.fromBatch, epoch.acc);
      return false;
    }
    for await (const batch of loader.batches(this.epoch - 1, this.fromBatch)) {
      const done = this.trainStep(epoch, batch);
      // every checkpointEvery steps, unless the epoch ends here (its own checkpoint follows)
      const due = s.checkpointEvery > 0 && this.globalStep % s.checkpointEvery === 0;
      if (due && this.setup.checkpointFile !== null && done < loader.batchesPerEpoch) {
        this.checkpoint(this.epoch, done, epoch.acc);
        this.progress.log(
          `Checkpoint at epoch ${this.epoch}, batch ${done} (step ${this.globalStep}) saved to ${this.setup.checkpointFile}`,
        );
      }
      if (opts.signal?.aborted) {
        this.progress.finishEpoch();
        this.interrupt(done, epoch.acc);
        return false;
      }
    }
    this.progress.finishEpoch();
    return true;
  }

  /** One optimizer step on one batch, then its record; returns the number of the epoch's
   *  batches done. */
  private trainStep(epoch: Epoch, batch: Batch): number {
    const { s, model, decoder, adam, params, grads } = this.setup;
    model.zeroGrad();
    decoder.zeroGrad();
    adam.lr = epoch.lastLr = learningRate(this.globalStep, s.lr, s.decayRate, s.decaySteps);
    // a non-finite output, loss or gradient stops training before it reaches the weights: the
    // last checkpoint and the best model on disk stay as they were
    let r: ReturnType<typeof trainingStep>;
    const variant = this.setup.opts.variant;
    const step = (quant: QuantHooks | null) =>
      trainingStep(model, decoder, batch.images, batch.labels, {
        regularizationScale: s.regularizationScale,
        hard: epoch.hard,
        quant,
        distill: variant?.distill,
      });
    try {
      r = variant ? variant.step(this.globalStep, step) : step(null);
    } catch (err) {
      if (err instanceof NonFiniteValueError) throw this.nonFinite(`output (${err.message})`, batch.batchIndex);
      throw err;
    }
    const bad = !Number.isFinite(r.loss) ? 'loss' : firstNonFinite(params, grads);
    if (bad !== null) {
      give(r.caps.data);
      throw this.nonFinite(bad, batch.batchIndex);
    }
    adam.update(grads);
    const batchAccuracy = countCorrect(r.caps, batch.labels) / batch.labels.length;
    give(r.caps.data);
    return this.recordStep(epoch, batch, r, batchAccuracy);
  }

  /** Adds a step to the epoch's sums and reports it (progress, onStep); returns the number of
   *  the epoch's batches done. */
  private recordStep(
    epoch: Epoch,
    batch: Batch,
    r: { loss: number; marginLoss: number; reconLoss: number },
    batchAccuracy: number,
  ): number {
    const { opts, s, loader } = this.setup;
    const acc = epoch.acc;
    acc.batches++;
    acc.images += batch.labels.length;
    acc.lossSum += r.loss;
    acc.marginSum += r.marginLoss;
    acc.reconSum += r.reconLoss;
    acc.accuracySum += batchAccuracy;
    acc.seconds = (performance.now() - epoch.start) / 1000;
    const done = batch.batchIndex + 1;
    const perBatch = acc.seconds / acc.batches;
    const report: StepReport = {
      epoch: this.epoch,
      epochs: s.epochs,
      batch: done,
      batches: loader.batchesPerEpoch,
      globalStep: this.globalStep,
      totalSteps: s.epochs * loader.batchesPerEpoch,
      loss: r.loss,
      marginLoss: r.marginLoss,
      reconLoss: r.reconLoss,
      batchAccuracy,
      epochAccuracy: acc.accuracySum / acc.batches,
      imagesPerSecond: acc.images / acc.seconds,
      etaSeconds: perBatch * (loader.batchesPerEpoch - done),
      lr: epoch.lastLr,
    };
    this.globalStep++;
    this.progress.step(report);
    opts.onStep?.(report);
    return done;
  }

  /** The error that stops training at a non-finite value, before the update. */
  private nonFinite(what: string, batchIndex: number): NonFiniteTrainingError {
    const { checkpointFile, modelFile } = this.setup;
    this.progress.finishEpoch();
    return new NonFiniteTrainingError(
      what,
      this.epoch,
      batchIndex + 1,
      this.globalStep + 1,
      checkpointFile !== null && existsSync(checkpointFile) ? checkpointFile : null,
      // a variant's run keeps no best model
      modelFile === null ? undefined : this.bestEpoch !== null && existsSync(modelFile) ? modelFile : null,
    );
  }

  /** The test pass after an epoch: the best model written when it beats the best so far, the
   *  epoch's record, and the checkpoint at the next epoch's start. */
  private async testEpoch(epoch: Epoch): Promise<void> {
    const { opts, s, model, modelFile } = this.setup;
    const progress = this.progress;
    progress.log(`Time elapsed for epoch ${this.epoch}: ${epoch.acc.seconds.toFixed(0)}s.`);

    const testStart = performance.now();
    const onBatch = (done: number, total: number) => progress.testing(done, total, this.epoch);
    const variant = opts.variant;
    const test = variant
      ? await variant.test(model, opts.test, s.testBatchSize, onBatch)
      : await evaluateModel(model, opts.test, s.testBatchSize, { onBatch });
    progress.finishEpoch();
    const testSeconds = (performance.now() - testStart) / 1000;
    const name = variant?.testName ?? 'Test';
    progress.log(`${name}: [Loss: ${test.loss.toFixed(6)}]`);
    progress.log(`${name} Accuracy: ${test.correct}/${test.total} (${test.accuracy.toFixed(2)}%)`);
    const best = test.accuracy > this.bestAccuracy && modelFile !== null;
    if (test.accuracy > this.bestAccuracy) {
      this.bestAccuracy = test.accuracy;
      this.bestEpoch = this.epoch;
    }
    if (best) {
      writeStateDict(modelFile, model.stateDict());
      progress.log(`Best model so far saved to ${modelFile}`);
    }
    const record = this.epochRecord(epoch, test, testSeconds, best);
    this.history = [...this.history, record];
    this.checkpoint(this.epoch + 1, 0, null);
    opts.onEpoch?.(record);
  }

  /** The epoch's summary: the means of its training steps and its test pass. */
  private epochRecord(
    epoch: Epoch,
    test: { accuracy: number; correct: number; total: number; loss: number },
    testSeconds: number,
    best: boolean,
  ): EpochSummary {
    const { acc, hard, lastLr } = epoch;
    const seconds = acc.seconds;
    const n = Math.max(1, acc.batches);
    return {
      epoch: this.epoch,
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
  }

  /** Stopped by the abort signal at batch `batch` of the epoch: the checkpoint records it. */
  private interrupt(batch: number, acc: EpochProgress): void {
    this.checkpoint(this.epoch, batch, acc);
    const file = this.setup.checkpointFile;
    this.progress.log(
      `Interrupted at epoch ${this.epoch}, batch ${batch}; ` +
        (file === null ? 'no checkpoint file was asked for' : `checkpoint saved to ${file}`),
    );
  }

  /** The checkpoint, where the run writes one. */
  private checkpoint(epoch: number, batch: number, partial: EpochProgress | null): void {
    const { model, decoder, adam, checkpointFile } = this.setup;
    if (checkpointFile === null) return;
    writeTrainingCheckpoint(checkpointFile, model, decoder, adam, this.snapshot(epoch, batch, partial));
  }

  private snapshot(epoch: number, batch: number, partial: EpochProgress | null): TrainingState {
    const { opts, s, model, decoder, adam, modelFile } = this.setup;
    return {
      ...runIdentity(model, decoder, opts, s, opts.variant),
      epoch,
      batch,
      globalStep: this.globalStep,
      adam: { step: adam.step, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps },
      loader: { seed: s.seed, epoch: epoch - 1, nextBatch: batch },
      bestAccuracy: this.bestAccuracy,
      bestEpoch: this.bestEpoch,
      history: this.history,
      partial,
      modelFile: modelFile ?? '',
    };
  }

  private summary(interrupted: boolean): TrainSummary {
    const { modelFile, checkpointFile, started } = this.setup;
    return {
      epochs: this.history,
      bestAccuracy: this.bestAccuracy,
      bestEpoch: this.bestEpoch,
      modelFile: modelFile ?? '',
      checkpointFile: checkpointFile ?? '',
      resumedFrom: this.position.resumedFrom,
      interrupted,
      globalStep: this.globalStep,
      totalSeconds: (Date.now() - started) / 1000,
    };
  }
}
