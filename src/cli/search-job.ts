// The search part of the command line: load a trained model and the test set, measure the
// full-precision accuracy, run the Q-CapsNets search with the fast evaluator, and write
// <stem>_quantized_{satisfied|memory|accuracy}.pt (float32 state_dicts) and .safetensors (the
// same models packed at their bit widths, src/export/quantized-file.ts), <stem>_qcapsnets.json
// and .html.
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import type { QuantMethod } from '../tensor/backend.js';
import type { RoundingCompat } from '../quant/methods.js';
import { formatOf, type NumberFormat } from '../quant/config.js';
import type { WeightRange } from '../quant/dynamic.js';
import { bitsToLists } from '../quant/config.js';
import type { SearchResult } from '../search/qcapsnets.js';
import { searchCalibration, type SearchProgress, searchModel } from '../search/search-model.js';
import type { SearchFinetuneOptions } from '../search/search-finetune.js';
import { writeStateDict } from '../io/pt.js';
import { OutputSet } from '../io/output-set.js';
import { evaluateFullPrecision } from '../models/evaluate.js';
import { datasetFingerprint, writeQuantizedModel } from '../export/quantized-file.js';
import { type SearchReport, writeJsonReport } from '../report/search-json.js';
import { writeHtmlReport } from '../report/index.js';
import { fileSha256, openEvalCache } from './sweep-job.js';

