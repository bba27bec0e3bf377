// The result of `qcapsnets sweep` (<stem>_sweep.json): one row per grid cell (tolerance x memory
// budget x method), every configuration any cell evaluated, and the Pareto front over
// (accuracy, weight memory) of all of them. Shards (`--shard i/n`) write the same shape with
// their share of the rows; `qcapsnets merge` combines them.
import type { QuantMethod } from '../tensor/backend.js';
import type { BitLists, NumberFormat } from '../quant/config.js';
import type { RoundingCompat } from '../quant/methods.js';

export const SWEEP_TOOL = 'qcapsnets sweep';
export const SWEEP_VERSION = 1;

/** A configuration as the sweep's rows hold it (positional lists, quant/config.ts BitLists). */
export type SweepBits = BitLists;

/** A model a cell chose: 'satisfied' (branch A), or 'memory' and 'accuracy' (branch B). */
export interface SweepModel {
  kind: 'satisfied' | 'memory' | 'accuracy';
  /** the number format of `bits` (absent in files from before the format: 'fixed') */
  number_format?: NumberFormat;
  /** 'dynamic' weights' fractional lengths by the 'mse' rule (absent: 'max') */
  weight_range?: 'mse';
  bits: SweepBits;
  /** percent, on the images the search decided on */
  accuracy: number;
  /** percent on the test set when the search decided on a held-out selection split, else null */
  testAccuracy: number | null;
  weightMemoryMB: number;
  /** 32-bit weight memory / this model's */
  weightReduction: number;
  /** activation memory per image, kB (1 kB = 8,000 bits) */
  activationKB: number;
  /** 32-bit activation memory / this model's */
  activationReduction: number;
  /** --finetune-epochs N > 0 only (absent otherwise): the epochs this model was fine-tuned (0:
   *  as the search chose it). A fine-tuned model (branch B's memory model) gives its accuracy
   *  after fine-tuning, and is 'satisfied' when that reaches the cell's minimum accuracy */
  finetune_epochs?: number;
  /** a fine-tuned model: its kind and accuracy as the search chose it */
  kind_before_finetune?: 'memory';
  accuracy_before_finetune?: number;
}

export interface SweepRow {
  /** percent of the full-precision accuracy */
  tolerance: number;
  memoryBudgetMB: number;
  method: QuantMethod;
  branch: 'A' | 'B';
  models: SweepModel[];
  /** evaluations this cell's search asked for: what the same search alone would run */
  evaluations: number;
  /** of those, the ones no earlier cell (or the --eval-cache file) had already made */
  newEvaluations: number;
  seconds: number;
  /** images the cell's search alone would run through the model (an evaluation that resumes
   *  an early-stopped one counts only the rest): the cost of `evaluations` in images */
  imagesEvaluated?: number;
}

/** One configuration evaluated by any cell (each configuration once per method). */
export interface SweepPoint {
  method: QuantMethod;
  bits: SweepBits;
  /** percent; exact, or the lower bound when the evaluation stopped early (then exact: false) */
  accuracy: number;
  exact: boolean;
  weightMemoryMB: number;
  activationKB: number;
}

export interface SweepResult {
  tool: typeof SWEEP_TOOL;
  version: typeof SWEEP_VERSION;
  model: { kind: string; args: number[]; file: string; sha256: string };
  settings: {
    dataset: string;
    testImages: number;
    /** images held out of the training set that the search decided on (0: the test set) */
    selectionSplit: number;
    seed: number;
    compat: RoundingCompat;
    [flag: string]: unknown;
  };
  grid: { tolerances: number[]; memoryBudgetsMB: number[]; methods: QuantMethod[] };
  /** this file's share of the grid; null for a whole grid or a merge of all shards */
  shard: { index: number; count: number } | null;
  fullPrecisionAccuracy: number;
  /** 32-bit weight memory of the model, MB, and activation memory per image, kB */
  fullPrecisionMemoryMB: number;
  fullPrecisionActivationKB: number;
  /** in grid order: methods, then tolerances, then budgets */
  rows: SweepRow[];
  evaluated: SweepPoint[];
  /** indices into `evaluated` of the Pareto front (no other point has both higher or equal
   *  accuracy and lower or equal weight memory, one strictly), by weight memory ascending */
  pareto: number[];
  /** distinct evaluations this run made (cache hits from --eval-cache not counted) */
  evaluations: number;
  /** the evaluations of the middle cell's search alone (its row's `evaluations`) */
  middleCellEvaluations: number;
  /** images this run put through the model for its evaluations, and the middle cell's
   *  search alone (its row's imagesEvaluated): the two counts above in images */
  imagesEvaluated?: number;
  middleCellImages?: number;
  seconds: number;
}
