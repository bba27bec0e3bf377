// trainModel's options: the reference's training settings (SPEC 6) with their defaults, plus the
// model/decoder, datasets, files and output sinks; resolved and checked before training starts,
// with errors that name the option (TrainOptions.lr).  The CLI maps its flags onto these.
import type { AugmentSpec } from '../data/augment.js';
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { buildDecoder, buildModel } from '../models/factory.js';
import type { LoadedCheckpoint, RunSettings } from './checkpoint.js';
import { checkCount, checkPositiveInteger, checkPositiveNumber, checkSeed, TRAIN_OPTION_NAMES } from './checks.js';
import type { ProgressMode, ProgressStream, StepReport } from './progress.js';
import type { EpochSummary } from './summary.js';
import type { TrainingVariant } from './variant.js';
import { DEFAULT_SEED } from '../tensor/seed.js';

/** A model or decoder by name and integer arguments (built with the run's seed). */
export interface ModuleSpec {
  name: string;
  args: readonly number[];
}

/** The options of each optimizer step and test pass, by name: what `train`, `finetune` and a
 *  search's fine-tuning all take, with TrainOptions' meanings and defaults. */
export type StepOptionName =
  | 'lr'
  | 'batchSize'
  | 'logInterval'
  | 'regularizationScale'
  | 'decaySteps'
  | 'decayRate'
  | 'hardTraining'
  | 'testBatchSize';

export interface TrainOptions {
  /** A built model, or its name and args (buildModel). */
  model: CapsNet | ModuleSpec;
  /** A built decoder, or its name and args (buildDecoder). */
  decoder: CapsDecoder | ModuleSpec;
  train: Dataset;
  test: Dataset;
  /** Training epochs (10). */
  epochs?: number;
  /** Initial learning rate of Adam (0.001). */
  lr?: number;
  /** Training batch size (100). */
  batchSize?: number;
  /** Batches between log lines when progress is not drawn as a bar (10). */
  logInterval?: number;
  /** Weight of the reconstruction loss (0.0005). */
  regularizationScale?: number;
  /** Learning-rate decay steps (2000). */
  decaySteps?: number;
  /** Learning-rate decay rate: lr * rate^(step / decaySteps) (0.96). */
  decayRate?: number;
  /** Hard margins for the last floor(epochs / 2) epochs (false). */
  hardTraining?: boolean;
  /** Seed of parameter init (for models given by name), shuffling and augmentation (DEFAULT_SEED). */
  seed?: number;
  /** Batch size of the test passes (100). */
  testBatchSize?: number;
  /** Where the best model's state_dict goes (PyTorch .pt; './model.pt'). */
  fullPrecisionFilename?: string;
  /** The resumable checkpoint; default `<model stem>.ckpt.safetensors` next to the model file.
   *  With a `variant`, no default: null or absent writes no checkpoint. */
  checkpointFilename?: string | null;
  /** Continue from a checkpoint: its path, true for checkpointFilename, or one already read
   *  with readTrainingCheckpoint. */
  resume?: string | boolean | LoadedCheckpoint;
  /** GEMM threads (kernels().setThreads); default: leave as is. */
  threads?: number;
  /** Training-set augmentation; default: the dataset's (augmentationFor(train.name)); null: none. */
  augment?: AugmentSpec | null;
  /** 'auto' (default): a bar on a terminal, log lines every logInterval batches otherwise. */
  progress?: ProgressMode;
  /** Where progress goes (default process.stderr). */
  progressStream?: ProgressStream;
  /** Where log lines go (epoch results, files written); default: stdout. */
  log?: (line: string) => void;
  /** Called after every training step. */
  onStep?: (report: StepReport) => void;
  /** Called after every epoch's test pass and file writes. */
  onEpoch?: (epoch: EpochSummary) => void;
  /** Optimizer steps between resumable checkpoints within an epoch (300: a few minutes of
   *  ShallowCapsNet at batch 100); 0: only at epoch ends. A checkpoint is also written after
   *  every epoch and when the run is stopped through `signal`. */
  checkpointEvery?: number;
  /** Stops after the current step; the checkpoint then records the exact position. */
  signal?: AbortSignal;
  /** Training's loop through another forward (fine-tuning through the quantized forward,
   *  src/search/finetune.ts; see TrainingVariant); absent: full-precision training. */
  variant?: TrainingVariant;
}

export const TRAIN_DEFAULTS = {
  epochs: 10,
  lr: 0.001,
  batchSize: 100,
  logInterval: 10,
  regularizationScale: 0.0005,
  decaySteps: 2000,
  decayRate: 0.96,
  hardTraining: false,
  seed: DEFAULT_SEED,
  testBatchSize: 100,
  fullPrecisionFilename: './model.pt',
  // a ShallowCapsNet step of batch 100 takes about 0.5 s on 2 cores (README, Benchmarks), so
  // 300 steps is about 2.5 minutes of work, against about 1 s to write its ~100 MB checkpoint
  checkpointEvery: 300,
} as const;

export interface ResolvedSettings extends RunSettings {
  logInterval: number;
  checkpointEvery: number;
}

/** The numeric options with defaults, each checked (errors name the option: TrainOptions.lr). */
export function resolveSettings(opts: TrainOptions): ResolvedSettings {
  const d = TRAIN_DEFAULTS;
  const n = TRAIN_OPTION_NAMES.settings;
  return {
    epochs: checkPositiveInteger(opts.epochs ?? d.epochs, n.epochs),
    lr: checkPositiveNumber(opts.lr ?? d.lr, n.lr),
    batchSize: checkPositiveInteger(opts.batchSize ?? d.batchSize, n.batchSize),
    logInterval: checkPositiveInteger(opts.logInterval ?? d.logInterval, 'TrainOptions.logInterval'),
    checkpointEvery: checkCount(opts.checkpointEvery ?? d.checkpointEvery, 'TrainOptions.checkpointEvery'),
    regularizationScale: checkPositiveNumber(
      opts.regularizationScale ?? d.regularizationScale,
      n.regularizationScale,
      true,
    ),
    decaySteps: checkPositiveNumber(opts.decaySteps ?? d.decaySteps, n.decaySteps),
    decayRate: checkPositiveNumber(opts.decayRate ?? d.decayRate, n.decayRate),
    hardTraining: opts.hardTraining ?? d.hardTraining,
    seed: checkSeed(opts.seed ?? d.seed, n.seed),
    testBatchSize: checkPositiveInteger(opts.testBatchSize ?? d.testBatchSize, n.testBatchSize),
  };
}

function isSpec(x: unknown): x is ModuleSpec {
  return typeof x === 'object' && x !== null && 'name' in x && 'args' in x && !('forward' in x);
}

/** The model and decoder objects (built from specs with the seed). */
export function resolveModules(opts: TrainOptions, seed: number): { model: CapsNet; decoder: CapsDecoder } {
  const model = isSpec(opts.model) ? buildModel(opts.model.name, opts.model.args, { seed }) : opts.model;
  const decoder = isSpec(opts.decoder) ? buildDecoder(opts.decoder.name, opts.decoder.args, { seed }) : opts.decoder;
  return { model, decoder };
}
