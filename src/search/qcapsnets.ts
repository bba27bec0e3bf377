// The Q-CapsNets search (SPEC 5; Marchisio et al., DAC 2020): steps 1, 2, 3A, 4A and 3B.
// Pure decision logic over an Evaluator; the rounding and the forward pass live elsewhere.
//   A_min = A (1 - t/100); step 1 keeps > A - 5% of (A - A_min); step 2 fits the memory budget
//   with a falling pattern of weight bits; branch A (step-2 accuracy > A_min) lowers activation
//   bits (3A, >= step2 - 55% of (step2 - A_min)) then routing bits (4A, >= A_min); branch B
//   lowers weight bits from the step-1 configuration (3B, >= A_min).
// `compat: 'dac2020'` reproduces the reference code's mapping of routing bits in step 3A
// (its index skips capsule layers that do not route, which shifts it for DeepCaps).
import { routingIndices } from '../models/description.js';
// Under the 'dynamic' number format (settings.numberFormat) the steps are the same with every
// count a total width: no count goes below 1 (a sign bit) instead of 0 fractional bits, and
// step 2's pattern fits the budget in the dynamic memory count (docs/quantization.md).
import type { BitConfig, NumberFormat, QuantLayerInfo } from '../quant/config.js';
import { cloneBits, countRange, uniformBits } from '../quant/config.js';
import { parseWeightRange, type WeightRange } from '../quant/dynamic.js';
import {
  BITS_PER_MB,
  checkFormatMemoryBudget,
  checkMemoryBudget,
  formatMemoryBits,
  type MemoryLayer,
  weightMemoryBits,
} from '../quant/memory.js';
import type { Evaluator } from './evaluator.js';
import {
  type EvaluationRecord,
  type SearchLog,
  SearchRun,
  type SearchSettings,
  type StepResult,
} from './search-run.js';

export type { EvaluationRecord, SearchLog, SearchSettings, StepName, StepResult } from './search-run.js';

export interface SearchResult {
  minimumAccuracy: number;
  steps: StepResult[];
  branch: 'A' | 'B';
  /** satisfied (branch A), or memory + accuracy (branch B) */
  models: { kind: 'satisfied' | 'memory' | 'accuracy'; result: StepResult }[];
  evaluations: EvaluationRecord[];
  notes: string[];
}

/** The one check of an accuracy tolerance: a percentage of the full-precision accuracy in
 *  (0, 100). `what` names it and its value as the caller knows it (option or flag). */
export function checkTolerance(tolerance: number, what = `tolerance ${tolerance}`): void {
  if (!(tolerance > 0 && tolerance < 100)) throw new Error(`${what}: expected a percentage in (0, 100)`);
}

/** Checks a search's settings against a model's layers before any evaluation. */
export function checkSearchSettings(
  layers: readonly QuantLayerInfo[],
  settings: Pick<SearchSettings, 'tolerance' | 'memoryBudgetMB'> &
    Partial<Pick<SearchSettings, 'numberFormat' | 'compat'>>,
): void {
  const { tolerance, memoryBudgetMB } = settings;
  const format = checkSearchFormat(settings);
  checkTolerance(tolerance);
  if (layers.length === 0) throw new Error('layers: a search needs at least one layer');
  checkFormatMemoryBudget(layers, format, memoryBudgetMB);
}

/** A search's number format ('fixed' by default); 'dynamic' with dac2020 is an error, and so is
 *  the weight range rule 'mse' (settings.weightRange) with 'fixed'. */
export function checkSearchFormat(settings: {
  numberFormat?: NumberFormat;
  compat?: SearchSettings['compat'];
  weightRange?: WeightRange;
}): NumberFormat {
  const format = settings.numberFormat ?? 'fixed';
  if (format !== 'fixed' && format !== 'dynamic')
    throw new Error(`numberFormat ${String(format)}: expected 'fixed' or 'dynamic'`);
  if (format === 'dynamic' && settings.compat === 'dac2020')
    throw new Error("numberFormat 'dynamic' with compat 'dac2020': the dac2020 arithmetic applies to 'fixed' only");
  const range = parseWeightRange(settings.weightRange);
  if (range === 'mse' && format !== 'dynamic')
    throw new Error(
      "weightRange 'mse' with numberFormat 'fixed': the weight range rule chooses 'dynamic' tensors' fractional lengths; 'fixed' has none to choose",
    );
  return format;
}

