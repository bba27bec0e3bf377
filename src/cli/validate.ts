// The command line's values checked once, before any long work: a bad value is one error that
// names the flag. Single values by the table below; then what depends on several flags (the
// selection split within the training set, the sweep's grid), on the model's layers (a budget
// of 1 bit per parameter at least) or on the file system (output folders that can be written).
// The library below checks its own options again, naming those.
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DATASET_INFO, isDatasetName } from '../data/load.js';
import { checkSelectionSplit } from '../data/selection-split.js';
import type { DatasetName } from '../data/sources.js';
import { checkWritableFolder } from '../io/writable-folder.js';
import type { QuantLayerInfo } from '../models/capsnet.js';
import { NUMBER_FORMATS, type NumberFormat } from '../quant/config.js';
import { WEIGHT_RANGES } from '../quant/dynamic.js';
import { checkFormatMemoryBudget, fullPrecisionMemoryMB } from '../quant/memory.js';
import { parseQuantMethod, parseRoundingCompat } from '../quant/methods.js';
import { checkTolerance } from '../search/qcapsnets.js';
import { parseBitList } from '../search/sensitivity.js';
import type { OptionNames } from '../train/checks.js';
import {
  COMMANDS,
  type CommandName,
  type Flags,
  type FlagName,
  type FlagValue,
  optionName,
  type Options,
  takes,
} from './flags.js';
import { parseNumber } from './parse.js';

export const EXPORT_FORMATS = ['vectors', 'onnx', 'c'] as const;

