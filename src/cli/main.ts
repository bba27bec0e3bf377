#!/usr/bin/env node
// qcapsnets: the command line of the reference's main.py (SPEC 6), in TypeScript.
//   qcapsnets [flags]             train (or --no-training: load), then the Q-CapsNets search
//   qcapsnets train [flags]       training only
//   qcapsnets evaluate [flags]    full-precision accuracy of --trained-weights-path (a packed
//                                 <stem>_quantized_<kind>.safetensors: its quantized accuracy)
//   qcapsnets search [flags]      the search on --trained-weights-path
//   qcapsnets sensitivity [flags] accuracy against bits, one layer's quantity at a time
//   qcapsnets report RUN.json     the HTML page of a search, sweep or sensitivity JSON
//   qcapsnets sweep [flags]       a grid of searches (tolerances x budgets x methods) in one run
//   qcapsnets merge A.json ...    the shards of a sweep in one result
import { existsSync, statSync } from 'node:fs';
import { DatasetMissingError, loadDataset } from '../data/load.js';
import { splitOffSelection } from '../data/selection-split.js';
import type { DatasetName } from '../data/sources.js';
import { downloadDataset } from '../data/download.js';
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import { modelOfStateDict } from '../models/factory.js';
import { parseQuantMethod, parseRoundingCompat } from '../quant/methods.js';
import { bitsText } from '../quant/config.js';
import { evaluateFullPrecision } from '../models/evaluate.js';
import { readStateDict } from '../io/pt.js';
import { datasetFingerprint, readQuantizedModel } from '../export/quantized-file.js';
import { runExport, runOnnxExport } from './export-job.js';
import { runReportJob } from './report-job.js';
import { runSensitivityJob } from './sensitivity-job.js';
import { parseBitList } from '../search/sensitivity.js';
import { backendInfo, kernels } from '../tensor/kernels.js';
import {
  checkLoadedDataset,
  checkOutputFolders,
  checkResumeFlags,
  checkSearchFlags,
  datasetShapeFromFlags,
  FLAGS,
  helpText,
  modulesFromFlags,
  type Options,
  parseArgs,
  type Subcommand,
  prepareTrainingFiles,
  searches,
  sweepGridFromFlags,
  trains,
  validateFlags,
} from './args.js';
import { runMerge } from './merge-job.js';
import { runSearchJob } from './search-job.js';
import { runSweepJob } from './sweep-job.js';
import { runTraining } from './train-job.js';

const log = (line: string) => process.stdout.write(line + '\n');

function str(o: Options, k: string): string {
  return String(o[k]);
}
function num(o: Options, k: string): number {
  return o[k] as number;
}

async function loadSplit(o: Options, split: 'train' | 'test'): Promise<Dataset> {
  return nonEmpty(await findSplit(o, split));
}

async function findSplit(o: Options, split: 'train' | 'test'): Promise<Dataset> {
  const name = str(o, 'dataset') as DatasetName;
  const dataDir = o['data-dir'] === null ? undefined : str(o, 'data-dir');
  const limit = (split === 'test' ? o['test-limit'] : o['train-limit']) as number | null;
  try {
    return loadDataset(name, split, { dataDir, limit: limit ?? undefined });
  } catch (err) {
    if (!o.download) {
      if (err instanceof DatasetMissingError)
        throw new Error(`${err.what}, or pass --data-dir DIR, or add --download (with --data-dir) to fetch them.`, {
          cause: err,
        });
      throw err;
    }
    if (!dataDir) throw new Error(`--download needs --data-dir (the folder to download ${name} into)`, { cause: err });
    log(`downloading ${name} into ${dataDir} ...`);
    await downloadDataset(name, dataDir, { log });
    return loadDataset(name, split, { dataDir, limit: limit ?? undefined });
  }
}

/** A split of 0 images would give an accuracy of NaN% and a search on nothing: an error. */
function nonEmpty(ds: Dataset): Dataset {
  if (ds.count === 0)
    throw new Error(`${ds.source}: the ${ds.split} split of ${ds.name} holds 0 images; expected at least one`);
  return ds;
}

/** The training set (when `load`), less its --selection-split images, and those images. */
async function selectionSplit(
  o: Options,
  load: boolean,
): Promise<{ train: Dataset; selection: Dataset | null } | null> {
  if (!load) return null;
  const train = await loadSplit(o, 'train');
  const n = num(o, 'selection-split');
  if (n === 0) return { train, selection: null };
  const parts = splitOffSelection(train, n);
  log(`--selection-split ${n}: the search decides on ${parts.selection}; training uses ${parts.train.count} images`);
  return parts;
}

