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
import { resolve } from 'node:path';
import { augmentationFor } from '../data/augment.js';
import { DataLoader } from '../data/loader.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { kernels } from '../tensor/kernels.js';
import { Adam } from '../tensor/ops/adam.js';
import {
  adamNames,
  checkResumable,
  defaultCheckpointPath,
  readTrainingCheckpoint,
  restoreAdam,
  runIdentity,
} from './checkpoint.js';
import {
  checkDecoderFits,
  checkModelFitsDataset,
  checkOutputPath,
  checkPositiveInteger,
  TRAIN_OPTION_NAMES,
} from './checks.js';
import { resolveModules, resolveSettings, type TrainOptions } from './options.js';
import type { TrainSummary } from './summary.js';
import { type RunPosition, TrainingRun, type TrainingSetup } from './training-run.js';

export { runIdentity } from './checkpoint.js';
export { NonFiniteTrainingError } from './non-finite.js';

/** Trains `opts.model` with `opts.decoder` on `opts.train`, testing on `opts.test` after each epoch. */
export async function trainModel(opts: TrainOptions): Promise<TrainSummary> {
  const started = Date.now();
  const setup = prepareTraining(opts, started);
  const position = opts.resume ? resumePosition(opts.resume, opts, setup) : startPosition();
  return new TrainingRun(setup, position).run();
}

/** Checks every option, then builds the modules, the data loader and the optimizer; nothing
 *  is written yet. */
function prepareTraining(opts: TrainOptions, started: number): TrainingSetup {
  const s = resolveSettings(opts);
  const { model, decoder } = resolveModules(opts, s.seed);
  checkTrainingData(opts, model, decoder);
  const { modelFile, checkpointFile } = checkOutputFiles(opts);
  if (opts.threads !== undefined) kernels().setThreads(checkPositiveInteger(opts.threads, 'TrainOptions.threads'));
  const augment = opts.augment !== undefined ? opts.augment : augmentationFor(opts.train.name);
  const loader = new DataLoader(opts.train, { batchSize: s.batchSize, seed: s.seed, augment, shuffle: true });
  const params = [...model.parameters(), ...decoder.parameters()];
  const adam = new Adam(
    params.map((p) => p.param),
    { lr: s.lr },
  );
  const grads = params.map((p) => p.grad);
  return { opts, s, model, decoder, loader, params, grads, adam, modelFile, checkpointFile, started };
}

/** Both datasets hold images that fit the model and the decoder. */
function checkTrainingData(opts: TrainOptions, model: CapsNet, decoder: CapsDecoder): void {
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
}

/** The best model's and the checkpoint's paths: writable, and two different files. A variant's
 *  run writes no best model, and a checkpoint only where checkpointFilename names one. */
function checkOutputFiles(opts: TrainOptions): { modelFile: string | null; checkpointFile: string | null } {
  if (opts.variant) {
    const file = opts.checkpointFilename;
    return {
      modelFile: null,
      checkpointFile: file == null ? null : checkOutputPath(file, 'TrainOptions.checkpointFilename'),
    };
  }
  const modelFile = checkOutputPath(opts.fullPrecisionFilename ?? './model.pt', 'TrainOptions.fullPrecisionFilename');
  const checkpointFile = checkOutputPath(
    opts.checkpointFilename ?? defaultCheckpointPath(modelFile),
    'TrainOptions.checkpointFilename',
  );
  if (checkpointFile === modelFile)
    throw new Error(
      `TrainOptions.checkpointFilename and fullPrecisionFilename are both ${modelFile}; choose another checkpoint name`,
    );
  return { modelFile, checkpointFile };
}

function startPosition(): RunPosition {
  return {
    epoch: 1,
    fromBatch: 0,
    globalStep: 0,
    bestAccuracy: 0,
    bestEpoch: null,
    history: [],
    partial: null,
    resumedFrom: null,
    resumeFile: '',
  };
}

/** Reads the checkpoint to resume from (TrainOptions.resume), checks that it is this run's, and loads
 *  its model, decoder and Adam state; returns its position. */
function resumePosition(
  resume: Exclude<TrainOptions['resume'], false | undefined>,
  opts: TrainOptions,
  setup: TrainingSetup,
): RunPosition {
  const { s, model, decoder, adam, checkpointFile } = setup;
  const batchesPerEpoch = setup.loader.batchesPerEpoch;
  if (resume === true && checkpointFile === null)
    throw new Error(`${TRAIN_OPTION_NAMES.resume} true: no checkpointFilename to resume from`);
  const ckpt =
    typeof resume === 'object'
      ? resume
      : readTrainingCheckpoint(resolve(resume === true ? checkpointFile! : resume), TRAIN_OPTION_NAMES.resume);
  const file = ckpt.file;
  checkResumable(ckpt, runIdentity(model, decoder, opts, s, opts.variant), TRAIN_OPTION_NAMES);
  model.loadStateDict(ckpt.model, `checkpoint ${file}`);
  decoder.loadStateDict(ckpt.decoder, `checkpoint ${file}`);
  restoreAdam(adam, adamNames(model, decoder), ckpt, file);
  const { epoch, batch: fromBatch, globalStep, bestAccuracy, bestEpoch, history, partial } = ckpt.state;
  if (!(Number.isInteger(fromBatch) && fromBatch >= 0 && fromBatch <= batchesPerEpoch))
    throw new Error(
      `checkpoint ${file}: batch ${fromBatch} is outside the epoch's ${batchesPerEpoch} batches (0 to ${batchesPerEpoch})`,
    );
  if (globalStep !== (epoch - 1) * batchesPerEpoch + fromBatch)
    throw new Error(
      `checkpoint ${file}: inconsistent position (epoch ${epoch}, batch ${fromBatch}, step ${globalStep})`,
    );
  return {
    epoch,
    fromBatch,
    globalStep,
    bestAccuracy,
    bestEpoch,
    history,
    partial,
    resumedFrom: { epoch, batch: fromBatch },
    resumeFile: file,
  };
}
