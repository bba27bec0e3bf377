// squash(s) = s |s| / (1 + |s|^2) along one axis (Sabour et al. 2017, eq. 1).
// Backward: ds = f(n) dv + s (s . dv) f'(n) / n with f(n) = n / (1 + n^2),
// f'(n) = (1 - n^2) / (1 + n^2)^2; the second term is 0 at n = 0 (as in PyTorch).
import { kernels } from '../kernels.js';
import { take } from '../pool.js';
import { Tensor } from '../tensor.js';
import { axisSplit } from './softmax.js';

export function squashForward(s: Tensor, axis = -1): Tensor {
  const [outer, dim, inner] = axisSplit(s.shape, [axis], 'squash');
  const v = take(s.size);
  if (inner === 1) {
    kernels().squashRows(s.data, v, outer, dim);
    return new Tensor(v, s.shape);
  }
  const d = s.data;
  for (let o = 0; o < outer; o++)
    for (let k = 0; k < inner; k++) {
      const base = o * dim * inner + k;
      let n2 = 0;
      for (let j = 0; j < dim; j++) n2 += d[base + j * inner] ** 2;
      const f = Math.sqrt(n2) / (1 + n2);
      for (let j = 0; j < dim; j++) v[base + j * inner] = d[base + j * inner] * f;
    }
  return new Tensor(v, s.shape);
}

export function squashBackward(dv: Tensor, s: Tensor, axis = -1): Tensor {
  const [outer, dim, inner] = axisSplit(s.shape, [axis], 'squash backward');
  const ds = take(s.size);
  if (inner === 1) {
    kernels().squashRowsBackward(s.data, dv.data, ds, outer, dim);
    return new Tensor(ds, s.shape);
  }
  const d = s.data;
  for (let o = 0; o < outer; o++)
    for (let k = 0; k < inner; k++) {
      const base = o * dim * inner + k;
      let n2 = 0;
      let sdv = 0;
      for (let j = 0; j < dim; j++) {
        const i = base + j * inner;
        n2 += d[i] * d[i];
        sdv += d[i] * dv.data[i];
      }
      const n = Math.sqrt(n2);
      const f = n / (1 + n2);
      const coef = n > 0 ? ((1 - n2) / ((1 + n2) * (1 + n2) * n)) * sdv : 0;
      for (let j = 0; j < dim; j++) {
        const i = base + j * inner;
        ds[i] = f * dv.data[i] + coef * d[i];
      }
    }
  return new Tensor(ds, s.shape);
}
