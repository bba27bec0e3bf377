#!/usr/bin/env node
// qcapsnets: the command line of the reference's main.py (SPEC 6), in TypeScript.
//   qcapsnets [flags]             train (or --no-training: load), then the Q-CapsNets search
//   qcapsnets train [flags]       training only
//   qcapsnets evaluate [flags]    full-precision accuracy of --trained-weights-path
//   qcapsnets search [flags]      the search on --trained-weights-path
import { existsSync, statSync } from 'node:fs';
import { DatasetMissingError, loadDataset } from '../data/load.js';
import type { DatasetName } from '../data/sources.js';
import { downloadDataset } from '../data/download.js';
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import { parseQuantMethod, parseRoundingCompat } from '../quant/methods.js';
import { ModelQuantizer } from '../quant/quantized-forward.js';
import { evaluateFullPrecision } from '../models/evaluate.js';
import { readStateDict } from '../io/pt.js';
import { backendInfo, kernels } from '../tensor/kernels.js';
import {
  checkLoadedDataset,
  checkResumeFlags,
  checkSearchFlags,
  FLAGS,
  helpText,
  modulesFromFlags,
  type Options,
  parseArgs,
  prepareTrainingFiles,
  searches,
  trains,
  validateFlags,
} from './args.js';
import { runSearchJob } from './search-job.js';
import { runTraining } from './train-job.js';

const log = (line: string) => process.stdout.write(line + '\n');

function str(o: Options, k: string): string {
  return String(o[k]);
}
function num(o: Options, k: string): number {
  return o[k] as number;
}

async function loadSplit(o: Options, split: 'train' | 'test'): Promise<Dataset> {
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

function loadTrained(o: Options, model: CapsNet): string {
  const path = str(o, 'trained-weights-path');
  if (!existsSync(path) || statSync(path).isDirectory()) {
    throw new Error(
      `--trained-weights-path ${path}: expected a .pt state_dict file (written by torch.save or by qcapsnets)`,
    );
  }
  model.loadStateDict(readStateDict(path), path);
  return path;
}

async function main(): Promise<number> {
  process.env.QCAPS_QUIET ??= '1'; // the banner below names the backend
  const { command, options: o } = parseArgs(process.argv.slice(2));
  if (o.help) {
    log(helpText());
    return 0;
  }
  // ---- every flag is checked before any long work (training, loading data)
  validateFlags(o);
  const started = performance.now();
  if (o.threads !== null) kernels().setThreads(num(o, 'threads'));
  log(`qcapsnets ${command === 'all' ? '' : command + ' '}on ${backendInfo()}, ${kernels().getThreads()} threads`);
  const method = parseQuantMethod(str(o, 'quantization-method'), '--quantization-method');
  const compat = parseRoundingCompat(str(o, 'rounding-compat'), '--rounding-compat');
  const training = trains(command, o);
  const { model, decoder } = modulesFromFlags(o, training);
  if (searches(command))
    checkSearchFlags(
      o,
      new ModelQuantizer(model, method, compat, num(o, 'seed')).layers.map((l) => l.paramCount),
    );
  const files = training ? prepareTrainingFiles(o) : null;
  let modelFile = training ? '' : loadTrained(o, model);
  const settings: Record<string, unknown> = {};
  for (const f of FLAGS) if (f.name !== 'help') settings[f.name] = o[f.name];

  const test = await loadSplit(o, 'test');
  checkLoadedDataset(model, test);
  if (training && decoder && files) {
    const train = await loadSplit(o, 'train');
    checkLoadedDataset(model, train);
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
    test,
    method,
    compat,
    tolerance: num(o, 'accuracy-tolerance'),
    memoryBudgetMB: num(o, 'memory-budget'),
    seed: num(o, 'seed'),
    testBatchSize: num(o, 'test-batch-size'),
    cacheMB: num(o, 'cache-mb'),
    earlyStop: !o['no-early-stop'],
    approximateMarginImages: num(o, 'approximate-margin'),
    outputDir: o['output-dir'] === null ? null : str(o, 'output-dir'),
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
        evaluations: result.evaluations,
        full_pass_equivalents: result.fullPassEquivalents,
        files: result.files,
        seconds: (performance.now() - started) / 1000,
      }),
    );
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`qcapsnets: error: ${err.message}\n`);
    process.exit(2);
  },
);
