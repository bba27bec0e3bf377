// `qcapsnets finetune`: quantization-aware fine-tuning of --trained-weights-path at the bits of
// --bits FILE (bits-file.ts) or of a packed --bits-from file, for --epochs (finetuneRun,
// src/search/finetune.ts), with training's progress, checkpoints (<stem>_finetuned.ckpt.safetensors
// beside the outputs; --checkpoint-every, --resume) and its stop at a non-finite loss. It writes,
// as one set (src/io/output-set.ts, the JSON last), next to the model or in --output-dir:
//   <stem>_finetuned.pt           the quantized state_dict (float32 values on the grid)
//   <stem>_finetuned.safetensors  the same model packed at its bit widths (`evaluate` reloads it)
//   <stem>_finetuned.json, .html  the report: accuracies before and after, each epoch, the bits
// Every check (the flags, the bits against the model, the packed file's model, --resume's
// checkpoint) is made before any training.
import { mkdirSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { datasetFingerprint, readQuantizedModel, writeQuantizedModel } from '../export/quantized-file.js';
import { OutputSet } from '../io/output-set.js';
import { writeStateDict } from '../io/pt.js';
import type { CapsNet } from '../models/capsnet.js';
import { evaluateFullPrecision } from '../models/evaluate.js';
import type { Calibration } from '../quant/calibration.js';
import type { WeightRange } from '../quant/dynamic.js';
import { type BitConfig, bitsText, bitsToLists, type NumberFormat } from '../quant/config.js';
import { fullPrecisionMemoryMB } from '../quant/memory.js';
import type { RoundingCompat } from '../quant/methods.js';
import { quantize } from '../quant/quantized-model.js';
import { FINETUNE_TOOL, FINETUNE_VERSION, type FinetuneReport, writeFinetuneJson } from '../report/finetune-json.js';
import { writeReportHtml } from '../report/index.js';
import { finetuneIdentity, finetuneRun } from '../search/finetune.js';
import { searchCalibration } from '../search/search-model.js';
import type { QuantMethod } from '../tensor/backend.js';
import { activeIsa } from '../tensor/kernels.js';
import { checkResumable, readTrainingCheckpoint, runIdentity } from '../train/checkpoint.js';
import { checkOutputPath, type OptionNames } from '../train/checks.js';
import { type FlagName, type Options, settingsRecord, takes } from './flags.js';
import { loadTestSplit, loadTrained, loadTrainingSplit, type Log, modelFromFlags, decoderFromFlags } from './inputs.js';
import { readBitsFile } from './bits-file.js';
import { interruptible, trainSettings } from './train-job.js';
import { checkOutputFolders, FLAG_OPTION_NAMES } from './validate.js';

/** The configuration to fine-tune at, and where it came from. */
export interface Configuration {
  bits: BitConfig;
  method: QuantMethod;
  compat: RoundingCompat;
  /** the flag that gave the bits, and its file */
  flag: '--bits' | '--bits-from';
  source: string;
  /** a dynamic --bits-from file's calibration (the ranges it was quantized at); null otherwise */
  calibration: Calibration | null;
  /** the weight range rule: --weight-range, or the --bits-from file's */
  weightRange: WeightRange;
}

/** The bits of --bits FILE (with the rounding flags), or those of the packed --bits-from file
 *  with its method and arithmetic (rounding flags given otherwise are an error, as for
 *  `evaluate`: the file decides), checked against the model. */
export function configurationFromFlags(
  o: Options<'finetune'>,
  given: ReadonlySet<FlagName>,
  model: CapsNet,
): Configuration {
  const format = o.numberFormat as NumberFormat;
  if (o.bits !== null)
    return {
      bits: readBitsFile(o.bits, model.quantLayers, format),
      method: o.quantizationMethod as QuantMethod,
      compat: o.roundingCompat as RoundingCompat,
      flag: '--bits',
      source: o.bits,
      calibration: null,
      weightRange: o.weightRange as WeightRange,
    };
  const file = o.bitsFrom!;
  let packed: ReturnType<typeof readQuantizedModel>['info'];
  try {
    packed = readQuantizedModel(file).info;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(
      `--bits-from ${file}: ${missing ? 'no such file (expected a <stem>_quantized_<kind>.safetensors)' : (err as Error).message}`,
      { cause: err },
    );
  }
  const holds = `${packed.model} ${packed.modelArgs.join(' ')}`;
  if (packed.model !== model.kind || packed.modelArgs.join(' ') !== model.args.join(' '))
    throw new Error(
      `--bits-from ${file} holds a quantized ${holds}, but --trained-weights-path ${o.trainedWeightsPath} is a ` +
        `${model.kind} ${model.args.join(' ')}: give the packed file of this model`,
    );
  const formats = [...new Set(packed.bits.map((b) => b.format))].join('/');
  const conflicts = [
    given.has('quantization-method') &&
      o.quantizationMethod !== packed.method &&
      `--quantization-method ${o.quantizationMethod}`,
    given.has('rounding-compat') && o.roundingCompat !== packed.compat && `--rounding-compat ${o.roundingCompat}`,
    given.has('number-format') && o.numberFormat !== formats && `--number-format ${o.numberFormat}`,
    given.has('calibration-images') && `--calibration-images ${o.calibrationImages}`,
    given.has('weight-range') && o.weightRange !== packed.weightRange && `--weight-range ${o.weightRange}`,
  ].filter((c): c is string => typeof c === 'string');
  if (conflicts.length)
    throw new Error(
      `${conflicts.join(', ')}: --bits-from ${file} holds a ${packed.method} model (--rounding-compat ${packed.compat}, ${formats} bits` +
        `${packed.weightRange === 'mse' ? ', mse weight ranges' : ''}); ` +
        `leave ${conflicts.length > 1 ? 'these flags' : 'the flag'} out (the file decides)`,
    );
  return {
    bits: packed.bits,
    method: packed.method,
    compat: packed.compat,
    flag: '--bits-from',
    source: file,
    calibration: packed.calibration,
    weightRange: packed.weightRange,
  };
}

/** How a resumed run's errors name what fine-tuning adds to training's settings. */
function optionNames(c: Configuration): OptionNames {
  return {
    ...FLAG_OPTION_NAMES,
    variant: {
      bits: c.flag,
      method: c.flag === '--bits' ? '--quantization-method' : `the method of ${c.source}`,
      compat: c.flag === '--bits' ? '--rounding-compat' : `the arithmetic of ${c.source}`,
      startWeights: '--trained-weights-path',
      calibration: c.flag === '--bits' ? '--calibration-images' : `the calibration of ${c.source}`,
      weightRange: c.flag === '--bits' ? '--weight-range' : `the weight range rule of ${c.source}`,
      distillScale: '--distill-scale',
      distillFraction: '--distill-fraction',
    },
  };
}

export async function finetuneCommand(
  o: Options<'finetune'>,
  given: ReadonlySet<FlagName>,
  log: Log,
  started: number,
): Promise<number> {
  if (o.bits !== null && o.bitsFrom !== null) throw new Error('--bits and --bits-from: give one of them');
  if (o.bits === null && o.bitsFrom === null)
    throw new Error(
      'finetune: which bits? --bits FILE (a JSON of bits per layer, docs/cli.md) or --bits-from <stem>_quantized_<kind>.safetensors',
    );
  if (o.resume !== null && o.epochs === 0)
    throw new Error(
      `--resume ${o.resume} with --epochs 0: give the epochs in all (as the first run's --epochs, or more)`,
    );
  const model = modelFromFlags(o);
  const decoder = decoderFromFlags(o, model);
  checkOutputFolders('finetune', o, false);
  const modelFile = loadTrained(o, model);
  const config = configurationFromFlags(o, given, model);
  const outDir = resolve(o.outputDir ?? dirname(modelFile));
  const stem = `${basename(modelFile, extname(modelFile))}_finetuned`;
  const resume = o.resume === null ? null : readTrainingCheckpoint(resolve(o.resume), '--resume');
  // the command's own flags, by their long names
  const settings = Object.fromEntries(
    Object.entries(settingsRecord('finetune', o)).filter(([f]) => takes('finetune', f as FlagName)),
  );
  const test = await loadTestSplit(o, model, log);
  const { train } = await loadTrainingSplit(o, model, log);
  // 'dynamic': the ranges of the starting float model, once, on the images it trains on (the
  // test images and --selection-split's held-out ones never), or those of the --bits-from file
  const calibration =
    config.calibration ??
    searchCalibration(
      'finetune',
      model,
      train,
      { numberFormat: o.numberFormat as NumberFormat, calibrationImages: o.calibrationImages },
      log,
      'the training images',
    );
  const rounding = {
    method: config.method,
    compat: config.compat,
    seed: o.seed,
    calibration,
    weightRange: config.weightRange,
  };
  const training = trainSettings(o);
  if (resume)
    checkResumable(
      resume,
      runIdentity(
        model,
        decoder,
        { train, test },
        training,
        finetuneIdentity(model, config.bits, rounding, { scale: o.distillScale, fraction: o.distillFraction }),
      ),
      optionNames(config),
    );

  const batchSize = o.testBatchSize;
  const fp = evaluateFullPrecision(model, test, { batchSize });
  const before = quantize(model, config.bits, rounding).evaluate(test, { batchSize });
  log(
    `${config.method}${config.compat === 'none' ? '' : `, ${config.compat}`} at ${bitsText(config.bits)} (${config.flag} ${config.source}): ` +
      `full precision ${fp.accuracy}% (${fp.correct}/${fp.total}), quantized ${before.accuracy}% (${before.correct}/${before.total}) on ${test.count} test images`,
  );
  mkdirSync(outDir, { recursive: true });
  const checkpointFile =
    o.epochs > 0 ? checkOutputPath(join(outDir, `${stem}.ckpt.safetensors`), 'the fine-tuning checkpoint') : null;
  const { quantized, summary } = await interruptible(log, o.lr, (signal) =>
    finetuneRun(
      model,
      config.bits,
      { train, test },
      {
        ...rounding,
        ...training,
        decoder,
        distillScale: o.distillScale,
        distillFraction: o.distillFraction,
        checkpointFilename: checkpointFile,
        checkpointEvery: o.checkpointEvery,
        resume: resume ?? undefined,
        log,
        signal,
      },
    ),
  );
  if (summary?.interrupted)
    throw new Error(
      `fine-tuning was interrupted; continue with the same command and --resume ${summary.checkpointFile}`,
    );
  const after = quantized.evaluate(test, { batchSize });
  log(
    `fine-tuned ${o.epochs} epoch${o.epochs === 1 ? '' : 's'}: quantized ${after.accuracy}% (${after.correct}/${after.total}) on the test images`,
  );

  // the set appears whole or not at all (the JSON last): see OutputSet
  const pt = join(outDir, `${stem}.pt`);
  const packedFile = join(outDir, `${stem}.safetensors`);
  const jsonFile = join(outDir, `${stem}.json`);
  const htmlFile = join(outDir, `${stem}.html`);
  const fingerprint = datasetFingerprint(test);
  const set = new OutputSet(outDir, stem);
  let report: FinetuneReport;
  try {
    set.write(pt, (f) => writeStateDict(f, quantized.stateDict()));
    const packed = set.write(packedFile, (f) =>
      writeQuantizedModel(f, quantized, {
        decoder: { name: decoder.kind, args: decoder.args },
        search: {
          kind: 'finetuned',
          dataset: test.name,
          images: test.count,
          correct: after.correct,
          accuracy: after.accuracy,
          batchSize,
          order: 'dataset',
          fingerprint,
        },
        // stochastic rounding's draws depend on the batches: `evaluate` repeats these
        evaluationOrder:
          config.method === 'stochastic_rounding'
            ? { order: Int32Array.from({ length: test.count }, (_, i) => i), batchSize, fingerprint }
            : undefined,
      }),
    );
    report = {
      tool: FINETUNE_TOOL,
      version: FINETUNE_VERSION,
      settings,
      model: { kind: model.kind, args: [...model.args], file: modelFile },
      bitsSource: config.source,
      format: [...new Set(config.bits.map((b) => b.format))].join('/'),
      ...(config.weightRange === 'mse' ? { weight_range: 'mse' as const } : {}),
      method: config.method,
      compat: config.compat,
      seed: o.seed,
      layers: model.quantLayers.map(({ name, paramCount, routes }) => ({ name, paramCount, routes })),
      bits: bitsToLists(config.bits),
      epochs: o.epochs,
      fullPrecisionAccuracy: fp.accuracy,
      before: { accuracy: before.accuracy, correct: before.correct, total: before.total },
      after: { accuracy: after.accuracy, correct: after.correct, total: after.total },
      weightMemoryMB: quantized.weightMemoryMB,
      weightReduction: fullPrecisionMemoryMB(model.quantLayers.map((l) => l.paramCount)) / quantized.weightMemoryMB,
      history: (summary?.epochs ?? []).map((e) => ({
        epoch: e.epoch,
        hard: e.hard,
        trainLoss: e.trainLoss,
        trainMarginLoss: e.trainMarginLoss,
        trainReconLoss: e.trainReconLoss,
        trainAccuracy: e.trainAccuracy,
        testAccuracy: e.testAccuracy,
        testCorrect: e.testCorrect,
        testTotal: e.testTotal,
        testLoss: e.testLoss,
        seconds: e.seconds,
        lastLr: e.lastLr,
      })),
      files: { pt, packed: packedFile, checkpoint: checkpointFile },
      packedBytes: packed.packedBytes,
      packedFileBytes: packed.fileBytes,
      resumedFrom: summary?.resumedFrom ?? null,
      seconds: (performance.now() - started) / 1000,
    };
    set.write(jsonFile, (f) => writeFinetuneJson(f, report));
    set.write(htmlFile, (f) => writeReportHtml(f, report, jsonFile));
    set.commit(jsonFile);
  } catch (err) {
    set.abort();
    throw err;
  }
  log(`fine-tuned model in ${pt} and, at its bit widths, ${packedFile}; report ${jsonFile} and ${htmlFile}`);
  if (o.json)
    console.log(
      JSON.stringify({
        fullPrecisionAccuracy: fp.accuracy,
        before: report.before,
        after: report.after,
        weightMemoryMB: report.weightMemoryMB,
        files: [pt, packedFile, jsonFile, htmlFile],
        checkpoint: checkpointFile,
        seconds: (performance.now() - started) / 1000,
        isa: activeIsa(),
      }),
    );
  return 0;
}
