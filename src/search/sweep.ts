// A grid of searches in one run (issue 12): tolerances x memory budgets x rounding methods.
// Cells run in grid order (methods, then tolerances, then budgets). All cells of one method
// share one FastEvaluator, so its prefix caches and early-stopped partial counts carry over
// from cell to cell, and one CachingEvaluator over an EvalCache, so a configuration another
// cell (or an earlier run, with a cache file) evaluated is answered without running it again,
// exactly as a fresh evaluator would answer it (src/search/eval-cache.ts): every cell makes
// the decisions of the same search alone.
//
// A shard (index i of n, 1-based) runs the cells k (0-based, grid order) with k mod n = i - 1.
import { copyModel } from '../models/factory.js';
import type { CapsNet, QuantLayerInfo } from '../models/capsnet.js';
import type { Dataset } from '../data/dataset.js';
import { checkImagesFit, type ImageSource } from '../models/evaluate.js';
import { activationCounts } from '../quant/activation-volume.js';
import type { Calibration } from '../quant/calibration.js';
import { parseWeightRange, type WeightRange } from '../quant/dynamic.js';
import { bitsToLists, configKey, type NumberFormat } from '../quant/config.js';
import { activationMemoryBits, BITS_PER_MB, formatMemoryBits, fullPrecisionMemoryMB } from '../quant/memory.js';
import type { RoundingCompat } from '../quant/methods.js';
import { ModelQuantizer } from '../quant/quantized-forward.js';
import type { QuantMethod } from '../tensor/backend.js';
import { CachingEvaluator, type EvalCache, type StoredEvaluation } from './eval-cache.js';
import { FastEvaluator } from './fast-evaluator.js';
import { checkSearchFormat, checkSearchSettings, runSearch } from './qcapsnets.js';
import { checkCalibrationImages, searchCalibration } from './search-model.js';
import { finetuneForSearch, isDataset, narrowestLayersNote, type SearchFinetuneOptions } from './search-finetune.js';
import type { SweepBits, SweepModel, SweepPoint, SweepResult, SweepRow } from './sweep-result.js';

export interface SweepGrid {
  tolerances: number[];
  memoryBudgetsMB: number[];
  methods: QuantMethod[];
}

export interface SweepShard {
  index: number;
  count: number;
}

export interface SweepOptions {
  grid: SweepGrid;
  shard: SweepShard | null;
  compat: RoundingCompat;
  seed: number;
  batchSize: number;
  cacheMB: number;
  earlyStop: boolean;
  /** the configurations' number format (default 'fixed'; see SearchOptions.numberFormat) */
  numberFormat?: NumberFormat;
  /** 'dynamic': calibrate on the first N test images (default 500; all when fewer) */
  calibrationImages?: number;
  /** 'dynamic': this calibration instead */
  calibration?: Calibration;
  /** 'dynamic': the weight range rule (default 'max'; see SearchOptions.weightRange) */
  weightRange?: WeightRange;
  /** after each cell's search, fine-tune its memory model (branch B) this many epochs on
   *  finetune.train and evaluate it again (searchModel's finetuneEpochs; cells with the same
   *  method and bits share one fine-tuning). Default 0: nothing changes */
  finetuneEpochs?: number;
  /** finetuneEpochs > 0: the training images and training's options */
  finetune?: SearchFinetuneOptions;
  /** shared by every cell; its header must fit this model, these images and settings */
  evalCache: EvalCache;
  /** one line per cell, as it ends */
  log?: (line: string) => void;
}

/** What a sweep computes: the SweepResult without its file's identity (tool, model, settings,
 *  grid, shard, seconds), the image counts always present. */
export type SweepCore = Pick<
  SweepResult,
  | 'fullPrecisionAccuracy'
  | 'fullPrecisionMemoryMB'
  | 'fullPrecisionActivationKB'
  | 'rows'
  | 'evaluated'
  | 'pareto'
  | 'evaluations'
  | 'middleCellEvaluations'
> &
  Required<Pick<SweepResult, 'imagesEvaluated' | 'middleCellImages'>>;

export interface SweepCell {
  /** position in grid order */
  index: number;
  method: QuantMethod;
  tolerance: number;
  memoryBudgetMB: number;
}

