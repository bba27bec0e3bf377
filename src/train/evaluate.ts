// Test passes (the reference's full_precision_test): accuracy = argmax of the class capsules'
// lengths, correct * 100 / total; loss = the margin loss with the normal margins (0.9 / 0.1 /
// 0.5, whatever the training used), averaged per batch and then over the batches.
import { DataLoader } from '../data/loader.js';
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import { give } from '../tensor/pool.js';
import { MARGIN_DEFAULT, type MarginParams } from '../tensor/ops/losses.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkModelFitsDataset, checkPositiveInteger } from './checks.js';

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

/** Squared length of capsule k of sample b in caps [B, K, D]. */
function squaredLength(caps: Tensor, b: number, k: number): number {
  const [, K, D] = caps.shape;
  const o = (b * K + k) * D;
  let n2 = 0;
  for (let d = 0; d < D; d++) n2 += caps.data[o + d] * caps.data[o + d];
  return n2;
}

/** Index of the longest capsule of sample b (the first one on ties, like torch.max). */
export function predictedClass(caps: Tensor, b: number): number {
  const K = caps.shape[1];
  let best = -1;
  let bestLength = -Infinity;
  for (let k = 0; k < K; k++) {
    const n2 = squaredLength(caps, b, k);
    if (n2 > bestLength) {
      bestLength = n2;
      best = k;
    }
  }
  return best;
}

/** Squared-length margin of sample b: its label's capsule against the longest other one
 *  (negative when misclassified, small when close to the decision boundary). */
export function classMargin(caps: Tensor, b: number, label: number): number {
  const K = caps.shape[1];
  let own = 0;
  let other = -Infinity;
  for (let k = 0; k < K; k++) {
    const n2 = squaredLength(caps, b, k);
    if (k === label) own = n2;
    else other = Math.max(other, n2);
  }
  return own - other;
}

/** Number of samples whose longest capsule is their label. */
export function countCorrect(caps: Tensor, labels: Int32Array): number {
  let correct = 0;
  for (let b = 0; b < labels.length; b++) if (predictedClass(caps, b) === labels[b]) correct++;
  return correct;
}

/** The batch mean of the margin loss (value only). */
export function marginLossValue(caps: Tensor, labels: Int32Array, p: MarginParams = MARGIN_DEFAULT): number {
  const [B, K] = caps.shape;
  let total = 0;
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < K; k++) {
      const n = Math.sqrt(squaredLength(caps, b, k));
      if (labels[b] === k) total += Math.max(0, p.mPlus - n) ** 2;
      else total += p.lambda * Math.max(0, n - p.mMinus) ** 2;
    }
  }
  return total / B;
}

/** One full pass over `dataset` in eval mode (BatchNorm running statistics), in order. */
export async function evaluateModel(
  model: CapsNet,
  dataset: Dataset,
  batchSize = 100,
  opts: EvaluateOptions = {},
): Promise<EvaluationResult> {
  checkPositiveInteger(batchSize, '--test-batch-size');
  checkModelFitsDataset(model, dataset);
  const loader = new DataLoader(dataset, { batchSize, shuffle: false, augment: null });
  const wasTraining = model.training;
  model.eval();
  let correct = 0;
  let lossSum = 0;
  let batches = 0;
  let done = 0;
  try {
    for await (const batch of loader.batches(0)) {
      const caps = model.forward(batch.images, false);
      correct += countCorrect(caps, batch.labels);
      lossSum += marginLossValue(caps, batch.labels);
      give(caps.data);
      batches++;
      done += batch.labels.length;
      opts.onBatch?.(done, dataset.count);
    }
  } finally {
    model.train(wasTraining);
  }
  const total = dataset.count;
  return { accuracy: (correct * 100) / total, correct, total, loss: lossSum / batches };
}