/** The library's checks (model vs dataset, decoder, resume) run by the CLI name its flags. */
export const FLAG_OPTION_NAMES: OptionNames = {
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

const positiveInteger = (f: FlagName) => (v: number | null) => {
  if (v !== null && !(v >= 1)) throw new Error(`--${f} ${v}: expected a positive integer`);
};
const positiveNumber = (f: FlagName) => (v: number) => {
  if (!(v > 0)) throw new Error(`--${f} ${v}: expected a positive number`);
};
const zeroOrMore =
  (f: FlagName, what = '') =>
  (v: number) => {
    if (!(v >= 0)) throw new Error(`--${f} ${v}: expected 0 or more${what}`);
  };

/** The check of each flag's value on its own, by flag. */
const VALUE_CHECKS: { [F in FlagName]?: (v: FlagValue<F>) => void } = {
  'visible-gpus': (v) => {
    if (v !== '-1')
      throw new Error(
        `--visible-gpus ${v}: this build has no GPU backend; use --visible-gpus -1 (the default) to run on the CPU`,
      );
  },
  dataset: (v) => {
    if (!isDatasetName(v))
      throw new Error(`--dataset: unknown dataset '${v}'; expected one of mnist, fashion-mnist, cifar10, svhn`);
  },
  format: (v) => {
    if (!(EXPORT_FORMATS as readonly string[]).includes(v))
      throw new Error(`--format ${v}: expected one of ${EXPORT_FORMATS.join(', ')}`);
  },
  'quantization-method': (v) => parseQuantMethod(v, '--quantization-method'),
  'rounding-compat': (v) => parseRoundingCompat(v, '--rounding-compat'),
  epochs: positiveInteger('epochs'),
  'batch-size': positiveInteger('batch-size'),
  'log-interval': positiveInteger('log-interval'),
  'decay-steps': positiveInteger('decay-steps'),
  'test-batch-size': positiveInteger('test-batch-size'),
  lr: positiveNumber('lr'),
  'decay-rate': positiveNumber('decay-rate'),
  'regularization-scale': zeroOrMore('regularization-scale'),
  'distill-scale': zeroOrMore('distill-scale'),
  'distill-fraction': (v) => {
    if (!(v > 0 && v <= 1))
      throw new Error(
        `--distill-fraction ${v}: expected a number in (0, 1], the share of each batch the float model runs on`,
      );
  },
  seed: (v) => {
    if (!Number.isSafeInteger(v)) throw new Error(`--seed ${v}: expected an integer of at most 2^53 - 1 in magnitude`);
  },
  threads: positiveInteger('threads'),
  'test-limit': positiveInteger('test-limit'),
  'train-limit': positiveInteger('train-limit'),
  'checkpoint-every': (v) => {
    if (!(v >= 0)) throw new Error(`--checkpoint-every ${v}: expected 0 (only at epoch ends) or a number of batches`);
  },
  'cache-mb': zeroOrMore('cache-mb'),
  'approximate-margin': zeroOrMore('approximate-margin', ' images'),
  'accuracy-tolerance': (v) => checkTolerance(v, `--accuracy-tolerance ${v}`),
  'memory-budget': (v) => {
    if (!(v > 0)) throw new Error(`--memory-budget ${v}: expected a positive number of MB`);
  },
  'sensitivity-bits': (v) => parseBitList(v, '--sensitivity-bits'),
  'number-format': (v) => {
    if (!(NUMBER_FORMATS as readonly string[]).includes(v))
      throw new Error(`--number-format ${v}: expected one of ${NUMBER_FORMATS.join(', ')}`);
  },
  'weight-range': (v) => {
    if (!(WEIGHT_RANGES as readonly string[]).includes(v))
      throw new Error(`--weight-range ${v}: expected one of ${WEIGHT_RANGES.join(', ')}`);
  },
  'finetune-epochs': (v) => {
    if (!(Number.isSafeInteger(v) && v >= 0))
      throw new Error(`--finetune-epochs ${v}: expected a non-negative integer (0: no fine-tuning)`);
  },
  'calibration-images': (v) => {
    if (!(Number.isSafeInteger(v) && v >= 0))
      throw new Error(`--calibration-images ${v}: expected a non-negative integer`);
  },
};

/** A flag that a command reads its own way: its check there. */
const COMMAND_VALUE_CHECKS: { [C in CommandName]?: { [F in FlagName]?: (v: FlagValue<F>) => void } } = {
  finetune: {
    epochs: (v) => {
      if (!(Number.isInteger(v) && v >= 0))
        throw new Error(`--epochs ${v}: expected a non-negative integer (0: the model quantized as it is)`);
    },
  },
};

/** --distill-fraction is the teacher's share of each batch: it needs a teacher. */
function checkDistillation(command: CommandName, o: object): void {
  if (!takes(command, 'distill-fraction')) return;
  const f = o as unknown as Flags<'distill-fraction' | 'distill-scale'>;
  if (f.distillFraction !== 1 && f.distillScale === 0)
    throw new Error(
      `--distill-fraction ${f.distillFraction} without --distill-scale: it is the share of each batch the float model runs on for distillation; give --distill-scale S > 0 (or leave --distill-fraction out)`,
    );
}

/** The number format's checks against the other flags: 'dynamic' needs calibration images,
 *  has no dac2020 arithmetic, and tries widths of at least 1 bit in `sensitivity`; the weight
 *  range rule 'mse' needs 'dynamic'. */
function checkNumberFormat(command: CommandName, o: object): void {
  if (!takes(command, 'number-format')) return;
  const f = o as unknown as Flags<'number-format' | 'calibration-images' | 'rounding-compat' | 'weight-range'>;
  // (finetune --bits-from: the file's format decides, checked against the file)
  const fromFile = command === 'finetune' && (o as Flags<'bits-from'>).bitsFrom !== null;
  if (f.weightRange === 'mse' && f.numberFormat !== 'dynamic' && !fromFile)
    throw new Error(
      `--weight-range mse with --number-format ${f.numberFormat}: the rule chooses the fractional length of each 'dynamic' weight tensor; give --number-format dynamic (or leave --weight-range out)`,
    );
  if (f.numberFormat !== 'dynamic') return;
  if (f.calibrationImages === 0)
    throw new Error(
      '--calibration-images 0: --number-format dynamic needs images to calibrate its activation and routing ranges; expected at least 1',
    );
  if (f.roundingCompat === 'dac2020')
    throw new Error(
      "--number-format dynamic with --rounding-compat dac2020: the reference code's arithmetic applies to --number-format fixed only",
    );
  if (takes(command, 'sensitivity-bits')) {
    const s = o as unknown as Flags<'sensitivity-bits'>;
    if (parseBitList(s.sensitivityBits, '--sensitivity-bits').includes(0))
      throw new Error(
        `--sensitivity-bits ${s.sensitivityBits}: 0 is not a width; --number-format dynamic counts total bits, sign included (1 or more)`,
      );
  }
}

/**
 * Every value of a command's flags on its own, then --selection-split against the training
 * set it splits (the published size, or --train-limit; the loaded set is checked again).
 */
export function checkFlagValues(command: CommandName, o: object): void {
  const values = o as unknown as Record<string, never>;
  for (const f of COMMANDS[command].flags as readonly FlagName[]) {
    const check = COMMAND_VALUE_CHECKS[command]?.[f] ?? VALUE_CHECKS[f];
    (check as ((v: never) => void) | undefined)?.(values[optionName(f)]);
  }
  checkNumberFormat(command, o);
  checkDistillation(command, o);
  if (takes(command, 'selection-split')) {
    const s = o as unknown as Flags<'selection-split' | 'train-limit' | 'dataset'>;
    const published = DATASET_INFO[s.dataset as DatasetName].trainCount;
    const limit = s.trainLimit === null ? published : Math.min(published, s.trainLimit);
    checkSelectionSplit(
      s.selectionSplit,
      limit,
      s.trainLimit === null || limit === published ? `the ${s.dataset} training set` : `--train-limit ${limit}`,
    );
  }
}

/** The search's budget against the model's layers (in the search's order): reachable at 1 bit
 *  per parameter (and, under 'dynamic', the exponents). Called before any data is loaded. */
export function checkSearchBudget(
  o: Flags<'memory-budget' | 'number-format'>,
  layers: readonly QuantLayerInfo[],
): void {
  checkFormatMemoryBudget(
    layers,
    o.numberFormat as NumberFormat,
    o.memoryBudget,
    `--memory-budget ${o.memoryBudget} MB`,
  );
}

/** The folders a command writes into, checked before any long work: training's model and
 *  checkpoint folder, and the outputs of the search, sweep and sensitivity (--output-dir,
 *  else the model's folder). */
export function checkOutputFolders(
  command: 'train' | 'all' | 'search' | 'sweep' | 'sensitivity' | 'finetune',
  o: Partial<Flags<'full-precision-filename' | 'output-dir' | 'trained-weights-path'>>,
  training: boolean,
): void {
  if (training) {
    const folder = dirname(resolve(o.fullPrecisionFilename!));
    checkWritableFolder(folder, `--full-precision-filename ${folder}`);
  }
  if (command === 'train') return;
  if (o.outputDir != null) checkWritableFolder(o.outputDir, `--output-dir ${o.outputDir}`);
  const weights = resolve(o.trainedWeightsPath!);
  // (a --trained-weights-path that is no file is loadTrained's error)
  if (o.outputDir == null && !training && existsSync(weights) && statSync(weights).isFile()) {
    const writer = command === 'all' ? 'the search' : command;
    checkWritableFolder(
      dirname(weights),
      `--trained-weights-path (${writer} writes next to it without --output-dir) ${dirname(weights)}`,
    );
  }
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
  o: Options<'sweep'>,
  layers: readonly QuantLayerInfo[],
): {
  grid: { tolerances: number[]; memoryBudgetsMB: number[]; methods: ReturnType<typeof parseQuantMethod>[] };
  shard: { index: number; count: number } | null;
  budgetDivisors: number[] | null;
} {
  const methods = (o.methods === null ? [o.quantizationMethod] : commaList('methods', o.methods)).map((m) =>
    parseQuantMethod(m, '--methods'),
  );
  const tolerances =
    o.tolerances === null
      ? [o.accuracyTolerance]
      : commaList('tolerances', o.tolerances).map((v) => parseNumber('tolerances', 'float', v));
  for (const t of tolerances) checkTolerance(t, `--tolerances ${t}`);
  if (o.memoryBudgets !== null && o.budgetDivisors !== null)
    throw new Error(
      '--memory-budgets and --budget-divisors: give one of them (budgets in MB, or as divisors of the 32-bit memory)',
    );
  let budgetDivisors: number[] | null = null;
  let memoryBudgetsMB: number[];
  if (o.budgetDivisors !== null) {
    budgetDivisors = commaList('budget-divisors', o.budgetDivisors).map((v) =>
      parseNumber('budget-divisors', 'float', v),
    );
    for (const d of budgetDivisors)
      if (!(d >= 1 && d <= 32))
        throw new Error(`--budget-divisors: ${d}: expected values in [1, 32] (32: one bit per parameter)`);
    const fp32MB = fullPrecisionMemoryMB(layers.map((l) => l.paramCount));
    memoryBudgetsMB = budgetDivisors.map((d) => fp32MB / d);
    // (under 'dynamic' the exponents' bits put 32 just out of reach)
    if (o.numberFormat === 'dynamic')
      budgetDivisors.forEach((d, i) =>
        checkFormatMemoryBudget(
          layers,
          'dynamic',
          memoryBudgetsMB[i],
          `--budget-divisors: ${d} (${memoryBudgetsMB[i]} MB)`,
        ),
      );
  } else {
    memoryBudgetsMB =
      o.memoryBudgets === null
        ? [o.memoryBudget]
        : commaList('memory-budgets', o.memoryBudgets).map((v) => parseNumber('memory-budgets', 'float', v));
    for (const b of memoryBudgetsMB)
      checkFormatMemoryBudget(layers, o.numberFormat as NumberFormat, b, `--memory-budgets: ${b} MB`);
  }
  let shard: { index: number; count: number } | null = null;
  if (o.shard !== null) {
    const m = /^\s*(-?\d+)\s*\/\s*(-?\d+)\s*$/.exec(o.shard);
    const index = m ? Number(m[1]) : NaN;
    const count = m ? Number(m[2]) : NaN;
    if (!(count >= 1 && index >= 1 && index <= count))
      throw new Error(`--shard ${o.shard}: expected i/n with 1 <= i <= n (e.g. 1/4)`);
    shard = { index, count };
  }
  return { grid: { tolerances, memoryBudgetsMB, methods }, shard, budgetDivisors };
}