function loadTrained(o: Options, model: CapsNet): string {
  const path = str(o, 'trained-weights-path');
  if (!existsSync(path) || statSync(path).isDirectory()) {
    throw new Error(
      `--trained-weights-path ${path}: expected a .pt state_dict file (written by torch.save or by qcapsnets)`,
    );
  }
  const sd = readStateDict(path);
  try {
    model.loadStateDict(sd, path);
  } catch (err) {
    // a file of the other model, or of other --model-args: one line that says which flags fit
    const found = modelOfStateDict(sd);
    if (!found) throw err;
    throw new Error(
      `--trained-weights-path ${path} holds a ${found.name} ${found.args.join(' ')} state_dict, not ${model.kind} ` +
        `${model.args.join(' ')}: pass --model ${found.name} --model-args ${found.args.join(' ')}`,
      { cause: err },
    );
  }
  return path;
}

/** The flags given on the command line (not left at their defaults), by their own names. */
function givenFlags(argv: readonly string[]): Set<string> {
  const byName = new Map<string, string>();
  for (const f of FLAGS) for (const n of [f.name, ...(f.aliases ?? [])]) byName.set(n, f.name);
  const given = new Set<string>();
  for (const a of argv) {
    const name = byName.get(a.replace(/^--?/, '').split('=')[0]);
    if (a.startsWith('-') && name) given.add(name);
  }
  return given;
}

/** `evaluate` of a packed quantized model (<stem>_quantized_<kind>.safetensors): the model, its
 *  bits, method, arithmetic and seed come from the file; flags that say otherwise are an error. */
async function evaluatePacked(o: Options, given: Set<string>): Promise<number> {
  const path = str(o, 'trained-weights-path');
  if (!existsSync(path) || statSync(path).isDirectory())
    throw new Error(`--trained-weights-path ${path}: no such file (expected a <stem>_quantized_<kind>.safetensors)`);
  const { quantized: q, info } = readQuantizedModel(path);
  const holds = `${info.model} --model-args ${info.modelArgs.join(' ')}, --quantization-method ${info.method}, --rounding-compat ${info.compat}, --seed ${info.seed}`;
  const conflicts: string[] = [];
  const differs = (flag: string, mine: string) => given.has(flag) && String(o[flag]) !== mine;
  if (differs('model', info.model)) conflicts.push(`--model ${str(o, 'model')}`);
  if (given.has('model-args') && (o['model-args'] as number[]).join(' ') !== info.modelArgs.join(' '))
    conflicts.push(`--model-args ${(o['model-args'] as number[]).join(' ')}`);
  if (differs('quantization-method', info.method))
    conflicts.push(`--quantization-method ${str(o, 'quantization-method')}`);
  if (differs('rounding-compat', info.compat)) conflicts.push(`--rounding-compat ${str(o, 'rounding-compat')}`);
  if (info.method === 'stochastic_rounding' && differs('seed', String(info.seed)))
    conflicts.push(`--seed ${str(o, 'seed')}`);
  if (conflicts.length)
    throw new Error(
      `${conflicts.join(', ')}: ${path} holds a quantized ${holds}; leave ${conflicts.length > 1 ? 'these flags' : 'the flag'} out (the file decides)`,
    );
  const m = q.model;
  const shape = datasetShapeFromFlags(o);
  if (shape.height !== m.inputWh || shape.channels !== m.inputCh || shape.numClasses !== m.numClasses)
    throw new Error(
      `--dataset ${shape.name} has ${shape.height}x${shape.width}x${shape.channels} images of ${shape.numClasses} classes, ` +
        `but ${path} holds ${info.model} ${info.modelArgs.join(' ')} for ${m.inputWh}x${m.inputWh}x${m.inputCh} images of ${m.numClasses} classes`,
    );
  const test = await loadSplit(o, 'test');
  checkLoadedDataset(m, test);
  // stochastic rounding draws per batch: repeat the search's batches when these are its images
  let order: Int32Array | null = null;
  let batchSize = num(o, 'test-batch-size');
  const fingerprint = datasetFingerprint(test);
  if (info.method === 'stochastic_rounding') {
    const ev = info.evaluationOrder;
    if (ev && ev.fingerprint === fingerprint) {
      order = ev.order;
      if (given.has('test-batch-size') && batchSize !== ev.batchSize)
        log(
          `--test-batch-size ${batchSize} ignored: the search's batches of ${ev.batchSize} decide the stochastic draws`,
        );
      batchSize = ev.batchSize;
      log(`stochastic rounding: batches of ${batchSize} in the search's order (hardest images first)`);
    } else
      log(
        'stochastic rounding: these are not the test images the search used, so its batches cannot be repeated ' +
          '(the draws depend on the batch); evaluating in dataset order',
      );
  }
  const r = q.evaluate(test, { batchSize, order });
  log(
    `quantized accuracy of ${path} (${info.model} ${info.modelArgs.join(' ')}, ${info.method}${info.compat === 'none' ? '' : `, ${info.compat}`}, ` +
      `${bitsText(q.bits)}) on ${test}: ${r.accuracy}% (${r.correct}/${r.total})`,
  );
  const s = info.search;
  if (s && s.fingerprint === fingerprint)
    log(`the search counted ${s.correct}/${s.images} on these images${s.correct === r.correct ? ' (the same)' : ''}`);
  if (o.json) console.log(JSON.stringify({ accuracy: r.accuracy, correct: r.correct, total: r.total }));
  return 0;
}

