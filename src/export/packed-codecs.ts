// The packed file's encodings of one parameter (docs/formats.md, Tensor formats): fixed-point
// integers and log2 codes, each way.
import { type NumberFormat } from '../quant/config.js';
import { dynamicRange } from '../quant/dynamic.js';
import { type IntegerParameter } from '../quant/quantized-model.js';
import { TensorFormat } from './packed-format.js';
import { packBits } from './packed-bits.js';
export function integersOf(p: IntegerParameter): Float64Array {
  const v = p.values;
  if (v instanceof Int32Array) return Float64Array.from(v);
  return Float64Array.from(v, (x) => {
    const d = Number(x);
    if (!Number.isSafeInteger(d)) throw new Error(`writeQuantizedModel: ${p.name}: an integer needs more than 53 bits`);
    return d;
  });
}

export function encodeFixed(q: Float64Array, bits: number): Uint8Array {
  const wrap = 2 ** bits;
  const codes = new Float64Array(q.length);
  for (let i = 0; i < q.length; i++) codes[i] = q[i] < 0 ? q[i] + wrap : q[i];
  return packBits(codes, bits);
}

/** Exponent j with |q| = 2^j, or -1 when |q| is not a power of two. */
export function powerOfTwo(a: number): number {
  if (a <= 0) return -1;
  if (a < 2 ** 31) return (a & (a - 1)) === 0 ? 31 - Math.clz32(a) : -1;
  const j = Math.round(Math.log2(a));
  return 2 ** j === a ? j : -1;
}

/** The integer of the largest positive value of a saturated tensor and the power of two it
 *  stands for in the log2 encoding: 'fixed' 2^F - 1 for 2^F (1 - 2^-F for 1), 'dynamic' the top
 *  of the w-bit range for 2^(w-1). */
export function saturationOf(format: NumberFormat, F: number, width: number): { top: number; j: number } {
  if (format !== 'dynamic') return { top: 2 ** F - 1, j: F };
  return { top: dynamicRange(width, F).hi * 2 ** F, j: width - 1 };
}

export function encodeLog(
  p: IntegerParameter,
  q: Float64Array,
  saturated: boolean,
  format: NumberFormat,
): { bytes: Uint8Array; format: TensorFormat } {
  const F = p.fracBits;
  const { top: sat, j: satJ } = saturationOf(format, F, p.totalBits); // the saturation value's integer
  const exps = new Int32Array(q.length); // j with |q| = 2^j (the saturation value: j = satJ)
  let jmin = Infinity;
  let jmax = -Infinity;
  for (let i = 0; i < q.length; i++) {
    const v = q[i];
    if (v === 0) continue;
    let j = powerOfTwo(Math.abs(v));
    if (saturated && v === sat && j < 0) j = satJ;
    else if (saturated && v === 2 ** satJ)
      throw new Error(`writeQuantizedModel: ${p.name}[${i}] = ${v * 2 ** -F} is outside the saturation range`);
    if (j < 0)
      throw new Error(
        `writeQuantizedModel: ${p.name}[${i}] = ${v * 2 ** -F} is not 0 or a power of two (logarithmic method)`,
      );
    exps[i] = j;
    if (j < jmin) jmin = j;
    if (j > jmax) jmax = j;
  }
  const nexp = jmin === Infinity ? 0 : jmax - jmin + 1;
  const mbits = nexp === 0 ? 0 : Math.ceil(Math.log2(nexp + 1));
  const bits = mbits + 1;
  const codes = new Float64Array(q.length);
  const signBit = 2 ** mbits;
  for (let i = 0; i < q.length; i++) {
    if (q[i] === 0) continue;
    codes[i] = (q[i] < 0 ? signBit : 0) + (exps[i] - jmin + 1);
  }
  const out: TensorFormat = {
    encoding: 'log2',
    shape: p.shape,
    layer: p.layer,
    bits,
    frac_bits: F,
    exp_min: nexp === 0 ? 0 : jmin - F,
  };
  if (saturated)
    out.saturation =
      format === 'dynamic'
        ? `a positive 2^${satJ - F} stands for ${sat} x 2^${-F}`
        : `a positive 2^0 stands for 1 - 2^-${F}`;
  return { bytes: packBits(codes, bits), format: out };
}

export function toFloat32(bad: (what: string) => Error, v: number, i: number): number {
  const f = Math.fround(v);
  if (f !== v) throw bad(`element ${i}: ${v} is not a float32 value`);
  return f;
}

export function decodeFixed(bad: (what: string) => Error, codes: Float64Array, b: number, F: number): Float32Array {
  const half = 2 ** (b - 1);
  const wrap = 2 ** b;
  const scale = 2 ** -F;
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    out[i] = toFloat32(bad, (c >= half ? c - wrap : c) * scale, i);
  }
  return out;
}

/** `width`: a 'dynamic' tensor's width (null: 'fixed'), whose saturation value a positive
 *  2^(width-1-F) stands for. */
export function decodeLog(
  bad: (what: string) => Error,
  codes: Float64Array,
  b: number,
  expMin: number,
  F: number,
  saturated: boolean,
  width: number | null = null,
): Float32Array {
  const mbits = b - 1;
  const signBit = 2 ** mbits;
  const satK = width === null ? 0 : width - 1 - F;
  const satValue = width === null ? 1 - 2 ** -F : dynamicRange(width, F).hi;
  const value = (c: number, i: number): number => {
    if (c === 0) return 0;
    const negative = c >= signBit;
    const e = negative ? c - signBit : c;
    if (e === 0) throw bad(`element ${i}: code ${c} (a negative zero) is not a log2 code`);
    const k = expMin + e - 1;
    let m = 2 ** k;
    if (saturated && !negative && k === satK) m = satValue;
    return toFloat32(bad, negative ? -m : m, i);
  };
  const out = new Float32Array(codes.length);
  if (b > 16) {
    for (let i = 0; i < codes.length; i++) out[i] = value(codes[i], i);
    return out;
  }
  // a table of the 2^b codes' values (NaN: not a code)
  const table = new Float64Array(2 ** b);
  for (let c = 0; c < table.length; c++) {
    try {
      table[c] = value(c, 0);
    } catch {
      table[c] = NaN;
    }
  }
  for (let i = 0; i < codes.length; i++) {
    const v = table[codes[i]];
    out[i] = Number.isNaN(v) ? value(codes[i], i) : v;
  }
  return out;
}

/** Under dac2020 the logarithmic quantizer rounds log2(|x| + 1e-8), so magnitudes of 2^-26 and
 *  below do not map to themselves; a value of |x| - 1e-8 (or a tiny one, for 2^-27) does. */
export function dac2020LogPreimage(values: Float32Array): Float32Array {
  const out = values.slice();
  for (let i = 0; i < out.length; i++) {
    const a = Math.abs(out[i]);
    if (a === 0 || a > 2 ** -24) continue;
    const pre = a > 1e-8 ? Math.fround(a - 1e-8) : 2 ** -60;
    out[i] = out[i] < 0 ? -pre : pre;
  }
  return out;
}

/** JSON.stringify for an error message, or the value's kind where it nests too deep to print. */