/** Every cell of the grid, in grid order (methods, then tolerances, then budgets). */
export function gridCells(grid: SweepGrid): SweepCell[] {
  const cells: SweepCell[] = [];
  for (const method of grid.methods)
    for (const tolerance of grid.tolerances)
      for (const memoryBudgetMB of grid.memoryBudgetsMB)
        cells.push({ index: cells.length, method, tolerance, memoryBudgetMB });
  return cells;
}

/** The cells of a shard: k mod count = index - 1. */
export function shardCells(grid: SweepGrid, shard: SweepShard | null): SweepCell[] {
  const all = gridCells(grid);
  return shard ? all.filter((c) => c.index % shard.count === shard.index - 1) : all;
}

/** The middle cell: the first method's middle tolerance and middle budget (the lower middle
 *  of an even axis). The sweep's cost is compared with its search alone. */
export function middleCell(grid: SweepGrid): SweepCell {
  const t = Math.floor((grid.tolerances.length - 1) / 2);
  const b = Math.floor((grid.memoryBudgetsMB.length - 1) / 2);
  return gridCells(grid)[t * grid.memoryBudgetsMB.length + b];
}

/** Checks a grid and a shard; the errors name the axis or the shard. `paramCounts`: the
 *  layers' parameter counts, or the layers themselves (their tensor counts too, which a
 *  'dynamic' budget needs). */
export function checkSweepGrid(
  grid: SweepGrid,
  shard: SweepShard | null,
  paramCounts: readonly number[] | readonly QuantLayerInfo[],
  names = { tolerances: 'tolerances', memoryBudgetsMB: 'memoryBudgetsMB', methods: 'methods', shard: 'shard' },
  numberFormat: NumberFormat = 'fixed',
): void {
  for (const axis of ['tolerances', 'memoryBudgetsMB', 'methods'] as const) {
    if (grid[axis].length === 0) throw new Error(`${names[axis]}: the grid axis is empty; expected one value or more`);
    if (new Set<unknown>(grid[axis]).size !== grid[axis].length)
      throw new Error(`${names[axis]} ${grid[axis].join(',')}: a value appears twice`);
  }
  const layers: readonly QuantLayerInfo[] = paramCounts.map((l: number | QuantLayerInfo) =>
    typeof l === 'number' ? { name: '', paramCount: l, routes: false, iterations: 0, capsule: false } : l,
  );
  for (const tolerance of grid.tolerances)
    for (const memoryBudgetMB of grid.memoryBudgetsMB)
      checkSearchSettings(layers, { tolerance, memoryBudgetMB, numberFormat });
  if (shard) {
    const { index, count } = shard;
    if (!(Number.isInteger(count) && count >= 1 && Number.isInteger(index) && index >= 1 && index <= count))
      throw new Error(`${names.shard} ${index}/${count}: expected i/n with 1 <= i <= n`);
  }
}

