// The whole search on a trained model, as a library call: the full-precision pass (the
// reference accuracy, and the margins that order the batches hardest first), then steps 1, 2,
// 3A/4A or 3B over the fast evaluator, then the chosen models as QuantizedModel values.
// Nothing is written; the command line writes the files (src/cli/search-job.ts).
import type { Dataset } from '../data/dataset.js';
import { copyModel } from '../models/factory.js';
import type { CapsNet, QuantLayerInfo } from '../models/capsnet.js';
import { checkImagesFit, type ImageSource } from '../models/evaluate.js';
import { activationCounts } from '../quant/activation-volume.js';
import { type Calibration, calibrate, calibrationHash, checkCalibration } from '../quant/calibration.js';
import type { NumberFormat } from '../quant/config.js';
import type { WeightRange } from '../quant/dynamic.js';
import { checkQuantizeOptions, QuantizedModel } from '../quant/quantized-model.js';
import { ModelQuantizer } from '../quant/quantized-forward.js';
import type { RoundingCompat } from '../quant/methods.js';
import type { QuantMethod } from '../tensor/backend.js';
import { CachingEvaluator, type EvalCache } from './eval-cache.js';
import type { Evaluator } from './evaluator.js';
import { FastEvaluator } from './fast-evaluator.js';
import { checkSearchFormat, checkSearchSettings, runSearch, type SearchResult, type StepName } from './qcapsnets.js';
import { DEFAULT_SEED } from '../tensor/seed.js';
import {
  finetuneSearchModels,
  isDataset,
  type SearchFinetuneModel,
  type SearchFinetuneOptions,
} from './search-finetune.js';

export interface SearchProgress {
  /** 'full-precision': the reference pass; then each step of the search in turn */
  phase: 'full-precision' | StepName;
  /** batches done and in all of the evaluation under way (0 as a step starts) */
  batch: number;
  batches: number;
  /** evaluations started so far (the full-precision pass not counted) */
  evaluations: number;
}

export interface SearchOptions {
  /** rounding method (SPEC 4) */
  method: QuantMethod;
  /** accuracy tolerance, percent of the full-precision accuracy (the reference's default: 2) */
  tolerance?: number;
  /** weight memory budget in MB (the reference's default: 200) */
  memoryBudgetMB?: number;
  /** 'none' (default) or 'dac2020' */
  compat?: RoundingCompat;
  /** the configurations' number format: 'fixed' (default; the DAC 2020 format) or 'dynamic'
   *  (every count a total width, fractional lengths from the ranges: docs/quantization.md) */
  numberFormat?: NumberFormat;
  /** 'dynamic': calibrate on the first N of the images the search decides on (default 500;
   *  all of them when there are fewer) */
  calibrationImages?: number;
  /** 'dynamic': this calibration instead (calibrate(model, images, count)) */
  calibration?: Calibration;
  /** 'dynamic': how weight tensors take their fractional lengths, 'max' (default) or 'mse'
   *  (docs/quantization.md); 'mse' under 'fixed' is an error */
  weightRange?: WeightRange;
  /** stochastic rounding's seed (default DEFAULT_SEED) */
  seed?: number;
  /** images per batch (default 100) */
  batchSize?: number;
  /** MB for intermediate results reused across evaluations (default 1024; 0: none) */
  cacheMB?: number;
  /** stop an evaluation once its pass/fail is certain (default true) */
  earlyStop?: boolean;
  /** dac2020: images of margin for deciding with the fast convolutions (default 0: exact) */
  approximateMarginImages?: number;
  /** evaluations of earlier runs to reuse, and where this run's go (src/search/eval-cache.ts);
   *  its header must name this model file and these test images (the caller checks those) */
  evalCache?: EvalCache;
  /** after the search, fine-tune the model that meets the memory budget but misses the
   *  accuracy target (branch B's 'memory' model) this many epochs on options.finetune.train,
   *  then evaluate it again on the images the search decided on; it becomes 'satisfied' if it
   *  reaches the minimum accuracy (search-finetune.ts). Default 0: nothing changes */
  finetuneEpochs?: number;
  /** finetuneEpochs > 0: the training images and training's options (lr, batchSize, ...) */
  finetune?: SearchFinetuneOptions;
  /** the search's log lines (default: none) */
  log?: (line: string) => void;
  /** called after every batch of every evaluation */
  onProgress?: (p: SearchProgress) => void;
}

