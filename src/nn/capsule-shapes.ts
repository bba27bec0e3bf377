// Reshapes between capsule maps and capsule lists, and the decoder's label mask.
import { permute } from '../tensor/ops/shape.js';
import { take } from '../tensor/pool.js';
import { check, shapeStr, Tensor } from '../tensor/tensor.js';

/** Capsule map [B,H,W,T,D] -> capsule list [B, T*H*W, D] in the reference's order (type, y, x)
 *  (PyTorch: [B,T,D,H,W].permute(0,1,3,4,2).view(B,-1,D)). A new buffer. */
export function flattenCapsules(map: Tensor): Tensor {
  check(map.rank === 5, 'flatten capsules', `expected a capsule map [B,H,W,T,D], got ${shapeStr(map.shape)}`);
  const [B, H, W, T, D] = map.shape;
  return permute(map, [0, 3, 1, 2, 4]).reshape([B, T * H * W, D]);
}

/** Gradient of flattenCapsules: dList [B, T*H*W, D] -> dMap [B,H,W,T,D]. A new buffer. */
export function flattenCapsulesBackward(dList: Tensor, mapShape: readonly number[]): Tensor {
  const [B, H, W, T, D] = mapShape;
  return permute(dList.reshape([B, T, H, W, D]), [0, 2, 3, 1, 4]);
}

/** The reference's decoder mask: the capsule of the true class, caps [B,K,D] -> [B,D]. */
export function maskCapsules(caps: Tensor, labels: Int32Array): Tensor {
  check(caps.rank === 3, 'mask', `capsules must be [B,K,D], got ${shapeStr(caps.shape)}`);
  const [B, K, D] = caps.shape;
  check(labels.length === B, 'mask', `${labels.length} labels for a batch of ${B}`);
  const out = new Float32Array(B * D);
  for (let b = 0; b < B; b++) {
    const k = labels[b];
    check(Number.isInteger(k) && k >= 0 && k < K, 'mask', `label ${k} outside [0, ${K})`);
    out.set(caps.data.subarray((b * K + k) * D, (b * K + k + 1) * D), b * D);
  }
  return new Tensor(out, [B, D]);
}

/** Gradient of maskCapsules: d [B,D] scattered into zeros [B,K,D]. */
export function maskCapsulesBackward(d: Tensor, labels: Int32Array, K: number): Tensor {
  const [B, D] = d.shape;
  const out = take(B * K * D, true);
  for (let b = 0; b < B; b++) out.set(d.data.subarray(b * D, (b + 1) * D), (b * K + labels[b]) * D);
  return new Tensor(out, [B, K, D]);
}
