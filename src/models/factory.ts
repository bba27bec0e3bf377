// Models and decoders by name and integer arguments (the reference's model and decoder
// arguments), with errors that name the argument and say what is valid. Models are built
// through the registry of model kinds (registry.ts), the built-in ones and the user's.
import type { CapsDecoder, CapsNet, DecoderName, ModelName } from './capsnet.js';
import { ConvDecoder28, ConvDecoder64, FCDecoder } from './decoders.js';
import { modelKind, modelKindNames, type StateDictShapes } from './registry.js';
import { DEFAULT_SEED } from '../tensor/seed.js';

/** The built-in model kinds (modelKindNames() adds the registered ones). */
export const MODEL_NAMES: readonly ModelName[] = ['ShallowCapsNet', 'DeepCaps'];
export const DECODER_NAMES: readonly DecoderName[] = ['FCDecoder', 'ConvDecoder28', 'ConvDecoder64'];

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
export function moduleArgsProblem(name: string, args: readonly number[]): string | null {
  const names = isDecoderName(name) ? DECODER_ARGS[name] : modelKind(name)?.argNames;
  if (!names) return `'${name}' is no model kind or decoder`;
  if (args.length !== names.length)
    return `args needs ${names.length} values (${names.join(' ')}), got ${args.length}${args.length ? ` (${args.join(' ')})` : ''}`;
  for (let k = 0; k < args.length; k++) {
    const v = args[k];
    if (!Number.isInteger(v) || v < 1) return `args[${k}] (${names[k]}) must be a positive integer, got ${v}`;
  }
  return null;
}

function checkArgs(fn: string, name: string, args: readonly number[]): void {
  const problem = moduleArgsProblem(name, args);
  if (problem) throw new Error(`${fn}('${name}', args): ${problem}`);
}

export interface BuildOptions {
  /** Seed of the parameter initialisation (default DEFAULT_SEED). */
  seed?: number;
}

/** A model kind's name: built in or registered (registerModel). */
export function isModelName(name: string): boolean {
  return modelKind(name) !== undefined;
}

export function isDecoderName(name: string): name is DecoderName {
  return (DECODER_NAMES as readonly string[]).includes(name);
}

/** buildModel('ShallowCapsNet', [28, 1, 10, 16]) etc. (the reference's model and model_args),
 *  or a registered kind's model. */
export function buildModel(name: string, args: readonly number[], opts: BuildOptions = {}): CapsNet {
  const kind = modelKind(name);
  if (!kind) throw new Error(`buildModel: unknown model '${name}': expected ${orList(modelKindNames())}`);
  checkArgs('buildModel', name, args);
  const model = kind.build([...args], opts.seed ?? DEFAULT_SEED);
  // a registered kind's model must be rebuildable from what it says of itself (copyModel, files)
  if (model?.kind !== name || model.args.join(' ') !== args.join(' '))
    throw new Error(
      `buildModel: ${name}'s build([${args.join(', ')}]) gave a model of kind '${model?.kind}' whose args are [${model?.args?.join(', ')}]; expected kind '${name}' and args [${args.join(', ')}] (a model's args give back what it was built from)`,
    );
  return model;
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

/** A lower bound on the parameters of model kind `name` built from `args`, computed without
 *  building it (registry.ts); 0 where the kind gives none. */
export function leastParameterCount(name: string, args: readonly number[]): number {
  return modelKind(name)?.leastParameterCount?.(args) ?? 0;
}

/** Which model kind a state_dict belongs to, and its --model-args, read from its tensors' names
 *  and shapes (for a helpful error when a file of another model, or other args, is given);
 *  null when it is no kind's that can tell. */
export function modelOfStateDict(sd: StateDictShapes): { name: string; args: number[] } | null {
  for (const name of modelKindNames()) {
    const args = modelKind(name)?.argsOfStateDict?.(sd) ?? null;
    if (args) return { name, args };
  }
  return null;
}
