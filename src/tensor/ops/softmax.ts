// softmax over one axis, or jointly over several adjacent axes (DeepCaps' 3-D routing
// normalises over (j, h, w) together). y = exp(x - max) / sum exp(x - max) per group.
import { take } from '../pool.js';
import { check, shapeStr, Tensor } from '../tensor.js';

/** outer x group x inner decomposition for a run of adjacent axes. */
export function axisSplit(shape: readonly number[], axes: number[], op: string): [number, number, number] {
  const rank = shape.length;
  const sorted = axes.map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
  check(sorted.length > 0, op, 'needs at least one axis');
  for (let k = 0; k < sorted.length; k++) {
    check(sorted[k] >= 0 && sorted[k] < rank, op, `axis ${axes[k]} is out of range for shape ${shapeStr(shape)}`);
    if (k > 0) check(sorted[k] === sorted[k - 1] + 1, op, `axes [${axes.join(', ')}] must be adjacent (permute first)`);
  }
  const a0 = sorted[0];
  const a1 = sorted[sorted.length - 1];
  const prod = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);
  return [prod(shape.slice(0, a0)), prod(shape.slice(a0, a1 + 1)), prod(shape.slice(a1 + 1))];
}

export function softmaxForward(x: Tensor, axes: number | number[]): Tensor {
  const [outer, group, inner] = axisSplit(x.shape, Array.isArray(axes) ? axes : [axes], 'softmax');
  const y = take(x.size);
  const d = x.data;
  for (let o = 0; o < outer; o++)
    for (let k = 0; k < inner; k++) {
      const base = o * group * inner + k;
      let m = -Infinity;
      for (let g = 0; g < group; g++) m = Math.max(m, d[base + g * inner]);
      let sum = 0;
      for (let g = 0; g < group; g++) {
        const e = Math.exp(d[base + g * inner] - m);
        y[base + g * inner] = e;
        sum += e;
      }
      for (let g = 0; g < group; g++) y[base + g * inner] /= sum;
    }
  return new Tensor(y, x.shape);
}

/** dx = y * (dy - sum_group(y * dy)), from the forward output y. */
export function softmaxBackward(dy: Tensor, y: Tensor, axes: number | number[]): Tensor {
  const [outer, group, inner] = axisSplit(y.shape, Array.isArray(axes) ? axes : [axes], 'softmax backward');
  const dx = take(y.size);
  for (let o = 0; o < outer; o++)
    for (let k = 0; k < inner; k++) {
      const base = o * group * inner + k;
      let dot = 0;
      for (let g = 0; g < group; g++) dot += y.data[base + g * inner] * dy.data[base + g * inner];
      for (let g = 0; g < group; g++) {
        const i = base + g * inner;
        dx[i] = y.data[i] * (dy.data[i] - dot);
      }
    }
  return new Tensor(dx, y.shape);
}
