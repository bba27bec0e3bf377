// The 'dynamic' number format (Ristretto's dynamic fixed point; docs/quantization.md): w bits
// in all, sign included, and a fractional length f of the tensor's own, the largest that keeps
// its largest magnitude within the w-bit range:
//   f = w - 1 - ceil(log2 max|x|)   (a tensor of zeros: f = w - 1),
// values k * 2^-f saturating to [-2^(w-1-f), 2^(w-1-f) - 2^-f], the w-bit two's complement
// integers k in [-2^(w-1), 2^(w-1) - 1]. Weights take max|x| from their own values, activations
// and routing values from calibration (src/quant/calibration.ts).
import type { QuantMethod, QuantSpec } from '../tensor/backend.js';
import { kernels } from '../tensor/kernels.js';

/** The fractional lengths a 'dynamic' tensor may take: f is clamped to [-64, 64]. Then 2^f,
 *  2^-f and 2^(-f-1) (the quantizers' scale, step and dac2020 offset) are normal float32
 *  values, the saturation bound 2^(w-1-f) <= 2^95 is a finite float32, and the integer of any
 *  value, |k| <= 2^(w-1) <= 2^31, fits int64 with room for the product of two. Only a tensor
 *  whose largest magnitude is below 2^-33 or above 2^32 meets the clamp. */
export const DYNAMIC_MIN_FRAC = -64;
export const DYNAMIC_MAX_FRAC = 64;

/** The widths a 'dynamic' count may take (sign included). */
export const DYNAMIC_MIN_WIDTH = 1;
export const DYNAMIC_MAX_WIDTH = 32;

/** ceil(log2 a) for a > 0, exactly (Math.log2 alone may round near a power of two). */
function ceilLog2(a: number): number {
  let e = Math.ceil(Math.log2(a));
  while (2 ** e < a) e++;
  while (e > -1100 && 2 ** (e - 1) >= a) e--;
  return e;
}

/** The fractional length of a tensor of `width` bits whose largest magnitude is `maxAbs`:
 *  w - 1 - ceil(log2 maxAbs), clamped to [DYNAMIC_MIN_FRAC, DYNAMIC_MAX_FRAC]; w - 1 when
 *  maxAbs is 0 (a tensor of zeros). */
export function dynamicFracBits(width: number, maxAbs: number): number {
  if (!(Number.isInteger(width) && width >= DYNAMIC_MIN_WIDTH && width <= DYNAMIC_MAX_WIDTH))
    throw new Error(
      `dynamic fixed point: a width of ${width} bits: expected an integer in [${DYNAMIC_MIN_WIDTH}, ${DYNAMIC_MAX_WIDTH}]`,
    );
  if (!(maxAbs >= 0 && Number.isFinite(maxAbs)))
    throw new Error(`dynamic fixed point: a largest magnitude of ${maxAbs}: expected a finite number >= 0`);
  if (maxAbs === 0) return width - 1;
  const f = width - 1 - ceilLog2(maxAbs);
  return Math.min(DYNAMIC_MAX_FRAC, Math.max(DYNAMIC_MIN_FRAC, f));
}

/** How a 'dynamic' weight tensor's fractional length is chosen (docs/quantization.md):
 *  - 'max' (the default): the largest f that keeps the tensor's largest magnitude within the
 *    width, dynamicFracBits;
 *  - 'mse': the f of [f_max, f_max + 8] whose round-to-nearest values are closest to the
 *    tensor's in squared error, mseFracBits (outliers saturate; the rest get finer steps).
 *  Activations and routing values always take the max rule from their calibrated ranges. */
export type WeightRange = 'max' | 'mse';
export const WEIGHT_RANGES: readonly WeightRange[] = ['max', 'mse'];

/** How many fractional bits beyond the max rule's the 'mse' rule considers. */
export const MSE_EXTRA_FRAC_BITS = 8;

/**
 * The 'mse' rule: the fractional length f of a `width`-bit tensor with the values `values`
 * (the first `n`) that minimises
 *     E(f) = sum_i (q_f(x_i) - x_i)^2,
 * q_f being round-to-nearest (ties to even, as the round_to_nearest method rounds) at the step
 * 2^-f, saturating to the width's range (dynamicRange), over the candidates f = f_max, ...,
 * f_max + 8 with f_max = dynamicFracBits(width, max|x|) (the max rule, which never saturates),
 * clamped to [DYNAMIC_MIN_FRAC, DYNAMIC_MAX_FRAC]. Equal errors: the smaller f. A larger f
 * halves the step of every value within the range and saturates the few beyond it, so a
 * tensor whose largest values are rare outliers (trained weights) takes a larger f.
 * The error is measured with round-to-nearest whatever method then quantizes the tensor: the
 * choice depends on the values and the width alone. Each E(f) is summed in float64 in index
 * order (the fracErrors kernel; the native one and the TypeScript one give the same bits), so
 * the choice is the same on every CPU. NaN values are left out, as maxAbsOf leaves them out.
 */
export function mseFracBits(width: number, values: Float32Array, n = values.length): number {
  const fMax = dynamicFracBits(width, maxAbsOf(values, n));
  const count = Math.min(DYNAMIC_MAX_FRAC, fMax + MSE_EXTRA_FRAC_BITS) - fMax + 1;
  const errors = new Float64Array(count);
  kernels().fracErrors(values, n, fMax, count, width, errors);
  let best = 0;
  for (let j = 1; j < count; j++) if (errors[j] < errors[best]) best = j;
  return fMax + best;
}

/** A 'dynamic' weight tensor's fractional length under `rule` (see WeightRange). */
export function tensorFracBits(rule: WeightRange, width: number, values: Float32Array, n = values.length): number {
  return rule === 'mse' ? mseFracBits(width, values, n) : dynamicFracBits(width, maxAbsOf(values, n));
}

/** `rule` checked: 'max' or 'mse' (undefined: 'max'); the error starts with `what`. */
export function parseWeightRange(rule: unknown, what = 'weightRange'): WeightRange {
  if (rule === undefined) return 'max';
  if (!(WEIGHT_RANGES as readonly unknown[]).includes(rule))
    throw new Error(`${what} ${String(rule)}: expected one of ${WEIGHT_RANGES.join(', ')}`);
  return rule as WeightRange;
}

/** The largest magnitude of `values` (NaN ignored; 0 for none). */
export function maxAbsOf(values: ArrayLike<number>, n = values.length): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(values[i]);
    if (a > m) m = a;
  }
  return m;
}

/** The saturation range of `width` bits at `frac` fractional bits, as float32 values: lo =
 *  -2^(w-1-f) and hi the largest float32 <= 2^(w-1-f) - 2^-f (for w > 25 the top integer
 *  2^(w-1) - 1 has more significant bits than a float32 holds: hi is then
 *  (2^(w-1) - 2^(w-25)) * 2^-f, the largest grid value a float32 holds). */
export function dynamicRange(width: number, frac: number): { lo: number; hi: number } {
  const top = 2 ** (width - 1) - 2 ** Math.max(0, width - 25);
  return { lo: -(2 ** (width - 1 - frac)), hi: top * 2 ** -frac };
}

/** The quantizer of a 'dynamic' tensor: `method` at `frac` fractional bits, saturating to the
 *  `width`-bit range (dynamicRange), in the default arithmetic (dac2020 applies to 'fixed'
 *  only). */
export function dynamicQuant(
  method: QuantMethod,
  width: number,
  frac: number,
  seed: number,
  stream: number,
): QuantSpec {
  const { lo, hi } = dynamicRange(width, frac);
  return { method, frac, compat: false, lo, hi, seed, stream };
}
