// The squared errors of round-to-nearest at several fractional lengths (the 'dynamic' format's
// 'mse' weight range rule, src/quant/dynamic.ts), in float64 arithmetic identical to
// src/tensor/ts/frac-errors.ts: each candidate's sum runs in index order, and the loop over the
// candidates of one element is what may be vectorised, so every target gives the same bits.
#include "fp-order.h"

#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace qc {

namespace {

// round half to even of |s| < 2^51 by float64 addition (the build keeps a + b - b: no
// -ffast-math, no reassociation)
constexpr double kRintMagic = 6755399441055744.0;  // 2^52 + 2^51

// Four candidates in one vector (GCC/clang vector extensions, lowered to SSE2 pairs where AVX2
// is absent); every lane computes exactly what the scalar expression would.
typedef double v4d __attribute__((vector_size(32)));
constexpr int kVectors = (FRAC_ERRORS_LANES + 3) / 4;

QC_VECTOR_CLONES
void frac_errors_vectors(const float* x, size_t n, int frac0, int width, double* err) {
  v4d scale[kVectors], step[kVectors], acc[kVectors];
  for (int v = 0; v < kVectors; v++)
    for (int l = 0; l < 4; l++) {
      scale[v][l] = std::ldexp(1.0, frac0 + 4 * v + l);
      step[v][l] = std::ldexp(1.0, -(frac0 + 4 * v + l));
      acc[v][l] = 0.0;
    }
  const double lo = -std::ldexp(1.0, width - 1);
  const double hi = std::ldexp(1.0, width - 1) - std::ldexp(1.0, std::max(0, width - 25));
  const v4d kLo = {lo, lo, lo, lo}, kHi = {hi, hi, hi, hi};
  const v4d magic = {kRintMagic, kRintMagic, kRintMagic, kRintMagic}, zero = {0, 0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    const double xs = x[i];
    const v4d xi = {xs, xs, xs, xs};
    for (int v = 0; v < kVectors; v++) {
      const v4d s = xi * scale[v];  // exact: a float32 times a power of two
      // clamping before rounding is the same as after: the bounds are integers
      const v4d r = (s + magic) - magic;
      const v4d k = s <= kLo ? kLo : (s >= kHi ? kHi : r);
      const v4d e = k * step[v] - xi;
      acc[v] += e == e ? e * e : zero;  // NaN values left out
    }
  }
  for (int v = 0; v < kVectors; v++)
    for (int l = 0; l < 4; l++) err[4 * v + l] = acc[v][l];
}

}  // namespace

void frac_errors(const float* x, size_t n, int frac0, int count, int width, double* errors) {
  double all[4 * kVectors];
  frac_errors_vectors(x, n, frac0, width, all);
  for (int j = 0; j < count; j++) errors[j] = all[j];
}

}  // namespace qc
