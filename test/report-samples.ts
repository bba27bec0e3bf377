// Small run results built by hand for the report tests: a search (with repeated and stopped-
// early evaluations), a sweep of two methods, a sensitivity analysis; and the Pareto front
// computed the slow way (every pair), independently of src/report/pareto.ts.
import type { SearchReport } from '../src/report/search-json.js';
import { weightMemoryMB } from '../src/quant/memory.js';
import type { SensitivityResult } from '../src/search/sensitivity.js';
import type { SweepPoint, SweepResult } from '../src/search/sweep-result.js';

/** Indices of the points no other point dominates (>= accuracy and <= memory, one strict),
 *  one per distinct (memory, accuracy), by memory ascending. */
export function bruteForceFront(points: { memoryMB: number; accuracy: number }[]): number[] {
  const front = points
    .map((p, i) => ({ p, i }))
    .filter(
      ({ p }) =>
        !points.some(
          (q) =>
            q.accuracy >= p.accuracy &&
            q.memoryMB <= p.memoryMB &&
            (q.accuracy > p.accuracy || q.memoryMB < p.memoryMB),
        ),
    );
  const seen = new Set<string>();
  return front
    .filter(({ p }) => {
      const k = `${p.memoryMB},${p.accuracy}`;
      return !seen.has(k) && seen.add(k);
    })
    .sort((a, b) => a.p.memoryMB - b.p.memoryMB)
    .map(({ i }) => i);
}

const LAYERS = [
  { name: 'conv', paramCount: 20992, routes: false, iterations: 0 },
  { name: 'primary', paramCount: 5308672, routes: true, iterations: 1 },
  { name: 'digit', paramCount: 1474560, routes: true, iterations: 3 },
];
const PARAMS = LAYERS.map((l) => l.paramCount);

function evaluation(
  step: string,
  w: number[],
  a: number[],
  r: number[],
  acc: number | null,
  bounds?: [number, number],
) {
  return {
    step,
    weightBits: w,
    actBits: a,
    routingBits: r,
    accuracy: acc,
    lower: bounds ? bounds[0] : acc!,
    upper: bounds ? bounds[1] : acc!,
    exact: acc !== null,
    passed: acc !== null && acc > 88,
    reused: false,
    seconds: 0.5,
  };
}

function step(s: string, w: number[], a: number[], r: number[], accuracy: number) {
  const memoryMB = weightMemoryMB(PARAMS, w);
  return {
    step: s,
    weightBits: w,
    actBits: a,
    routingBits: r,
    accuracy,
    memoryMB,
    reduction: weightMemoryMB(PARAMS, [31, 31, 31]) / memoryMB,
    activationKB: 37 * (a.reduce((x, y) => x + y + 1, 0) / 3),
    activationReduction: 32 / ((a.reduce((x, y) => x + y + 1, 0) / 3) | 1),
  };
}

/** A branch-B search: 11 evaluations of 9 distinct configurations (one repeated exactly, one
 *  evaluated first with an early stop and then exactly), one of them only bounded. */
export function sampleSearch(): SearchReport {
  const evaluations = [
    evaluation('step1', [16, 16, 16], [16, 16, 16], [16, 16], 91.2),
    evaluation('step1', [8, 8, 8], [8, 8, 8], [8, 8], 90.8),
    evaluation('step1', [4, 4, 4], [4, 4, 4], [4, 4], 70.1),
    evaluation('step1', [6, 6, 6], [6, 6, 6], [6, 6], 89.9),
    evaluation('step2', [6, 5, 4], [6, 6, 6], [6, 6], null, [40, 60]),
    evaluation('step2', [6, 5, 4], [6, 6, 6], [6, 6], 55.5),
    evaluation('step2', [7, 6, 5], [6, 6, 6], [6, 6], 89.5),
    evaluation('step3B', [6, 5, 6], [6, 6, 6], [6, 6], 89.6),
    evaluation('step3B', [6, 4, 6], [6, 6, 6], [6, 6], null, [10, 35]),
    evaluation('step3B', [6, 6, 6], [6, 6, 6], [6, 6], 89.9),
    evaluation('step3B', [5, 5, 6], [6, 6, 6], [6, 6], 89.0),
  ];
  const steps = [
    step('step1', [6, 6, 6], [6, 6, 6], [6, 6], 89.9),
    step('step2', [7, 6, 5], [6, 6, 6], [6, 6], 89.5),
    step('step3B', [5, 5, 6], [6, 6, 6], [6, 6], 89.0),
  ];
  return {
    tool: 'qcapsnets',
    settings: {
      model: 'ShallowCapsNet',
      'quantization-method': 'round_to_nearest',
      'memory-budget': 4,
      'accuracy-tolerance': 2,
    },
    layers: LAYERS,
    fullPrecisionAccuracy: 91.25,
    minimumAccuracy: 89.425,
    branch: 'B',
    steps,
    models: [
      { kind: 'memory', file: '/runs/net_quantized_memory.pt', ...steps[2], correct: 890, total: 1000 },
      { kind: 'accuracy', file: '/runs/net_quantized_accuracy.pt', ...steps[1], correct: 895, total: 1000 },
    ],
    evaluations,
    notes: ['the memory budget is met only below A_min: branch B'],
    seconds: 12.5,
  };
}

