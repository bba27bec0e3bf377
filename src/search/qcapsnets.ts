// The Q-CapsNets search (SPEC 5; Marchisio et al., DAC 2020): steps 1, 2, 3A, 4A and 3B.
// Pure decision logic over an Evaluator; the rounding and the forward pass live elsewhere.
//   A_min = A (1 - t/100); step 1 keeps > A - 5% of (A - A_min); step 2 fits the memory budget
//   with a falling pattern of weight bits; branch A (step-2 accuracy > A_min) lowers activation
//   bits (3A, >= step2 - 55% of (step2 - A_min)) then routing bits (4A, >= A_min); branch B
//   lowers weight bits from the step-1 configuration (3B, >= A_min).
// `compat: 'dac2020'` reproduces the reference code's mapping of routing bits in step 3A
// (its index skips capsule layers that do not route, which shifts it for DeepCaps).
import type { BitConfig, QuantLayerInfo } from '../quant/config.js';
import { bitsText, bitsToLists, cloneBits, configKey, uniformBits } from '../quant/config.js';
import type { RoundingCompat } from '../quant/methods.js';
import { activationMemoryBits, BITS_PER_MB, minimumBudgetMB, weightMemoryBits } from '../quant/memory.js';
import type { Evaluation, Evaluator } from './evaluator.js';

export interface SearchSettings {
  fpAccuracy: number;
  tolerance: number;
  memoryBudgetMB: number;
  compat: RoundingCompat;
  /** elements per image at each layer's activation points (activationCounts), for the
   *  activation memory printed beside the weight memory; absent: not reported */
  activationCounts?: readonly number[];
}

export type StepName = 'step1' | 'step2' | 'step3A' | 'step4A' | 'step3B';

export interface EvaluationRecord extends Evaluation {
  step: StepName;
  bits: BitConfig;
  /** the step's test: accuracy > or >= threshold */
  threshold: number;
  strict: boolean;
  passed: boolean;
  cached: boolean;
}

export interface StepResult {
  step: StepName;
  bits: BitConfig;
  accuracy: number;
  memoryMB: number;
  reduction: number;
  /** activation memory per image in kB (1 kB = 8,000 bits) and its reduction against 32 bits,
   *  when the settings give activationCounts */
  activationKB?: number;
  activationReduction?: number;
}

export interface SearchResult {
  minimumAccuracy: number;
  steps: StepResult[];
  branch: 'A' | 'B';
  /** satisfied (branch A), or memory + accuracy (branch B) */
  models: { kind: 'satisfied' | 'memory' | 'accuracy'; result: StepResult }[];
  evaluations: EvaluationRecord[];
  notes: string[];
}

export interface SearchLog {
  info(line: string): void;
  /** called as each step starts (progress displays) */
  step?(step: StepName): void;
}

/** The budget must allow 1 bit per parameter (0 fractional bits everywhere). */
export function checkMemoryBudget(paramCounts: readonly number[], budgetMB: number): void {
  const minimum = minimumBudgetMB(paramCounts);
  if (!(budgetMB >= minimum)) {
    throw new Error(
      `memoryBudgetMB ${budgetMB} cannot be met: even 1 bit per parameter needs ${minimum} MB; ` +
        `use a budget of at least ${minimum} MB`,
    );
  }
}

/** Checks a search's settings against a model's layers before any evaluation. */
export function checkSearchSettings(
  layers: readonly QuantLayerInfo[],
  settings: Pick<SearchSettings, 'tolerance' | 'memoryBudgetMB'>,
): void {
  const { tolerance, memoryBudgetMB } = settings;
  if (!(tolerance > 0 && tolerance < 100)) throw new Error(`tolerance ${tolerance}: expected a percentage in (0, 100)`);
  if (layers.length === 0) throw new Error('layers: a search needs at least one layer');
  checkMemoryBudget(
    layers.map((l) => l.paramCount),
    memoryBudgetMB,
  );
}

/** SPEC 5's layer-wise lowering, shared by steps 3A, 4A and 3B: for each position l in turn,
 *  take one bit off positions l..count-1 together while the configuration passes (and none
 *  would go below 0 bits); at the first fail put that bit back and move on to l + 1. */
async function lowerLayerwise(
  count: number,
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
      for (let k = l; k < count; k++) floor ||= bitsAt(k) <= 0;
      if (floor) break;
      shift(l, -1);
    }
  }
}

/** Step 2's weight bits: [N, N-1, ..., N-slope+1, N-slope+1, ...] with the largest N whose
 *  memory fits, the gentlest slope needed for the last layer to keep >= 0 bits. */
