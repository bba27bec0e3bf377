// The training part of the command line: the reference's flags mapped onto trainModel.
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import { trainModel } from '../train/trainer.js';
import type { Options } from './args.js';

export interface TrainingOutcome {
  modelFile: string;
  bestAccuracy: number;
  json: Record<string, unknown>;
}

export async function runTraining(
  o: Options,
  model: CapsNet,
  train: Dataset,
  test: Dataset,
  log: (line: string) => void,
): Promise<TrainingOutcome> {
  const num = (k: string) => o[k] as number;
  // Ctrl-C ends the current step and writes a resumable checkpoint at that batch
  const abort = new AbortController();
  const onSignal = () => {
    log('interrupted: finishing the current step and writing a checkpoint ...');
    abort.abort();
  };
  process.once('SIGINT', onSignal);
  const summary = await trainModel({
    model,
    decoder: { name: String(o.decoder), args: o['decoder-args'] as number[] },
    train,
    test,
    epochs: num('epochs'),
    lr: num('lr'),
    batchSize: num('batch-size'),
    logInterval: num('log-interval'),
    regularizationScale: num('regularization-scale'),
    decaySteps: num('decay-steps'),
    decayRate: num('decay-rate'),
    hardTraining: Boolean(o['hard-training']),
    seed: num('seed'),
    testBatchSize: num('test-batch-size'),
    fullPrecisionFilename: String(o['full-precision-filename']),
    resume: o.resume === null ? undefined : String(o.resume),
    log,
    signal: abort.signal,
  }).finally(() => process.off('SIGINT', onSignal));
  if (summary.interrupted)
    throw new Error(`training was interrupted; continue with --resume ${summary.checkpointFile}`);
  log(
    `best full-precision accuracy: ${summary.bestAccuracy}% (epoch ${summary.bestEpoch}), model in ${summary.modelFile}`,
  );
  return {
    modelFile: summary.modelFile,
    bestAccuracy: summary.bestAccuracy,
    json: {
      bestAccuracy: summary.bestAccuracy,
      bestEpoch: summary.bestEpoch,
      modelFile: summary.modelFile,
      checkpointFile: summary.checkpointFile,
      epochs: summary.epochs,
    },
  };
}