export interface SearchJobOptions {
  model: CapsNet;
  /** the file the model came from (names the outputs) */
  modelFile: string;
  /** the images the search decides on: the test set, or --selection-split's held-out images */
  test: Dataset;
  /** with --selection-split: the test set, on which the chosen models are evaluated afterwards */
  finalTest?: Dataset;
  method: QuantMethod;
  compat: RoundingCompat;
  /** default 'fixed' */
  numberFormat?: NumberFormat;
  /** 'dynamic': the first N images of `test` calibrate the ranges (all when fewer) */
  calibrationImages?: number;
  /** 'dynamic': the weight range rule (default 'max') */
  weightRange?: WeightRange;
  tolerance: number;
  memoryBudgetMB: number;
  seed: number;
  testBatchSize: number;
  cacheMB: number;
  earlyStop: boolean;
  /** dac2020: images of margin for deciding with the fast convolutions (0: always exact) */
  approximateMarginImages?: number;
  /** --eval-cache: evaluations to reuse and to append to (null: none) */
  evalCacheFile?: string | null;
  outputDir: string | null;
  /** after the search, fine-tune branch B's memory model this many epochs (0 or absent: none) */
  finetuneEpochs?: number;
  /** finetuneEpochs > 0: the training images and settings (--lr, --batch-size, --seed) */
  finetune?: SearchFinetuneOptions;
  /** the decoder the model was trained with in this run (recorded in the packed files) */
  decoder?: { name: string; args: readonly number[] } | null;
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

/** A one-line progress display on a terminal (nothing when stderr is not one). */
function progressLine(): (p: SearchProgress) => void {
  if (!process.stderr.isTTY) return () => {};
  return (p) => {
    const what = p.phase === 'full-precision' ? 'full precision' : `${p.phase}, evaluation ${p.evaluations}`;
    process.stderr.write(`\r\x1b[K  ${what}: ${p.batch}/${p.batches} batches`);
    if (p.batch === p.batches) process.stderr.write('\r\x1b[K');
  };
}

export async function runSearchJob(o: SearchJobOptions): Promise<SearchJobResult> {
  const t0 = performance.now();
  // settings were checked with the flags (src/cli/args.ts); searchModel checks its options again
  // 'dynamic': the ranges of the images the search decides on (the selection split's, never the
  // test images it reports on)
  const calibration = searchCalibration(
    'search',
    o.model,
    o.test,
    { numberFormat: o.numberFormat ?? 'fixed', calibrationImages: o.calibrationImages ?? 500 },
    o.log,
    `${o.test.name}/${o.test.split}${o.finalTest ? ' (the images --selection-split holds out)' : ''}`,
  );
  const evalCache = o.evalCacheFile
    ? openEvalCache(o.evalCacheFile, {
        model: o.model,
        modelSha256: fileSha256(o.modelFile),
        test: o.test,
        compat: o.compat,
        seed: o.seed,
        batchSize: o.testBatchSize,
        earlyStop: o.earlyStop,
        approximateMarginImages: o.approximateMarginImages ?? 0,
        calibration,
        weightRange: o.weightRange,
      })
    : undefined;
  const r = await searchModel(o.model, o.test, {
    evalCache,
    method: o.method,
    compat: o.compat,
    numberFormat: o.numberFormat,
    calibration: calibration ?? undefined,
    weightRange: o.weightRange,
    tolerance: o.tolerance,
    memoryBudgetMB: o.memoryBudgetMB,
    seed: o.seed,
    batchSize: o.testBatchSize,
    cacheMB: o.cacheMB,
    earlyStop: o.earlyStop,
    approximateMarginImages: o.approximateMarginImages ?? 0,
    finetuneEpochs: o.finetuneEpochs ?? 0,
    finetune: o.finetune,
    log: o.log,
    onProgress: progressLine(),
  }).finally(() => evalCache?.close());
  const search = r.search;

  const outDir = resolve(o.outputDir ?? dirname(o.modelFile));
  const stem = basename(o.modelFile, extname(o.modelFile));
  // the set appears whole or not at all (the JSON, which lists the others, last): see OutputSet
  const set = new OutputSet(outDir, `${stem}_qcapsnets`);
  try {
    const r2 = writeOutputs(o, r, set, outDir, stem, t0);
    set.commit(r2.jsonFile);
    for (const line of r2.lines) o.log(line);
    return {
      report: r2.report,
      search,
      files: r2.files,
      searchSeconds: r.searchSeconds,
      evaluations: r.evaluations,
      fullPassEquivalents: r.fullPassEquivalents,
    };
  } catch (err) {
    set.abort();
    throw err;
  }
}

/** Writes the set's files into `set` and returns the lines to log once it is in place. */
function writeOutputs(
  o: SearchJobOptions,
  r: Awaited<ReturnType<typeof searchModel>>,
  set: OutputSet,
  outDir: string,
  stem: string,
  t0: number,
): { report: SearchReport; files: string[]; jsonFile: string; lines: string[] } {
  const search = r.search;
  const lines: string[] = [];
  const files: string[] = [];
  const models: SearchReport['models'] = [];
  const fingerprint = datasetFingerprint(o.test);
  // stochastic rounding's draws depend on the batch: `evaluate` needs the search's order to
  // repeat its count
  const evaluationOrder =
    o.method === 'stochastic_rounding' ? { order: r.imageOrder, batchSize: o.testBatchSize, fingerprint } : undefined;
  const finetuning = (o.finetuneEpochs ?? 0) > 0;
  for (const [k, sm] of search.models.entries()) {
    // the model as the search chose it, or (--finetune-epochs) fine-tuned: its kind and accuracy after
    const rm = r.models[k];
    const m = { kind: rm.kind, result: { ...sm.result, accuracy: rm.accuracy } };
    const file = join(outDir, `${stem}_quantized_${m.kind}.pt`);
    set.write(file, (f) => writeStateDict(f, r.models[k].model.stateDict()));
    files.push(file);
    const total = o.test.count;
    const correct = Math.round((m.result.accuracy * total) / 100);
    // --selection-split: the search decided on held-out training images; the test set's say
    const onTest = o.finalTest ? r.models[k].model.evaluate(o.finalTest, { batchSize: o.testBatchSize }) : null;
    const packedFile = join(outDir, `${stem}_quantized_${m.kind}.safetensors`);
    const packed = set.write(packedFile, (f) =>
      writeQuantizedModel(f, r.models[k].model, {
        decoder: o.decoder ?? null,
        search: {
          kind: m.kind,
          dataset: o.test.name,
          images: total,
          correct,
          accuracy: m.result.accuracy,
          batchSize: o.testBatchSize,
          order: 'hardest-first',
          fingerprint,
        },
        evaluationOrder,
      }),
    );
    files.push(packedFile);
    lines.push(
      `model-${m.kind} stored in ${file} and, at its bit widths, ${packedFile}: accuracy ${m.result.accuracy}% ` +
        `(${correct}/${total}), ${m.result.memoryMB.toFixed(4)} MB; packed ${packed.packedBytes} bytes of tensors ` +
        `for a weight memory of ${packed.memoryBytes} bytes` +
        (onTest ? `; on the test set ${onTest.accuracy}% (${onTest.correct}/${onTest.total})` : ''),
    );
    models.push({
      kind: m.kind,
      number_format: formatOf(m.result.bits),
      ...(o.weightRange === 'mse' ? { weight_range: 'mse' as const } : {}),
      file,
      ...flatStep(m.result),
      correct,
      total,
      packedFile,
      packedBytes: packed.packedBytes,
      packedWeightBytes: packed.weightBytes,
      memoryBytes: packed.memoryBytes,
      packedFileBytes: packed.fileBytes,
      ...(onTest ? { testAccuracy: onTest.accuracy, testCorrect: onTest.correct, testTotal: onTest.total } : {}),
      ...(finetuning ? { finetune_epochs: rm.finetuneEpochs } : {}),
      ...(rm.before ? { kind_before_finetune: rm.before.kind, accuracy_before_finetune: rm.before.accuracy } : {}),
    });
  }

  let selection: SearchReport['selection'];
  if (o.finalTest) {
    const fp = evaluateFullPrecision(o.model, o.finalTest, { batchSize: o.testBatchSize });
    selection = { images: o.test.count, source: o.test.source, fullPrecisionTestAccuracy: fp.accuracy };
    lines.push(
      `selection split: the search decided on ${o.test.count} held-out training images (full precision ` +
        `${r.fullPrecisionAccuracy}%); full-precision accuracy on the test set ${fp.accuracy}% (${fp.correct}/${fp.total})`,
    );
  }
  const report: SearchReport = {
    tool: 'qcapsnets',
    settings: o.settings,
    layers: r.layers.map(({ name, paramCount, routes, iterations, tensorCount }) => ({
      name,
      paramCount,
      routes,
      iterations,
      // 'dynamic': the memory of any configuration (8 bits per tensor's exponent) needs them
      ...(r.calibration ? { tensorCount } : {}),
    })),
    fullPrecisionAccuracy: r.fullPrecisionAccuracy,
    minimumAccuracy: search.minimumAccuracy,
    branch: search.branch,
    steps: search.steps.map(flatStep),
    models,
    evaluations: search.evaluations.map((e) => ({
      step: e.step,
      ...bitsToLists(e.bits),
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
    ...(selection ? { selection } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
  const jsonFile = join(outDir, `${stem}_qcapsnets.json`);
  const htmlFile = join(outDir, `${stem}_qcapsnets.html`);
  set.write(jsonFile, (f) => writeJsonReport(f, report));
  set.write(htmlFile, (f) => writeHtmlReport(f, report, jsonFile));
  files.push(jsonFile, htmlFile);
  lines.push(`results: ${jsonFile} and ${htmlFile}`);
  return { report, files, jsonFile, lines };
}

function flatStep(s: SearchResult['steps'][number]) {
  return {
    step: s.step,
    ...bitsToLists(s.bits),
    accuracy: s.accuracy,
    memoryMB: s.memoryMB,
    reduction: s.reduction,
    activationKB: s.activationKB ?? null,
    activationReduction: s.activationReduction ?? null,
  };
}
