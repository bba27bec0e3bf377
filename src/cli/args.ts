// The command line: the flags and defaults of the reference implementation's main.py
// (SPEC 6) plus qcapsnets' own (--data-dir, --output-dir, --json, ...). Parsed by hand, and
// validated here, once, before any long work: a bad flag or value is one clear error that
// names the flag. The library below checks its own options again, naming those.
import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DATASET_INFO, isDatasetName } from '../data/load.js';
import { checkSelectionSplit } from '../data/selection-split.js';
import { DEEPCAPS_INPUT_SIZES } from '../models/deepcaps.js';
import type { DatasetName } from '../data/sources.js';
import type { CapsDecoder, CapsNet, DecoderName, ModelName } from '../models/capsnet.js';
import {
  buildDecoder,
  buildModel,
  DECODER_NAMES,
  isDecoderName,
  isModelName,
  MODEL_NAMES,
  moduleArgsProblem,
  orList,
} from '../models/factory.js';
import { fullPrecisionMemoryMB, minimumBudgetMB } from '../quant/memory.js';
import { parseQuantMethod, parseRoundingCompat } from '../quant/methods.js';
import type { Dataset } from '../data/dataset.js';
import {
  checkResumable,
  defaultCheckpointPath,
  type LoadedCheckpoint,
  readTrainingCheckpoint,
  type RunSettings,
} from '../train/checkpoint.js';
import {
  checkDecoderFits,
  checkModelFitsDataset,
  checkOutputPath,
  type DatasetShape,
  type OptionNames,
} from '../train/checks.js';
import { runIdentity } from '../train/trainer.js';

export interface FlagSpec {
  name: string;
  kind: 'string' | 'int' | 'float' | 'bool' | 'ints';
  default: string | number | boolean | number[] | null;
  help: string;
  aliases?: string[];
}

