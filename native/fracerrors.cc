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

// Lanes = FRAC_ERRORS_LANES: every call computes that many candidates (the extra ones are
// dropped), so the inner loop has a constant trip count.
template <int Lanes>
QC_VECTOR_CLONES void frac_errors_lanes(const float* x, size_t n, int frac0, int width, double* err) {
  double scale[Lanes], step[Lanes], acc[Lanes];
  for (int j = 0; j < Lanes; j++) {
    scale[j] = std::ldexp(1.0, frac0 + j);
    step[j] = std::ldexp(1.0, -(frac0 + j));
    acc[j] = 0.0;
  }
  const double kLo = -std::ldexp(1.0, width - 1);
  const double kHi = std::ldexp(1.0, width - 1) - std::ldexp(1.0, std::max(0, width - 25));
  for (size_t i = 0; i < n; i++) {
    const double xi = x[i];
    for (int j = 0; j < Lanes; j++) {
      const double s = xi * scale[j];  // exact: a float32 times a power of two
      const double k = s <= kLo ? kLo : s >= kHi ? kHi : (s + kRintMagic) - kRintMagic;
      const double e = k * step[j] - xi;
      acc[j] += e == e ? e * e : 0.0;  // NaN values left out
    }
  }
  for (int j = 0; j < Lanes; j++) err[j] = acc[j];
}

}  // namespace

void frac_errors(const float* x, size_t n, int frac0, int count, int width, double* errors) {
  double all[FRAC_ERRORS_LANES];
  frac_errors_lanes<FRAC_ERRORS_LANES>(x, n, frac0, width, all);
  for (int j = 0; j < count; j++) errors[j] = all[j];
}

}  // namespace qc
