// Checks made before any training or evaluation starts, with errors that name the option or
// file to fix: option values, model vs dataset sizes, decoder vs model and image sizes,
// output folders. The errors name trainModel's options (TrainOptions.lr, model.args) by
// default; the CLI runs the same checks first with its flags' names (OptionNames).
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { reconstructionTarget } from '../models/training-step.js';
import { Tensor } from '../tensor/tensor.js';
import type { RunSettings } from './run-settings.js';

/** How the checks' errors name the options they check. */
export interface OptionNames {
  /** the model (by kind) and its integer arguments */
  model: string;
  modelArgs: string;
  /** the decoder (by kind) and its integer arguments */
  decoder: string;
  decoderArgs: string;
  /** the training data */
  dataset: string;
  /** the checkpoint a run resumes from */
  resume: string;
  /** the options that decide a run's numbers */
  settings: Record<keyof RunSettings, string>;
  /** a variant's settings (TrainingVariant.settings), by key; absent: the keys themselves */
  variant?: Readonly<Record<string, string>>;
}

/** trainModel's names: TrainOptions.lr, model.args, ... */
export const TRAIN_OPTION_NAMES: OptionNames = {
  model: 'model',
  modelArgs: 'model.args',
  decoder: 'decoder',
  decoderArgs: 'decoder.args',
  dataset: 'dataset',
  resume: 'TrainOptions.resume',
  settings: {
    epochs: 'TrainOptions.epochs',
    lr: 'TrainOptions.lr',
    batchSize: 'TrainOptions.batchSize',
    regularizationScale: 'TrainOptions.regularizationScale',
    decaySteps: 'TrainOptions.decaySteps',
    decayRate: 'TrainOptions.decayRate',
    hardTraining: 'TrainOptions.hardTraining',
    seed: 'TrainOptions.seed',
    testBatchSize: 'TrainOptions.testBatchSize',
  },
};

/** A positive integer option, e.g. TrainOptions.epochs. */
export function checkPositiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw new Error(`${name} must be a positive integer, got ${String(value)}`);
  return value;
}

/** An integer >= 0, e.g. TrainOptions.checkpointEvery. */
export function checkCount(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    throw new Error(`${name} must be an integer >= 0, got ${String(value)}`);
  return value;
}