export const FLAGS: FlagSpec[] = [
  { name: 'model', kind: 'string', default: 'ShallowCapsNet', help: 'ShallowCapsNet or DeepCaps' },
  { name: 'model-args', kind: 'ints', default: [28, 1, 10, 16], help: 'input_wh input_ch num_classes caps_dim' },
  { name: 'decoder', kind: 'string', default: 'FCDecoder', help: 'FCDecoder, ConvDecoder28 or ConvDecoder64' },
  {
    name: 'decoder-args',
    kind: 'ints',
    default: [16, 784],
    help: 'FCDecoder: in_dim out_dim; ConvDecoder*: in_dim out_ch',
  },
  { name: 'dataset', kind: 'string', default: 'mnist', help: 'mnist, fashion-mnist, cifar10 or svhn' },
  {
    name: 'format',
    kind: 'string',
    default: 'vectors',
    help: 'export: what to write (vectors: golden vectors; onnx: the quantized forward as an ONNX graph; c: a C99 directory)',
  },
  {
    name: 'onnx-rounding',
    kind: 'string',
    default: null,
    help: 'export --format onnx of a stochastic_rounding model: round_to_nearest exports its activations and routing with round-to-nearest (stochastic rounding has no deterministic graph)',
  },
  { name: 'images', kind: 'int', default: 10, help: 'export: how many test images (the first N)' },
  { name: 'no-training', kind: 'bool', default: false, help: 'skip training: load --trained-weights-path' },
  {
    name: 'full-precision-filename',
    kind: 'string',
    default: './model.pt',
    help: 'where training saves the best model',
  },
  {
    name: 'trained-weights-path',
    kind: 'string',
    default: './',
    help: 'a trained state_dict (.pt) to start from with --no-training',
  },
  { name: 'epochs', kind: 'int', default: 10, help: 'training epochs' },
  { name: 'lr', kind: 'float', default: 0.001, help: 'initial learning rate (Adam)' },
  { name: 'batch-size', kind: 'int', default: 100, help: 'training batch size' },
  {
    name: 'log-interval',
    kind: 'int',
    default: 10,
    help: 'batches between log lines when the output is not a terminal',
  },
  { name: 'regularization-scale', kind: 'float', default: 0.0005, help: 'weight of the reconstruction loss' },
  { name: 'decay-steps', kind: 'int', default: 2000, help: 'learning-rate decay steps' },
  {
    name: 'decay-rate',
    kind: 'float',
    default: 0.96,
    help: 'learning-rate decay rate: lr * rate^(step / decay_steps)',
  },
  {
    name: 'hard-training',
    kind: 'bool',
    default: false,
    help: 'hard margins (0.95/0.05/0.8) for the last floor(epochs/2) epochs',
  },
  { name: 'test-batch-size', kind: 'int', default: 100, help: 'batch size of test passes' },
  { name: 'visible-gpus', kind: 'string', default: '-1', help: '-1: CPU (this build has no GPU backend)' },
  {
    name: 'threads',
    kind: 'int',
    default: null,
    help: 'compute threads (default: every core; the benchmark measures 1 vs 2)',
  },
  {
    name: 'seed',
    kind: 'int',
    default: 42,
    help: 'seed of initialisation, shuffling, augmentation and stochastic rounding',
  },
  {
    name: 'accuracy-tolerance',
    kind: 'float',
    default: 2,
    help: 'tolerated accuracy loss, percent of the full-precision accuracy',
  },
  {
    name: 'quantization-method',
    kind: 'string',
    default: 'stochastic_rounding',
    help: 'truncation, round_to_nearest, stochastic_rounding or logarithmic',
    aliases: ['quantization_method'],
  },
  { name: 'memory-budget', kind: 'float', default: 200, help: 'weight memory budget in MB (1 MB = 8,000,000 bits)' },
  {
    name: 'rounding-compat',
    kind: 'string',
    default: 'none',
    help: "'dac2020': the reference code's rounding arithmetic and step-3A routing mapping",
  },
  {
    name: 'data-dir',
    kind: 'string',
    default: null,
    help: 'folder with the dataset files (default: built-in locations)',
  },
  {
    name: 'download',
    kind: 'bool',
    default: false,
    help: 'download a missing dataset into --data-dir (checksums verified)',
  },
  {
    name: 'output-dir',
    kind: 'string',
    default: null,
    help: 'where quantized models and results go (default: next to the model)',
  },
  { name: 'json', kind: 'bool', default: false, help: 'print one JSON object with the results as the last line' },
  { name: 'test-limit', kind: 'int', default: null, help: 'use only the first N test images (quick runs)' },
  { name: 'train-limit', kind: 'int', default: null, help: 'use only the first N training images (quick runs)' },
  {
    name: 'selection-split',
    kind: 'int',
    default: 0,
    help: 'hold out the last N training images: not trained on; the search decides on them and reports the test accuracy apart (0: off)',
  },
  {
    name: 'cache-mb',
    kind: 'int',
    default: 1024,
    help: 'memory for intermediate results reused across search evaluations',
  },
  { name: 'no-early-stop', kind: 'bool', default: false, help: 'always evaluate the whole test set during the search' },
  {
    name: 'approximate-margin',
    kind: 'int',
    default: 0,
    help: 'dac2020 only: decide with the fast convolutions when a pass clears its threshold by this many images (0: always exact)',
  },
  {
    name: 'resume',
    kind: 'string',
    default: null,
    help: 'continue training from a checkpoint written by an earlier run',
  },
  {
    name: 'sensitivity-bits',
    kind: 'string',
    default: '1..16',
    help: 'sensitivity: fractional bits to try, a range (1..16) or a list (2,4,8)',
  },
  {
    name: 'eval-cache',
    kind: 'string',
    default: null,
    help: 'search, sweep: a file of evaluations (JSON lines, appended as they end) that later runs on this model and these images reuse, and a killed run resumes from',
  },
  {
    name: 'tolerances',
    kind: 'string',
    default: null,
    help: 'sweep: accuracy tolerances, comma-separated (default: --accuracy-tolerance)',
  },
  {
    name: 'memory-budgets',
    kind: 'string',
    default: null,
    help: 'sweep: weight memory budgets in MB, comma-separated (default: --memory-budget)',
  },
  {
    name: 'budget-divisors',
    kind: 'string',
    default: null,
    help: 'sweep: budgets as divisors of the 32-bit weight memory, comma-separated (4: a quarter of it), instead of --memory-budgets',
  },
  {
    name: 'methods',
    kind: 'string',
    default: null,
    help: 'sweep: rounding methods, comma-separated (default: --quantization-method)',
  },
  {
    name: 'shard',
    kind: 'string',
    default: null,
    help: 'sweep: run share i of n of the grid (i/n, 1-based: cells k with k mod n = i-1); merge the shards after',
  },
  {
    name: 'output',
    kind: 'string',
    default: null,
    help: 'report: the HTML file (default: RUN.json with .html); merge: the merged file (default: <stem>_sweep.json beside the first)',
  },
  {
    name: 'checkpoint-every',
    kind: 'int',
    default: 300,
    help: 'training batches between resumable checkpoints within an epoch (0: only at epoch ends; 300 batches of 100 are about 2.5 minutes of ShallowCapsNet on 2 cores, its checkpoint about 1 s to write)',
  },
  { name: 'verbose', kind: 'bool', default: false, help: 'on an error, print its stack trace too' },
  { name: 'help', kind: 'bool', default: false, help: 'show this help', aliases: ['h'] },
];

