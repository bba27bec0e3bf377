// Quantization-aware fine-tuning (issue 19): a trained model trained further through the
// quantized forward at one bit configuration, then quantized again from its fine-tuned float
// weights. finetune(model, bits, data, options) -> QuantizedModel.
//   - Each optimizer step is training's (src/train/: the margin + reconstruction loss, Adam, the
//     learning-rate schedule, hard margins, the data order and augmentation, progress,
//     checkpoints, resume, and the stop at a non-finite value), run as a TrainingVariant whose
//     forward is the quantized one and whose backward is the clipped straight-through estimator
//     (straight-through.ts). The optimizer updates the float weights.
//   - After each epoch the test pass measures the quantized model (quantize() of the weights as
//     they are then). The result is the last epoch's weights quantized: no epoch is chosen by its
//     test accuracy.
//   - The caller's model is never written: the run trains a copy.
//   - Under the 'dynamic' number format the activation and routing fractional lengths come from
//     options.calibration (calibrate() of the starting float model, on training images): the one
//     calibration serves every step, every test pass and the final quantize, so the packed file
//     records the ranges the model was fine-tuned at. Weights take their exponents from their
//     values at each step by options.weightRange's rule ('max' or 'mse'), as quantize() does,
//     and the clipped straight-through masks follow the bounds those exponents give.
// Why this folder: fine-tuning needs training (src/train/) and quantization (src/quant/), which
// are one tier and may not import each other (test/import-cycles.test.ts), so it lives in the
// first tier above both, src/search/, where the search can also call it.
import { resolve } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { checkImagesFit } from '../models/evaluate.js';
import { copyModel } from '../models/factory.js';
import type { Distillation } from '../models/training-step.js';
import { crc32 } from '../io/crc32.js';
import { calibrationHash } from '../quant/calibration.js';
import { parseWeightRange } from '../quant/dynamic.js';
import { type BitConfig, bitsText, checkBitConfig } from '../quant/config.js';
import { checkQuantizeOptions, QuantizedModel, type QuantizeOptions } from '../quant/quantized-model.js';
import { checkResumable, type LoadedCheckpoint, readTrainingCheckpoint, runIdentity } from '../train/checkpoint.js';
import { checkFraction, checkPositiveNumber, type OptionNames, TRAIN_OPTION_NAMES } from '../train/checks.js';
import {
  type ModuleSpec,
  type ResolvedSettings,
  resolveModules,
  resolveSettings,
  type StepOptionName,
  type TrainOptions,
} from '../train/options.js';
import type { TrainSummary } from '../train/summary.js';
import { trainModel } from '../train/trainer.js';
import type { TrainingVariant, VariantState } from '../train/variant.js';
import { StraightThroughSteps } from './straight-through.js';

/** The images fine-tuning trains on, and those its test pass after each epoch measures. */
export interface FinetuneData {
  train: Dataset;
  test: Dataset;
}

/** Training's options that fine-tuning takes (the same meanings and defaults: TrainOptions). */
type TrainingOptions = Pick<
  TrainOptions,
  | StepOptionName
  | 'checkpointEvery'
  | 'threads'
  | 'augment'
  | 'progress'
  | 'progressStream'
  | 'log'
  | 'onStep'
  | 'onEpoch'
  | 'signal'
>;

export interface FinetuneOptions extends QuantizeOptions, TrainingOptions {
  /** fine-tuning epochs, an integer >= 0 (0: the model quantized as it is) */
  epochs: number;
  /** distillation (0, the default: none): each step's loss adds distillScale x the squared
   *  distance of the class capsules from those of the starting float model on the same images
   *  (mean over the batch of the sum over classes and dimensions; src/models/training-step.ts).
   *  The float model is the teacher the quantized one learns to imitate, as quantization-aware
   *  training often does; each step runs its forward once more. */
  distillScale?: number;
  /** the share of each batch the teacher runs on, in (0, 1] (default 1: the whole batch): the
   *  distillation term is the mean over the batch's first ceil(distillFraction x batch)
   *  images (batches are shuffled), at that share of the teacher's cost: a ShallowCapsNet step
   *  costs 1.37x a float training step at 1, 1.25-1.30x at 0.5 and 1.18-1.19x at 0.25
   *  (docs/benchmarks.md). */
  distillFraction?: number;
  /** the decoder of the reconstruction loss, built with `seed` when given by name (default
   *  FCDecoder [capsDim, H * W * C]); it trains along */
  decoder?: CapsDecoder | ModuleSpec;
  /** where the resumable checkpoint goes after each epoch and every checkpointEvery steps
   *  (training's checkpoint, recording the bits, method and arithmetic); null or absent: none */
  checkpointFilename?: string | null;
  /** continue from a checkpoint written by an earlier fine-tuning of the same model, bits and
   *  settings: its path, or one read with readTrainingCheckpoint */
  resume?: string | LoadedCheckpoint;
}

