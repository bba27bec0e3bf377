// Reference for native/fixedconv.cc: the exact convolution of fixed-point values.
// When every x is an integer multiple of 2^-fx and every w one of 2^-fw, with weight integers
// that fit int16 and input integers below 2^30, y = 2^-(fx+fw) * sum X W computed exactly,
// rounded once to float32, then + bias and ReLU in float32. Returns null (y untouched) where
// that does not apply; the native kernel applies in the same cases on every CPU:
// it sums int16 products in int32 over segments of at least 64 products, so it needs them
// not to overflow, with x itself or, for wider inputs, with limbs of x = 2^b high + low.
import type { ConvForwardArgs, ConvGeom, FixedPointConvMethod } from '../backend.js';
import { conv2dForwardTs } from './conv.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The smallest f >= 0 with v * 2^f an integer (99 for inf, NaN and subnormals). */
function fractionBits(v: number): number {
  f32[0] = v;
  const u = u32[0];
  const e = (u >>> 23) & 0xff;
  let m = u & 0x7fffff;
  if (e === 0xff) return 99;
  if (e === 0) return m === 0 ? 0 : 99;
  m |= 0x800000; // |v| = m * 2^(e - 150)
  const tz = 31 - Math.clz32(m & -m);
  return Math.max(0, 150 - e - tz);
}

function format(v: Float32Array): { frac: number; maxAbs: number } {
  let frac = 0;
  let maxAbs = 0;
  for (let i = 0; i < v.length; i++) {
    frac = Math.max(frac, fractionBits(v[i]));
    maxAbs = Math.max(maxAbs, Math.abs(v[i]));
  }
  return { frac, maxAbs };
}

/** The native kernel adds its int32 sums into int64 at least every 64 products of a kernel row. */
const CHUNK = 64;

const fitsInt16 = (f: { frac: number; maxAbs: number }) => f.frac <= 30 && f.maxAbs * 2 ** f.frac <= 32767;
const fitsInt30 = (f: { frac: number; maxAbs: number }) => f.frac <= 30 && f.maxAbs * 2 ** f.frac < 2 ** 30;

/** 'direct' where it applies (y written), else null (y untouched). */
export function conv2dForwardFixedPointTs(...args: ConvForwardArgs): FixedPointConvMethod | null {
  return fixedPointSums(...args) ? 'direct' : null;
}

function fixedPointSums(
  g: ConvGeom,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  y: Float32Array,
  relu: boolean,
): boolean {
  const { B, H, W, C, O, KH, KW, OH, OW } = g;
  if ((KW * C) % 2 !== 0 || KW * C < 64 || O < 16) return false;
  const fx = format(x.subarray(0, B * H * W * C));
  const fw = format(w.subarray(0, O * KH * KW * C));
  if (!fitsInt30(fx) || !fitsInt16(fw)) return false;
  const sx = 2 ** fx.frac;
  const sw = 2 ** fw.frac;
  const K = KH * KW * C;
  const rowLen = KW * C;
  const w16 = new Float32Array(O * K); // the integers, exact in float32
  const maxX = fx.maxAbs * sx;
  let chunkL1 = 0; // the largest sum of |w| over 64 products of a kernel row
  let patchL1 = 0; // ... over a whole kernel
  for (let o = 0; o < O; o++) {
    let patch = 0;
    for (let ky = 0; ky < KH; ky++)
      for (let k0 = ky * rowLen; k0 < (ky + 1) * rowLen; k0 += CHUNK) {
        let l1 = 0;
        for (let k = k0; k < Math.min(k0 + CHUNK, (ky + 1) * rowLen); k++) {
          w16[o * K + k] = w[o * K + k] * sw;
          l1 += Math.abs(w16[o * K + k]);
        }
        chunkL1 = Math.max(chunkL1, l1);
        patch += l1;
      }
    patchL1 = Math.max(patchL1, patch);
  }
  if (maxX * patchL1 >= 2 ** 53) return false;
  // the native kernel's shortest int32 sums, over x or over its limbs, must not overflow
  const safe = (m: number) => m * chunkL1 < 2 ** 31;
  if (!(fitsInt16(fx) && safe(maxX))) {
    let b = 15;
    while (b > 0 && !safe(2 ** b - 1)) b--;
    const maxHigh = Math.ceil(maxX / 2 ** b);
    if (b === 0 || maxHigh > 32767 || !safe(maxHigh)) return false;
  }
  const x16 = x.map((v) => v * sx);
  // the direct convolution sums integer products (each below 2^45) in float64, exactly here
  // (every sum is below 2^53), and its float32 output rounds each sum once
  const sums = new Float32Array(B * OH * OW * O);
  conv2dForwardTs(g, x16, w16, null, sums, false);
  const scale = 2 ** -(fx.frac + fw.frac);
  for (let i = 0; i < sums.length; i++) {
    let v = Math.fround(sums[i] * scale);
    if (bias) v = Math.fround(v + bias[i % O]);
    if (relu && !(v > 0)) v = 0;
    y[i] = v;
  }
  return true;
}