export type Options = Record<string, string | number | boolean | number[] | null>;

export const SUBCOMMANDS = [
  'train',
  'evaluate',
  'search',
  'export',
  'sweep',
  'merge',
  'report',
  'sensitivity',
] as const;
export const EXPORT_FORMATS = ['vectors', 'onnx', 'c'] as const;
export type Subcommand = (typeof SUBCOMMANDS)[number] | 'all';

function parseNumber(flag: string, kind: 'int' | 'float', raw: string): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || (kind === 'int' && !Number.isInteger(v))) {
    throw new Error(`--${flag}: expected ${kind === 'int' ? 'an integer' : 'a number'}, got '${raw}'`);
  }
  return v;
}

export function parseArgs(argv: string[]): { command: Subcommand; options: Options; positional: string[] } {
  const positional: string[] = []; // `report RUN.json`, `merge A.json B.json ...`
  const options: Options = {};
  for (const f of FLAGS) options[f.name] = Array.isArray(f.default) ? [...f.default] : f.default;
  let command: Subcommand = 'all';
  const byName = new Map<string, FlagSpec>();
  for (const f of FLAGS) {
    byName.set(f.name, f);
    for (const a of f.aliases ?? []) byName.set(a, f);
  }
  let i = 0;
  if (argv[0] && !argv[0].startsWith('-')) {
    if (!(SUBCOMMANDS as readonly string[]).includes(argv[0])) {
      throw new Error(
        `unknown command '${argv[0]}': expected one of ${SUBCOMMANDS.join(', ')} (or none for the whole job)`,
      );
    }
    command = argv[0] as Subcommand;
    i = 1;
  }
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('-') && (command === 'report' || command === 'merge')) {
      positional.push(arg);
      continue;
    }
    if (!arg.startsWith('-')) throw new Error(`unexpected argument '${arg}' (flags start with --; see --help)`);
    let name = arg.replace(/^--?/, '');
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = byName.get(name);
    if (!spec) throw new Error(`unknown flag --${name} (see --help)`);
    if (spec.kind === 'bool') {
      if (inline !== undefined) throw new Error(`--${spec.name} takes no value`);
      options[spec.name] = true;
      continue;
    }
    if (spec.kind === 'ints') {
      const values: string[] = inline !== undefined ? inline.split(',') : [];
      while (inline === undefined && i + 1 < argv.length && !/^--?[a-zA-Z]/.test(argv[i + 1])) values.push(argv[++i]);
      if (values.length === 0) throw new Error(`--${spec.name}: expected one or more integers`);
      options[spec.name] = values.map((v) => parseNumber(spec.name, 'int', v));
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new Error(`--${spec.name}: missing value`);
    options[spec.name] = spec.kind === 'string' ? raw : parseNumber(spec.name, spec.kind, raw);
  }
  if (!(EXPORT_FORMATS as readonly string[]).includes(String(options.format)))
    throw new Error(`--format ${String(options.format)}: expected one of ${EXPORT_FORMATS.join(', ')}`);
  return { command, options, positional };
}