/** SPEC 5's layer-wise lowering, shared by steps 3A, 4A and 3B: for each position l in turn,
 *  take one bit off positions l..count-1 together while the configuration passes (and none
 *  would go below `min` bits: 0 fractional bits, or a width of 1); at the first fail put that
 *  bit back and move on to l + 1. */
async function lowerLayerwise(
  count: number,
  min: number,
  bitsAt: (k: number) => number,
  shift: (from: number, delta: 1 | -1) => void,
  passes: () => Promise<boolean>,
): Promise<void> {
  for (let l = 0; l < count; l++) {
    for (;;) {
      if (!(await passes())) {
        shift(l, 1);
        break;
      }
      let floor = false;
      for (let k = l; k < count; k++) floor ||= bitsAt(k) <= min;
      if (floor) break;
      shift(l, -1);
    }
  }
}

/** Step 2's weight bits: [N, N-1, ..., N-slope+1, N-slope+1, ...] with the largest N whose
 *  memory fits, the gentlest slope needed for the last layer to keep >= 0 bits. */
export function memoryBits(paramCounts: readonly number[], budgetMB: number): number[] {
  checkMemoryBudget(paramCounts, budgetMB);
  return fallingPattern(paramCounts.length, budgetMB, 0, (bits) => weightMemoryBits(paramCounts, bits));
}

/** memoryBits in a number format: under 'dynamic' the counts are widths, the memory is
 *  parameters x w + the exponents (quant/memory.ts), and the last layer keeps a width >= 1;
 *  N still starts at 32, the widest count. */
export function memoryBitsFor(layers: readonly MemoryLayer[], budgetMB: number, format: NumberFormat): number[] {
  if (format === 'fixed')
    return memoryBits(
      layers.map((l) => l.paramCount),
      budgetMB,
    );
  checkFormatMemoryBudget(layers, format, budgetMB);
  return fallingPattern(layers.length, budgetMB, countRange(format).min, (bits) =>
    formatMemoryBits(layers, bits, format),
  );
}

/** The search of memoryBits: for slopes 5..0, N from 32 down to the first pattern whose
 *  memory fits; the first slope whose last count is then >= `min`. */
function fallingPattern(n: number, budgetMB: number, min: number, memory: (bits: number[]) => number): number[] {
  const budgetBits = budgetMB * BITS_PER_MB;
  for (let slope = 5; slope >= 0; slope--) {
    const decrease = Array.from({ length: n }, (_, l) => -Math.min(l, Math.max(slope - 1, 0)));
    for (let N = 32; ; N--) {
      const bits = decrease.map((d) => N + d);
      if (memory(bits) <= budgetBits) {
        if (bits[n - 1] >= min) return bits;
        break;
      }
    }
  }
  // slope 0 is uniform bits and always ends at N >= min given the budget check
  throw new Error('memory: no weight bit pattern fits the budget');
}

/** SPEC 5's thresholds in the same floating-point expressions as the reference code, so that
 *  they match it exactly: A_min = A (1 - t/100), and step 1's A - 5% of (A - A_min). */
function searchThresholds(A: number, tolerance: number): { minimumAccuracy: number; step1Min: number } {
  const minimumAccuracy = A - (tolerance / 100) * A;
  const accReduction = A - minimumAccuracy;
  const step1Min = A - (5 / 100) * accReduction;
  return { minimumAccuracy, step1Min };
}

