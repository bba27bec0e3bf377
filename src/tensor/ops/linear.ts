// linear: y = x W^T + b.   x [N,in], weight [out,in] (PyTorch layout), bias [out], y [N,out]
import { kernels } from '../kernels.js';
import { take } from '../pool.js';
import { check, expectShape, shapeStr, Tensor } from '../tensor.js';

export function linearForward(x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  check(
    x.rank === 2 && w.rank === 2,
    'linear',
    `expected x [N,in] and weight [out,in], got ${shapeStr(x.shape)} and ${shapeStr(w.shape)}`,
  );
  const [N, In] = x.shape;
  const [Out, WIn] = w.shape;
  check(
    In === WIn,
    'linear',
    `x ${shapeStr(x.shape)} has ${In} features but weight ${shapeStr(w.shape)} expects ${WIn}`,
  );
  if (bias) expectShape(bias, [Out], 'linear', 'bias');
  const y = take(N * Out);
  kernels().sgemm(false, true, N, Out, In, 1, x.data, 0, In, w.data, 0, In, 0, y, 0, Out);
  if (bias) for (let n = 0; n < N; n++) for (let o = 0; o < Out; o++) y[n * Out + o] += bias.data[o];
  return new Tensor(y, [N, Out]);
}

/** dx = dy W;  dW += dy^T x;  db += sum_n dy. */
export function linearBackward(
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  into: { dw: Tensor; db: Tensor | null },
  needInputGrad = true,
): Tensor | null {
  const [N, In] = x.shape;
  const Out = w.shape[0];
  expectShape(dy, [N, Out], 'linear backward', 'dy');
  const k = kernels();
  k.sgemm(true, false, Out, In, N, 1, dy.data, 0, Out, x.data, 0, In, 1, into.dw.data, 0, In);
  if (into.db) for (let n = 0; n < N; n++) for (let o = 0; o < Out; o++) into.db.data[o] += dy.data[n * Out + o];
  if (!needInputGrad) return null;
  const dx = take(N * In);
  k.sgemm(false, false, N, In, Out, 1, dy.data, 0, Out, w.data, 0, In, 0, dx, 0, In);
  return new Tensor(dx, [N, In]);
}
