// Models and decoders by name and integer arguments (the reference's model and decoder
// arguments), with errors that name the argument and say what is valid.
import type { CapsDecoder, CapsNet, DecoderName, ModelName } from './capsnet.js';
import { DeepCaps } from './deepcaps.js';
import { ConvDecoder28, ConvDecoder64, FCDecoder } from './decoders.js';
import { ShallowCapsNet, shallowPrimaryGrid } from './shallow-capsnet.js';
import { DEFAULT_SEED } from '../tensor/seed.js';

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

export function orList(names: readonly string[]): string {
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
}

/** What is wrong with a model's or decoder's arguments, naming the argument, or null:
 *  `args needs 4 values (input_wh input_ch num_classes caps_dim), got 3 (28 1 10)`,
 *  `args[1] (input_ch) must be a positive integer, got 0`. */
export function moduleArgsProblem(name: ModelName | DecoderName, args: readonly number[]): string | null {
  const names = isModelName(name) ? MODEL_ARGS[name] : DECODER_ARGS[name];
  if (args.length !== names.length)
    return `args needs ${names.length} values (${names.join(' ')}), got ${args.length}${args.length ? ` (${args.join(' ')})` : ''}`;
  for (let k = 0; k < args.length; k++) {
    const v = args[k];
    if (!Number.isInteger(v) || v < 1) return `args[${k}] (${names[k]}) must be a positive integer, got ${v}`;
  }
  return null;
}

function checkArgs(fn: string, name: ModelName | DecoderName, args: readonly number[]): void {
  const problem = moduleArgsProblem(name, args);
  if (problem) throw new Error(`${fn}('${name}', args): ${problem}`);
}

export interface BuildOptions {
  /** Seed of the parameter initialisation (default DEFAULT_SEED). */
  seed?: number;
}

export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

export function isDecoderName(name: string): name is DecoderName {
  return (DECODER_NAMES as readonly string[]).includes(name);
}

/** buildModel('ShallowCapsNet', [28, 1, 10, 16]) etc. (the reference's model and model_args). */
export function buildModel(name: string, args: readonly number[], opts: BuildOptions = {}): CapsNet {
  if (!isModelName(name)) throw new Error(`buildModel: unknown model '${name}': expected ${orList(MODEL_NAMES)}`);
  checkArgs('buildModel', name, args);
  const [wh, ch, classes, dim] = args;
  const seed = opts.seed ?? DEFAULT_SEED;
  switch (name) {
    case 'ShallowCapsNet':
      return new ShallowCapsNet(wh, ch, classes, dim, seed);
    case 'DeepCaps':
      return new DeepCaps(wh, ch, classes, dim, seed);
  }
}

/** A model of its own with `model`'s architecture, parameters and buffers as they are now (a
 *  QuantizedModel's network; the search's, so that it never writes the caller's model). */
export function copyModel(model: CapsNet): CapsNet {
  const copy = buildModel(model.kind, model.args);
  copy.loadStateDict(model.stateDict(), `${model.kind} state`);
  return copy;
}

/** buildDecoder('FCDecoder', [16, 784]) etc. (the reference's decoder and decoder_args). */
export function buildDecoder(name: string, args: readonly number[], opts: BuildOptions = {}): CapsDecoder {
  if (!isDecoderName(name))
    throw new Error(`buildDecoder: unknown decoder '${name}': expected ${orList(DECODER_NAMES)}`);
  checkArgs('buildDecoder', name, args);
  const [a, b] = args;
  const seed = opts.seed ?? DEFAULT_SEED;
  switch (name) {
    case 'FCDecoder':
      return new FCDecoder(a, b, seed);
    case 'ConvDecoder28':
      return new ConvDecoder28(a, b, seed);
    case 'ConvDecoder64':
      return new ConvDecoder64(a, b, seed);
  }
}

/** A lower bound on the parameters of `name` built from `args`, computed without building it:
 *  its convolutions' weights (ShallowCapsNet: conv 256 x ch x 9 x 9 and primary 256 x 256 x 9 x 9;
 *  DeepCaps: conv1 128 x ch x 3 x 3 and its four residual blocks of 3 x 3 convolutions) and its
 *  class capsules' weights, [capsules, 8, classes * dim]. */
export function leastParameterCount(name: ModelName, args: readonly number[]): number {
  const [wh, ch, classes, dim] = args;
  if (name === 'ShallowCapsNet') {
    const grid = Math.max(0, shallowPrimaryGrid(wh)); // primary capsules on a grid x grid map
    return 256 * ch * 81 + 256 * 256 * 81 + 32 * grid ** 2 * 8 * classes * dim;
  }
  const blocks = 9 * (4 * 128 * 128 + 256 * 128 + 10 * 256 * 256);
  return 128 * ch * 9 + blocks + (wh === 64 ? 2560 : 640) * 8 * classes * dim;
}

/** Which model a state_dict belongs to, and its --model-args, read from its tensors' names and
 *  shapes (for a helpful error when a file of the other model, or other args, is given);
 *  null when it is neither model's. */
export function modelOfStateDict(
  sd: ReadonlyMap<string, { shape: readonly number[] }>,
): { name: ModelName; args: number[] } | null {
  const shape = (k: string) => sd.get(k)?.shape;
  const conv = shape('conv.conv.weight');
  const digit = shape('digit.weight');
  const digitBias = shape('digit.bias');
  if (conv?.length === 4 && digit?.length === 3 && digitBias?.length === 2) {
    // digit reads 32 capsule types on a g x g grid, g = floor((wh - 17) / 2) + 1: wh = 2g + 16
    // (28 for 1152 capsules, 64 for 18432; 2g + 15 gives the same grid)
    const g = Math.round(Math.sqrt(digit[0] / 32));
    if (32 * g * g === digit[0])
      return { name: 'ShallowCapsNet', args: [2 * g + 16, conv[1], digitBias[0], digitBias[1]] };
  }
  const conv1 = shape('conv1.conv.weight');
  const caps = shape('capsLayer.weight');
  const capsBias = shape('capsLayer.bias');
  if (conv1?.length === 4 && caps?.length === 3 && capsBias?.length === 2) {
    const wh = caps[0] === 640 ? 28 : caps[0] === 2560 ? 64 : null;
    if (wh !== null) return { name: 'DeepCaps', args: [wh, conv1[1], capsBias[0], capsBias[1]] };
  }
  return null;
}
