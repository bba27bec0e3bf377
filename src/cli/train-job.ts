// The training part of the command line: the reference's flags mapped onto trainModel (args.ts
// has checked them, and built the model and decoder).
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import type { LoadedCheckpoint } from '../train/checkpoint.js';
import { NonFiniteTrainingError, trainModel } from '../train/trainer.js';
import { type Options, trainSettingsFromFlags } from './args.js';

export interface TrainingOutcome {
  modelFile: string;
  bestAccuracy: number;
  json: Record<string, unknown>;
}

export interface TrainingInputs {
  model: CapsNet;
  decoder: CapsDecoder;
  train: Dataset;
  test: Dataset;
  /** --resume's checkpoint, read and checked against the flags */
  resume: LoadedCheckpoint | null;
}

export async function runTraining(
  o: Options,
  { model, decoder, train, test, resume }: TrainingInputs,
  log: (line: string) => void,
): Promise<TrainingOutcome> {
  // Ctrl-C or SIGTERM ends the current step and writes a resumable checkpoint at that batch
  const abort = new AbortController();
  const onSignal = () => {
    log('interrupted: finishing the current step and writing a checkpoint ...');
    abort.abort();
  };
  // Ctrl-C, or a scheduler's SIGTERM (Slurm, Kubernetes): the same
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const summary = await trainModel({
    model,
    decoder,
    train,
    test,
    ...trainSettingsFromFlags(o),
    fullPrecisionFilename: String(o['full-precision-filename']),
    checkpointEvery: Number(o['checkpoint-every']),
    resume: resume ?? undefined,
    log,
    signal: abort.signal,
  })
    .catch((err: unknown) => {
      if (!(err instanceof NonFiniteTrainingError)) throw err;
      const lr = Number(o.lr) / 10;
      const again = err.checkpointFile ? `--resume ${err.checkpointFile} --lr ${lr}` : `--lr ${lr}`;
      throw new Error(`${err.message} For example: the same command with ${again}`, { cause: err });
    })
    .finally(() => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
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
