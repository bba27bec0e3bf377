#!/usr/bin/env node
// qcapsnets: the command line of the reference's main.py (SPEC 6), in TypeScript.
//   qcapsnets [flags]             train (or --no-training: load), then the Q-CapsNets search
//   qcapsnets train [flags]       training only
//   qcapsnets evaluate [flags]    full-precision accuracy of --trained-weights-path
//   qcapsnets search [flags]      the search on --trained-weights-path
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isDatasetName, loadDataset } from '../data/load.js';
import type { DatasetName } from '../data/sources.js';
import { downloadDataset } from '../data/download.js';
import type { Dataset } from '../data/dataset.js';
import { buildModel } from '../models/factory.js';
import type { CapsNet, ModelName } from '../models/capsnet.js';
import { parseQuantMethod, parseRoundingCompat } from '../quant/methods.js';
import { ModelQuantizer } from '../quant/quantized-forward.js';
import { memoryBits } from '../search/qcapsnets.js';
import { FastEvaluator } from '../search/fast-evaluator.js';
import { readStateDict } from '../io/pt.js';
import { backendInfo, kernels } from '../tensor/kernels.js';
import { FLAGS, helpText, type Options, parseArgs } from './args.js';
import { runSearchJob } from './search-job.js';
import { runTraining } from './train-job.js';

const log = (line: string) => process.stdout.write(line + '\n');

function str(o: Options, k: string): string {
  return String(o[k]);
}
function num(o: Options, k: string): number {
  return o[k] as number;
}

function checkPositive(o: Options, flags: string[]): void {
  for (const f of flags) {
    const v = o[f];
    if (typeof v === 'number' && !(v > 0)) throw new Error(`--${f} ${v}: expected a positive value`);
  }
}

/** Everything that can be checked before long work starts. */
function validate(o: Options): void {
  if (str(o, 'visible-gpus') !== '-1') {
    throw new Error(
      `--visible-gpus ${str(o, 'visible-gpus')}: this build has no GPU backend; use --visible-gpus -1 (the default) to run on the CPU`,
    );
  }
  if (!isDatasetName(str(o, 'dataset')))
    throw new Error(
      `--dataset: unknown dataset '${str(o, 'dataset')}'; expected one of mnist, fashion-mnist, cifar10, svhn`,
    );
  parseQuantMethod(str(o, 'quantization-method'));
  parseRoundingCompat(str(o, 'rounding-compat'));
  checkPositive(o, [
    'epochs',
    'lr',
    'batch-size',
    'log-interval',
    'decay-steps',
    'decay-rate',
    'test-batch-size',
    'memory-budget',
  ]);
  const tol = num(o, 'accuracy-tolerance');
  if (!(tol > 0 && tol < 100)) throw new Error(`--accuracy-tolerance ${tol}: expected a value in (0, 100)`);
  if (o.threads !== null && !(num(o, 'threads') >= 1))
    throw new Error(`--threads ${o.threads}: expected a positive integer`);
  for (const f of ['test-limit', 'train-limit'])
    if (o[f] !== null && !(num(o, f) >= 1)) throw new Error(`--${f} ${o[f]}: expected a positive integer`);
  if (!(num(o, 'cache-mb') >= 0)) throw new Error(`--cache-mb ${o['cache-mb']}: expected 0 or more`);
  if (!(num(o, 'approximate-margin') >= 0))
    throw new Error(`--approximate-margin ${o['approximate-margin']}: expected 0 or more images`);
}

function buildFromFlags(o: Options): CapsNet {
  return buildModel(str(o, 'model') as ModelName, o['model-args'] as number[], { seed: num(o, 'seed') }) as CapsNet;
}

function checkDatasetFits(model: CapsNet, ds: Dataset, o: Options): void {
  if (model.inputWh !== ds.height || model.inputWh !== ds.width || model.inputCh !== ds.channels) {
    throw new Error(
      `--model-args ${(o['model-args'] as number[]).join(' ')}: ${model.kind} expects ${model.inputWh}x${model.inputWh}x${model.inputCh} images, ` +
        `but ${ds.name} has ${ds.height}x${ds.width}x${ds.channels} (e.g. --model-args ${ds.height} ${ds.channels} ${ds.numClasses} ${model.capsDim})`,
    );
  }
  if (model.numClasses !== ds.numClasses) {
    throw new Error(`--model-args: num_classes ${model.numClasses} but ${ds.name} has ${ds.numClasses} classes`);
  }
}

async function loadSplit(o: Options, split: 'train' | 'test'): Promise<Dataset> {
  const name = str(o, 'dataset') as DatasetName;
  const dataDir = o['data-dir'] === null ? undefined : str(o, 'data-dir');
  const limit = (split === 'test' ? o['test-limit'] : o['train-limit']) as number | null;
  try {
    return loadDataset(name, split, { dataDir, limit: limit ?? undefined });
  } catch (err) {
    if (!o.download) throw err;
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
  validate(o);
  const started = performance.now();
  if (o.threads !== null) kernels().setThreads(num(o, 'threads'));
  log(`qcapsnets ${command === 'all' ? '' : command + ' '}on ${backendInfo()}, ${kernels().getThreads()} threads`);
  const method = parseQuantMethod(str(o, 'quantization-method'));
  const compat = parseRoundingCompat(str(o, 'rounding-compat'));
  const model = buildFromFlags(o);
  if (command === 'search' || command === 'all') {
    // an impossible budget is an error before anything runs
    memoryBits(
      new ModelQuantizer(model, method, compat, num(o, 'seed')).layers.map((l) => l.paramCount),
      num(o, 'memory-budget'),
    );
  }
  const settings: Record<string, unknown> = {};
  for (const f of FLAGS) if (f.name !== 'help') settings[f.name] = o[f.name];

  let modelFile: string;
  const test = await loadSplit(o, 'test');
  checkDatasetFits(model, test, o);
  if (command === 'train' || (command === 'all' && !o['no-training'])) {
    const train = await loadSplit(o, 'train');
    // like --output-dir, the model's folder is created when missing
    mkdirSync(dirname(resolve(str(o, 'full-precision-filename'))), { recursive: true });
    const summary = await runTraining(o, model, train, test, log);
    modelFile = summary.modelFile;
    if (command === 'train') {
      if (o.json) console.log(JSON.stringify({ ...summary.json, seconds: (performance.now() - started) / 1000 }));
      return 0;
    }
    // the search starts from the best model, as the reference does
    model.loadStateDict(readStateDict(modelFile), modelFile);
  } else {
    modelFile = loadTrained(o, model);
  }

  if (command === 'evaluate') {
    const quantizer = new ModelQuantizer(model, method, compat, num(o, 'seed'));
    const source = {
      count: test.count,
      labels: test.labels,
      imageShape: [test.height, test.width, test.channels] as const,
      writeImage: (i: number, out: Float32Array, off: number) => test.writeImage(i, out, off),
    };
    const ev = new FastEvaluator(model, quantizer, source, {
      batchSize: num(o, 'test-batch-size'),
      cacheMB: 0,
      earlyStop: false,
    });
    const r = await ev.evaluateFullPrecision();
    const correct = Math.round((r.accuracy * r.total) / 100);
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
