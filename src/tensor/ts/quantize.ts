// Reference quantizers (SPEC 4) on fixed point with N fractional bits: q(x) = k * 2^-N.
// The arithmetic is float32 throughout (Math.fround), as in the C kernels and in PyTorch.
import type { QuantSpec } from '../backend.js';

const f32 = Math.fround;

/** Round half to even, like C's nearbyintf and torch.round. */
export function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Key of one stochastic-rounding call: mixes the seed with the stream counter. */
export function streamKey(seed: number, stream: number): number {
  return fmix32((seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0);
}

/** Uniform in [0, 1) with 24 random bits, for element i of the call with key `key`. */
export function uniformAt(key: number, i: number): number {
  const h = fmix32((key ^ Math.imul(i + 1, 0xcc9e2d51)) >>> 0);
  return (h >>> 8) * 5.9604644775390625e-8; // 2^-24
}

export function quantizeTs(x: Float32Array, y: Float32Array, n: number, q: QuantSpec): void {
  const scale = f32(2 ** q.frac);
  const inv = f32(2 ** -q.frac);
  const half = f32(2 ** (-q.frac - 1)); // the DAC 2020 code's offset (not half an LSB)
  const { lo, hi } = q;
  const clamp = (v: number) => (v < lo ? lo : v > hi ? hi : v);
  switch (q.method) {
    case 'truncation':
      for (let i = 0; i < n; i++) y[i] = clamp(f32(Math.floor(f32(x[i] * scale)) * inv));
      return;
    case 'round_to_nearest':
      if (q.compat) for (let i = 0; i < n; i++) y[i] = clamp(f32(Math.floor(f32(f32(x[i] * scale) + half)) * inv));
      else for (let i = 0; i < n; i++) y[i] = clamp(f32(rint(f32(x[i] * scale)) * inv));
      return;
    case 'stochastic_rounding': {
      const key = streamKey(q.seed >>> 0, q.stream >>> 0);
      for (let i = 0; i < n; i++) {
        const xi = x[i];
        const u = uniformAt(key, i);
        let v: number;
        if (q.compat) {
          // base = offset-rounded value; step up by one LSB with probability (x - base) / LSB
          const base = f32(Math.floor(f32(f32(xi * scale) + half)) * inv);
          v = u < f32(f32(xi - base) / inv) ? f32(base + inv) : base;
        } else {
          const s = f32(xi * scale);
          const fl = Math.floor(s);
          v = f32((u < f32(s - fl) ? fl + 1 : fl) * inv);
        }
        y[i] = clamp(v);
      }
      return;
    }
    case 'logarithmic': {
      const minMag = 2 ** -q.frac;
      for (let i = 0; i < n; i++) {
        const xi = x[i];
        const a = Math.abs(xi);
        const e = rint(Math.log2(q.compat ? f32(a + f32(1e-8)) : a));
        let m = a === 0 && !q.compat ? 0 : 2 ** e;
        if (m < minMag) m = 0;
        if (m > 1024) m = 1024;
        y[i] = clamp(xi > 0 ? m : xi < 0 ? -m : 0);
      }
      return;
    }
  }
}

/** out[i] = mask[i] ? dy[i] : 0 for i < n. */
export function maskGradientTs(dy: Float32Array, mask: Uint8Array, n: number, out: Float32Array): void {
  for (let i = 0; i < n; i++) out[i] = mask[i] ? dy[i] : 0;
}

/** quantizeTs(x, y, n, q) after mask[i] = 1 where q.lo <= x[i] <= q.hi, else 0 (NaN: 0), for
 *  i < n (x may be y). */
export function quantizeMaskedTs(x: Float32Array, y: Float32Array, n: number, q: QuantSpec, mask: Uint8Array): void {
  for (let i = 0; i < n; i++) mask[i] = x[i] >= q.lo && x[i] <= q.hi ? 1 : 0;
  quantizeTs(x, y, n, q);
}