export interface ModelSearchResult {
  fullPrecisionAccuracy: number;
  layers: QuantLayerInfo[];
  search: SearchResult;
  /** 'dynamic': the calibration the search used (null under 'fixed') */
  calibration: Calibration | null;
  /** the chosen models: 'satisfied' (branch A) or 'memory' and 'accuracy' (branch B); with
   *  finetuneEpochs, branch B's memory model fine-tuned (its accuracy after, `before` the
   *  search's), 'satisfied' when it now reaches the minimum accuracy */
  models: SearchFinetuneModel[];
  /** position -> test image index: the order the search ran its batches in (hardest images
   *  first), which stochastic rounding's draws depend on */
  imageOrder: Int32Array;
  /** the search itself (steps 1 to 3B/4A), without the full-precision pass */
  searchSeconds: number;
  evaluations: number;
  /** with options.evalCache: the evaluations it could not answer (run by this call) */
  newEvaluations?: number;
  /** work done, in full passes over every stage of every batch */
  fullPassEquivalents: number;
}

export const SEARCH_DEFAULTS = {
  tolerance: 2,
  memoryBudgetMB: 200,
  compat: 'none' as RoundingCompat,
  seed: DEFAULT_SEED,
  batchSize: 100,
  cacheMB: 1024,
  earlyStop: true,
  approximateMarginImages: 0,
  numberFormat: 'fixed' as NumberFormat,
  weightRange: 'max' as WeightRange,
  calibrationImages: 500,
  finetuneEpochs: 0,
};

/** The one check of a calibration image count: a non-negative integer; 0 (or no images at all)
 *  is an error under 'dynamic', which needs images. `what` names it as the caller knows it. */
export function checkCalibrationImages(count: number, format: NumberFormat, what = `calibrationImages ${count}`): void {
  if (!(Number.isSafeInteger(count) && count >= 0)) throw new Error(`${what}: expected a non-negative integer`);
  if (format === 'dynamic' && count === 0)
    throw new Error(
      `${what}: the 'dynamic' number format needs images to calibrate its activation and routing ranges; expected at least 1`,
    );
}

/** The calibration of a search or sweep under 'dynamic' (null under 'fixed'): `given`, checked
 *  against the model, or the first min(count, images) of `images`; `log` says which. */
