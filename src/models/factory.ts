// Models and decoders by name and command-line arguments (--model / --model-args,
// --decoder / --decoder-args), with errors that say what is valid.
import type { CapsDecoder, CapsNet, DecoderName, ModelName } from './capsnet.js';
import { DeepCaps } from './deepcaps.js';
import { ConvDecoder28, ConvDecoder64, FCDecoder } from './decoders.js';
import { ShallowCapsNet } from './shallow-capsnet.js';

export const MODEL_NAMES: readonly ModelName[] = ['ShallowCapsNet', 'DeepCaps'];
export const DECODER_NAMES: readonly DecoderName[] = ['FCDecoder', 'ConvDecoder28', 'ConvDecoder64'];

const MODEL_ARGS: Record<ModelName, string[]> = {
  ShallowCapsNet: ['input_wh', 'input_ch', 'num_classes', 'caps_dim'],
  DeepCaps: ['input_wh', 'input_ch', 'num_classes', 'caps_dim'],
};
const DECODER_ARGS: Record<DecoderName, string[]> = {
  FCDecoder: ['in_dim', 'out_dim'],
  ConvDecoder28: ['in_dim', 'out_channels'],
  ConvDecoder64: ['in_dim', 'out_channels'],
};

function orList(names: readonly string[]): string {
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
}

function checkArgs(name: string, flag: string, args: readonly number[], names: string[]): void {
  if (args.length !== names.length)
    throw new Error(
      `${name}: ${flag} needs ${names.length} values (${names.join(' ')}), got ${args.length}${args.length ? ` (${args.join(' ')})` : ''}`,
    );
  args.forEach((v, k) => {
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`${name}: ${flag} value ${k + 1} (${names[k]}) must be a positive integer, got ${v}`);
  });
}

export interface BuildOptions {
  /** Seed of the parameter initialisation (default 42). */
  seed?: number;
}

export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

export function isDecoderName(name: string): name is DecoderName {
  return (DECODER_NAMES as readonly string[]).includes(name);
}

/** buildModel('ShallowCapsNet', [28, 1, 10, 16]) etc. (the reference's --model, --model-args). */
export function buildModel(name: string, args: readonly number[], opts: BuildOptions = {}): CapsNet {
  if (!isModelName(name)) throw new Error(`unknown model '${name}': expected ${orList(MODEL_NAMES)}`);
  checkArgs(name, '--model-args', args, MODEL_ARGS[name]);
  const [wh, ch, classes, dim] = args;
  const seed = opts.seed ?? 42;
  switch (name) {
    case 'ShallowCapsNet':
      return new ShallowCapsNet(wh, ch, classes, dim, seed);
    case 'DeepCaps':
      return new DeepCaps(wh, ch, classes, dim, seed);
  }
}

/** buildDecoder('FCDecoder', [16, 784]) etc. (the reference's --decoder, --decoder-args). */
export function buildDecoder(name: string, args: readonly number[], opts: BuildOptions = {}): CapsDecoder {
  if (!isDecoderName(name)) throw new Error(`unknown decoder '${name}': expected ${orList(DECODER_NAMES)}`);
  checkArgs(name, '--decoder-args', args, DECODER_ARGS[name]);
  const [a, b] = args;
  const seed = opts.seed ?? 42;
  switch (name) {
    case 'FCDecoder':
      return new FCDecoder(a, b, seed);
    case 'ConvDecoder28':
      return new ConvDecoder28(a, b, seed);
    case 'ConvDecoder64':
      return new ConvDecoder64(a, b, seed);
  }
}