export interface FinetuneResult {
  /** the fine-tuned model quantized (its float weights as the last epoch left them) */
  quantized: QuantizedModel;
  /** training's record of the run: per epoch the training losses and the quantized test pass;
   *  null for 0 epochs */
  summary: TrainSummary | null;
}

/** The model fine-tuned through the quantized forward at `bits`, then quantized (see the top). */
export async function finetune(
  model: CapsNet,
  bits: BitConfig,
  data: FinetuneData,
  options: FinetuneOptions,
): Promise<QuantizedModel> {
  const { quantized, summary } = await finetuneRun(model, bits, data, options);
  if (summary?.interrupted)
    throw new Error(
      `finetune: interrupted by options.signal` +
        (summary.checkpointFile ? `; continue with options.resume = '${summary.checkpointFile}'` : ''),
    );
  return quantized;
}

/** finetune, with training's record of the run (the command line reports it). An interrupted
 *  run (options.signal) returns with summary.interrupted, its model quantized as it stopped. */
export async function finetuneRun(
  model: CapsNet,
  bits: BitConfig,
  data: FinetuneData,
  options: FinetuneOptions,
): Promise<FinetuneResult> {
  const o = checkFinetuneOptions(model, bits, data, options);
  const rounding = {
    method: o.method,
    compat: o.compat,
    seed: o.seed,
    calibration: options.calibration ?? null,
    weightRange: o.weightRange,
  };
  if (o.epochs === 0) return { quantized: new QuantizedModel(model, bits, rounding), summary: null };
  const { decoder } = resolveModules(
    { model, decoder: options.decoder ?? defaultDecoder(model), train: data.train, test: data.test },
    o.settings.seed,
  );
  const identity = finetuneIdentity(model, bits, rounding, o.distill);
  // a checkpoint of another run is refused before the model is copied
  const resume =
    typeof options.resume === 'string'
      ? readTrainingCheckpoint(resolve(options.resume), FINETUNE_OPTION_NAMES.resume)
      : options.resume;
  if (resume) checkResumable(resume, runIdentity(model, decoder, data, o.settings, identity), FINETUNE_OPTION_NAMES);
  const net = copyModel(model);
  const steps = new StraightThroughSteps(net, bits, rounding);
  // the teacher: the starting float model, kept as it is (the run trains `net`)
  const distill = o.distill.scale > 0 ? { teacher: copyModel(model), ...o.distill } : undefined;
  const variant: TrainingVariant = {
    ...identity,
    step: (globalStep, run) => steps.run(globalStep, run),
    test: (_model, test, batchSize, onBatch) => steps.evaluate(test, batchSize, onBatch),
    testName: 'Quantized test',
    ...(distill ? { distill } : {}),
  };
  const summary = await trainModel({
    ...options,
    model: net,
    decoder,
    train: data.train,
    test: data.test,
    checkpointFilename: options.checkpointFilename ?? null,
    resume,
    variant,
  });
  return { quantized: new QuantizedModel(net, bits, rounding), summary };
}

/** FCDecoder [capsDim, H * W * C]: a reconstruction of every input value. */
function defaultDecoder(model: CapsNet): ModuleSpec {
  return { name: 'FCDecoder', args: [model.capsDim, model.inputWh * model.inputWh * model.inputCh] };
}

/** How finetune's errors name its options (training's checks, a resumed run's). */
export const FINETUNE_OPTION_NAMES: OptionNames = {
  ...TRAIN_OPTION_NAMES,
  resume: 'finetune: options.resume',
  settings: Object.fromEntries(
    Object.entries(TRAIN_OPTION_NAMES.settings).map(([k, v]) => [k, v.replace('TrainOptions.', 'options.')]),
  ) as OptionNames['settings'],
  variant: {
    bits: 'bits',
    method: 'options.method',
    compat: 'options.compat',
    startWeights: "the model's weights",
    calibration: 'options.calibration',
    weightRange: 'options.weightRange',
    distillScale: 'options.distillScale',
    distillFraction: 'options.distillFraction',
  },
};