async function main(): Promise<number> {
  process.env.QCAPS_QUIET ??= '1'; // the banner below names the backend
  const argv = process.argv.slice(2);
  const { command, options: o, positional } = parseArgs(argv);
  if (o.help) {
    log(helpText());
    return 0;
  }
  if (command === 'report') return runReportJob(positional, o.output === null ? null : str(o, 'output'), log);
  // the flags of one command only, given to another, are an error rather than ignored
  const given = givenFlags(argv);
  const only: [string[], Subcommand[]][] = [
    [['tolerances', 'memory-budgets', 'budget-divisors', 'methods', 'shard'], ['sweep']],
    [['eval-cache'], ['sweep', 'search', 'all']],
    [['output'], ['merge', 'report']],
  ];
  for (const [flags, commands] of only)
    for (const f of flags)
      if (given.has(f) && !commands.includes(command))
        throw new Error(
          `--${f} applies to ${commands
            .map((c) => (c === 'all' ? 'the default command' : c))
            .join(', ')
            .replace(/, ([^,]+)$/, ' and $1')} only`,
        );
  if (command === 'merge') {
    runMerge(positional, o.output === null ? null : str(o, 'output'), log);
    return 0;
  }
  // ---- every flag is checked before any long work (training, loading data)
  validateFlags(o);
  const started = performance.now();
  if (o.threads !== null) kernels().setThreads(num(o, 'threads'));
  log(`qcapsnets ${command === 'all' ? '' : command + ' '}on ${backendInfo()}, ${kernels().getThreads()} threads`);
  const method = parseQuantMethod(str(o, 'quantization-method'), '--quantization-method');
  const compat = parseRoundingCompat(str(o, 'rounding-compat'), '--rounding-compat');
  if (command === 'evaluate' && /\.safetensors$/i.test(str(o, 'trained-weights-path')))
    return evaluatePacked(o, givenFlags(argv));
  if (command === 'export' && str(o, 'format') === 'onnx')
    return runOnnxExport(
      str(o, 'trained-weights-path'),
      (o['output-dir'] as string | null) ?? null,
      (o['onnx-rounding'] as string | null) ?? null,
      log,
    );
  if (command === 'export')
    return runExport(
      str(o, 'trained-weights-path'),
      num(o, 'images'),
      (o['output-dir'] as string | null) ?? null,
      () => loadSplit(o, 'test'),
      log,
      str(o, 'format'),
    );
  if (command === 'sweep') return sweep(o);
  const training = trains(command, o);
  const { model, decoder } = modulesFromFlags(o, training);
  if (searches(command))
    checkSearchFlags(
      o,
      model.quantLayers.map((l) => l.paramCount),
    );
  const sensitivityBits =
    command === 'sensitivity' ? parseBitList(str(o, 'sensitivity-bits'), '--sensitivity-bits') : [];
  checkOutputFolders(command, o);
  const files = training ? prepareTrainingFiles(o) : null;
  let modelFile = training ? '' : loadTrained(o, model);
  const settings: Record<string, unknown> = {};
  for (const f of FLAGS) if (f.name !== 'help') settings[f.name] = o[f.name];

  const test = await loadSplit(o, 'test');
  checkLoadedDataset(model, test);
  // --selection-split N: the last N training images, held out of training; the search decides on them
  const split = await selectionSplit(o, training || (searches(command) && num(o, 'selection-split') > 0));
  if (split) checkLoadedDataset(model, split.train);
  if (training && decoder && files && split) {
    const train = split.train;
    if (files.resume) checkResumeFlags(o, files.resume, { model, decoder, train, test });
    const summary = await runTraining(o, { model, decoder, train, test, resume: files.resume }, log);
    modelFile = summary.modelFile;
    if (command === 'train') {
      if (o.json) console.log(JSON.stringify({ ...summary.json, seconds: (performance.now() - started) / 1000 }));
      return 0;
    }
    // the search starts from the best model, as the reference does
    model.loadStateDict(readStateDict(modelFile), modelFile);
  }

  if (command === 'sensitivity') {
    const { result, files: written } = await runSensitivityJob({
      model,
      modelFile,
      test,
      method,
      compat,
      seed: num(o, 'seed'),
      bits: sensitivityBits,
      testBatchSize: num(o, 'test-batch-size'),
      cacheMB: num(o, 'cache-mb'),
      outputDir: o['output-dir'] === null ? null : str(o, 'output-dir'),
      settings,
      log,
    });
    if (o.json)
      console.log(JSON.stringify({ ...result, files: written, seconds: (performance.now() - started) / 1000 }));
    return 0;
  }

  if (command === 'evaluate') {
    const r = evaluateFullPrecision(model, test, { batchSize: num(o, 'test-batch-size') });
    const correct = r.correct;
    log(`full-precision accuracy of ${modelFile} on ${test}: ${r.accuracy}% (${correct}/${r.total})`);
    if (o.json) console.log(JSON.stringify({ accuracy: r.accuracy, correct, total: r.total }));
    return 0;
  }

  const result = await runSearchJob({
    model,
    modelFile,
    test: split?.selection ?? test,
    finalTest: split?.selection ? test : undefined,
    method,
    compat,
    tolerance: num(o, 'accuracy-tolerance'),
    memoryBudgetMB: num(o, 'memory-budget'),
    seed: num(o, 'seed'),
    testBatchSize: num(o, 'test-batch-size'),
    cacheMB: num(o, 'cache-mb'),
    earlyStop: !o['no-early-stop'],
    approximateMarginImages: num(o, 'approximate-margin'),
    evalCacheFile: o['eval-cache'] === null ? null : str(o, 'eval-cache'),
    outputDir: o['output-dir'] === null ? null : str(o, 'output-dir'),
    decoder: training ? { name: str(o, 'decoder'), args: o['decoder-args'] as number[] } : null,
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
        seconds: (performance.now() - started) / 1000,
      }),
    );
  }
  return 0;
}

