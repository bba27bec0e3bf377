// The commands that quantize, each from its checked flags to its job: what it builds and reads
// (the model, the trained weights, the splits) before the job file does the work. The search
// (with training first when there is no command), the sweep, the sensitivity analysis, export.
import { readStateDict } from '../io/pt.js';
import { runExport, runOnnxExport } from './export-job.js';
import { type Options, settingsRecord } from './flags.js';
import {
  decoderFromFlags,
  loadSplit,
  loadTestSplit,
  loadTrained,
  loadTrainingSplit,
  type Log,
  modelFromFlags,
} from './inputs.js';
import { runSearchJob } from './search-job.js';
import { runSensitivityJob } from './sensitivity-job.js';
import { runSweepJob } from './sweep-job.js';
import { prepareTrainingFiles, runTraining } from './train-job.js';
import { checkOutputFolders, checkSearchBudget, sweepGridFromFlags } from './validate.js';
import { parseBitList } from '../search/sensitivity.js';
import type { QuantMethod } from '../tensor/backend.js';
import { activeIsa } from '../tensor/kernels.js';
import type { RoundingCompat } from '../quant/methods.js';
import type { NumberFormat } from '../quant/config.js';
import type { WeightRange } from '../quant/dynamic.js';

const seconds = (started: number) => (performance.now() - started) / 1000;

/** The training settings of --finetune-epochs (the search's and the sweep's fine-tuning). */
const finetuneSteps = (o: Options<'search'> | Options<'sweep'>) => ({
  lr: o.lr,
  batchSize: o.batchSize,
  regularizationScale: o.regularizationScale,
  decaySteps: o.decaySteps,
  decayRate: o.decayRate,
  distillScale: o.distillScale,
  distillFraction: o.distillFraction,
});

/**
 * `qcapsnets search`, and the command line without a command: training (unless --no-training)
 * then the search on the best model, as the reference's main.py.
 */
export async function searchCommand(
  command: 'search' | 'all',
  o: Options<'search'> | Options<'all'>,
  log: Log,
  started: number,
): Promise<number> {
  const all = command === 'all' ? (o as Options<'all'>) : null;
  const training = all !== null && !all.noTraining;
  const model = modelFromFlags(o);
  const decoder = all && training ? decoderFromFlags(all, model) : null;
  checkSearchBudget(o, model.quantLayers);
  checkOutputFolders(command, o, training);
  const files = all && training ? prepareTrainingFiles(all) : null;
  let modelFile = training ? '' : loadTrained(o, model);
  const settings = settingsRecord(command, o);

  const test = await loadTestSplit(o, model, log);
  // --selection-split N: the last N training images, held out of training; the search decides on them
  const split =
    training || o.selectionSplit > 0 || o.finetuneEpochs > 0 ? await loadTrainingSplit(o, model, log) : null;
  if (all && decoder && files && split) {
    const summary = await runTraining(all, { model, decoder, train: split.train, test, resume: files.resume }, log);
    modelFile = summary.modelFile;
    // the search starts from the best model, as the reference does
    model.loadStateDict(readStateDict(modelFile), modelFile);
  }

  const result = await runSearchJob({
    model,
    modelFile,
    test: split?.selection ?? test,
    finalTest: split?.selection ? test : undefined,
    ...(o.finetuneEpochs > 0 && split
      ? {
          finetuneEpochs: o.finetuneEpochs,
          finetune: {
            train: split.train,
            ...finetuneSteps(o),
            decoder: all && training ? { name: all.decoder, args: all.decoderArgs } : undefined,
          },
        }
      : {}),
    method: o.quantizationMethod as QuantMethod,
    compat: o.roundingCompat as RoundingCompat,
    numberFormat: o.numberFormat as NumberFormat,
    weightRange: o.weightRange as WeightRange,
    calibrationImages: o.calibrationImages,
    tolerance: o.accuracyTolerance,
    memoryBudgetMB: o.memoryBudget,
    seed: o.seed,
    testBatchSize: o.testBatchSize,
    cacheMB: o.cacheMb,
    earlyStop: !o.noEarlyStop,
    approximateMarginImages: o.approximateMargin,
    evalCacheFile: o.evalCache,
    outputDir: o.outputDir,
    decoder: all && training ? { name: all.decoder, args: all.decoderArgs } : null,
    settings,
    log,
  });
  if (o.json) {
    console.log(
      JSON.stringify({
        fullPrecisionAccuracy: result.report.fullPrecisionAccuracy,
        minimumAccuracy: result.report.minimumAccuracy,
        branch: result.report.branch,
        steps: result.report.steps,
        models: result.report.models,
        ...(result.report.selection ? { selection: result.report.selection } : {}),
        evaluations: result.evaluations,
        full_pass_equivalents: result.fullPassEquivalents,
        files: result.files,
        seconds: seconds(started),
        isa: activeIsa(),
      }),
    );
  }
  return 0;
}