export function helpText(): string {
  const lines = [
    'usage: qcapsnets [train|evaluate|search|export|sweep|sensitivity] [flags]',
    '       qcapsnets merge A.json B.json ... [--output FILE]',
    '       qcapsnets report RUN.json [--output FILE]',
    '',
    'With no command: train (or load with --no-training), then run the Q-CapsNets search, as the',
    "reference's main.py does. train: training only. evaluate: the full-precision accuracy of",
    '--trained-weights-path. search: the search on --trained-weights-path.',
    'sweep: the search for every cell of --methods x --tolerances x --memory-budgets (or',
    '--budget-divisors) on --trained-weights-path, in one run that shares every evaluation;',
    'it writes <stem>_sweep.json (a row per cell: the chosen bits, accuracy, memory reductions)',
    'and no model files. merge: the shards of a sweep (--shard i/n) in one file.',
    "sensitivity: accuracy against --sensitivity-bits for each layer's weights, activations and",
    'routing alone, the rest at full precision (<stem>_sensitivity.json and .html). report: the',
    'HTML page of a search, sweep or sensitivity JSON.',
    '',
    'flags:',
  ];
  for (const f of FLAGS) {
    const names = [f.name, ...(f.aliases ?? [])].map((n) => (n.length === 1 ? `-${n}` : `--${n}`)).join(', ');
    const value = f.kind === 'bool' ? '' : f.kind === 'ints' ? ' N [N ...]' : f.kind === 'string' ? ' S' : ' X';
    const dflt =
      f.default === null || f.kind === 'bool'
        ? ''
        : ` (default: ${Array.isArray(f.default) ? f.default.join(' ') : f.default})`;
    lines.push(`  ${(names + value).padEnd(38)} ${f.help}${dflt}`);
  }
  return lines.join('\n');
}

// ---- validation: every check of a flag's value, each error naming the flag

/** The library's checks (model vs dataset, decoder, resume) run by the CLI name its flags. */
export const FLAG_NAMES: OptionNames = {
  model: '--model',
  modelArgs: '--model-args',
  decoder: '--decoder',
  decoderArgs: '--decoder-args',
  dataset: '--dataset',
  resume: '--resume',
  settings: {
    epochs: '--epochs',
    lr: '--lr',
    batchSize: '--batch-size',
    regularizationScale: '--regularization-scale',
    decaySteps: '--decay-steps',
    decayRate: '--decay-rate',
    hardTraining: '--hard-training',
    seed: '--seed',
    testBatchSize: '--test-batch-size',
  },
};

const str = (o: Options, k: string): string => String(o[k]);
const num = (o: Options, k: string): number => o[k] as number;

/** Training commands: `train`, and the whole job unless --no-training. */
export function trains(command: Subcommand, o: Options): boolean {
  return command === 'train' || (command === 'all' && !o['no-training']);
}

/** Search commands: `search` and the whole job. */
export function searches(command: Subcommand): boolean {
  return command === 'search' || command === 'all';
}

/** The values of single flags (no model, no files). */
export function validateFlags(o: Options): void {
  if (str(o, 'visible-gpus') !== '-1') {
    throw new Error(
      `--visible-gpus ${str(o, 'visible-gpus')}: this build has no GPU backend; use --visible-gpus -1 (the default) to run on the CPU`,
    );
  }
  if (!isDatasetName(str(o, 'dataset')))
    throw new Error(
      `--dataset: unknown dataset '${str(o, 'dataset')}'; expected one of mnist, fashion-mnist, cifar10, svhn`,
    );
  parseQuantMethod(str(o, 'quantization-method'), '--quantization-method');
  parseRoundingCompat(str(o, 'rounding-compat'), '--rounding-compat');
  for (const f of ['epochs', 'batch-size', 'log-interval', 'decay-steps', 'test-batch-size'])
    if (!(num(o, f) >= 1)) throw new Error(`--${f} ${o[f]}: expected a positive integer`);
  for (const f of ['lr', 'decay-rate'])
    if (!(num(o, f) > 0)) throw new Error(`--${f} ${o[f]}: expected a positive number`);
  if (!(num(o, 'regularization-scale') >= 0))
    throw new Error(`--regularization-scale ${o['regularization-scale']}: expected 0 or more`);
  if (!Number.isSafeInteger(num(o, 'seed')))
    throw new Error(`--seed ${o.seed}: expected an integer of at most 2^53 - 1 in magnitude`);
  for (const f of ['threads', 'test-limit', 'train-limit'])
    if (o[f] !== null && !(num(o, f) >= 1)) throw new Error(`--${f} ${o[f]}: expected a positive integer`);
  if (!(num(o, 'checkpoint-every') >= 0))
    throw new Error(
      `--checkpoint-every ${o['checkpoint-every']}: expected 0 (only at epoch ends) or a number of batches`,
    );
  if (!(num(o, 'cache-mb') >= 0)) throw new Error(`--cache-mb ${o['cache-mb']}: expected 0 or more`);
  // the published training set size bounds it here; main.ts checks the loaded set's own count
  const published = DATASET_INFO[str(o, 'dataset') as DatasetName].trainCount;
  const limit = o['train-limit'] === null ? published : Math.min(published, num(o, 'train-limit'));
  checkSelectionSplit(
    num(o, 'selection-split'),
    limit,
    o['train-limit'] === null || limit === published
      ? `the ${str(o, 'dataset')} training set`
      : `--train-limit ${limit}`,
  );
  if (!(num(o, 'approximate-margin') >= 0))
    throw new Error(`--approximate-margin ${o['approximate-margin']}: expected 0 or more images`);
}

