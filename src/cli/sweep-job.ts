// `qcapsnets sweep`: the grid of searches (src/search/sweep.ts) on --trained-weights-path,
// written as <stem>_sweep.json (a shard: <stem>_sweep_<i>of<n>.json), a SweepResult
// (src/search/sweep-result.ts). No quantized model files: the rows hold each chosen model's
// bits, which `qcapsnets search` with that cell's flags writes as files. Also the
// --eval-cache file's header, shared with `qcapsnets search`.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import type { RoundingCompat } from '../quant/methods.js';
import { type Calibration, calibrationHash } from '../quant/calibration.js';
import type { NumberFormat } from '../quant/config.js';
import type { WeightRange } from '../quant/dynamic.js';
import { searchCalibration } from '../search/search-model.js';
import type { SearchFinetuneOptions } from '../search/search-finetune.js';
import { datasetFingerprint } from '../export/quantized-file.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { renderReport } from '../report/index.js';
import { EVAL_CACHE_TOOL, EVAL_CACHE_VERSION, EvalCache, type EvalCacheHeader } from '../search/eval-cache.js';
import { runSweep, type SweepGrid, type SweepShard } from '../search/sweep.js';
import { SWEEP_TOOL, SWEEP_VERSION, type SweepResult, type SweepRow } from '../search/sweep-result.js';

export function fileSha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** The eval cache of a run: --eval-cache FILE (checked against this model and these images)
 *  or, without the flag, one in memory. */
export function openEvalCache(
  file: string | null,
  s: {
    model: CapsNet;
    modelSha256: string;
    test: Dataset;
    compat: RoundingCompat;
    seed: number;
    batchSize: number;
    earlyStop: boolean;
    approximateMarginImages: number;
    /** 'dynamic': the calibration of the evaluations (null: 'fixed') */
    calibration: Calibration | null;
    /** 'dynamic': the weight range rule (absent: 'max') */
    weightRange?: WeightRange;
  },
): EvalCache {
  const header: EvalCacheHeader = {
    tool: EVAL_CACHE_TOOL,
    version: EVAL_CACHE_VERSION,
    model: `${s.model.kind} ${s.model.args.join(' ')}`,
    modelSha256: s.modelSha256,
    images: datasetFingerprint(s.test),
    compat: s.compat,
    seed: s.seed,
    batchSize: s.batchSize,
    earlyStop: s.earlyStop,
    approximateMarginImages: s.approximateMarginImages,
    // (absent under 'fixed': its headers are those of every cache before the format)
    ...(s.calibration
      ? {
          numberFormat: 'dynamic' as const,
          calibrationImages: s.calibration.images,
          calibrationSha256: calibrationHash(s.calibration),
        }
      : {}),
    // (absent under 'max': its headers are those of every cache before the rule)
    ...(s.weightRange === 'mse' ? { weightRange: 'mse' as const } : {}),
  };
  try {
    return file === null
      ? EvalCache.inMemory(header)
      : EvalCache.open(resolve(file), header, { layers: s.model.quantLayers, images: s.test.count });
  } catch (err) {
    throw new Error(`--eval-cache ${(err as Error).message.replace(/^eval cache /, '')}`, { cause: err });
  }
}

export interface SweepJobOptions {
  model: CapsNet;
  modelFile: string;
  test: Dataset;
  grid: SweepGrid;
  shard: SweepShard | null;
  compat: RoundingCompat;
  /** default 'fixed' */
  numberFormat?: NumberFormat;
  /** 'dynamic': the first N test images calibrate the ranges (all when fewer) */
  calibrationImages?: number;
  /** 'dynamic': the weight range rule (default 'max') */
  weightRange?: WeightRange;
  seed: number;
  testBatchSize: number;
  cacheMB: number;
  earlyStop: boolean;
  evalCacheFile: string | null;
  outputDir: string | null;
  /** after each cell's search, fine-tune its memory model this many epochs (0 or absent: none) */
  finetuneEpochs?: number;
  /** finetuneEpochs > 0: the training images and settings (--lr, --batch-size) */
  finetune?: SearchFinetuneOptions;
  /** recorded in the result; equal settings are what `merge` requires of shards */
  settings: Record<string, unknown>;
  log: (line: string) => void;
}

/** The result file of a sweep or shard. */
export function sweepFileName(modelFile: string, shard: SweepShard | null): string {
  const stem = basename(modelFile, extname(modelFile));
  return shard ? `${stem}_sweep_${shard.index}of${shard.count}.json` : `${stem}_sweep.json`;
}

