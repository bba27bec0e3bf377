// What a batch of class capsules [B, K, D] says: the prediction is the longest capsule
// (Sabour et al. 2017, Sec. 2: the length of a capsule is the probability of its class), the
// margin loss of Eq. 4. Used by training, evaluation and the search alike.
import { MARGIN_DEFAULT, type MarginParams } from '../tensor/ops/losses.js';
import type { Tensor } from '../tensor/tensor.js';

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

/** The batch mean of the margin loss (Eq. 4; value only). */
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