export function searchCalibration(
  fn: string,
  model: CapsNet,
  images: ImageSource,
  o: { numberFormat: NumberFormat; calibrationImages: number; calibration?: Calibration | null },
  log: (line: string) => void = () => {},
  imagesName = 'the set',
): Calibration | null {
  if (o.numberFormat !== 'dynamic') return null;
  if (o.calibration) return checkCalibration(model, o.calibration, `${fn}: options.calibration`);
  const count = Math.min(o.calibrationImages, images.count);
  const t0 = performance.now();
  const c = calibrate(model, images, count);
  log(
    `calibration ('dynamic' number format): the ranges of ${Object.keys(c.activations).length} activation points and ` +
      `${Object.keys(c.routing).length} routings over the first ${count} images of ${imagesName} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  return c;
}
function checkOptions(
  model: CapsNet,
  test: ImageSource,
  o: SearchOptions,
): Required<Omit<SearchOptions, 'log' | 'onProgress' | 'evalCache' | 'calibration' | 'finetune'>> {
  const r = {
    ...SEARCH_DEFAULTS,
    ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)),
    ...checkQuantizeOptions('searchModel', o),
  } as Required<Omit<SearchOptions, 'log' | 'onProgress' | 'evalCache' | 'calibration' | 'finetune'>>;
  if (!(Number.isSafeInteger(r.finetuneEpochs) && r.finetuneEpochs >= 0))
    throw new Error(`searchModel: options.finetuneEpochs ${r.finetuneEpochs}: expected a non-negative integer`);
  if (r.finetuneEpochs > 0 && !((o.finetune?.train?.count ?? 0) >= 1))
    throw new Error(
      `searchModel: options.finetuneEpochs ${r.finetuneEpochs} needs options.finetune.train, the training images to fine-tune on`,
    );
  if (r.finetuneEpochs > 0) {
    checkImagesFit(model, o.finetune!.train, 'searchModel: options.finetune.train');
    // fine-tuning's epochs test on them as training tests on a dataset
    if (!isDataset(test))
      throw new Error(`searchModel: options.finetuneEpochs ${r.finetuneEpochs} needs the test images as a Dataset`);
  }
  try {
    checkSearchFormat(r);
  } catch (err) {
    throw new Error(`searchModel: options.${(err as Error).message}`, { cause: err });
  }
  checkCalibrationImages(
    r.calibrationImages,
    r.numberFormat,
    `searchModel: options.calibrationImages ${r.calibrationImages}`,
  );
  if (!(Number.isInteger(r.batchSize) && r.batchSize >= 1))
    throw new Error(`searchModel: options.batchSize ${r.batchSize}: expected a positive integer`);
  if (!(r.cacheMB >= 0)) throw new Error(`searchModel: options.cacheMB ${r.cacheMB}: expected 0 or more`);
  if (!(r.approximateMarginImages >= 0))
    throw new Error(`searchModel: options.approximateMarginImages ${r.approximateMarginImages}: expected 0 or more`);
  if (!(test?.count >= 1)) throw new Error('searchModel: the test images are empty');
  checkImagesFit(model, test, 'searchModel: the test images');
  checkSearchSettings(model.quantLayers, r);
  const h = o.evalCache?.header;
  if (h) {
    const mine = { compat: r.compat, seed: r.seed, batchSize: r.batchSize, earlyStop: r.earlyStop };
    for (const [k, v] of Object.entries(mine))
      if (h[k as keyof typeof mine] !== v)
        throw new Error(
          `searchModel: options.evalCache holds evaluations with ${k} ${h[k as keyof typeof mine]}, options.${k} is ${v}`,
        );
    if (h.approximateMarginImages !== r.approximateMarginImages)
      throw new Error(
        `searchModel: options.evalCache holds evaluations with approximateMarginImages ${h.approximateMarginImages}, options.approximateMarginImages is ${r.approximateMarginImages}`,
      );
    if ((h.numberFormat ?? 'fixed') !== r.numberFormat)
      throw new Error(
        `searchModel: options.evalCache holds evaluations in the '${h.numberFormat ?? 'fixed'}' number format, options.numberFormat is '${r.numberFormat}'`,
      );
    if ((h.weightRange ?? 'max') !== r.weightRange)
      throw new Error(
        `searchModel: options.evalCache holds evaluations with the '${h.weightRange ?? 'max'}' weight range rule, options.weightRange is '${r.weightRange}'`,
      );
  }
  return r;
}

/** The evaluation cache's calibration against the search's (under 'dynamic'). */
function checkCacheCalibration(cache: EvalCache | undefined, c: Calibration | null): void {
  const h = cache?.header;
  if (!h || c === null) return;
  if (h.calibrationSha256 !== calibrationHash(c))
    throw new Error(
      `searchModel: options.evalCache holds evaluations of another calibration (${h.calibrationImages} images, sha256 ${String(h.calibrationSha256).slice(0, 12)}…); this search calibrated on ${c.images} images (sha256 ${calibrationHash(c).slice(0, 12)}…)`,
    );
}

/** Runs the Q-CapsNets search on a trained model over `test` (SPEC 5). */
export async function searchModel(
  model: CapsNet,
  test: ImageSource,
  options: SearchOptions,
): Promise<ModelSearchResult> {
  const o = checkOptions(model, test, options);
  const log = options.log ?? (() => {});
  const calibration = searchCalibration('searchModel', model, test, { ...o, calibration: options.calibration }, log);
  checkCacheCalibration(options.evalCache, calibration);
  // the quantizer writes the weights of a copy, so the caller's model is never written
  const net = copyModel(model);
  const quantizer = new ModelQuantizer(net, o.method, o.compat, o.seed, calibration, o.weightRange);
  let phase: SearchProgress['phase'] = 'full-precision';
  const evaluator = new FastEvaluator(net, quantizer, test, {
    batchSize: o.batchSize,
    cacheMB: o.cacheMB,
    earlyStop: o.earlyStop,
    // dac2020: a pass with the fast convolutions decides when it clears the threshold by the
    // given number of images; closer calls run again with exact-order convolutions
    approximateMargin:
      o.compat === 'dac2020' && o.earlyStop && o.approximateMarginImages > 0
        ? (o.approximateMarginImages * 100) / test.count
        : null,
    onBatch: (batch, batches) =>
      options.onProgress?.({ phase, batch, batches, evaluations: evaluator.stats.evaluations }),
  });
  const fp = await evaluator.evaluateFullPrecision();
  const caching = options.evalCache ? new CachingEvaluator(evaluator, options.evalCache, o.method) : null;
  if (caching) log(`${options.evalCache!.note}`);
  log(`full-precision accuracy on ${test.count} test images: ${fp.accuracy}% (${fp.seconds.toFixed(1)} s)`);
  log(
    `evaluation order: hardest images first (the ${test.count - Math.round((fp.accuracy * test.count) / 100)} misclassified at full precision lead)`,
  );
  const batches = Math.ceil(test.count / o.batchSize);
  const counts = activationCounts(model);
  const searchStart = performance.now();
  let search: SearchResult;
  try {
    search = await runSearch(
      model.quantLayers,
      {
        fpAccuracy: fp.accuracy,
        tolerance: o.tolerance,
        memoryBudgetMB: o.memoryBudgetMB,
        compat: o.compat,
        numberFormat: o.numberFormat,
        activationCounts: counts,
      },
      (caching ?? evaluator) as Evaluator,
      {
        info: log,
        step: (s) => {
          phase = s;
          options.onProgress?.({ phase, batch: 0, batches, evaluations: evaluator.stats.evaluations });
        },
      },
    );
  } finally {
    evaluator.clear();
    quantizer.restore();
  }
  const searchSeconds = (performance.now() - searchStart) / 1000;
  if (caching)
    log(
      `eval cache: ${caching.stats.fromCache} of ${caching.stats.queries} evaluations answered from it, ${caching.stats.computed} run`,
    );
  const chosen = search.models.map((m) => ({
    kind: m.kind,
    model: new QuantizedModel(model, m.result.bits, {
      method: o.method,
      compat: o.compat,
      seed: o.seed,
      calibration,
      weightRange: o.weightRange,
    }),
    accuracy: m.result.accuracy,
    memoryMB: m.result.memoryMB,
  }));
  const models = await finetuneSearchModels(model, chosen, test as Dataset, {
    epochs: o.finetuneEpochs,
    minimumAccuracy: search.minimumAccuracy,
    method: o.method,
    compat: o.compat,
    seed: o.seed,
    calibration,
    weightRange: o.weightRange,
    batchSize: o.batchSize,
    order: evaluator.imageOrder,
    training: options.finetune!,
    log,
  });
  return {
    fullPrecisionAccuracy: fp.accuracy,
    layers: model.quantLayers.map((l) => ({ ...l })),
    search,
    calibration,
    models,
    imageOrder: evaluator.imageOrder,
    searchSeconds,
    evaluations: caching ? caching.stats.queries : evaluator.stats.evaluations,
    ...(caching ? { newEvaluations: caching.stats.computed } : {}),
    fullPassEquivalents: evaluator.stats.stagesRun / (batches * model.stages.length),
  };
}
