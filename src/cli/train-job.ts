// The training part of the command line: the reference's flags mapped onto trainModel. `train`
// runs it alone; the command without a command runs it before the search. Its files are
// prepared before any data is loaded: the model's folder (created when missing), the checkpoint
// beside the model, and --resume's checkpoint (read, then checked against the flags).
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import {
  checkResumable,
  defaultCheckpointPath,
  type LoadedCheckpoint,
  readTrainingCheckpoint,
  type RunSettings,
} from '../train/checkpoint.js';
import { checkOutputPath } from '../train/checks.js';
import type { StepOptionName } from '../train/options.js';
import { NonFiniteTrainingError, runIdentity, trainModel } from '../train/trainer.js';
import type { Flags, Options } from './flags.js';
import { decoderFromFlags, loadTestSplit, loadTrainingSplit, type Log, modelFromFlags } from './inputs.js';
import { checkOutputFolders, FLAG_OPTION_NAMES } from './validate.js';

/** The flags training reads (`train`'s, all of them also the default command's). */
export type TrainFlags = Omit<Options<'train'>, 'verbose' | 'help' | 'visibleGpus' | 'threads' | 'json'>;

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

/** The numeric training settings of the flags (checkFlagValues checked them); `finetune` takes
 *  the same flags. */
export function trainSettings(
  o: Pick<TrainFlags, StepOptionName | 'epochs' | 'seed'>,
): RunSettings & { logInterval: number } {
  return {
    epochs: o.epochs,
    lr: o.lr,
    batchSize: o.batchSize,
    logInterval: o.logInterval,
    regularizationScale: o.regularizationScale,
    decaySteps: o.decaySteps,
    decayRate: o.decayRate,
    hardTraining: o.hardTraining,
    seed: o.seed,
    testBatchSize: o.testBatchSize,
  };
}

/**
 * Training's files, before any data is loaded: --full-precision-filename's folder (created
 * when missing) and name, the checkpoint next to it, and --resume's checkpoint (read).
 */
export function prepareTrainingFiles(o: Flags<'full-precision-filename' | 'resume'>): {
  modelFile: string;
  resume: LoadedCheckpoint | null;
} {
  const flag = '--full-precision-filename';
  const file = o.fullPrecisionFilename;
  if (file === '') throw new Error(`${flag}: expected a file name`);
  // like --output-dir, the model's folder is created when missing
  mkdirSync(dirname(resolve(file)), { recursive: true });
  const modelFile = checkOutputPath(file, flag);
  checkOutputPath(defaultCheckpointPath(modelFile), `the training checkpoint of ${flag}`);
  const resume = o.resume === null ? null : readTrainingCheckpoint(resolve(o.resume), '--resume');
  return { modelFile, resume };
}

/** `qcapsnets train`: training only. */
export async function trainCommand(o: Options<'train'>, log: Log, started: number): Promise<number> {
  const model = modelFromFlags(o);
  const decoder = decoderFromFlags(o, model);
  checkOutputFolders('train', o, true);
  const files = prepareTrainingFiles(o);
  const test = await loadTestSplit(o, model, log);
  const { train } = await loadTrainingSplit(o, model, log);
  const summary = await runTraining(o, { model, decoder, train, test, resume: files.resume }, log);
  if (o.json) console.log(JSON.stringify({ ...summary.json, seconds: (performance.now() - started) / 1000 }));
  return 0;
}

/**
 * A training run (training, fine-tuning) under the command line: Ctrl-C or a scheduler's SIGTERM
 * (Slurm, Kubernetes) ends the current step and writes a resumable checkpoint at that batch; a
 * non-finite loss or gradient stops it with the command that continues at a smaller --lr.
 */
export async function interruptible<T>(log: Log, lr: number, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onSignal = () => {
    log('interrupted: finishing the current step and writing a checkpoint ...');
    abort.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return run(abort.signal)
    .catch((err: unknown) => {
      if (!(err instanceof NonFiniteTrainingError)) throw err;
      const smaller = lr / 10;
      const again = err.checkpointFile ? `--resume ${err.checkpointFile} --lr ${smaller}` : `--lr ${smaller}`;
      throw new Error(`${err.message} For example: the same command with ${again}`, { cause: err });
    })
    .finally(() => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
}

/** Training as the first part of a job: --resume checked against this run, then trainModel. */
export async function runTraining(
  o: TrainFlags,
  { model, decoder, train, test, resume }: TrainingInputs,
  log: Log,
): Promise<TrainingOutcome> {
  const settings = trainSettings(o);
  if (resume) checkResumable(resume, runIdentity(model, decoder, { train, test }, settings), FLAG_OPTION_NAMES);
  const summary = await interruptible(log, o.lr, (signal) =>
    trainModel({
      model,
      decoder,
      train,
      test,
      ...settings,
      fullPrecisionFilename: o.fullPrecisionFilename,
      checkpointEvery: o.checkpointEvery,
      resume: resume ?? undefined,
      log,
      signal,
    }),
  );
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
