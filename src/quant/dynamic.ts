// The 'dynamic' number format (Ristretto's dynamic fixed point; docs/quantization.md): w bits
// in all, sign included, and a fractional length f of the tensor's own, the largest that keeps
// its largest magnitude within the w-bit range:
//   f = w - 1 - ceil(log2 max|x|)   (a tensor of zeros: f = w - 1),
// values k * 2^-f saturating to [-2^(w-1-f), 2^(w-1-f) - 2^-f], the w-bit two's complement
// integers k in [-2^(w-1), 2^(w-1) - 1]. Weights take max|x| from their own values, activations
// and routing values from calibration (src/quant/calibration.ts).
import type { QuantMethod, QuantSpec } from '../tensor/backend.js';

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