export async function runSweepJob(o: SweepJobOptions): Promise<{ result: SweepResult; file: string }> {
  const t0 = performance.now();
  const sha256 = fileSha256(o.modelFile);
  const calibration = searchCalibration(
    'sweep',
    o.model,
    o.test,
    { numberFormat: o.numberFormat ?? 'fixed', calibrationImages: o.calibrationImages ?? 500 },
    o.log,
    `${o.test.name}/${o.test.split}`,
  );
  const cache = openEvalCache(o.evalCacheFile, {
    model: o.model,
    modelSha256: sha256,
    test: o.test,
    compat: o.compat,
    seed: o.seed,
    batchSize: o.testBatchSize,
    earlyStop: o.earlyStop,
    approximateMarginImages: 0,
    calibration,
    weightRange: o.weightRange,
  });
  if (o.evalCacheFile !== null) o.log(cache.note);
  const total = o.grid.methods.length * o.grid.tolerances.length * o.grid.memoryBudgetsMB.length;
  o.log(
    `sweep of ${total} cells (${o.grid.methods.length} methods x ${o.grid.tolerances.length} tolerances x ` +
      `${o.grid.memoryBudgetsMB.length} budgets)${o.shard ? `, shard ${o.shard.index}/${o.shard.count}` : ''} on ${o.test}`,
  );
  let core;
  try {
    core = await runSweep(o.model, o.test, {
      grid: o.grid,
      shard: o.shard,
      compat: o.compat,
      numberFormat: o.numberFormat,
      calibration: calibration ?? undefined,
      weightRange: o.weightRange,
      seed: o.seed,
      batchSize: o.testBatchSize,
      cacheMB: o.cacheMB,
      earlyStop: o.earlyStop,
      evalCache: cache,
      finetuneEpochs: o.finetuneEpochs ?? 0,
      finetune: o.finetune,
      log: o.log,
    });
  } finally {
    cache.close();
  }
  const result: SweepResult = {
    tool: SWEEP_TOOL,
    version: SWEEP_VERSION,
    model: { kind: o.model.kind, args: [...o.model.args], file: resolve(o.modelFile), sha256 },
    settings: {
      ...o.settings,
      dataset: o.test.name,
      testImages: o.test.count,
      selectionSplit: 0,
      seed: o.seed,
      compat: o.compat,
    },
    grid: o.grid,
    shard: o.shard,
    fullPrecisionAccuracy: core.fullPrecisionAccuracy,
    fullPrecisionMemoryMB: core.fullPrecisionMemoryMB,
    fullPrecisionActivationKB: core.fullPrecisionActivationKB,
    rows: core.rows,
    evaluated: core.evaluated,
    pareto: core.pareto,
    evaluations: core.evaluations,
    middleCellEvaluations: core.middleCellEvaluations,
    imagesEvaluated: core.imagesEvaluated,
    middleCellImages: core.middleCellImages,
    seconds: (performance.now() - t0) / 1000,
  };
  const outDir = resolve(o.outputDir ?? dirname(o.modelFile));
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, sweepFileName(o.modelFile, o.shard));
  writeSweepResult(file, result);
  for (const line of sweepTable(result)) o.log(line);
  o.log(
    `${core.evaluations} evaluations run for the ${result.rows.length} cells` +
      (core.middleCellEvaluations ? ` (the middle cell's search alone: ${core.middleCellEvaluations})` : '') +
      `, ${core.imagesEvaluated} images` +
      (core.middleCellImages ? ` (the middle cell alone: ${core.middleCellImages})` : '') +
      `; ${result.evaluated.length} configurations evaluated, ${result.pareto.length} on the Pareto front`,
  );
  o.log(`results: ${file} (page: ${file.replace(/\.json$/i, '')}.html)`);
  return { result, file };
}

/** The page of a sweep's JSON file: the same name with .html in place of .json. */
export const sweepPageFile = (file: string): string => file.replace(/\.json$/i, '') + '.html';

/** The JSON and its page (src/report/), both written atomically; the page is rendered (and
 *  the result checked) before either is written. */
export function writeSweepResult(file: string, result: SweepResult): void {
  const html = renderReport(result, file);
  writeFileAtomic(file, () => [Buffer.from(JSON.stringify(result, null, 1) + '\n')]);
  writeFileAtomic(sweepPageFile(file), () => [Buffer.from(html)]);
}

/** One line per row: the cell, its branch and its models. */
export function sweepTable(r: SweepResult): string[] {
  const lines = [
    'method            tolerance  budget MB  branch  model      w/a/r bits                     accuracy  weight x  act x  evals (new)',
  ];
  const bits = (b: { weightBits: number[]; actBits: number[]; routingBits: number[] }) =>
    `${b.weightBits.join(',')}/${b.actBits.join(',')}/${b.routingBits.join(',')}`;
  for (const row of r.rows as SweepRow[])
    row.models.forEach((m, i) =>
      lines.push(
        [
          (i === 0 ? row.method : '').padEnd(17),
          (i === 0 ? `${row.tolerance}%` : '').padStart(9),
          (i === 0 ? row.memoryBudgetMB.toFixed(4) : '').padStart(10),
          (i === 0 ? row.branch : '').padStart(7),
          ` ${m.kind.padEnd(10)}`,
          bits(m.bits).padEnd(30),
          `${m.accuracy.toFixed(2)}%`.padStart(9),
          m.weightReduction.toFixed(2).padStart(9),
          m.activationReduction.toFixed(2).padStart(6),
          i === 0 ? `  ${row.evaluations} (${row.newEvaluations})` : '',
        ].join(' ') +
          (m.finetune_epochs
            ? `  fine-tuned ${m.finetune_epochs} epochs from ${m.accuracy_before_finetune!.toFixed(2)}%`
            : ''),
      ),
    );
  return lines;
}
