// Checks made before any training or evaluation starts, with errors that name the flag or
// file to fix: option values, model vs dataset sizes, decoder vs model and image sizes,
// output folders.
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import { reconstructionTarget } from '../models/training-step.js';
import { Tensor } from '../tensor/tensor.js';

/** A positive integer option, e.g. --epochs. */
export function checkPositiveInteger(value: unknown, flag: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw new Error(`${flag} must be a positive integer, got ${String(value)}`);
  return value;
}

/** A finite number > 0 (or >= 0 with allowZero), e.g. --lr. */
export function checkPositiveNumber(value: unknown, flag: string, allowZero = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0))
    throw new Error(`${flag} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(value)}`);
  return value;
}

/** An integer seed (any sign, up to 2^53). */
export function checkSeed(value: unknown, flag = '--seed'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value))
    throw new Error(`${flag} must be an integer, got ${String(value)}`);
  return value;
}

function describeImages(ds: Dataset): string {
  return `${ds.height}x${ds.width}x${ds.channels}`;
}

/** The model's input size and class count must match the dataset's images and labels. */
export function checkModelFitsDataset(model: CapsNet, ds: Dataset): void {
  if (ds.count === 0) throw new Error(`dataset ${ds.name}/${ds.split} is empty (${ds.source})`);
  if (ds.height !== model.inputWh || ds.width !== model.inputWh || ds.channels !== model.inputCh) {
    throw new Error(
      `${model.kind} takes ${model.inputWh}x${model.inputWh}x${model.inputCh} images (--model-args ${model.args.join(' ')}: ` +
        `input_wh ${model.inputWh}, input_ch ${model.inputCh}) but ${ds.name}/${ds.split} has ${describeImages(ds)} images; ` +
        `use --model-args ${ds.height} ${ds.channels} ${model.numClasses} ${model.capsDim}` +
        (model.kind === 'DeepCaps' && ![28, 64].includes(ds.height) ? ' (DeepCaps takes 28 or 64)' : ''),
    );
  }
  let maxLabel = -1;
  for (const l of ds.labels) if (l > maxLabel) maxLabel = l;
  let minLabel = 0;
  for (const l of ds.labels) if (l < minLabel) minLabel = l;
  if (minLabel < 0 || maxLabel >= model.numClasses) {
    throw new Error(
      `${model.kind} has ${model.numClasses} classes (--model-args value 3, num_classes) but ${ds.name}/${ds.split} ` +
        `has labels in [${minLabel}, ${maxLabel}]; use num_classes ${Math.max(maxLabel + 1, ds.numClasses)}`,
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
export function checkDecoderFits(decoder: CapsDecoder, model: CapsNet, ds: Dataset): void {
  if (decoder.inDim !== model.capsDim) {
    throw new Error(
      `${decoder.kind} reads capsules of dimension ${decoder.inDim} (--decoder-args ${decoder.args.join(' ')}) but ` +
        `${model.kind} gives ${model.capsDim} (--model-args ${model.args.join(' ')}); the first --decoder-args value ` +
        `must be the last --model-args value`,
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
      `${decoder.kind} (--decoder-args ${decoder.args.join(' ')}) reconstructs ${out.join('x')} values per image but ` +
        `${ds.name} images are ${describeImages(ds)}; use --decoder ${hint}`,
    );
  }
}

/** The folder of an output file must exist and be a folder; the file itself, if present, a file. */
export function checkOutputPath(file: string, flag: string): string {
  if (typeof file !== 'string' || file.length === 0) throw new Error(`${flag} must be a file name, got '${file}'`);
  const path = resolve(file);
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new Error(`${flag} ${file}: folder ${dir} does not exist (create it first)`);
  if (existsSync(path) && statSync(path).isDirectory())
    throw new Error(`${flag} ${file} is a folder; expected a file name such as ${file.replace(/\/+$/, '')}/model.pt`);
  return path;
}