/**
 * The search's flags, against the model's layers (their parameter counts, in the search's
 * order): --memory-budget positive and reachable (1 bit per parameter), --accuracy-tolerance
 * in (0, 100). main.ts calls this before any data is loaded; runSearchJob relies on it.
 */
export function checkSearchFlags(o: Options, paramCounts: readonly number[]): void {
  const budget = num(o, 'memory-budget');
  if (!(budget > 0)) throw new Error(`--memory-budget ${budget}: expected a positive number of MB`);
  const minimumMB = minimumBudgetMB(paramCounts);
  if (!(budget >= minimumMB))
    throw new Error(
      `--memory-budget ${budget} MB cannot be met: even 1 bit per parameter needs ${minimumMB} MB; ` +
        `use a budget of at least ${minimumMB} MB`,
    );
  const tol = num(o, 'accuracy-tolerance');
  if (!(tol > 0 && tol < 100)) throw new Error(`--accuracy-tolerance ${tol}: expected a value in (0, 100)`);
}

/** A folder the run can write into, or one it can create (its nearest existing parent is a
 *  writable folder), checked before long work starts. */
export function checkWritableFolder(dir: string, flag: string): void {
  let at = resolve(dir);
  for (;;) {
    if (existsSync(at)) {
      if (!statSync(at).isDirectory()) throw new Error(`${flag} ${dir}: ${at} is a file, not a folder`);
      try {
        accessSync(at, constants.W_OK);
      } catch (err) {
        const readOnly = (err as NodeJS.ErrnoException).code === 'EROFS' ? ' (a read-only file system)' : '';
        throw new Error(`${flag} ${dir}: the folder ${at} is not writable${readOnly}`, { cause: err });
      }
      return;
    }
    const up = dirname(at);
    if (up === at) return;
    at = up;
  }
}

/** The folders a command writes into, checked before any long work: training's model and
 *  checkpoint folder, and the outputs of the search, sweep and sensitivity (--output-dir,
 *  else the model's folder). */
export function checkOutputFolders(command: Subcommand, o: Options): void {
  const training = trains(command, o);
  if (training) checkWritableFolder(dirname(resolve(str(o, 'full-precision-filename'))), '--full-precision-filename');
  const writesResults = searches(command) || command === 'sweep' || command === 'sensitivity';
  if (writesResults && o['output-dir'] !== null) checkWritableFolder(str(o, 'output-dir'), '--output-dir');
  const weights = resolve(str(o, 'trained-weights-path'));
  // (a --trained-weights-path that is no file is loadTrained's error)
  if (writesResults && o['output-dir'] === null && !training && existsSync(weights) && statSync(weights).isFile())
    checkWritableFolder(
      dirname(weights),
      `--trained-weights-path (${command === 'all' ? 'the search' : command} writes next to it without --output-dir)`,
    );
}