const bits = (w: number[], a: number[], r: number[]) => ({ weightBits: w, actBits: a, routingBits: r });

function point(method: SweepPoint['method'], w: number[], accuracy: number, exact = true): SweepPoint {
  return {
    method,
    bits: bits(w, [6, 6, 6], [6, 6]),
    accuracy,
    exact,
    weightMemoryMB: weightMemoryMB(PARAMS, w),
    activationKB: 260,
  };
}

/** Two methods x two tolerances x one budget. */
export function sampleSweep(): SweepResult {
  const evaluated = [
    point('round_to_nearest', [8, 8, 8], 91),
    point('round_to_nearest', [6, 6, 6], 90.2),
    point('round_to_nearest', [6, 5, 4], 55.5),
    point('round_to_nearest', [5, 5, 6], 89.6),
    point('round_to_nearest', [4, 4, 4], 20, false),
    point('truncation', [8, 8, 8], 90.5),
    point('truncation', [6, 6, 6], 88.1),
    point('truncation', [7, 6, 6], 89.9),
    point('truncation', [5, 5, 5], 60),
  ];
  const model = (kind: 'satisfied' | 'memory' | 'accuracy', p: SweepPoint) => ({
    kind,
    bits: p.bits,
    accuracy: p.accuracy,
    testAccuracy: null,
    weightMemoryMB: p.weightMemoryMB,
    weightReduction: weightMemoryMB(PARAMS, [31, 31, 31]) / p.weightMemoryMB,
    activationKB: p.activationKB,
    activationReduction: 4.6,
  });
  const row = (method: SweepPoint['method'], tolerance: number, models: ReturnType<typeof model>[]) => ({
    tolerance,
    memoryBudgetMB: 4,
    method,
    branch: models.length === 1 ? ('A' as const) : ('B' as const),
    models,
    evaluations: 9,
    newEvaluations: 4,
    seconds: 3.5,
  });
  const all = evaluated.map((p) => ({ memoryMB: p.weightMemoryMB, accuracy: p.accuracy }));
  return {
    tool: 'qcapsnets sweep',
    version: 1,
    model: { kind: 'ShallowCapsNet', args: [28, 1, 10, 16], file: '/runs/net.pt', sha256: 'ab'.repeat(32) },
    settings: { dataset: 'fashion-mnist', testImages: 1000, selectionSplit: 0, seed: 42, compat: 'none' },
    grid: { tolerances: [1, 2], memoryBudgetsMB: [4], methods: ['round_to_nearest', 'truncation'] },
    shard: null,
    fullPrecisionAccuracy: 91.25,
    fullPrecisionMemoryMB: weightMemoryMB(PARAMS, [31, 31, 31]),
    fullPrecisionActivationKB: 1184,
    rows: [
      row('round_to_nearest', 1, [model('memory', evaluated[3]), model('accuracy', evaluated[1])]),
      row('round_to_nearest', 2, [model('satisfied', evaluated[3])]),
      row('truncation', 1, [model('memory', evaluated[7]), model('accuracy', evaluated[5])]),
      row('truncation', 2, [model('satisfied', evaluated[7])]),
    ],
    evaluated,
    pareto: bruteForceFront(all),
    evaluations: 9,
    middleCellEvaluations: 9,
    seconds: 14,
  };
}

/** Three layers, 4 bit counts: 8 curves (conv has no routing). */
export function sampleSensitivity(): SensitivityResult {
  const b = [1, 2, 4, 8];
  const curve = (layer: string, kind: 'weights' | 'activations' | 'routing', acc: number[]) => ({
    layer,
    kind,
    bits: b,
    accuracy: acc,
  });
  return {
    tool: 'qcapsnets sensitivity',
    version: 1,
    model: { kind: 'ShallowCapsNet', args: [28, 1, 10, 16], file: '/runs/net.pt' },
    settings: {
      dataset: 'fashion-mnist',
      testImages: 1000,
      method: 'round_to_nearest',
      compat: 'none',
      seed: 42,
      batchSize: 100,
      bits: b,
    },
    layers: LAYERS.map(({ name, paramCount, routes }) => ({ name, paramCount, routes })),
    fullPrecisionAccuracy: 91.25,
    curves: [
      curve('conv', 'weights', [12, 40, 88, 91.2]),
      curve('conv', 'activations', [30, 70, 90, 91.3]),
      curve('primary', 'weights', [10, 20, 85, 91]),
      curve('primary', 'activations', [50, 80, 90.5, 91.25]),
      curve('primary', 'routing', [88, 90, 91, 91.25]),
      curve('digit', 'weights', [60, 85, 90, 91.2]),
      curve('digit', 'activations', [70, 88, 91, 91.25]),
      curve('digit', 'routing', [80, 89, 91.1, 91.25]),
    ],
    evaluations: 32,
    seconds: 40,
  };
}