/** `qcapsnets sensitivity`: accuracy against bits, one layer's quantity at a time. */
export async function sensitivityCommand(o: Options<'sensitivity'>, log: Log, started: number): Promise<number> {
  const model = modelFromFlags(o);
  checkOutputFolders('sensitivity', o, false);
  const modelFile = loadTrained(o, model);
  const settings = settingsRecord('sensitivity', o);
  const test = await loadTestSplit(o, model, log);
  const { result, files } = await runSensitivityJob({
    model,
    modelFile,
    test,
    method: o.quantizationMethod as QuantMethod,
    compat: o.roundingCompat as RoundingCompat,
    numberFormat: o.numberFormat as NumberFormat,
    weightRange: o.weightRange as WeightRange,
    calibrationImages: o.calibrationImages,
    seed: o.seed,
    bits: parseBitList(o.sensitivityBits, '--sensitivity-bits'),
    testBatchSize: o.testBatchSize,
    cacheMB: o.cacheMb,
    outputDir: o.outputDir,
    settings,
    log,
  });
  if (o.json) console.log(JSON.stringify({ ...result, files, seconds: seconds(started) }));
  return 0;
}

/** `qcapsnets sweep`: the grid, the model and the shard checked before the data is loaded. */
export async function sweepCommand(o: Options<'sweep'>, log: Log): Promise<number> {
  const model = modelFromFlags(o);
  const { grid, shard, budgetDivisors } = sweepGridFromFlags(o, model.quantLayers);
  checkOutputFolders('sweep', o, false);
  const modelFile = loadTrained(o, model);
  const test = await loadTestSplit(o, model, log);
  // --finetune-epochs: the training images the memory models are fine-tuned on
  const train = o.finetuneEpochs > 0 ? (await loadTrainingSplit({ ...o, selectionSplit: 0 }, model, log)).train : null;
  const { result, file } = await runSweepJob({
    model,
    modelFile,
    test,
    grid,
    shard,
    ...(train ? { finetuneEpochs: o.finetuneEpochs, finetune: { train, ...finetuneSteps(o) } } : {}),
    compat: o.roundingCompat as RoundingCompat,
    numberFormat: o.numberFormat as NumberFormat,
    weightRange: o.weightRange as WeightRange,
    calibrationImages: o.calibrationImages,
    seed: o.seed,
    testBatchSize: o.testBatchSize,
    cacheMB: o.cacheMb,
    earlyStop: !o.noEarlyStop,
    evalCacheFile: o.evalCache,
    outputDir: o.outputDir,
    // what the rows depend on (not where files are, threads or the shard): merge compares these
    settings: {
      model: o.model,
      modelArgs: o.modelArgs,
      testLimit: o.testLimit,
      testBatchSize: o.testBatchSize,
      earlyStop: !o.noEarlyStop,
      budgetDivisors,
      // (absent under 'fixed', as in every sweep before the format, so that their shards merge)
      ...(o.numberFormat === 'dynamic' ? { numberFormat: o.numberFormat, calibrationImages: o.calibrationImages } : {}),
      // (absent under 'max', likewise)
      ...(o.weightRange === 'mse' ? { weightRange: o.weightRange } : {}),
      // (absent without fine-tuning, likewise)
      ...(o.finetuneEpochs > 0
        ? { finetuneEpochs: o.finetuneEpochs, ...finetuneSteps(o), trainLimit: o.trainLimit }
        : {}),
    },
    log,
  });
  if (o.json)
    console.log(
      JSON.stringify({
        file,
        rows: result.rows.length,
        evaluations: result.evaluations,
        middleCellEvaluations: result.middleCellEvaluations,
        seconds: result.seconds,
        isa: activeIsa(),
      }),
    );
  return 0;
}

/** `qcapsnets export`: a packed quantized model as golden vectors, ONNX or C. */
export async function exportCommand(o: Options<'export'>, log: Log): Promise<number> {
  if (o.format === 'onnx') return runOnnxExport(o.trainedWeightsPath, o.outputDir, o.onnxRounding, log);
  return runExport(
    o.trainedWeightsPath,
    o.images,
    o.outputDir,
    () => loadSplit(o, 'test', o.testLimit, log),
    log,
    o.format,
  );
}
