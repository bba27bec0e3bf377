// The search part of the command line: load a trained model and the test set, measure the
// full-precision accuracy, run the Q-CapsNets search with the fast evaluator, and write
// <stem>_quantized_{satisfied|memory|accuracy}.pt, <stem>_qcapsnets.json and .html.
import { basename, dirname, extname, join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import type { QuantMethod } from '../tensor/backend.js';
import type { RoundingCompat } from '../quant/methods.js';
import { ModelQuantizer } from '../quant/quantized-forward.js';
import { FastEvaluator } from '../search/fast-evaluator.js';
import { memoryBits, runSearch, type SearchResult } from '../search/qcapsnets.js';
import { writeStateDict } from '../io/pt.js';
import { type SearchReport, writeHtmlReport, writeJsonReport } from '../io/report.js';

export interface SearchJobOptions {
  model: CapsNet;
  /** the file the model came from (names the outputs) */
  modelFile: string;
  test: Dataset;
  method: QuantMethod;
  compat: RoundingCompat;
  tolerance: number;
  memoryBudgetMB: number;
  seed: number;
  testBatchSize: number;
  cacheMB: number;
  earlyStop: boolean;
  /** dac2020: images of margin for deciding with the fast convolutions (0: always exact) */
  approximateMarginImages?: number;
  outputDir: string | null;
  settings: Record<string, unknown>;
  log: (line: string) => void;
}

export interface SearchJobResult {
  report: SearchReport;
  search: SearchResult;
  files: string[];
  /** the search itself (steps 1 to 3B/4A), without the full-precision pass and the file writes */
  searchSeconds: number;
  evaluations: number;
  fullPassEquivalents: number;
}

function progress(label: string): (done: number, total: number) => void {
  if (!process.stderr.isTTY) return () => {};
  return (done, total) => {
    process.stderr.write(`\r  ${label} ${done}/${total} batches`);
    if (done === total) process.stderr.write('\r\x1b[K');
  };
}

export async function runSearchJob(o: SearchJobOptions): Promise<SearchJobResult> {
  const t0 = performance.now();
  const quantizer = new ModelQuantizer(o.model, o.method, o.compat, o.seed);
  // bad budgets fail before any long work
  memoryBits(
    quantizer.layers.map((l) => l.paramCount),
    o.memoryBudgetMB,
  );
  if (!(o.tolerance > 0 && o.tolerance < 100))
    throw new Error(`--accuracy-tolerance ${o.tolerance}: expected a value in (0, 100)`);
  const source = {
    count: o.test.count,
    labels: o.test.labels,
    imageShape: [o.test.height, o.test.width, o.test.channels] as const,
    writeImage: (i: number, out: Float32Array, off: number) => o.test.writeImage(i, out, off),
  };
  let label = 'evaluating';
  const evaluator = new FastEvaluator(o.model, quantizer, source, {
    batchSize: o.testBatchSize,
    cacheMB: o.cacheMB,
    earlyStop: o.earlyStop,
    // dac2020: a pass with the fast convolutions decides when it clears the threshold by the
    // given number of images; closer calls run again with exact-order convolutions
    approximateMargin:
      o.compat === 'dac2020' && o.earlyStop && (o.approximateMarginImages ?? 0) > 0
        ? ((o.approximateMarginImages ?? 0) * 100) / o.test.count
        : null,
    onBatch: (d, t) => progress(label)(d, t),
  });
  label = 'full precision';
  const fp = await evaluator.evaluateFullPrecision();
  o.log(`full-precision accuracy on ${o.test.count} test images: ${fp.accuracy}% (${fp.seconds.toFixed(1)} s)`);
  o.log(
    `evaluation order: hardest images first (the ${o.test.count - Math.round((fp.accuracy * o.test.count) / 100)} misclassified at full precision lead)`,
  );
  label = 'search';
  const searchStart = performance.now();
  const search = await runSearch(
    quantizer.layers,
    { fpAccuracy: fp.accuracy, tolerance: o.tolerance, memoryBudgetMB: o.memoryBudgetMB, compat: o.compat },
    evaluator,
    { info: o.log },
  );
  evaluator.clear();
  const searchSeconds = (performance.now() - searchStart) / 1000;

  const outDir = resolve(o.outputDir ?? dirname(o.modelFile));
  mkdirSync(outDir, { recursive: true });
  const stem = basename(o.modelFile, extname(o.modelFile));
  const files: string[] = [];
  const models: SearchReport['models'] = [];
  for (const m of search.models) {
    quantizer.applyWeights(m.result.bits.weightBits);
    const file = join(outDir, `${stem}_quantized_${m.kind}.pt`);
    writeStateDict(file, o.model.stateDict());
    files.push(file);
    o.log(`model-${m.kind} stored in ${file}: accuracy ${m.result.accuracy}%, ${m.result.memoryMB.toFixed(4)} MB`);
    models.push({ kind: m.kind, file, ...flatStep(m.result) });
  }
  quantizer.restore();

  const report: SearchReport = {
    tool: 'qcapsnets',
    settings: o.settings,
    layers: quantizer.layers.map(({ name, paramCount, routes, iterations }) => ({
      name,
      paramCount,
      routes,
      iterations,
    })),
    fullPrecisionAccuracy: fp.accuracy,
    minimumAccuracy: search.minimumAccuracy,
    branch: search.branch,
    steps: search.steps.map(flatStep),
    models,
    evaluations: search.evaluations.map((e) => ({
      step: e.step,
      weightBits: e.bits.weightBits,
      actBits: e.bits.actBits,
      routingBits: e.bits.routingBits,
      accuracy: e.exact ? e.accuracy : null,
      lower: e.lower,
      upper: e.upper,
      exact: e.exact,
      imagesSeen: e.seen,
      resumedAfter: e.resumedAfter ?? 0,
      passed: e.passed,
      reused: e.cached,
      seconds: e.cached ? 0 : e.seconds,
    })),
    notes: search.notes,
    seconds: (performance.now() - t0) / 1000,
  };
  const jsonFile = join(outDir, `${stem}_qcapsnets.json`);
  const htmlFile = join(outDir, `${stem}_qcapsnets.html`);
  writeJsonReport(jsonFile, report);
  writeHtmlReport(htmlFile, report);
  files.push(jsonFile, htmlFile);
  o.log(`results: ${jsonFile} and ${htmlFile}`);
  const batches = Math.ceil(o.test.count / o.testBatchSize);
  const fullPassEquivalents = evaluator.stats.stagesRun / (batches * o.model.stages.length);
  return { report, search, files, searchSeconds, evaluations: evaluator.stats.evaluations, fullPassEquivalents };
}

function flatStep(s: SearchResult['steps'][number]) {
  return {
    step: s.step,
    weightBits: s.bits.weightBits,
    actBits: s.bits.actBits,
    routingBits: s.bits.routingBits,
    accuracy: s.accuracy,
    memoryMB: s.memoryMB,
    reduction: s.reduction,
  };
}
