// batch_norm2d on channels-last tensors x [B,H,W,C], statistics per channel c.
// Training: y = gamma * (x - mean) / sqrt(var + eps) + beta with the batch mean and biased
// variance; running_mean <- (1 - momentum) running_mean + momentum mean, and likewise
// running_var with the UNBIASED variance (PyTorch semantics). Eval uses the running stats.
import { kernels } from '../kernels.js';
import { take } from '../pool.js';
import { check, expectShape, shapeStr, Tensor } from '../tensor.js';

export interface BatchNormState {
  weight: Tensor; // gamma [C]
  bias: Tensor; // beta [C]
  runningMean: Tensor;
  runningVar: Tensor;
  numBatchesTracked: number;
  momentum: number;
  eps: number;
}

export interface BatchNormCache {
  xhat: Tensor;
  invStd: Float32Array;
}

export function batchNorm2dForward(
  x: Tensor,
  bn: BatchNormState,
  training: boolean,
): { y: Tensor; cache: BatchNormCache | null } {
  check(x.rank === 4, 'batch_norm2d', `input must be [B,H,W,C], got ${shapeStr(x.shape)}`);
  const C = x.shape[3];
  expectShape(bn.weight, [C], 'batch_norm2d', 'weight');
  const n = x.size / C;
  const xd = x.data;
  const mean = new Float64Array(C);
  const varr = new Float64Array(C);
  if (training) {
    check(n > 1, 'batch_norm2d', `training needs more than one value per channel, got input ${shapeStr(x.shape)}`);
    const k = kernels();
    k.channelSums(xd, n, C, null, mean);
    for (let c = 0; c < C; c++) mean[c] /= n;
    k.channelSums(xd, n, C, mean, varr);
    const m = bn.momentum;
    for (let c = 0; c < C; c++) {
      const biased = varr[c] / n;
      bn.runningMean.data[c] = (1 - m) * bn.runningMean.data[c] + m * mean[c];
      bn.runningVar.data[c] = (1 - m) * bn.runningVar.data[c] + m * (varr[c] / (n - 1));
      varr[c] = biased;
    }
    bn.numBatchesTracked += 1;
  } else {
    for (let c = 0; c < C; c++) {
      mean[c] = bn.runningMean.data[c];
      varr[c] = bn.runningVar.data[c];
    }
  }
  const invStd = new Float32Array(C);
  for (let c = 0; c < C; c++) invStd[c] = 1 / Math.sqrt(varr[c] + bn.eps);
  const y = take(x.size);
  const xhat = training ? take(x.size) : null;
  kernels().batchNormApply(xd, n, C, mean, invStd, bn.weight.data, bn.bias.data, y, xhat);
  return {
    y: new Tensor(y, x.shape),
    cache: xhat ? { xhat: new Tensor(xhat, x.shape), invStd } : null,
  };
}

/** Training-mode backward: dx = invStd * (g dy - mean(g dy) - xhat mean(g dy xhat)). */
export function batchNorm2dBackward(
  dy: Tensor,
  cache: BatchNormCache,
  bn: BatchNormState,
  into: { dw: Tensor; db: Tensor },
): Tensor {
  const C = dy.shape[3];
  const dx = take(dy.size);
  kernels().batchNormBackward(
    dy.data,
    cache.xhat.data,
    dy.size / C,
    C,
    bn.weight.data,
    cache.invStd,
    dx,
    into.dw.data,
    into.db.data,
  );
  return new Tensor(dx, dy.shape);
}
