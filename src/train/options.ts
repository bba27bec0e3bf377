// trainModel's options: the CLI flags of the reference (SPEC 6) with their defaults, plus the
// model/decoder, datasets, files and output sinks; resolved and checked before training starts.
import type { AugmentSpec } from '../data/augment.js';
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { buildDecoder, buildModel } from '../models/factory.js';
import type { RunSettings } from './checkpoint.js';
import { checkPositiveInteger, checkPositiveNumber, checkSeed } from './checks.js';
import type { ProgressMode, ProgressStream, StepReport } from './progress.js';
import type { EpochSummary } from './summary.js';

/** A model or decoder by name and command-line arguments (built with --seed). */
export interface ModuleSpec {
  name: string;
  args: readonly number[];
}

export interface TrainOptions {
  /** A built model, or --model / --model-args. */
  model: CapsNet | ModuleSpec;
  /** A built decoder, or --decoder / --decoder-args. */
  decoder: CapsDecoder | ModuleSpec;
  train: Dataset;
  test: Dataset;
  /** --epochs (10) */
  epochs?: number;
  /** --lr (0.001) */
  lr?: number;
  /** --batch-size (100) */
  batchSize?: number;
  /** --log-interval (10): batches between log lines when progress is not drawn as a bar */
  logInterval?: number;
  /** --regularization-scale (0.0005) */
  regularizationScale?: number;
  /** --decay-steps (2000) */
  decaySteps?: number;
  /** --decay-rate (0.96) */
  decayRate?: number;
  /** --hard-training (false): hard margins for the last floor(epochs / 2) epochs */
  hardTraining?: boolean;
  /** --seed (42): parameter init (for models given by name), shuffling and augmentation */
  seed?: number;
  /** --test-batch-size (100) */
  testBatchSize?: number;
  /** --full-precision-filename ('./model.pt'): the best model's state_dict (PyTorch .pt) */
  fullPrecisionFilename?: string;
  /** The resumable checkpoint; default `<model stem>.ckpt.safetensors` next to the model file. */
  checkpointFilename?: string;
  /** Continue from a checkpoint: its path, or true for checkpointFilename. */
  resume?: string | boolean;
  /** GEMM threads (kernels().setThreads); default: leave as is. */
  threads?: number;
  /** Training-set augmentation; default: the dataset's (augmentationFor(train.name)); null: none. */
  augment?: AugmentSpec | null;
  /** 'auto' (default): a bar on a terminal, log lines every --log-interval batches otherwise. */
  progress?: ProgressMode;
  /** Where progress goes (default process.stderr). */
  progressStream?: ProgressStream;
  /** Where log lines go (epoch results, files written); default: stdout. */
  log?: (line: string) => void;
  /** Called after every training step. */
  onStep?: (report: StepReport) => void;
  /** Called after every epoch's test pass and file writes. */
  onEpoch?: (epoch: EpochSummary) => void;
  /** Stops after the current step; the checkpoint then records the exact position. */
  signal?: AbortSignal;
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
  seed: 42,
  testBatchSize: 100,
  fullPrecisionFilename: './model.pt',
} as const;

export interface ResolvedSettings extends RunSettings {
  logInterval: number;
}

/** The numeric options with defaults, each checked (errors name the flag). */
export function resolveSettings(opts: TrainOptions): ResolvedSettings {
  const d = TRAIN_DEFAULTS;
  return {
    epochs: checkPositiveInteger(opts.epochs ?? d.epochs, '--epochs'),
    lr: checkPositiveNumber(opts.lr ?? d.lr, '--lr'),
    batchSize: checkPositiveInteger(opts.batchSize ?? d.batchSize, '--batch-size'),
    logInterval: checkPositiveInteger(opts.logInterval ?? d.logInterval, '--log-interval'),
    regularizationScale: checkPositiveNumber(
      opts.regularizationScale ?? d.regularizationScale,
      '--regularization-scale',
      true,
    ),
    decaySteps: checkPositiveNumber(opts.decaySteps ?? d.decaySteps, '--decay-steps'),
    decayRate: checkPositiveNumber(opts.decayRate ?? d.decayRate, '--decay-rate'),
    hardTraining: opts.hardTraining ?? d.hardTraining,
    seed: checkSeed(opts.seed ?? d.seed),
    testBatchSize: checkPositiveInteger(opts.testBatchSize ?? d.testBatchSize, '--test-batch-size'),
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
