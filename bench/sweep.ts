// `npm run bench:sweep`: what a sweep costs against one search (issue 12's target: a 3 x 3 grid
// on ShallowCapsNet, 2,000 Fashion-MNIST test images, <= 1.5x the evaluations of the single
// search with the middle cell's settings). It runs the grid (tolerances 0.2,0.5,1 x budgets of
// the 32-bit weight memory / 8,10,12, round_to_nearest: one the 2022 follow-up's ranges give),
// then the middle cell's search alone, and prints both counts (in evaluations and in images
// through the model) and whether the middle cell's bits in the sweep are those of its lone
// search. The model is bench:search's (bench/bench-model.ts).
//   npm run bench:sweep [-- --json] [--model FILE] [--tolerances 0.2,0.5,1]
//                       [--budget-divisors 8,10,12] [--rounding-compat none|dac2020]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../src/data/load.js';
import { runSearchJob } from '../src/cli/search-job.js';
import { runSweepJob } from '../src/cli/sweep-job.js';
import { readStateDict } from '../src/io/pt.js';
import { buildModel } from '../src/models/factory.js';
import { parseRoundingCompat } from '../src/quant/methods.js';
import { fullPrecisionMemoryMB } from '../src/quant/memory.js';
import { middleCell } from '../src/search/sweep.js';
import { benchModel, KINDS } from './bench-model.js';
import { arg } from './common.js';

const list = (flag: string, fallback: string) => arg(flag, fallback).split(',').map(Number);

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const kind = KINDS.ShallowCapsNet;
  const modelFile = benchModel(kind);
  const model = buildModel('ShallowCapsNet', kind.modelArgs);
  model.loadStateDict(readStateDict(modelFile), modelFile);
  const compat = parseRoundingCompat(arg('rounding-compat', 'none'), '--rounding-compat');
  const tolerances = list('tolerances', '0.2,0.5,1');
  const divisors = list('budget-divisors', '8,10,12');
  const params = model.quantLayers.map((l) => l.paramCount);
  const fp32MB = fullPrecisionMemoryMB(params);
  const grid = {
    methods: ['round_to_nearest' as const],
    tolerances,
    memoryBudgetsMB: divisors.map((d) => fp32MB / d),
  };
  const test = loadDataset('fashion-mnist', 'test', { limit: kind.testSize });
  const common = { model, modelFile, test, compat, seed: 42, testBatchSize: 100, cacheMB: 1024, earlyStop: true };
  const out = mkdtempSync(join(tmpdir(), 'qcaps-bench-sweep-'));
  const quiet = () => {};
  try {
    const t0 = performance.now();
    const { result: sweep } = await runSweepJob({
      ...common,
      grid,
      shard: null,
      evalCacheFile: null,
      outputDir: out,
      settings: { bench: 'sweep' },
      log: quiet,
    });
    const sweepS = (performance.now() - t0) / 1000;
    const middle = middleCell(grid);
    const lone = await runSearchJob({
      ...common,
      method: middle.method,
      tolerance: middle.tolerance,
      memoryBudgetMB: middle.memoryBudgetMB,
      outputDir: out,
      settings: { bench: 'sweep-middle-cell' },
      log: quiet,
    });
    const row = sweep.rows.find((r) => r.tolerance === middle.tolerance && r.memoryBudgetMB === middle.memoryBudgetMB)!;
    const sameBits =
      JSON.stringify(row.models.map((m) => m.bits)) === JSON.stringify(lone.search.models.map((m) => m.result.bits));
    const loneImages = lone.search.evaluations.reduce((n, e) => n + (e.cached ? 0 : e.seen - (e.resumedAfter ?? 0)), 0);
    const loneConfigs = new Set(lone.search.evaluations.map((e) => JSON.stringify(e.bits))).size;
    const r = {
      grid: { tolerances, budget_divisors: divisors, budgets_mb: grid.memoryBudgetsMB, compat },
      branches: sweep.rows.map((x) => x.branch).join(''),
      sweep_evaluations: sweep.evaluations,
      middle_cell_evaluations: lone.evaluations,
      ratio: sweep.evaluations / lone.evaluations,
      sweep_images: sweep.imagesEvaluated,
      middle_cell_images: loneImages,
      images_ratio: (sweep.imagesEvaluated ?? NaN) / loneImages,
      // distinct configurations: what no sharing can go below (each needs one evaluation)
      sweep_configurations: sweep.evaluated.length,
      middle_cell_configurations: loneConfigs,
      configurations_ratio: sweep.evaluated.length / loneConfigs,
      middle_cell_bits_identical: sameBits,
      sweep_s: sweepS,
      middle_cell_s: lone.searchSeconds,
    };
    if (json) console.log(JSON.stringify(r));
    else {
      console.log(
        `sweep of ${tolerances.length} x ${divisors.length} cells (branches ${r.branches}): ${r.sweep_evaluations} evaluations, ${r.sweep_images} images, ${sweepS.toFixed(1)} s`,
      );
      console.log(
        `middle cell alone (tolerance ${middle.tolerance}%, ${middle.memoryBudgetMB.toFixed(4)} MB): ${r.middle_cell_evaluations} evaluations, ${loneImages} images; bits ${sameBits ? 'the same as its sweep row' : 'DIFFERENT from its sweep row'}`,
      );
      console.log(
        `ratio: ${r.ratio.toFixed(3)} in evaluations, ${r.images_ratio.toFixed(3)} in images, ${r.configurations_ratio.toFixed(3)} in distinct configurations (${r.sweep_configurations} / ${loneConfigs})`,
      );
    }
    if (!sameBits) process.exitCode = 1;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(`bench:sweep: ${err.message}`);
  process.exit(2);
});
