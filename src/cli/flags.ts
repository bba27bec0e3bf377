// Every flag of the command line, stated once: its kind, default and help, the reference's
// other spellings (main.py's --quantization_method), and which commands take it. The flags are
// the reference implementation's main.py's (SPEC 6) plus qcapsnets' own (--data-dir,
// --output-dir, --json, ...). Each command's options are typed from this table (Options<C>):
// `--model-args` is `modelArgs: number[]`, a flag without a default is `T | null`.
import { DEFAULT_SEED } from '../tensor/seed.js';

export type FlagKind = 'string' | 'int' | 'float' | 'bool' | 'ints';

export interface FlagSpec {
  kind: FlagKind;
  /** null: not given (the help says what happens then) */
  default: string | number | boolean | readonly number[] | null;
  help: string;
  /** other spellings: the reference's underscores, -h */
  aliases?: readonly string[];
}

export const FLAGS = {
  model: { kind: 'string', default: 'ShallowCapsNet', help: 'ShallowCapsNet or DeepCaps' },
  'model-args': { kind: 'ints', default: [28, 1, 10, 16], help: 'input_wh input_ch num_classes caps_dim' },
  decoder: { kind: 'string', default: 'FCDecoder', help: 'FCDecoder, ConvDecoder28 or ConvDecoder64' },
  'decoder-args': {
    kind: 'ints',
    default: [16, 784],
    help: 'FCDecoder: in_dim out_dim; ConvDecoder*: in_dim out_ch',
  },
  dataset: { kind: 'string', default: 'mnist', help: 'mnist, fashion-mnist, cifar10 or svhn' },
  format: {
    kind: 'string',
    default: 'vectors',
    help: 'what to write (vectors: golden vectors; onnx: the quantized forward as an ONNX graph; c: a C99 directory)',
  },
  'onnx-rounding': {
    kind: 'string',
    default: null,
    help: '--format onnx of a stochastic_rounding model: round_to_nearest exports its activations and routing with round-to-nearest (stochastic rounding has no deterministic graph)',
  },
  images: { kind: 'int', default: 10, help: 'how many test images (the first N)' },
  'no-training': { kind: 'bool', default: false, help: 'skip training: load --trained-weights-path' },
  'full-precision-filename': {
    kind: 'string',
    default: './model.pt',
    help: 'where training saves the best model',
  },
  'trained-weights-path': {
    kind: 'string',
    default: './',
    help: 'a trained state_dict (.pt) to start from with --no-training',
  },
  epochs: { kind: 'int', default: 10, help: 'training epochs' },
  lr: { kind: 'float', default: 0.001, help: 'initial learning rate (Adam)' },
  'batch-size': { kind: 'int', default: 100, help: 'training batch size' },
  'log-interval': {
    kind: 'int',
    default: 10,
    help: 'batches between log lines when the output is not a terminal',
  },
  'regularization-scale': { kind: 'float', default: 0.0005, help: 'weight of the reconstruction loss' },
  'decay-steps': { kind: 'int', default: 2000, help: 'learning-rate decay steps' },
  'distill-scale': {
    kind: 'float',
    default: 0,
    help: "fine-tuning: weight of distillation from the starting float model (each step's loss adds this x the mean over the batch of the squared distance between the class capsules and the float model's; 0: none)",
  },
  'distill-fraction': {
    kind: 'float',
    default: 1,
    help: "fine-tuning with --distill-scale: the share of each (shuffled) batch the float model runs on, in (0, 1]; the distillation term is the mean over those images (0.5 halves the teacher's cost, about a quarter of a float training step)",
  },
  'decay-rate': {
    kind: 'float',
    default: 0.96,
    help: 'learning-rate decay rate: lr * rate^(step / decay_steps)',
  },
  'hard-training': {
    kind: 'bool',
    default: false,
    help: 'hard margins (0.95/0.05/0.8) for the last floor(epochs/2) epochs',
  },
  'test-batch-size': { kind: 'int', default: 100, help: 'batch size of test passes' },
  'visible-gpus': { kind: 'string', default: '-1', help: '-1: CPU (this build has no GPU backend)' },
  threads: {
    kind: 'int',
    default: null,
    help: 'compute threads (default: every core; the benchmark measures 1 vs 2)',
  },
  seed: {
    kind: 'int',
    default: DEFAULT_SEED,
    help: 'seed of initialisation, shuffling, augmentation and stochastic rounding',
  },
  'accuracy-tolerance': {
    kind: 'float',
    default: 2,
    help: 'tolerated accuracy loss, percent of the full-precision accuracy',
  },
  'quantization-method': {
    kind: 'string',
    default: 'stochastic_rounding',
    help: 'truncation, round_to_nearest, stochastic_rounding or logarithmic',
    aliases: ['quantization_method'],
  },
  'memory-budget': { kind: 'float', default: 200, help: 'weight memory budget in MB (1 MB = 8,000,000 bits)' },
  'rounding-compat': {
    kind: 'string',
    default: 'none',
    help: "'dac2020': the reference code's rounding arithmetic and step-3A routing mapping",
  },
  'number-format': {
    kind: 'string',
    default: 'fixed',
    help: "the bits' number format: fixed (a sign bit and N fractional bits, saturating at [-1, 1); the DAC 2020 format) or dynamic (N bits in all, sign included, each tensor's fractional length from its range: Ristretto's dynamic fixed point)",
  },
  'weight-range': {
    kind: 'string',
    default: 'max',
    help: "--number-format dynamic: how each weight tensor's fractional length follows from its values: max (the largest that keeps its largest magnitude within the width) or mse (the one of the max rule's and the 8 above it whose round-to-nearest values have the least squared error: rare large weights saturate, the rest get finer steps)",
  },
  'finetune-epochs': {
    kind: 'int',
    default: 0,
    help: "after the search, fine-tune the model that meets the memory budget but misses the accuracy target (branch B's memory model) N epochs on the training images (--lr, --batch-size, --regularization-scale, --decay-steps, --decay-rate, --distill-scale, --train-limit), evaluate it again on the images the search decided on; it is saved as satisfied if it now meets the target (0: none)",
  },
  'calibration-images': {
    kind: 'int',
    default: 500,
    help: '--number-format dynamic: the activation and routing ranges come from the first N images of the set the search decides on (the held-out images with --selection-split; all of them when it has fewer)',
  },
  'data-dir': {
    kind: 'string',
    default: null,
    help: 'folder with the dataset files (default: built-in locations)',
  },
  download: {
    kind: 'bool',
    default: false,
    help: 'download a missing dataset into --data-dir (checksums verified)',
  },
  'output-dir': {
    kind: 'string',
    default: null,
    help: 'where quantized models and results go (default: next to the model)',
  },
  json: { kind: 'bool', default: false, help: 'print one JSON object with the results as the last line' },
  'test-limit': { kind: 'int', default: null, help: 'use only the first N test images (quick runs)' },
  'train-limit': { kind: 'int', default: null, help: 'use only the first N training images (quick runs)' },
  'selection-split': {
    kind: 'int',
    default: 0,
    help: 'hold out the last N training images: not trained on; the search decides on them and reports the test accuracy apart (0: off)',
  },
  'cache-mb': {
    kind: 'int',
    default: 1024,
    help: 'memory for intermediate results reused across search evaluations',
  },
  'no-early-stop': { kind: 'bool', default: false, help: 'always evaluate the whole test set during the search' },
  'approximate-margin': {
    kind: 'int',
    default: 0,
    help: 'dac2020 only: decide with the fast convolutions when a pass clears its threshold by this many images (0: always exact)',
  },
  resume: {
    kind: 'string',
    default: null,
    help: 'continue training from a checkpoint written by an earlier run',
  },
  'sensitivity-bits': {
    kind: 'string',
    default: '1..16',
    help: 'bit counts to try (fractional bits; widths under --number-format dynamic), a range (1..16) or a list (2,4,8)',
  },
  'eval-cache': {
    kind: 'string',
    default: null,
    help: 'a file of evaluations (JSON lines, appended as they end) that later runs on this model and these images reuse, and a killed run resumes from',
  },
  tolerances: {
    kind: 'string',
    default: null,
    help: 'accuracy tolerances, comma-separated (default: --accuracy-tolerance)',
  },
  'memory-budgets': {
    kind: 'string',
    default: null,
    help: 'weight memory budgets in MB, comma-separated (default: --memory-budget)',
  },
  'budget-divisors': {
    kind: 'string',
    default: null,
    help: 'budgets as divisors of the 32-bit weight memory, comma-separated (4: a quarter of it), instead of --memory-budgets',
  },
  methods: {
    kind: 'string',
    default: null,
    help: 'rounding methods, comma-separated (default: --quantization-method)',
  },
  shard: {
    kind: 'string',
    default: null,
    help: 'run share i of n of the grid (i/n, 1-based: cells k with k mod n = i-1); merge the shards after',
  },
  output: {
    kind: 'string',
    default: null,
    help: 'report: the HTML file (default: RUN.json with .html); merge: the merged file (default: <stem>_sweep.json beside the first)',
  },
  'checkpoint-every': {
    kind: 'int',
    default: 300,
    help: 'training batches between resumable checkpoints within an epoch (0: only at epoch ends; 300 batches of 100 are about 2.5 minutes of ShallowCapsNet on 2 cores, its checkpoint about 1 s to write)',
  },
  bits: {
    kind: 'string',
    default: null,
    help: 'a JSON file of bits per layer, by name: {"conv": {"weight": 8, "activation": 8}, "primary": {"weight": 6, "activation": 6, "routing": 6}, ...} (docs/cli.md, Fine-tuning)',
  },
  'bits-from': {
    kind: 'string',
    default: null,
    help: 'a packed <stem>_quantized_<kind>.safetensors of this model: fine-tune at its bits, method and arithmetic',
  },
  verbose: { kind: 'bool', default: false, help: 'on an error, print its stack trace too' },
  help: { kind: 'bool', default: false, help: 'show this help', aliases: ['h'] },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAGS;
export const FLAG_NAMES = Object.keys(FLAGS) as FlagName[];

// ---- which command takes which flag

/** every command */
const EVERY = ['verbose', 'help'] as const;
/** the commands that compute */
const COMPUTE = ['visible-gpus', 'threads'] as const;
/** the commands that evaluate on the test split */
const TEST_DATA = ['dataset', 'data-dir', 'download', 'test-limit', 'test-batch-size'] as const;
/** the commands that load a trained model (--no-training: the reference's way of saying so) */
const TRAINED = ['model', 'model-args', 'trained-weights-path', 'no-training', 'seed'] as const;
const ROUNDING = ['quantization-method', 'rounding-compat'] as const;
/** the commands that quantize at bit counts of their own choosing */
const FORMAT = ['number-format', 'weight-range', 'calibration-images'] as const;
const TRAINING = [
  'model',
  'model-args',
  'decoder',
  'decoder-args',
  'full-precision-filename',
  'epochs',
  'lr',
  'batch-size',
  'log-interval',
  'regularization-scale',
  'decay-steps',
  'decay-rate',
  'hard-training',
  'seed',
  'train-limit',
  'selection-split',
  'resume',
  'checkpoint-every',
] as const;
/** fine-tuning inside the search and the sweep (--finetune-epochs) */
const FINETUNE_AFTER = [
  'finetune-epochs',
  'lr',
  'batch-size',
  'regularization-scale',
  'decay-steps',
  'decay-rate',
  'distill-scale',
  'distill-fraction',
  'train-limit',
] as const;
const SEARCH = [
  ...FORMAT,
  ...FINETUNE_AFTER,
  'accuracy-tolerance',
  'memory-budget',
  'output-dir',
  'train-limit',
  'selection-split',
  'cache-mb',
  'no-early-stop',
  'approximate-margin',
  'eval-cache',
] as const;
const SWEEP = [
  ...FORMAT,
  ...FINETUNE_AFTER,
  'accuracy-tolerance',
  'memory-budget',
  'output-dir',
  'cache-mb',
  'no-early-stop',
  'eval-cache',
  'tolerances',
  'memory-budgets',
  'budget-divisors',
  'methods',
  'shard',
] as const;

export interface CommandSpec {
  flags: readonly FlagName[];
  usage: string;
  /** what the command does: its --help's first lines */
  summary: readonly string[];
  /** a flag's help where this command reads it its own way */
  help?: { readonly [F in FlagName]?: string };
  /** flags the command needs given (their defaults do not apply; the help shows none) */
  required?: readonly FlagName[];
}

/** The trained model, read by evaluate, search, sweep and sensitivity. */
const TRAINED_HELP = {
  'trained-weights-path': 'the trained model: a state_dict (.pt), written by torch.save or by qcapsnets',
  'no-training': "the reference's flag for this: the model is always loaded, never trained",
} as const;

/**
 * The commands, each with its flags and what it does (its --help). 'all' is the command line
 * without a command: training, then the search, as the reference's main.py. The order is the
 * order in which an error lists the commands that take a flag.
 */
export const COMMANDS = {
  train: {
    flags: [...EVERY, ...COMPUTE, ...TEST_DATA, ...TRAINING, 'json'],
    usage: 'qcapsnets train [flags]',
    summary: [
      'Training only: the model of --model / --model-args with the decoder of --decoder /',
      '--decoder-args on --dataset, the best epoch saved to --full-precision-filename and a resumable',
      'checkpoint beside it (--resume continues from one).',
    ],
  },
  evaluate: {
    flags: [...EVERY, ...COMPUTE, ...TEST_DATA, ...TRAINED, ...ROUNDING, 'json'],
    usage: 'qcapsnets evaluate [flags]',
    summary: [
      'The full-precision accuracy of --trained-weights-path on the test split; of a packed',
      '<stem>_quantized_<kind>.safetensors, its quantized accuracy (the file decides the model, bits,',
      'method, arithmetic and seed).',
    ],
    help: {
      'trained-weights-path': `${TRAINED_HELP['trained-weights-path']}; or a packed <stem>_quantized_<kind>.safetensors`,
      'no-training': TRAINED_HELP['no-training'],
    },
  },
  sweep: {
    flags: [...EVERY, ...COMPUTE, ...TEST_DATA, ...TRAINED, ...ROUNDING, ...SWEEP, 'json'],
    usage: 'qcapsnets sweep [flags]',
    summary: [
      'The search for every cell of --methods x --tolerances x --memory-budgets (or --budget-divisors)',
      'on --trained-weights-path, in one run that shares every evaluation; it writes <stem>_sweep.json',
      '(a row per cell: the chosen bits, accuracy, memory reductions) and no model files. --shard i/n',
      'runs a share of the grid; `qcapsnets merge` joins the shards.',
    ],
    help: { ...TRAINED_HELP, 'output-dir': 'where <stem>_sweep.json goes (default: next to the model)' },
  },
  search: {
    flags: [...EVERY, ...COMPUTE, ...TEST_DATA, ...TRAINED, ...ROUNDING, ...SEARCH, 'json'],
    usage: 'qcapsnets search [flags]',
    summary: [
      'The Q-CapsNets search on --trained-weights-path: the quantized models (.pt and packed',
      '.safetensors), <stem>_qcapsnets.json and its page .html, next to the model or in --output-dir.',
    ],
    help: TRAINED_HELP,
  },
  sensitivity: {
    flags: [
      ...EVERY,
      ...COMPUTE,
      ...TEST_DATA,
      ...TRAINED,
      ...ROUNDING,
      ...FORMAT,
      'sensitivity-bits',
      'cache-mb',
      'output-dir',
      'json',
    ],
    usage: 'qcapsnets sensitivity [flags]',
    summary: [
      "Accuracy against --sensitivity-bits for each layer's weights, activations and routing alone,",
      'the rest at full precision (<stem>_sensitivity.json and .html).',
    ],
    help: { ...TRAINED_HELP, 'output-dir': 'where <stem>_sensitivity.json and .html go (default: next to the model)' },
  },
  export: {
    flags: [
      ...EVERY,
      ...COMPUTE,
      'dataset',
      'data-dir',
      'download',
      'test-limit',
      'trained-weights-path',
      'format',
      'onnx-rounding',
      'images',
      'output-dir',
    ],
    usage: 'qcapsnets export [flags]',
    summary: [
      'A packed quantized model (--trained-weights-path <stem>_quantized_<kind>.safetensors) as',
      'golden vectors of its first --images test images, an ONNX graph or a C99 directory (--format).',
    ],
    help: {
      'trained-weights-path': 'the packed quantized model: a <stem>_quantized_<kind>.safetensors of the search',
      'output-dir': 'where the export goes (default: next to the packed file)',
      dataset: 'whose test images the golden vectors hold (--format vectors)',
    },
  },
  finetune: {
    flags: [
      ...EVERY,
      ...COMPUTE,
      ...TEST_DATA,
      'model',
      'model-args',
      'trained-weights-path',
      'decoder',
      'decoder-args',
      'bits',
      'bits-from',
      'number-format',
      'weight-range',
      'calibration-images',
      ...ROUNDING,
      'epochs',
      'lr',
      'batch-size',
      'log-interval',
      'regularization-scale',
      'decay-steps',
      'decay-rate',
      'distill-scale',
      'distill-fraction',
      'hard-training',
      'seed',
      'train-limit',
      'selection-split',
      'resume',
      'checkpoint-every',
      'output-dir',
      'json',
    ],
    usage:
      'qcapsnets finetune --trained-weights-path M.pt (--bits FILE | --bits-from X_quantized_K.safetensors) --epochs N [flags]',
    summary: [
      'Quantization-aware fine-tuning: trains --trained-weights-path for --epochs through the quantized',
      'forward at the bits of --bits or --bits-from (straight-through gradients, zero where a quantizer',
      "saturates), with training's loss, schedule, progress and checkpoints, then quantizes it again:",
      '<stem>_finetuned.pt and packed .safetensors, <stem>_finetuned.json and .html, next to the model or',
      'in --output-dir (checkpoint <stem>_finetuned.ckpt.safetensors; --resume continues from it).',
    ],
    help: {
      'trained-weights-path': TRAINED_HELP['trained-weights-path'],
      epochs: 'fine-tuning epochs, required (0: the model quantized as it is)',
      'selection-split':
        'hold out the last N training images: not trained on (as `train` held them out with the same --selection-split and --train-limit)',
      'output-dir': 'where the fine-tuned model, its report and its checkpoint go (default: next to the model)',
      resume: 'continue fine-tuning from the checkpoint an earlier run of the same flags wrote',
      'calibration-images':
        '--number-format dynamic with --bits: the activation and routing ranges come from the starting model on the first N training images it fine-tunes on (never the test images nor the --selection-split ones); --bits-from a dynamic file takes its calibration',
      'decoder-args':
        'FCDecoder: in_dim out_dim; ConvDecoder*: in_dim out_ch (the reconstruction loss; a fresh decoder, seeded by --seed)',
    },
    required: ['epochs'],
  },
  merge: {
    flags: [...EVERY, 'output'],
    usage: 'qcapsnets merge A.json B.json ... [--output FILE]',
    summary: ['The shards of a sweep (--shard i/n) in one file, with its page.'],
    help: { output: 'the merged file (default: <stem>_sweep.json beside the first)' },
  },
  report: {
    flags: [...EVERY, 'output'],
    usage: 'qcapsnets report RUN.json [--output FILE]',
    summary: ['The HTML page of a search, sweep, sensitivity or fine-tuning JSON.'],
    help: { output: 'the HTML file (default: RUN.json with .html)' },
  },
  all: {
    flags: [
      ...EVERY,
      ...COMPUTE,
      ...TEST_DATA,
      ...TRAINING,
      'trained-weights-path',
      'no-training',
      ...ROUNDING,
      ...SEARCH,
      'json',
    ],
    usage: 'qcapsnets [flags]',
    summary: [
      'Train (or, with --no-training, load --trained-weights-path), then run the Q-CapsNets search, as',
      "the reference's main.py does.",
    ],
  },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;
/** The commands given by name (`all` is the command line without one). */
export const SUBCOMMANDS = (Object.keys(COMMANDS) as CommandName[]).filter((c) => c !== 'all');

export type FlagsOf<C extends CommandName> = (typeof COMMANDS)[C]['flags'][number];

/** Whether `command` takes `flag`. */
export function takes(command: CommandName, flag: FlagName): boolean {
  return (COMMANDS[command].flags as readonly FlagName[]).includes(flag);
}

// ---- the typed options of a command

/** 'model-args' -> 'modelArgs' */
type Camel<S extends string> = S extends `${infer A}-${infer B}` ? `${A}${Capitalize<Camel<B>>}` : S;
type KindValue<K extends FlagKind> = K extends 'string'
  ? string
  : K extends 'int' | 'float'
    ? number
    : K extends 'bool'
      ? boolean
      : number[];
export type FlagValue<N extends FlagName> = (typeof FLAGS)[N]['default'] extends null
  ? KindValue<(typeof FLAGS)[N]['kind']> | null
  : KindValue<(typeof FLAGS)[N]['kind']>;

/** The values of some flags, by their camel-case names (--model-args: modelArgs). */
export type Flags<N extends FlagName> = { [K in N as Camel<K>]: FlagValue<K> };
/** The options of a command: the values of its flags. */
export type Options<C extends CommandName> = Flags<FlagsOf<C>>;

/** The option name of a flag: 'model-args' -> 'modelArgs'. */
export function optionName(flag: FlagName): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** A flag's default value (a fresh copy of a list). */
export function defaultValue(flag: FlagName): string | number | boolean | number[] | null {
  const d = FLAGS[flag].default;
  return Array.isArray(d) ? [...(d as readonly number[])] : (d as string | number | boolean | null);
}

/** Flags a run's settings record only away from their default, so that the records of runs
 *  that leave them out are those of every run before the flag. */
const RECORDED_WHEN_SET: ReadonlySet<FlagName> = new Set<FlagName>(['weight-range']);

/**
 * Every flag's value by its own name, in the table's order (help left out): what a run's JSON
 * records as its settings. A flag the command does not take is at its default; those of
 * RECORDED_WHEN_SET are left out at their default.
 */
export function settingsRecord(command: CommandName, o: object): Record<string, unknown> {
  const values = o as Record<string, unknown>;
  const settings: Record<string, unknown> = {};
  for (const f of FLAG_NAMES) {
    if (f === 'help') continue;
    const v = takes(command, f) ? values[optionName(f)] : defaultValue(f);
    if (RECORDED_WHEN_SET.has(f) && v === defaultValue(f)) continue;
    settings[f] = v;
  }
  return settings;
}
