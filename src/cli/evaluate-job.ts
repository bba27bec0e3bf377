// `qcapsnets evaluate`: the full-precision accuracy of --trained-weights-path on the test split,
// or, of a packed <stem>_quantized_<kind>.safetensors, its quantized accuracy (the model, its
// bits, method, arithmetic and seed come from the file; flags that say otherwise are an error).
import { existsSync, statSync } from 'node:fs';
import { datasetFingerprint, readQuantizedModel } from '../export/quantized-file.js';
import { evaluateFullPrecision } from '../models/evaluate.js';
import { activeIsa } from '../tensor/kernels.js';
import { bitsText } from '../quant/config.js';
import type { FlagName, Options } from './flags.js';
import { datasetShapeFromFlags, loadTestSplit, loadTrained, type Log, modelFromFlags } from './inputs.js';

export async function evaluateCommand(o: Options<'evaluate'>, given: ReadonlySet<FlagName>, log: Log): Promise<number> {
  if (/\.safetensors$/i.test(o.trainedWeightsPath)) return evaluatePacked(o, given, log);
  const model = modelFromFlags(o);
  const modelFile = loadTrained(o, model);
  const test = await loadTestSplit(o, model, log);
  const r = evaluateFullPrecision(model, test, { batchSize: o.testBatchSize });
  log(`full-precision accuracy of ${modelFile} on ${test}: ${r.accuracy}% (${r.correct}/${r.total})`);
  if (o.json)
    console.log(JSON.stringify({ accuracy: r.accuracy, correct: r.correct, total: r.total, isa: activeIsa() }));
  return 0;
}

/** The flags given that disagree with what the packed file holds, as they were given. */
function conflictingFlags(
  o: Options<'evaluate'>,
  given: ReadonlySet<FlagName>,
  info: ReturnType<typeof readQuantizedModel>['info'],
): string[] {
  const conflicts: string[] = [];
  if (given.has('model') && o.model !== info.model) conflicts.push(`--model ${o.model}`);
  if (given.has('model-args') && o.modelArgs.join(' ') !== info.modelArgs.join(' '))
    conflicts.push(`--model-args ${o.modelArgs.join(' ')}`);
  if (given.has('quantization-method') && o.quantizationMethod !== info.method)
    conflicts.push(`--quantization-method ${o.quantizationMethod}`);
  if (given.has('rounding-compat') && o.roundingCompat !== info.compat)
    conflicts.push(`--rounding-compat ${o.roundingCompat}`);
  if (info.method === 'stochastic_rounding' && given.has('seed') && String(o.seed) !== String(info.seed))
    conflicts.push(`--seed ${o.seed}`);
  return conflicts;
}

async function evaluatePacked(o: Options<'evaluate'>, given: ReadonlySet<FlagName>, log: Log): Promise<number> {
  const path = o.trainedWeightsPath;
  if (!existsSync(path) || statSync(path).isDirectory())
    throw new Error(`--trained-weights-path ${path}: no such file (expected a <stem>_quantized_<kind>.safetensors)`);
  const { quantized: q, info } = readQuantizedModel(path);
  const holds = `${info.model} --model-args ${info.modelArgs.join(' ')}, --quantization-method ${info.method}, --rounding-compat ${info.compat}, --seed ${info.seed}`;
  const conflicts = conflictingFlags(o, given, info);
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
  const test = await loadTestSplit(o, m, log);
  // stochastic rounding draws per batch: repeat the search's batches when these are its images
  let order: Int32Array | null = null;
  let batchSize = o.testBatchSize;
  const fingerprint = datasetFingerprint(test);
  // who measured the file's count: the search (hardest images first) or a fine-tuning (in order)
  const finetuned = info.search?.kind === 'finetuned';
  const who = finetuned ? 'the fine-tuning' : 'the search';
  if (info.method === 'stochastic_rounding') {
    const ev = info.evaluationOrder;
    if (ev && ev.fingerprint === fingerprint) {
      order = ev.order;
      if (given.has('test-batch-size') && batchSize !== ev.batchSize)
        log(`--test-batch-size ${batchSize} ignored: ${who}'s batches of ${ev.batchSize} decide the stochastic draws`);
      batchSize = ev.batchSize;
      log(
        `stochastic rounding: batches of ${batchSize} in ${who}'s order (${finetuned ? 'the dataset order' : 'hardest images first'})`,
      );
    } else
      log(
        `stochastic rounding: these are not the test images ${who} used, so its batches cannot be repeated ` +
          '(the draws depend on the batch); evaluating in dataset order',
      );
  }
  const r = q.evaluate(test, { batchSize, order });
  log(
    `quantized accuracy of ${path} (${info.model} ${info.modelArgs.join(' ')}, ${info.method}${info.compat === 'none' ? '' : `, ${info.compat}`}, ` +
      (info.numberFormat === 'dynamic'
        ? `'dynamic' widths${info.weightRange === 'mse' ? ' (mse weight ranges)' : ''} `
        : '') +
      `${bitsText(q.bits)}) on ${test}: ${r.accuracy}% (${r.correct}/${r.total})`,
  );
  const s = info.search;
  if (s && s.fingerprint === fingerprint)
    log(`${who} counted ${s.correct}/${s.images} on these images${s.correct === r.correct ? ' (the same)' : ''}`);
  if (o.json)
    console.log(JSON.stringify({ accuracy: r.accuracy, correct: r.correct, total: r.total, isa: activeIsa() }));
  return 0;
}
