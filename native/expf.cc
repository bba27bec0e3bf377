// exp of float32 values, the same bits at every instruction-set level, as glibc's expf (2.28
// and later: sysdeps/ieee754/flt-32/e_expf.c, its x86-64 build with FMA):
//   x*N/ln2 = k + r (N = 32, k rounded to an integer, r in [-1/2, 1/2]),
//   exp(x) = 2^(k/N) * 2^(r/N) ~= s * (C0 r^3 + C1 r^2 + C2 r + 1),  s = 2^(k/N) from a table,
// in double with the fused multiply-adds written out below (std::fma where there is no
// vector code), then rounded once to float. Outside that formula's range, as glibc: -inf -> 0,
// +inf and NaN -> x + x, x > 0x1.62e42ep6 -> +inf, x < -0x1.9fe368p6 -> +0 (no call to the C
// library's expf, whose bits differ between libraries and between its builds with and without
// FMA). The C export's qcaps_expf (src/export/c-export-runtime.ts) is the same function.
// tools/check-expf.cc compares every float input with expf.
#include "fp-order.h"  // first: no contraction into FMA anywhere below

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "isa.h"
#include "kernels.h"

namespace qc {

namespace {

constexpr double kInvLn2N = 0x1.71547652b82fep+5;  // N / ln 2
constexpr double kShift = 0x1.8p+52;               // rounds to an integer when added
constexpr double kC0 = 0x1.c6af84b912394p-20, kC1 = 0x1.ebfce50fac4f3p-13, kC2 = 0x1.62e42ff0c52d6p-6;
// 2^(i/N) as bits, minus i << 47 (the exponent that k adds back)
constexpr uint64_t kTable[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};

// no contraction beyond the fused multiply-adds written out (they are expf's)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

// The scalar version: every input, the order of operations that the vector code repeats.
float expf_one(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const uint32_t top = (bits >> 20) & 0x7ff;
  if (top > 0x42a) {                        // |x| >= 88, inf, NaN
    if (bits == 0xff800000u) return 0.f;    // -inf
    if (top >= 0x7f8) return x + x;         // +inf, NaN
    if (x > 0x1.62e42ep6f) return INFINITY; // overflow
    if (x < -0x1.9fe368p6f) return 0.f;     // underflow
  }
  const double xd = x;
  double kd = std::fma(kInvLn2N, xd, kShift);
  uint64_t ki;
  std::memcpy(&ki, &kd, sizeof ki);
  kd -= kShift;
  const double r = std::fma(kInvLn2N, xd, -kd);
  const uint64_t t = kTable[ki % 32] + (ki << 47);
  double s;
  std::memcpy(&s, &t, sizeof s);
  const double z = std::fma(kC0, r, kC1);
  const double r2 = r * r;
  double y = std::fma(kC2, r, 1.0);
  y = std::fma(z, r2, y);
  y = y * s;
  return (float)y;
}
#pragma GCC pop_options

#if defined(__x86_64__) && defined(__GNUC__)

// no contraction beyond the fused multiply-adds written out (they are expf's)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void expf8x(float* v, size_t n) {
  const __m512d invLn2N = _mm512_set1_pd(kInvLn2N), shift = _mm512_set1_pd(kShift);
  const __m512d c0 = _mm512_set1_pd(kC0), c1 = _mm512_set1_pd(kC1), c2 = _mm512_set1_pd(kC2);
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512i t0 = _mm512_loadu_si512(kTable), t1 = _mm512_loadu_si512(kTable + 8);
  const __m512i t2 = _mm512_loadu_si512(kTable + 16), t3 = _mm512_loadu_si512(kTable + 24);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xf = _mm256_loadu_ps(v + i);
    // expf's fast path: (bits >> 20) & 0x7ff <= 0x42a
    const __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(xf), 20), _mm256_set1_epi32(0x7ff));
    const int slow = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(top, _mm256_set1_epi32(0x42a))));
    const __m512d xd = _mm512_cvtps_pd(xf);
    __m512d kd = _mm512_fmadd_pd(invLn2N, xd, shift);
    const __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    const __m512d r = _mm512_fmsub_pd(invLn2N, xd, kd);
    // table[ki % 32]: two 16-entry permutes, chosen by bit 4
    const __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1), hi = _mm512_permutex2var_epi64(t2, ki, t3);
    const __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
    const __m512i t = _mm512_add_epi64(_mm512_mask_blend_epi64(upper, lo, hi), _mm512_slli_epi64(ki, 47));
    const __m512d s = _mm512_castsi512_pd(t);
    const __m512d z = _mm512_fmadd_pd(c0, r, c1);
    const __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(c2, r, one);
    y = _mm512_fmadd_pd(z, r2, y);
    y = _mm512_mul_pd(y, s);
    float out[8];
    _mm256_storeu_ps(out, _mm512_cvtpd_ps(y));
    for (int l = 0; l < 8; l++)
      if (slow >> l & 1) out[l] = expf_one(v[i + l]);
    memcpy(v + i, out, sizeof out);
  }
  for (; i < n; i++) v[i] = expf_one(v[i]);
}
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

}  // namespace

void exp_in_place(float* v, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (active_isa() >= Isa::avx512) return expf8x(v, n);
#endif
  for (size_t i = 0; i < n; i++) v[i] = expf_one(v[i]);
}

}  // namespace qc