/** A finite number > 0 (or >= 0 with allowZero), e.g. TrainOptions.lr. */
export function checkPositiveNumber(value: unknown, name: string, allowZero = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0))
    throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(value)}`);
  return value;
}

/** A share in (0, 1] (distillation's share of each batch, options.distillFraction). */
export function checkFraction(value: unknown, name: string): number {
  if (typeof value !== 'number' || !(value > 0 && value <= 1))
    throw new Error(`${name} must be a number in (0, 1], got ${String(value)}`);
  return value;
}

/** An integer seed (any sign, up to 2^53). */
export function checkSeed(value: unknown, name = TRAIN_OPTION_NAMES.settings.seed): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value))
    throw new Error(`${name} must be an integer, got ${String(value)}`);
  return value;
}

/** What the fit checks need of a dataset: a loaded Dataset, or (before loading) a dataset's
 *  name and DATASET_INFO shape, without labels. */
export interface DatasetShape {
  name: string;
  split?: string;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  /** when given: the images there are (0 is an error) */
  count?: number;
  /** when given: each must be a class of the model */
  labels?: Int32Array;
  source?: string;
}

function describeDataset(ds: DatasetShape): string {
  return ds.split ? `${ds.name}/${ds.split}` : ds.name;
}

function describeImages(ds: DatasetShape): string {
  return `${ds.height}x${ds.width}x${ds.channels}`;
}

/** The model's input size and class count must match the dataset's images, classes and labels. */
/** What the fit check needs of a model: a built one, or its name and arguments before it is built. */
export type ModelShape = Pick<CapsNet, 'kind' | 'inputWh' | 'inputCh' | 'numClasses' | 'capsDim' | 'args'>;

export function checkModelFitsDataset(
  model: ModelShape,
  ds: DatasetShape,
  names: OptionNames = TRAIN_OPTION_NAMES,
): void {
  const where = describeDataset(ds);
  if (ds.count === 0) throw new Error(`dataset ${where} is empty (${ds.source ?? 'no images'})`);
  if (ds.height !== model.inputWh || ds.width !== model.inputWh || ds.channels !== model.inputCh) {
    throw new Error(
      `${model.kind} takes ${model.inputWh}x${model.inputWh}x${model.inputCh} images (${names.modelArgs} ${model.args.join(' ')}: ` +
        `input_wh ${model.inputWh}, input_ch ${model.inputCh}) but ${where} has ${describeImages(ds)} images; ` +
        `use ${names.modelArgs} ${ds.height} ${ds.channels} ${model.numClasses} ${model.capsDim}` +
        (model.kind === 'DeepCaps' && ![28, 64].includes(ds.height) ? ' (DeepCaps takes 28 or 64)' : ''),
    );
  }
  let minLabel = 0;
  let maxLabel = -1;
  for (const l of ds.labels ?? []) {
    if (l < minLabel) minLabel = l;
    if (l > maxLabel) maxLabel = l;
  }
  if (model.numClasses !== ds.numClasses || minLabel < 0 || maxLabel >= model.numClasses) {
    const labels = ds.labels ? ` (labels in [${minLabel}, ${maxLabel}])` : '';
    throw new Error(
      `${model.kind} has ${model.numClasses} classes (${names.modelArgs} ${model.args.join(' ')}: num_classes ${model.numClasses}) but ${where} ` +
        `has ${ds.numClasses} classes${labels}; use num_classes ${Math.max(maxLabel + 1, ds.numClasses)}`,
    );
  }
}

/** Shape of one reconstruction (without the batch axis) the decoder produces. */
export function decoderOutputShape(decoder: CapsDecoder): number[] {
  const d = decoder as CapsDecoder & { outDim?: number; outChannels?: number; side?: number };
  if (decoder.kind === 'FCDecoder' && d.outDim !== undefined) return [d.outDim];
  if (d.side !== undefined && d.outChannels !== undefined) {
    // linear -> side x side, then the transposed convolutions double it twice (28: 7 -> 28)
    // or three times (64: 8 -> 64)
    const side = decoder.kind === 'ConvDecoder28' ? 28 : 64;
    return [side, side, d.outChannels];
  }
  throw new Error(`${decoder.kind}: cannot tell the size of its reconstruction`);
}

/** The decoder must read the model's capsules and reconstruct the dataset's images. */
export function checkDecoderFits(
  decoder: CapsDecoder,
  model: CapsNet,
  ds: DatasetShape,
  names: OptionNames = TRAIN_OPTION_NAMES,
): void {
  if (decoder.inDim !== model.capsDim) {
    throw new Error(
      `${decoder.kind} reads capsules of dimension ${decoder.inDim} (${names.decoderArgs} ${decoder.args.join(' ')}) but ` +
        `${model.kind} gives ${model.capsDim} (${names.modelArgs} ${model.args.join(' ')}); the first ${names.decoderArgs} value ` +
        `must be the last ${names.modelArgs} value`,
    );
  }
  const out = decoderOutputShape(decoder);
  try {
    const image = Tensor.zeros([1, ds.height, ds.width, ds.channels]);
    reconstructionTarget(image, [1, ...out]);
  } catch {
    const hint =
      ds.height === 64
        ? `ConvDecoder64 ${model.capsDim} ${ds.channels}, or FCDecoder ${model.capsDim} ${ds.height * ds.width}`
        : ds.height === 28
          ? `ConvDecoder28 ${model.capsDim} ${ds.channels}, or FCDecoder ${model.capsDim} ${ds.height * ds.width * ds.channels}`
          : `FCDecoder ${model.capsDim} ${ds.height * ds.width * ds.channels}`;
    throw new Error(
      `${decoder.kind} (${names.decoderArgs} ${decoder.args.join(' ')}) reconstructs ${out.join('x')} values per image but ` +
        `${ds.name} images are ${describeImages(ds)}; use ${names.decoder} ${hint}`,
    );
  }
}

/** The folder of an output file must exist and be a folder; the file itself, if present, a file. */
export function checkOutputPath(file: string, name: string): string {
  if (typeof file !== 'string' || file.length === 0) throw new Error(`${name} must be a file name, got '${file}'`);
  const path = resolve(file);
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new Error(`${name} ${file}: folder ${dir} does not exist (create it first)`);
  if (existsSync(path) && statSync(path).isDirectory())
    throw new Error(`${name} ${file} is a folder; expected a file name such as ${file.replace(/\/+$/, '')}/model.pt`);
  return path;
}
