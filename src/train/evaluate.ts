// Test passes during and after training (the reference's full_precision_test): the checked
// entry point to the one full-precision pass, src/models/evaluate.ts (accuracy = argmax of the
// class capsules' lengths, correct * 100 / total; loss = the margin loss with the normal
// margins, averaged per batch and then over the batches).
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import { evaluateFullPrecision } from '../models/evaluate.js';
import { checkModelFitsDataset, checkPositiveInteger } from './checks.js';

export { classMargin, countCorrect, marginLossValue, predictedClass } from '../models/metrics.js';

export interface EvaluationResult {
  /** correct * 100 / total, as the reference prints it */
  accuracy: number;
  correct: number;
  total: number;
  /** mean over the batches of the batch-mean margin loss */
  loss: number;
}

export interface EvaluateOptions {
  /** Called after each batch with the number of images done so far. */
  onBatch?: (done: number, total: number) => void;
}

/** One full pass over `dataset` in eval mode (BatchNorm running statistics), in order. */
export async function evaluateModel(
  model: CapsNet,
  dataset: Dataset,
  batchSize = 100,
  opts: EvaluateOptions = {},
): Promise<EvaluationResult> {
  checkPositiveInteger(batchSize, 'evaluateModel: batchSize');
  checkModelFitsDataset(model, dataset);
  const { accuracy, correct, total, loss } = evaluateFullPrecision(model, dataset, {
    batchSize,
    onBatch: opts.onBatch,
  });
  return { accuracy, correct, total, loss };
}