/** What a fine-tuning checkpoint records of its run beside training's settings, and a resumed
 *  run must repeat: the bits, method and arithmetic, and the weights it started from. */
export function finetuneIdentity(
  model: CapsNet,
  bits: BitConfig,
  rounding: Required<Pick<QuantizeOptions, 'method' | 'compat' | 'seed'>> &
    Pick<QuantizeOptions, 'calibration' | 'weightRange'>,
  distill: DistillSettings = { scale: 0, fraction: 1 },
): VariantState {
  return {
    kind: 'fine-tuning',
    settings: {
      // as text: a resumed run's error shows both
      bits: `${[...new Set(bits.map((b) => b.format))].join('/')} ${bitsText(bits)}`,
      method: rounding.method,
      compat: rounding.compat,
      startWeights: weightsFingerprint(model),
      // 'dynamic': the ranges it trains at (absent under 'fixed', so fixed checkpoints are as before)
      ...(rounding.calibration ? { calibration: `sha256:${calibrationHash(rounding.calibration)}` } : {}),
      // 'mse' weight ranges (absent under 'max', so earlier checkpoints are as before)
      ...(rounding.weightRange === 'mse' ? { weightRange: 'mse' } : {}),
      // distillation (absent without, likewise)
      ...(distill.scale > 0 ? { distillScale: distill.scale } : {}),
      // on part of each batch (absent for the whole batch, so earlier checkpoints are as before)
      ...(distill.scale > 0 && distill.fraction < 1 ? { distillFraction: distill.fraction } : {}),
    },
  };
}

/** Every option checked before any work; errors name the option. */
function checkFinetuneOptions(
  model: CapsNet,
  bits: BitConfig,
  data: FinetuneData,
  o: FinetuneOptions,
): Required<Pick<QuantizeOptions, 'method' | 'compat' | 'seed' | 'weightRange'>> & {
  epochs: number;
  distill: DistillSettings;
  settings: ResolvedSettings;
} {
  const rounding = checkQuantizeOptions('finetune', o);
  const weightRange = parseWeightRange(o.weightRange, 'finetune: options.weightRange');
  checkBitConfig(model.quantLayers, bits, 'finetune: bits');
  if (weightRange === 'mse' && !bits.some((b) => b.format === 'dynamic'))
    throw new Error(
      "finetune: options.weightRange 'mse' chooses 'dynamic' weight tensors' fractional lengths; every layer's bits are 'fixed'",
    );
  if (!(Number.isInteger(o.epochs) && o.epochs >= 0))
    throw new Error(`finetune: options.epochs ${o.epochs}: expected an integer >= 0 (0: quantize without training)`);
  const distill = {
    scale: checkPositiveNumber(o.distillScale ?? 0, 'finetune: options.distillScale', true),
    fraction: checkFraction(o.distillFraction ?? 1, 'finetune: options.distillFraction'),
  };
  for (const key of ['train', 'test'] as const) {
    const ds = data?.[key];
    if (!(ds?.count >= 1)) throw new Error(`finetune: data.${key} holds no images; expected at least one`);
    checkImagesFit(model, ds, `finetune: data.${key}'s images`);
  }
  // training's settings, checked as training checks them (also for 0 epochs)
  const settings = resolveSettings({ ...o, epochs: Math.max(1, o.epochs) } as unknown as TrainOptions);
  return { ...rounding, weightRange, epochs: o.epochs, distill, settings };
}

/** Distillation's settings: its scale (0: none) and the teacher's share of each batch. */
export type DistillSettings = Required<Omit<Distillation, 'teacher'>>;

/** A fingerprint of a model's parameters and buffers (a resumed fine-tuning must start from the
 *  same weights). */
function weightsFingerprint(model: CapsNet): string {
  let c = 0;
  const tensors = [...model.parameters().map((p) => p.param.data), ...model.buffers().map((b) => b.value.data)];
  for (const t of tensors) c = crc32(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), c);
  return `crc32:${(c >>> 0).toString(16).padStart(8, '0')}`;
}