/** `qcapsnets sweep`: the grid, the model and the shard checked before the data is loaded. */
async function sweep(o: Options): Promise<number> {
  const { model } = modulesFromFlags(o, false);
  const { grid, shard, budgetDivisors } = sweepGridFromFlags(
    o,
    model.quantLayers.map((l) => l.paramCount),
  );
  checkOutputFolders('sweep', o);
  const modelFile = loadTrained(o, model);
  const test = await loadSplit(o, 'test');
  checkLoadedDataset(model, test);
  const { result, file } = await runSweepJob({
    model,
    modelFile,
    test,
    grid,
    shard,
    compat: parseRoundingCompat(str(o, 'rounding-compat'), '--rounding-compat'),
    seed: num(o, 'seed'),
    testBatchSize: num(o, 'test-batch-size'),
    cacheMB: num(o, 'cache-mb'),
    earlyStop: !o['no-early-stop'],
    evalCacheFile: o['eval-cache'] === null ? null : str(o, 'eval-cache'),
    outputDir: o['output-dir'] === null ? null : str(o, 'output-dir'),
    // what the rows depend on (not where files are, threads or the shard): merge compares these
    settings: {
      model: str(o, 'model'),
      modelArgs: o['model-args'],
      testLimit: o['test-limit'],
      testBatchSize: num(o, 'test-batch-size'),
      earlyStop: !o['no-early-stop'],
      budgetDivisors,
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
      }),
    );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`qcapsnets: error: ${err.message}\n`);
    // the stack (and its causes') only when asked: flags are parsed again, as the error may be theirs
    if (process.argv.slice(2).some((a) => a === '--verbose'))
      for (let e: unknown = err; e instanceof Error; e = e.cause) process.stderr.write(`${e.stack ?? e.message}\n`);
    process.exit(2);
  },
);
