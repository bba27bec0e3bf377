// The squared errors of round-to-nearest at several fractional lengths: what the 'dynamic'
// format's 'mse' weight range rule compares (src/quant/dynamic.ts). float64 arithmetic, each
// sum in index order; native/fracerrors.cc computes the same bits.

/** The most candidates one call computes (native FRAC_ERRORS_LANES). */
export const FRAC_ERRORS_MAX = 9;

// round half to even of |s| < 2^51 by float64 addition (JavaScript rounds to nearest even)
const RINT_MAGIC = 6755399441055744; // 2^52 + 2^51

/** errors[j] = sum_i (q(x_i) - x_i)^2 for i < n and j < count, q round-to-nearest (ties to
 *  even) at the step 2^-(frac0 + j), saturating to the width-bit integers [-2^(w-1), 2^(w-1) -
 *  2^max(0, w-25)] (dynamicRange's, in steps); NaN values left out. */
export function fracErrorsTs(
  x: Float32Array,
  n: number,
  frac0: number,
  count: number,
  width: number,
  errors: Float64Array,
): void {
  const kLo = -(2 ** (width - 1));
  const kHi = 2 ** (width - 1) - 2 ** Math.max(0, width - 25);
  for (let j = 0; j < count; j++) {
    const scale = 2 ** (frac0 + j);
    const step = 2 ** -(frac0 + j);
    let error = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      const s = xi * scale; // exact: a float32 times a power of two
      // clamping before rounding is the same as after: the bounds are integers
      const k = s <= kLo ? kLo : s >= kHi ? kHi : s + RINT_MAGIC - RINT_MAGIC;
      const e = k * step - xi;
      if (e === e) error += e * e; // NaN values left out
    }
    errors[j] = error;
  }
}