/** Runs the grid's cells (a shard's share) on a trained model over `test`. */
export async function runSweep(model: CapsNet, test: ImageSource, o: SweepOptions): Promise<SweepCore> {
  const layers = model.quantLayers;
  const paramCounts = layers.map((l) => l.paramCount);
  let format: NumberFormat;
  let weightRange: WeightRange;
  try {
    weightRange = parseWeightRange(o.weightRange);
    format = checkSearchFormat({ numberFormat: o.numberFormat, compat: o.compat, weightRange });
  } catch (err) {
    throw new Error(`runSweep: options.${(err as Error).message}`, { cause: err });
  }
  const calibrationImages = o.calibrationImages ?? 500;
  checkCalibrationImages(calibrationImages, format, `runSweep: calibrationImages ${calibrationImages}`);
  checkSweepGrid(o.grid, o.shard, layers, undefined, format);
  const finetuneEpochs = o.finetuneEpochs ?? 0;
  if (!(Number.isSafeInteger(finetuneEpochs) && finetuneEpochs >= 0))
    throw new Error(`runSweep: options.finetuneEpochs ${finetuneEpochs}: expected a non-negative integer`);
  if (finetuneEpochs > 0) {
    if (!((o.finetune?.train?.count ?? 0) >= 1))
      throw new Error(
        `runSweep: options.finetuneEpochs ${finetuneEpochs} needs options.finetune.train, the training images to fine-tune on`,
      );
    checkImagesFit(model, o.finetune!.train, 'runSweep: options.finetune.train');
    if (!isDataset(test))
      throw new Error(`runSweep: options.finetuneEpochs ${finetuneEpochs} needs the test images as a Dataset`);
  }
  // method|bits -> the fine-tuned accuracy: identical cells share the work
  const finetuned = new Map<string, number>();
  const log = o.log ?? (() => {});
  const counts = activationCounts(model);
  const activationKB = (actBits: readonly number[]) => activationMemoryBits(counts, actBits, format) / 8000;
  const fp32MB = fullPrecisionMemoryMB(paramCounts);
  // the 32-bit baseline: 31 fractional bits and a sign ('fixed'), 32 bits a value
  const fp32ActKB =
    activationMemoryBits(
      counts,
      counts.map(() => 31),
    ) / 8000;
  const calibration = searchCalibration(
    'runSweep',
    model,
    test,
    {
      numberFormat: format,
      calibrationImages,
      calibration: o.calibration,
    },
    log,
  );
  const cells = shardCells(o.grid, o.shard);
  const rows: SweepRow[] = [];
  const points: SweepPoint[] = [];
  let fullPrecisionAccuracy = NaN;
  let evaluations = 0;
  let imagesEvaluated = 0;

  const net = copyModel(model); // the quantizers write its weights, never the caller's model
  for (const method of o.grid.methods) {
    const mine = cells.filter((c) => c.method === method);
    if (mine.length === 0) continue;
    // one method at a time: its quantizer writes the weights of `net` until restore()
    const quantizer = new ModelQuantizer(net, method, o.compat, o.seed, calibration, weightRange);
    const fast = new FastEvaluator(net, quantizer, test, {
      batchSize: o.batchSize,
      cacheMB: o.cacheMB,
      earlyStop: o.earlyStop,
    });
    const evaluator = new CachingEvaluator(fast, o.evalCache, method);
    try {
      const fp = await fast.evaluateFullPrecision();
      fullPrecisionAccuracy = fp.accuracy;
      for (const cell of mine) {
        const t0 = performance.now();
        const before = { ...evaluator.stats };
        evaluator.beginSearch();
        const search = await runSearch(
          layers,
          {
            fpAccuracy: fp.accuracy,
            tolerance: cell.tolerance,
            memoryBudgetMB: cell.memoryBudgetMB,
            compat: o.compat,
            numberFormat: format,
            activationCounts: counts,
          },
          evaluator,
          { info: () => {} },
        );
        const models: SweepModel[] = [];
        for (const m of search.models) {
          const bits = bitsToLists(m.result.bits);
          const act = activationKB(bits.actBits);
          const model0: SweepModel = {
            kind: m.kind,
            number_format: format,
            ...(weightRange === 'mse' ? { weight_range: weightRange } : {}),
            bits,
            accuracy: m.result.accuracy,
            testAccuracy: null,
            weightMemoryMB: m.result.memoryMB,
            weightReduction: m.result.reduction,
            activationKB: act,
            activationReduction: fp32ActKB / act,
          };
          if (finetuneEpochs === 0) models.push(model0);
          else if (m.kind !== 'memory') models.push({ ...model0, finetune_epochs: 0 });
          else {
            const key = `${method}|${configKey(m.result.bits)}`;
            let after = finetuned.get(key);
            if (after === undefined) {
              log(
                `  fine-tuning the memory model ${configKey(m.result.bits)} (${method}) for ${finetuneEpochs} epochs` +
                  narrowestLayersNote(m.result.bits),
              );
              after = (
                await finetuneForSearch(model, m.result.bits, test as Dataset, {
                  epochs: finetuneEpochs,
                  method,
                  compat: o.compat,
                  seed: o.seed,
                  calibration,
                  weightRange,
                  batchSize: o.batchSize,
                  order: fast.imageOrder,
                  training: o.finetune!,
                  log,
                })
              ).accuracy;
              finetuned.set(key, after);
            }
            models.push({
              ...model0,
              kind: after >= search.minimumAccuracy ? 'satisfied' : 'memory',
              accuracy: after,
              finetune_epochs: finetuneEpochs,
              kind_before_finetune: 'memory',
              accuracy_before_finetune: m.result.accuracy,
            });
          }
        }
        const row: SweepRow = {
          tolerance: cell.tolerance,
          memoryBudgetMB: cell.memoryBudgetMB,
          method,
          branch: search.branch,
          models,
          evaluations: evaluator.stats.queries - before.queries,
          newEvaluations: evaluator.stats.computed - before.computed,
          seconds: (performance.now() - t0) / 1000,
          imagesEvaluated: evaluator.stats.imagesAsked - before.imagesAsked,
        };
        rows.push(row);
        evaluations += row.newEvaluations;
        log(
          `cell ${cell.index + 1}/${gridCells(o.grid).length} (${method}, tolerance ${cell.tolerance}%, budget ` +
            `${cell.memoryBudgetMB.toFixed(4)} MB): branch ${row.branch}, ${row.evaluations} evaluations ` +
            `(${row.newEvaluations} new), ${row.seconds.toFixed(1)} s`,
        );
      }
    } finally {
      fast.clear();
      quantizer.restore();
    }
    imagesEvaluated += evaluator.stats.imagesRun;
    for (const e of evaluator.answered.values()) points.push(sweepPoint(e, layers, format, activationKB));
  }

  const evaluated = sortPoints(points, o.grid.methods);
  const middle = middleCell(o.grid);
  const middleRow = rows.find(
    (r) => r.method === middle.method && r.tolerance === middle.tolerance && r.memoryBudgetMB === middle.memoryBudgetMB,
  );
  return {
    fullPrecisionAccuracy,
    fullPrecisionMemoryMB: fp32MB,
    fullPrecisionActivationKB: fp32ActKB,
    rows,
    evaluated,
    pareto: paretoFront(evaluated),
    evaluations,
    // a shard without the middle cell reports 0; `qcapsnets merge` fills it in
    middleCellEvaluations: middleRow?.evaluations ?? 0,
    imagesEvaluated,
    middleCellImages: middleRow?.imagesEvaluated ?? 0,
  };
}