export function memoryBits(paramCounts: readonly number[], budgetMB: number): number[] {
  checkMemoryBudget(paramCounts, budgetMB);
  const budgetBits = budgetMB * BITS_PER_MB;
  const n = paramCounts.length;
  for (let slope = 5; slope >= 0; slope--) {
    const decrease = paramCounts.map((_, l) => -Math.min(l, Math.max(slope - 1, 0)));
    for (let N = 32; ; N--) {
      const bits = decrease.map((d) => N + d);
      if (weightMemoryBits(paramCounts, bits) <= budgetBits) {
        if (bits[n - 1] >= 0) return bits;
        break;
      }
    }
  }
  // slope 0 is uniform bits and always ends at N >= 0 given the check above
  throw new Error('memory: no weight bit pattern fits the budget');
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
  const paramCounts = layers.map((l) => l.paramCount);
  const fp32Bits = paramCounts.reduce((a, b) => a + b, 0) * 32;
  // the same floating-point expressions as the reference code, so thresholds match exactly
  const minimumAccuracy = A - (tolerance / 100) * A;
  const accReduction = A - minimumAccuracy;
  const step1Min = A - (5 / 100) * accReduction;
  const step2Weights = memoryBits(paramCounts, settings.memoryBudgetMB);

  const evaluations: EvaluationRecord[] = [];
  const cache = new Map<string, Evaluation>();
  const notes: string[] = [];

  /** Evaluates (or reuses) a configuration against `acc > t` (strict) or `acc >= t`. */
  async function test(step: StepName, bits: BitConfig, threshold: number, strict: boolean): Promise<EvaluationRecord> {
    const pass = (acc: number) => (strict ? acc > threshold : acc >= threshold);
    const key = configKey(bits);
    let e = cache.get(key);
    let cached = true;
    if (!e || (!e.exact && pass(e.lower) !== pass(e.upper))) {
      cached = false;
      e = await evaluator.evaluate(bits, (lo, hi) => pass(lo) === pass(hi));
      const prev = cache.get(key);
      if (!prev || e.exact || !prev.exact) cache.set(key, e);
    }
    const rec: EvaluationRecord = {
      ...e,
      step,
      bits: cloneBits(bits),
      threshold,
      strict,
      passed: pass(e.lower),
      cached,
    };
    evaluations.push(rec);
    const resumed = e.resumedAfter ? ` (resumed after ${e.resumedAfter} images)` : '';
    const acc = e.exact
      ? `${e.accuracy.toFixed(2)}%${resumed}`
      : `in [${e.lower.toFixed(2)}, ${e.upper.toFixed(2)}]% after ${e.seen}/${e.total} images (decided early)`;
    log.info(
      `  ${step} try ${bitsText(bits)}: ${acc} ${rec.passed ? 'passes' : 'fails'} ` +
        `${strict ? '>' : '>='} ${threshold.toFixed(2)}%${cached ? ' (reused)' : ''}`,
    );
    return rec;
  }

  /** The exact accuracy of a configuration: a full pass, or the rest of one that stopped
   *  early (the evaluator resumes it), unless one was done already. */
  async function exact(step: StepName, bits: BitConfig): Promise<number> {
    const hit = cache.get(configKey(bits));
    if (hit?.exact) return hit.accuracy;
    const e = await evaluator.evaluate(bits);
    cache.set(configKey(bits), e);
    evaluations.push({ ...e, step, bits: cloneBits(bits), threshold: NaN, strict: false, passed: true, cached: false });
    return e.accuracy;
  }

  const steps: StepResult[] = [];
  const report = (step: StepName, bits: BitConfig, accuracy: number): StepResult => {
    const lists = bitsToLists(bits);
    const mem = weightMemoryBits(paramCounts, lists.weightBits);
    const r: StepResult = {
      step,
      bits: cloneBits(bits),
      accuracy,
      memoryMB: mem / BITS_PER_MB,
      reduction: fp32Bits / mem,
    };
    const counts = settings.activationCounts;
    if (counts) {
      const act = activationMemoryBits(counts, lists.actBits);
      r.activationKB = act / 8000;
      r.activationReduction = (counts.reduce((a, b) => a + b, 0) * 32) / act;
    }
    steps.push(r);
    log.info(`${step.toUpperCase()} output:`);
    log.info(`  weight bits:          [${lists.weightBits.join(', ')}]`);
    log.info(`  activation bits:      [${lists.actBits.join(', ')}]`);
    log.info(`  dynamic routing bits: [${lists.routingBits.join(', ')}]`);
    log.info(
      `  accuracy: ${accuracy.toFixed(2)}%   weight memory: ${r.memoryMB.toFixed(4)} MB (${r.reduction.toFixed(2)}x smaller than 32 bits)`,
    );
    if (r.activationKB !== undefined)
      log.info(
        `  activation memory: ${r.activationKB.toFixed(1)} kB per image (${r.activationReduction!.toFixed(2)}x smaller than 32 bits)`,
      );
    return r;
  };

  log.info(
    `full-precision accuracy ${A}%, minimum quantized accuracy ${minimumAccuracy}%, memory budget ${settings.memoryBudgetMB} MB`,
  );

  // STEP 1: one N for all weights, activations and routing values; binary search from 32.
  log.step?.('step1');
  log.info('STEP 1: layer-uniform quantization');
  const tried: { bits: number; passed: boolean }[] = [];
  const first = await test('step1', uniformBits(layers, 32), step1Min, true);
  tried.push({ bits: 32, passed: first.passed });
  let step1Bits = 32;
  if (first.passed) {
    tried.push({ bits: 16, passed: false });
    for (;;) {
      const cur = tried[tried.length - 1];
      cur.passed = (await test('step1', uniformBits(layers, cur.bits), step1Min, true)).passed;
      const prev = tried[tried.length - 2];
      const delta = Math.abs(cur.bits - prev.bits);
      if (delta === 1) break;
      tried.push({ bits: Math.trunc(cur.passed ? cur.bits - delta / 2 : cur.bits + delta / 2), passed: false });
    }
    step1Bits = [...tried].reverse().find((t) => t.passed)!.bits;
  } else {
    const note = `even 32 bits miss the step-1 target (> ${step1Min}%): step 1 keeps 32 bits`;
    notes.push(note);
    log.info(`  ${note}`);
  }
  const step1 = uniformBits(layers, step1Bits);
  report('step1', step1, await exact('step1', step1));

  // STEP 2: weight bits that fit the memory budget; activations and routing keep step 1's.
  log.step?.('step2');
  log.info('STEP 2: memory budget');
  const step2: BitConfig = step1.map((l, i) => ({ ...l, fracWeight: step2Weights[i] }));
  const step2Acc = await exact('step2', step2);
  const step2Result = report('step2', step2, step2Acc);

  const routingLayers = layers.flatMap((l, i) => (l.routes ? [i] : []));
  if (step2Acc > minimumAccuracy) {
    // BRANCH A
    const step3AMin = step2Acc - ((step2Acc - minimumAccuracy) * 55) / 100;
    log.step?.('step3A');
    log.info('STEP 3A: layer-wise activation bits');
    // the layer whose activation bits each routing layer's routing bits follow: its own, or
    // under dac2020 the reference's (a position in the list of layers without the capsule
    // layers that do not route)
    const followed =
      settings.compat === 'dac2020'
        ? layers
            .flatMap((l, i) => (l.capsule && !l.routes ? [] : [{ i, routes: l.routes }]))
            .map((e, pos) => (e.routes ? pos : -1))
            .filter((p) => p >= 0)
        : routingLayers;
    const cfg = cloneBits(step2);
    await lowerLayerwise(
      layers.length,
      (k) => cfg[k].fracAct,
      (from, delta) => {
        for (let k = from; k < layers.length; k++) cfg[k].fracAct += delta;
        followed.forEach((layer, x) => (cfg[routingLayers[x]].fracRouting = cfg[layer].fracAct));
      },
      async () => (await test('step3A', cfg, step3AMin, false)).passed,
    );
    report('step3A', cfg, await exact('step3A', cfg));

    log.step?.('step4A');
    log.info('STEP 4A: layer-wise dynamic routing bits');
    // only the layers that iterate (routing with one iteration has nothing to quantize)
    const iterating = routingLayers.filter((layer) => layers[layer].iterations > 1);
    const routingOf = (layer: number) => cfg[layer].fracRouting as number;
    await lowerLayerwise(
      iterating.length,
      (k) => routingOf(iterating[k]),
      (from, delta) => {
        for (let k = from; k < iterating.length; k++) cfg[iterating[k]].fracRouting = routingOf(iterating[k]) + delta;
      },
      async () => (await test('step4A', cfg, minimumAccuracy, false)).passed,
    );
    const satisfied = report('step4A', cfg, await exact('step4A', cfg));
    return {
      minimumAccuracy,
      steps,
      branch: 'A',
      models: [{ kind: 'satisfied', result: satisfied }],
      evaluations,
      notes,
    };
  }

  // BRANCH B
  log.step?.('step3B');
  log.info('STEP 3B: layer-wise weight bits');
  const cfg = cloneBits(step1);
  await lowerLayerwise(
    layers.length,
    (k) => cfg[k].fracWeight,
    (from, delta) => {
      for (let k = from; k < layers.length; k++) cfg[k].fracWeight += delta;
    },
    async () => (await test('step3B', cfg, minimumAccuracy, false)).passed,
  );
  const accuracyModel = report('step3B', cfg, await exact('step3B', cfg));
  return {
    minimumAccuracy,
    steps,
    branch: 'B',
    models: [
      { kind: 'memory', result: step2Result },
      { kind: 'accuracy', result: accuracyModel },
    ],
    evaluations,
    notes,
  };
}
