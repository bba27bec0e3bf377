// reshape / permute / concat and their backward passes (permute back, split).
import { kernels } from '../kernels.js';
import { take } from '../pool.js';
import { check, resolveShape, shapeStr, Tensor } from '../tensor.js';

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  return new Tensor(x.data, resolveShape(shape, x.size, 'reshape'));
}

/** y = x.permute(perm) made contiguous: y.shape[k] = x.shape[perm[k]]. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const rank = x.rank;
  check(
    perm.length === rank && [...perm].sort((a, b) => a - b).every((p, i) => p === i),
    'permute',
    `[${perm.join(', ')}] is not a permutation of the ${rank} axes of ${shapeStr(x.shape)}`,
  );
  const outShape = perm.map((p) => x.shape[p]);
  const y = take(x.size);
  kernels().permute(x.data, x.shape, perm, y);
  return new Tensor(y, outShape);
}

export function inversePermutation(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, k) => (inv[p] = k));
  return inv;
}

/** Gradient of permute: permute dy back. */
export function permuteBackward(dy: Tensor, perm: readonly number[]): Tensor {
  return permute(dy, inversePermutation(perm));
}

/** Concatenate along `axis`; all other dims must agree. */
export function concat(xs: Tensor[], axis: number): Tensor {
  check(xs.length > 0, 'concat', 'needs at least one tensor');
  const rank = xs[0].rank;
  const a = axis < 0 ? axis + rank : axis;
  for (const x of xs)
    check(
      x.rank === rank && x.shape.every((d, k) => k === a || d === xs[0].shape[k]),
      'concat',
      `shapes ${xs.map((t) => shapeStr(t.shape)).join(', ')} differ outside axis ${axis}`,
    );
  const outer = xs[0].shape.slice(0, a).reduce((p, d) => p * d, 1);
  const inner = xs[0].shape.slice(a + 1).reduce((p, d) => p * d, 1);
  const total = xs.reduce((p, x) => p + x.shape[a], 0);
  const y = take(outer * total * inner);
  let off = 0;
  for (const x of xs) {
    const chunk = x.shape[a] * inner;
    for (let o = 0; o < outer; o++) y.set(x.data.subarray(o * chunk, (o + 1) * chunk), o * total * inner + off);
    off += chunk;
  }
  const shape = [...xs[0].shape];
  shape[a] = total;
  return new Tensor(y, shape);
}

/** Gradient of concat: split dy along `axis` into pieces of the given sizes. */
export function split(dy: Tensor, axis: number, sizes: number[]): Tensor[] {
  const rank = dy.rank;
  const a = axis < 0 ? axis + rank : axis;
  const total = dy.shape[a];
  check(
    sizes.reduce((p, s) => p + s, 0) === total,
    'split',
    `sizes [${sizes.join(', ')}] do not add up to ${total} (axis ${axis} of ${shapeStr(dy.shape)})`,
  );
  const outer = dy.shape.slice(0, a).reduce((p, d) => p * d, 1);
  const inner = dy.shape.slice(a + 1).reduce((p, d) => p * d, 1);
  let off = 0;
  return sizes.map((sz) => {
    const chunk = sz * inner;
    const out = take(outer * chunk);
    for (let o = 0; o < outer; o++)
      out.set(dy.data.subarray(o * total * inner + off, o * total * inner + off + chunk), o * chunk);
    off += chunk;
    const shape = [...dy.shape];
    shape[a] = sz;
    return new Tensor(out, shape);
  });
}

/** y = a + b (same shape); the gradient passes to both unchanged. */
export function add(a: Tensor, b: Tensor): Tensor {
  check(a.size === b.size, 'add', `shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} differ`);
  const y = take(a.size);
  for (let i = 0; i < y.length; i++) y[i] = a.data[i] + b.data[i];
  return new Tensor(y, a.shape);
}
