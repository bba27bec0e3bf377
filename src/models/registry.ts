// Model kinds by name: ShallowCapsNet and DeepCaps, and the kinds a user adds with registerModel.
// Everything that builds a model from its name and arguments goes through here: buildModel,
// copyModel (quantize's own network), loadModel, the packed file's reader and the command line.
// A kind's model states its layers in its description (src/models/description.ts); the search,
// the quantizer and the exports read that, and lower each layer by its module's kind, so a
// model made of layer kinds that the exporters know needs nothing else.
import type { CapsNet } from './capsnet.js';
import { DEEPCAPS_INPUT_SIZES, DeepCaps } from './deepcaps.js';
import { ShallowCapsNet, shallowPrimaryGrid } from './shallow-capsnet.js';

/** The tensor names and shapes of a state_dict, as the kinds' recognisers read them. */
export type StateDictShapes = ReadonlyMap<string, { shape: readonly number[] }>;

/** A model kind: its name, its arguments and how to build it. */
export interface ModelKind {
  /** the models' `kind`: the name files and the command line give it by */
  name: string;
  /** its integer arguments' names, in order (--model-args, a packed file's model_args); each
   *  argument is checked to be a positive integer before build is called */
  argNames: readonly string[];
  /** a new model from its arguments, its parameters initialised from `seed`; its `kind` is
   *  `name` and its `args` give these arguments back */
  build(args: readonly number[], seed: number): CapsNet;
  /** a lower bound on the parameters of the model `args` describe, computed without building
   *  it: the packed-file reader refuses arguments whose model could not fit in the file before
   *  it builds (and allocates) the model. Without it the reader builds the model. */
  leastParameterCount?(args: readonly number[]): number;
  /** its arguments read from one of its own state_dicts, or null when `sd` is not one (for the
   *  command line's hint when a weights file and --model disagree) */
  argsOfStateDict?(sd: StateDictShapes): number[] | null;
}

const SHAPE_ARGS = ['input_wh', 'input_ch', 'num_classes', 'caps_dim'] as const;

const shallowCapsNet: ModelKind = {
  name: 'ShallowCapsNet',
  argNames: SHAPE_ARGS,
  build: ([wh, ch, classes, dim], seed) => new ShallowCapsNet(wh, ch, classes, dim, seed),
  // conv 256 x ch x 9 x 9, primary 256 x 256 x 9 x 9, and the class capsules' weights
  // [32 grid^2, 8, classes * dim]
  leastParameterCount: ([wh, ch, classes, dim]) => {
    const grid = Math.max(0, shallowPrimaryGrid(wh));
    return 256 * ch * 81 + 256 * 256 * 81 + 32 * grid ** 2 * 8 * classes * dim;
  },
  argsOfStateDict: (sd) => {
    const conv = sd.get('conv.conv.weight')?.shape;
    const caps = sd.get('digit.weight')?.shape;
    const capsBias = sd.get('digit.bias')?.shape;
    if (conv?.length !== 4 || caps?.length !== 3 || capsBias?.length !== 2) return null;
    // the class capsules read 32 capsule types on a g x g grid, g = floor((wh - 17) / 2) + 1:
    // wh = 2g + 16 (28 for 1152 capsules, 64 for 18432; 2g + 15 gives the same grid)
    const g = Math.round(Math.sqrt(caps[0] / 32));
    return 32 * g * g === caps[0] ? [2 * g + 16, conv[1], capsBias[0], capsBias[1]] : null;
  },
};

const deepCaps: ModelKind = {
  name: 'DeepCaps',
  argNames: SHAPE_ARGS,
  build: ([wh, ch, classes, dim], seed) => new DeepCaps(wh, ch, classes, dim, seed),
  // conv1 128 x ch x 3 x 3, the four residual blocks of 3 x 3 convolutions, and the class
  // capsules' weights [capsules, 8, classes * dim]
  leastParameterCount: ([wh, ch, classes, dim]) => {
    const blocks = 9 * (4 * 128 * 128 + 256 * 128 + 10 * 256 * 256);
    return 128 * ch * 9 + blocks + (wh === 64 ? 2560 : 640) * 8 * classes * dim;
  },
  argsOfStateDict: (sd) => {
    const conv = sd.get('conv1.conv.weight')?.shape;
    const caps = sd.get('capsLayer.weight')?.shape;
    const capsBias = sd.get('capsLayer.bias')?.shape;
    if (conv?.length !== 4 || caps?.length !== 3 || capsBias?.length !== 2) return null;
    const wh = caps[0] === 640 ? DEEPCAPS_INPUT_SIZES[0] : caps[0] === 2560 ? DEEPCAPS_INPUT_SIZES[1] : null;
    return wh === null ? null : [wh, conv[1], capsBias[0], capsBias[1]];
  },
};

const kinds = new Map<string, ModelKind>([shallowCapsNet, deepCaps].map((k) => [k.name, k]));

/** Adds a model kind: buildModel(kind.name, args), loadModel, quantize, the search, the packed
 *  file (written and read back) and the exports then take its models. Its layers' module kinds
 *  must have ONNX and C lowerings to export it (docs/library.md). Errors name the field. */
export function registerModel(kind: ModelKind): void {
  const bad = (what: string) => new Error(`registerModel: ${what}`);
  if (typeof kind?.name !== 'string' || !/^[A-Za-z][A-Za-z0-9_]*$/.test(kind.name))
    throw bad(`kind.name ${JSON.stringify(kind?.name)}: expected a name of letters, digits and _ (a letter first)`);
  if (kinds.has(kind.name)) throw bad(`a model kind named '${kind.name}' is already registered`);
  if (!Array.isArray(kind.argNames) || kind.argNames.some((a) => typeof a !== 'string' || a === ''))
    throw bad(`${kind.name}: kind.argNames must be a list of argument names`);
  if (typeof kind.build !== 'function') throw bad(`${kind.name}: kind.build must be a function (args, seed) => model`);
  for (const key of ['leastParameterCount', 'argsOfStateDict'] as const)
    if (kind[key] !== undefined && typeof kind[key] !== 'function')
      throw bad(`${kind.name}: kind.${key} must be a function when given`);
  kinds.set(kind.name, { ...kind, argNames: [...kind.argNames] });
}

/** The kind named `name`, or undefined. */
export function modelKind(name: string): ModelKind | undefined {
  return kinds.get(name);
}

/** The names of every model kind, the built-in ones first. */
export function modelKindNames(): string[] {
  return [...kinds.keys()];
}
