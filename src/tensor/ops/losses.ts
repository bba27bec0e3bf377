// Capsule-network losses (SPEC 3), each returning the mean over the batch and its gradient.
import { take } from '../pool.js';
import { check, expectFinite, shapeStr, Tensor } from '../tensor.js';

export interface MarginParams {
  mPlus: number;
  mMinus: number;
  lambda: number;
}
export const MARGIN_DEFAULT: MarginParams = { mPlus: 0.9, mMinus: 0.1, lambda: 0.5 };
export const MARGIN_HARD: MarginParams = { mPlus: 0.95, mMinus: 0.05, lambda: 0.8 };

/** Margin loss (Sabour et al. eq. 4): per sample sum_k T_k max(0, m+ - |v_k|)^2
 *  + lambda (1 - T_k) max(0, |v_k| - m-)^2; returns the batch mean and d mean / d v.
 *  v [B, K, D], labels [B]. */
export function marginLoss(
  v: Tensor,
  labels: Int32Array,
  p: MarginParams = MARGIN_DEFAULT,
): { loss: number; dv: Tensor } {
  check(v.rank === 3, 'margin loss', `capsules must be [B,K,D], got ${shapeStr(v.shape)}`);
  const [B, K, D] = v.shape;
  check(labels.length === B, 'margin loss', `${labels.length} labels for a batch of ${B}`);
  expectFinite(v, 'margin loss', 'capsules');
  const dv = take(v.size, true);
  let total = 0;
  for (let b = 0; b < B; b++) {
    check(labels[b] >= 0 && labels[b] < K, 'margin loss', `label ${labels[b]} outside [0, ${K})`);
    for (let k = 0; k < K; k++) {
      const o = (b * K + k) * D;
      let n2 = 0;
      for (let d = 0; d < D; d++) n2 += v.data[o + d] ** 2;
      const n = Math.sqrt(n2);
      let dn: number; // d loss_b / d |v_k|
      if (labels[b] === k) {
        const m = Math.max(0, p.mPlus - n);
        total += m * m;
        dn = -2 * m;
      } else {
        const m = Math.max(0, n - p.mMinus);
        total += p.lambda * m * m;
        dn = 2 * p.lambda * m;
      }
      if (dn !== 0 && n > 0) for (let d = 0; d < D; d++) dv[o + d] = (dn * v.data[o + d]) / n / B;
    }
  }
  return { loss: total / B, dv: new Tensor(dv, v.shape) };
}

/** Sum over pixels of squared reconstruction error, averaged over the batch, times `scale`.
 *  recon and target [B, ...] with the same number of elements per sample. */
export function reconstructionLoss(recon: Tensor, target: Tensor, scale = 1): { loss: number; dRecon: Tensor } {
  check(
    recon.size === target.size && recon.shape[0] === target.shape[0],
    'reconstruction loss',
    `reconstruction ${shapeStr(recon.shape)} and target ${shapeStr(target.shape)} differ in size`,
  );
  expectFinite(recon, 'reconstruction loss', 'reconstruction');
  const B = recon.shape[0];
  const d = take(recon.size);
  let total = 0;
  for (let i = 0; i < d.length; i++) {
    const e = recon.data[i] - target.data[i];
    total += e * e;
    d[i] = (2 * scale * e) / B;
  }
  return { loss: (scale * total) / B, dRecon: new Tensor(d, recon.shape) };
}

/** Lengths |v_k| of capsules v [B, K, D] -> [B, K]; the class scores. */
export function capsuleLengths(v: Tensor): Tensor {
  const [B, K, D] = v.shape;
  const out = new Float32Array(B * K);
  for (let i = 0; i < B * K; i++) {
    let n2 = 0;
    for (let d = 0; d < D; d++) n2 += v.data[i * D + d] ** 2;
    out[i] = Math.sqrt(n2);
  }
  return new Tensor(out, [B, K]);
}
