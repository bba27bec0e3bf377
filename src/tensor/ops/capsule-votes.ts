// Capsule votes (the prediction vectors u_hat_{j|i} = W_ij u_i, Sabour et al. eq. 2):
// one small matmul per input capsule i.
//   x [B, I, Din], weight [I, Din, J*D] (PyTorch's Capsules.weight layout), votes [B, I, J*D]
import { kernels } from '../kernels.js';
import { take } from '../pool.js';
import { check, shapeStr, Tensor } from '../tensor.js';

function dims(x: Tensor, w: Tensor, op: string): [number, number, number, number] {
  check(
    x.rank === 3 && w.rank === 3,
    op,
    `expected x [B,I,Din] and weight [I,Din,J*D], got ${shapeStr(x.shape)} and ${shapeStr(w.shape)}`,
  );
  const [B, I, Din] = x.shape;
  check(
    w.shape[0] === I && w.shape[1] === Din,
    op,
    `x ${shapeStr(x.shape)} does not match weight ${shapeStr(w.shape)}`,
  );
  return [B, I, Din, w.shape[2]];
}

export function capsuleVotesForward(x: Tensor, w: Tensor): Tensor {
  const [B, I, Din, JD] = dims(x, w, 'capsule votes');
  const u = take(B * I * JD);
  const k = kernels();
  // u[:, i, :] = x[:, i, :] @ W[i]   (M = B, N = J*D, K = Din, strided rows)
  for (let i = 0; i < I; i++)
    k.sgemm(false, false, B, JD, Din, 1, x.data, i * Din, I * Din, w.data, i * Din * JD, JD, 0, u, i * JD, I * JD);
  return new Tensor(u, [B, I, JD]);
}

/** dx[:, i] = du[:, i] W[i]^T;  dW[i] += x[:, i]^T du[:, i]. */
export function capsuleVotesBackward(
  du: Tensor,
  x: Tensor,
  w: Tensor,
  dw: Tensor,
  needInputGrad = true,
): Tensor | null {
  const [B, I, Din, JD] = dims(x, w, 'capsule votes backward');
  check(
    du.size === B * I * JD,
    'capsule votes backward',
    `du ${shapeStr(du.shape)} does not match [${B}, ${I}, ${JD}]`,
  );
  const k = kernels();
  for (let i = 0; i < I; i++)
    k.sgemm(
      true,
      false,
      Din,
      JD,
      B,
      1,
      x.data,
      i * Din,
      I * Din,
      du.data,
      i * JD,
      I * JD,
      1,
      dw.data,
      i * Din * JD,
      JD,
    );
  if (!needInputGrad) return null;
  const dx = take(B * I * Din);
  for (let i = 0; i < I; i++)
    k.sgemm(false, true, B, Din, JD, 1, du.data, i * JD, I * JD, w.data, i * Din * JD, JD, 0, dx, i * Din, I * Din);
  return new Tensor(dx, [B, I, Din]);
}