export async function runSearch(
  layers: readonly QuantLayerInfo[],
  settings: SearchSettings,
  evaluator: Evaluator,
  log: SearchLog,
): Promise<SearchResult> {
  checkSearchSettings(layers, settings);
  const { fpAccuracy: A, tolerance } = settings;
  if (!(A >= 0 && A <= 100)) throw new Error(`fpAccuracy ${A}: expected a percentage in [0, 100]`);
  const format = checkSearchFormat(settings);
  const { minimumAccuracy, step1Min } = searchThresholds(A, tolerance);
  const step2Weights = memoryBitsFor(layers, settings.memoryBudgetMB, format);
  const run = new SearchRun(layers, settings, evaluator, log);
  const result = (branch: SearchResult['branch'], models: SearchResult['models']): SearchResult => ({
    minimumAccuracy,
    steps: run.steps,
    branch,
    models,
    evaluations: run.evaluations,
    notes: run.notes,
  });

  log.info(
    `full-precision accuracy ${A}%, minimum quantized accuracy ${minimumAccuracy}%, memory budget ${settings.memoryBudgetMB} MB`,
  );
  const step1 = await step1LayerUniform(run, layers, format, step1Min);
  const step2 = await step2MemoryBudget(run, step1, step2Weights);
  const min = countRange(format).min;
  if (step2.accuracy > minimumAccuracy) {
    const satisfied = await branchA(run, layers, settings.compat, min, step2, minimumAccuracy);
    return result('A', [{ kind: 'satisfied', result: satisfied }]);
  }
  const accuracyModel = await step3B(run, layers, min, step1, minimumAccuracy);
  return result('B', [
    { kind: 'memory', result: step2 },
    { kind: 'accuracy', result: accuracyModel },
  ]);
}

/** STEP 1: one N for all weights, activations and routing values, the fewest bits that keep
 *  accuracy > step1Min; returns the configuration (its exact accuracy is reported). */
async function step1LayerUniform(
  run: SearchRun,
  layers: readonly QuantLayerInfo[],
  format: NumberFormat,
  step1Min: number,
): Promise<BitConfig> {
  run.startStep('step1', 'STEP 1: layer-uniform quantization');
  const step1 = uniformBits(layers, await uniformBitsSearch(run, layers, format, step1Min), format);
  await run.finishStep('step1', step1);
  return step1;
}

/** Step 1's binary search, as the reference runs it: 32 bits, then 16, then half the last
 *  move down after a pass or up after a fail, until a move of 1; the last N that passed. When
 *  32 bits fail already, 32 with a note. (Under 'dynamic' 32 is the widest width; the moves
 *  never go below 1 in either format.) */
async function uniformBitsSearch(
  run: SearchRun,
  layers: readonly QuantLayerInfo[],
  format: NumberFormat,
  step1Min: number,
): Promise<number> {
  const tried: { bits: number; passed: boolean }[] = [];
  const first = await run.test('step1', uniformBits(layers, 32, format), step1Min, true);
  tried.push({ bits: 32, passed: first.passed });
  if (!first.passed) {
    run.note(`even 32 bits miss the step-1 target (> ${step1Min}%): step 1 keeps 32 bits`);
    return 32;
  }
  tried.push({ bits: 16, passed: false });
  for (;;) {
    const cur = tried[tried.length - 1];
    cur.passed = (await run.test('step1', uniformBits(layers, cur.bits, format), step1Min, true)).passed;
    const prev = tried[tried.length - 2];
    const delta = Math.abs(cur.bits - prev.bits);
    if (delta === 1) break;
    tried.push({ bits: Math.trunc(cur.passed ? cur.bits - delta / 2 : cur.bits + delta / 2), passed: false });
  }
  return [...tried].reverse().find((t) => t.passed)!.bits;
}

/** STEP 2: the weight bits that fit the memory budget (memoryBits); activations and routing
 *  keep step 1's. The result decides the branch. */
async function step2MemoryBudget(run: SearchRun, step1: BitConfig, weightBits: number[]): Promise<StepResult> {
  run.startStep('step2', 'STEP 2: memory budget');
  const step2: BitConfig = step1.map((l, i) => ({ ...l, weight: weightBits[i] }));
  return run.finishStep('step2', step2);
}