/** --dataset's image shape and classes, known before its files are read. */
export function datasetShapeFromFlags(o: Options): DatasetShape {
  const name = str(o, 'dataset') as DatasetName;
  return { name, ...DATASET_INFO[name] };
}

function moduleFromFlags<T>(o: Options, which: 'model' | 'decoder', build: (name: string, args: number[]) => T): T {
  const name = str(o, which);
  const args = o[`${which}-args`] as number[];
  const known = which === 'model' ? isModelName(name) : isDecoderName(name);
  if (!known)
    throw new Error(
      `--${which} ${name}: unknown ${which} '${name}': expected ${orList(which === 'model' ? MODEL_NAMES : DECODER_NAMES)}`,
    );
  const flags = `--${which} ${name} --${which}-args ${args.join(' ')}`;
  const problem = moduleArgsProblem(name as ModelName | DecoderName, args);
  if (problem) throw new Error(`${flags}: ${problem}`);
  try {
    return build(name, args);
  } catch (err) {
    throw new Error(`${flags}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * --model / --model-args built (with --seed) and checked against --dataset's images and
 * classes; when training, --decoder / --decoder-args too, against the model and the images.
 * All before any data is loaded.
 */
export function modulesFromFlags(o: Options, training: boolean): { model: CapsNet; decoder: CapsDecoder | null } {
  const seed = num(o, 'seed');
  const shape = datasetShapeFromFlags(o);
  // the fit against --dataset before anything is built (a wrong --model-args can ask for GBs)
  const name = str(o, 'model');
  const args = o['model-args'] as number[];
  const buildable = name !== 'DeepCaps' || (DEEPCAPS_INPUT_SIZES as readonly number[]).includes(args[0]);
  if (isModelName(name) && moduleArgsProblem(name, args) === null && buildable) {
    const [inputWh, inputCh, numClasses, capsDim] = args;
    checkModelFitsDataset({ kind: name, inputWh, inputCh, numClasses, capsDim, args }, shape, FLAG_NAMES);
  }
  const model = moduleFromFlags(o, 'model', (n, a) => buildModel(n, a, { seed }));
  if (!training) return { model, decoder: null };
  const decoder = moduleFromFlags(o, 'decoder', (name, args) => buildDecoder(name, args, { seed }));
  checkDecoderFits(decoder, model, shape, FLAG_NAMES);
  return { model, decoder };
}

/** A loaded split must match the model as --dataset's shape did (labels included). */
export function checkLoadedDataset(model: CapsNet, ds: Dataset): void {
  checkModelFitsDataset(model, ds, FLAG_NAMES);
}

/** The numeric training settings of the flags (validateFlags checked them). */
export function trainSettingsFromFlags(o: Options): RunSettings & { logInterval: number } {
  return {
    epochs: num(o, 'epochs'),
    lr: num(o, 'lr'),
    batchSize: num(o, 'batch-size'),
    logInterval: num(o, 'log-interval'),
    regularizationScale: num(o, 'regularization-scale'),
    decaySteps: num(o, 'decay-steps'),
    decayRate: num(o, 'decay-rate'),
    hardTraining: Boolean(o['hard-training']),
    seed: num(o, 'seed'),
    testBatchSize: num(o, 'test-batch-size'),
  };
}

/**
 * Training's files, before any data is loaded: --full-precision-filename's folder (created
 * when missing) and name, the checkpoint next to it, and --resume's checkpoint (read).
 */
export function prepareTrainingFiles(o: Options): { modelFile: string; resume: LoadedCheckpoint | null } {
  const flag = '--full-precision-filename';
  const file = str(o, 'full-precision-filename');
  if (file === '') throw new Error(`${flag}: expected a file name`);
  // like --output-dir, the model's folder is created when missing
  mkdirSync(dirname(resolve(file)), { recursive: true });
  const modelFile = checkOutputPath(file, flag);
  checkOutputPath(defaultCheckpointPath(modelFile), `the training checkpoint of ${flag}`);
  const resume = o.resume === null ? null : readTrainingCheckpoint(resolve(str(o, 'resume')), '--resume');
  return { modelFile, resume };
}

/** Once the data is loaded: --resume's checkpoint must come from a run with these flags. */
export function checkResumeFlags(
  o: Options,
  ckpt: LoadedCheckpoint,
  run: { model: CapsNet; decoder: CapsDecoder; train: Dataset; test: Dataset },
): void {
  checkResumable(ckpt, runIdentity(run.model, run.decoder, run, trainSettingsFromFlags(o)), FLAG_NAMES);
}

// ---- sweep: the grid's axes and the shard, checked before any work

/** A comma-separated flag value (an empty axis is an error naming the flag). */
function commaList(flag: string, raw: string): string[] {
  const items = raw.split(',').map((s) => s.trim());
  if (raw.trim() === '' || items.some((s) => s === ''))
    throw new Error(
      `--${flag} '${raw}': the grid axis is empty or has an empty item; expected values separated by commas`,
    );
  if (new Set(items).size !== items.length) throw new Error(`--${flag} ${raw}: a value appears twice`);
  return items;
}

/**
 * The sweep's grid from --methods, --tolerances, --memory-budgets or --budget-divisors (each
 * defaulting to the single-search flag), and --shard i/n, against the model's layers (their
 * parameter counts): every budget reachable, every tolerance in (0, 100), 1 <= i <= n.
 */
export function sweepGridFromFlags(
  o: Options,
  paramCounts: readonly number[],
): {
  grid: { tolerances: number[]; memoryBudgetsMB: number[]; methods: ReturnType<typeof parseQuantMethod>[] };
  shard: { index: number; count: number } | null;
  budgetDivisors: number[] | null;
} {
  const methods = (o.methods === null ? [str(o, 'quantization-method')] : commaList('methods', str(o, 'methods'))).map(
    (m) => parseQuantMethod(m, '--methods'),
  );
  const tolerances =
    o.tolerances === null
      ? [num(o, 'accuracy-tolerance')]
      : commaList('tolerances', str(o, 'tolerances')).map((v) => parseNumber('tolerances', 'float', v));
  for (const t of tolerances)
    if (!(t > 0 && t < 100)) throw new Error(`--tolerances: ${t}: expected values in (0, 100)`);
  if (o['memory-budgets'] !== null && o['budget-divisors'] !== null)
    throw new Error(
      '--memory-budgets and --budget-divisors: give one of them (budgets in MB, or as divisors of the 32-bit memory)',
    );
  const fp32MB = fullPrecisionMemoryMB(paramCounts);
  const minimumMB = minimumBudgetMB(paramCounts);
  let budgetDivisors: number[] | null = null;
  let memoryBudgetsMB: number[];
  if (o['budget-divisors'] !== null) {
    budgetDivisors = commaList('budget-divisors', str(o, 'budget-divisors')).map((v) =>
      parseNumber('budget-divisors', 'float', v),
    );
    for (const d of budgetDivisors)
      if (!(d >= 1 && d <= 32))
        throw new Error(`--budget-divisors: ${d}: expected values in [1, 32] (32: one bit per parameter)`);
    memoryBudgetsMB = budgetDivisors.map((d) => fp32MB / d);
  } else {
    memoryBudgetsMB =
      o['memory-budgets'] === null
        ? [num(o, 'memory-budget')]
        : commaList('memory-budgets', str(o, 'memory-budgets')).map((v) => parseNumber('memory-budgets', 'float', v));
    for (const b of memoryBudgetsMB)
      if (!(b >= minimumMB))
        throw new Error(
          `--memory-budgets: ${b} MB cannot be met: even 1 bit per parameter needs ${minimumMB} MB; use budgets of at least ${minimumMB} MB`,
        );
  }
  let shard: { index: number; count: number } | null = null;
  if (o.shard !== null) {
    const m = /^\s*(-?\d+)\s*\/\s*(-?\d+)\s*$/.exec(str(o, 'shard'));
    const index = m ? Number(m[1]) : NaN;
    const count = m ? Number(m[2]) : NaN;
    if (!(count >= 1 && index >= 1 && index <= count))
      throw new Error(`--shard ${str(o, 'shard')}: expected i/n with 1 <= i <= n (e.g. 1/4)`);
    shard = { index, count };
  }
  return { grid: { tolerances, memoryBudgetsMB, methods }, shard, budgetDivisors };
}