function sweepPoint(
  e: StoredEvaluation,
  layers: readonly QuantLayerInfo[],
  format: NumberFormat,
  activationKB: (actBits: readonly number[]) => number,
): SweepPoint {
  return {
    method: e.method,
    bits: { weightBits: [...e.bits.weightBits], actBits: [...e.bits.actBits], routingBits: [...e.bits.routingBits] },
    accuracy: e.exact ? e.accuracy : e.lower,
    exact: e.exact,
    weightMemoryMB: formatMemoryBits(layers, e.bits.weightBits, format) / BITS_PER_MB,
    activationKB: activationKB(e.bits.actBits),
  };
}

const bitsKey = (b: SweepBits) => configKey(b);

/** The canonical order of `evaluated`: by method (grid order), weight memory, then bits. */
export function sortPoints(points: SweepPoint[], methods: readonly QuantMethod[]): SweepPoint[] {
  return [...points].sort((p, q) => {
    const m = methods.indexOf(p.method) - methods.indexOf(q.method);
    if (m !== 0) return m;
    if (p.weightMemoryMB !== q.weightMemoryMB) return p.weightMemoryMB - q.weightMemoryMB;
    const a = bitsKey(p.bits);
    const b = bitsKey(q.bits);
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

/**
 * Indices of the Pareto front over (accuracy up, weight memory down), by weight memory
 * ascending (then accuracy descending). Only exact points take part: an early-stopped
 * evaluation knows a lower bound of its accuracy, which cannot place it on the front (its
 * accuracy is unknown), and using it to push others off would leave the front without the
 * point that does dominate them, so it is left out of the comparison altogether.
 */
export function paretoFront(points: readonly SweepPoint[]): number[] {
  // by weight memory ascending, then accuracy descending (then index): a point is off the
  // front when a point of less memory has as much accuracy or more (`before`, the best such
  // accuracy), or one of the same memory has more; O(n log n), so a merge of many shards'
  // points stays fast
  const order = points
    .flatMap((p, i) => (p.exact ? [i] : []))
    .sort(
      (i, j) => points[i].weightMemoryMB - points[j].weightMemoryMB || points[j].accuracy - points[i].accuracy || i - j,
    );
  const front: number[] = [];
  let before = -Infinity;
  for (let k = 0; k < order.length;) {
    const memory = points[order[k]].weightMemoryMB;
    const top = points[order[k]].accuracy; // the best of this memory (sorted first)
    let end = k;
    for (; end < order.length && points[order[end]].weightMemoryMB === memory; end++)
      if (points[order[end]].accuracy === top && top > before) front.push(order[end]);
    before = Math.max(before, top);
    k = end;
  }
  return front;
}