/** BRANCH A (step 2 kept more than the minimum accuracy): activation bits (3A), then routing
 *  bits (4A), lowered from step 2's configuration; returns the satisfied model. */
async function branchA(
  run: SearchRun,
  layers: readonly QuantLayerInfo[],
  compat: SearchSettings['compat'],
  min: number,
  step2: StepResult,
  minimumAccuracy: number,
): Promise<StepResult> {
  const step2Acc = step2.accuracy;
  const step3AMin = step2Acc - ((step2Acc - minimumAccuracy) * 55) / 100;
  const cfg = cloneBits(step2.bits);
  await step3A(run, layers, compat, min, cfg, step3AMin);
  return step4A(run, layers, min, cfg, minimumAccuracy);
}

/** STEP 3A: layer-wise activation bits (accuracy >= step3AMin), each routing layer's routing
 *  bits following the activation bits of the layer they are mapped to; lowers `cfg` in place. */
async function step3A(
  run: SearchRun,
  layers: readonly QuantLayerInfo[],
  compat: SearchSettings['compat'],
  min: number,
  cfg: BitConfig,
  step3AMin: number,
): Promise<StepResult> {
  run.startStep('step3A', 'STEP 3A: layer-wise activation bits');
  // the layer whose activation bits each routing layer's routing bits follow: its own, or
  // under dac2020 the reference's (a position in the list of layers without the capsule
  // layers that do not route)
  const routingLayers = routingIndices(layers);
  const followed =
    compat === 'dac2020'
      ? layers
          .flatMap((l, i) => (l.capsule && !l.routes ? [] : [{ i, routes: l.routes }]))
          .map((e, pos) => (e.routes ? pos : -1))
          .filter((p) => p >= 0)
      : routingLayers;
  await lowerLayerwise(
    layers.length,
    min,
    (k) => cfg[k].act,
    (from, delta) => {
      for (let k = from; k < layers.length; k++) cfg[k].act += delta;
      followed.forEach((layer, x) => (cfg[routingLayers[x]].routing = cfg[layer].act));
    },
    async () => (await run.test('step3A', cfg, step3AMin, false)).passed,
  );
  return run.finishStep('step3A', cfg);
}

/** STEP 4A: layer-wise routing bits (accuracy >= A_min) of the layers that iterate (routing
 *  with one iteration has nothing to quantize); lowers `cfg` in place. */
async function step4A(
  run: SearchRun,
  layers: readonly QuantLayerInfo[],
  min: number,
  cfg: BitConfig,
  minimumAccuracy: number,
): Promise<StepResult> {
  run.startStep('step4A', 'STEP 4A: layer-wise dynamic routing bits');
  const iterating = routingIndices(layers).filter((layer) => layers[layer].iterations > 1);
  const routingOf = (layer: number) => cfg[layer].routing as number;
  await lowerLayerwise(
    iterating.length,
    min,
    (k) => routingOf(iterating[k]),
    (from, delta) => {
      for (let k = from; k < iterating.length; k++) cfg[iterating[k]].routing = routingOf(iterating[k]) + delta;
    },
    async () => (await run.test('step4A', cfg, minimumAccuracy, false)).passed,
  );
  return run.finishStep('step4A', cfg);
}

/** BRANCH B, STEP 3B (step 2 missed the minimum accuracy): layer-wise weight bits (accuracy
 *  >= A_min) lowered from step 1's configuration; returns the accuracy model. */
async function step3B(
  run: SearchRun,
  layers: readonly QuantLayerInfo[],
  min: number,
  step1: BitConfig,
  minimumAccuracy: number,
): Promise<StepResult> {
  run.startStep('step3B', 'STEP 3B: layer-wise weight bits');
  const cfg = cloneBits(step1);
  await lowerLayerwise(
    layers.length,
    min,
    (k) => cfg[k].weight,
    (from, delta) => {
      for (let k = from; k < layers.length; k++) cfg[k].weight += delta;
    },
    async () => (await run.test('step3B', cfg, minimumAccuracy, false)).passed,
  );
  return run.finishStep('step3B', cfg);
}
