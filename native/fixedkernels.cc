// The inner loops of the exact fixed-point convolutions (fixedconv.cc, fixedwino.cc), one per
// instruction-set level (isa.h). Each computes the same integers: int16 products summed in
// int32 over segments that the overflow bounds allow (so no int32 sum can wrap), added into
// int64 totals. Integer sums have no rounding, so the levels differ in speed only:
//   avx512vnni  vpdpwssd: 32 products into 16 int32 sums per instruction (zmm)
//   avx512      vpmaddwd + vpaddd on zmm: the same work in two instructions
//   avx2        vpmaddwd + vpaddd on ymm: half of that again
//   portable    on x86-64 the baseline's SSE2 pmaddwd; elsewhere plain int32/int64 loops (the
//               compiler vectorises what it can, e.g. NEON), checked against the SSE2 one
// and the conversion of the exact totals to float32 (correctly rounded by every path: a
// scalar int64 -> float cast rounds to nearest even, as vcvtqq2ps does).
#include <algorithm>
#include <cstring>
#include <vector>

#include "fixedpoint.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

namespace qc::fixedpoint {

namespace {

// c[i][0..31] += (or = when assign) the totals t[i], or scattered as sc says (inlined, so that
// it vectorises for the caller's target)
__attribute__((always_inline)) inline void store_totals(const int64_t (*t)[kLanes], int64_t* const* c, bool assign,
                                                        const Scatter* sc) {
  for (int i = 0; i < kRows; i++) {
    if (!sc) {
      for (int l = 0; l < kLanes; l++) c[i][l] = assign ? t[i][l] : c[i][l] + t[i][l];
      continue;
    }
    for (int k = 0; k < sc->n; k++) {
      int64_t* ct = c[i] + sc->offset[k];
      const int shift = sc->shift;  // t << shift, in unsigned arithmetic (exact: the bounds)
      if (sc->sign[k] > 0)
        for (int l = 0; l < kLanes; l++) ct[l] += (int64_t)((uint64_t)t[i][l] << shift);
      else
        for (int l = 0; l < kLanes; l++) ct[l] -= (int64_t)((uint64_t)t[i][l] << shift);
    }
  }
}

// ---- portable: plain loops over the packed layout (pair p, lane l, element e)
void micro_kernel_portable(const int16_t* const* a, int pairs, int seg, const int16_t* b, int64_t* const* c,
                           bool assign, const Scatter* sc) {
  int64_t totals[kRows][kLanes];
  for (int i = 0; i < kRows; i++) {
    int64_t* t = totals[i];
    for (int l = 0; l < kLanes; l++) t[l] = 0;
    for (int p0 = 0; p0 < pairs; p0 += seg) {
      const int p1 = std::min(pairs, p0 + seg);
      int32_t s[kLanes] = {};  // no int32 sum of a segment can overflow (the bounds)
      for (int p = p0; p < p1; p++) {
        const int32_t a0 = a[i][2 * p], a1 = a[i][2 * p + 1];
        const int16_t* bp = b + (size_t)p * 2 * kLanes;
        for (int l = 0; l < kLanes; l++) s[l] += a0 * bp[2 * l] + a1 * bp[2 * l + 1];
      }
      for (int l = 0; l < kLanes; l++) t[l] += s[l];
    }
  }
  store_totals(totals, c, assign, sc);
}

#if defined(__x86_64__) && defined(__GNUC__)
// ---- portable on x86-64: the baseline's SSE2 (every x86-64 CPU has it) has pmaddwd, which the
// compilers do not find in the plain loops above; the same sums, 8 xmm accumulators a row
void micro_kernel_sse2(const int16_t* const* a, int pairs, int seg, const int16_t* b, int64_t* const* c, bool assign,
                       const Scatter* sc) {
  alignas(16) int64_t totals[kRows][kLanes];
  for (int i = 0; i < kRows; i++) {
    for (int p0 = 0; p0 < pairs; p0 += seg) {
      const int p1 = std::min(pairs, p0 + seg);
      __m128i s[8];
      for (int v = 0; v < 8; v++) s[v] = _mm_setzero_si128();
      for (int p = p0; p < p1; p++) {
        const __m128i* bp = (const __m128i*)(b + (size_t)p * 2 * kLanes);
        int32_t pair;
        std::memcpy(&pair, a[i] + 2 * p, sizeof pair);
        const __m128i av = _mm_set1_epi32(pair);
        for (int v = 0; v < 8; v++) s[v] = _mm_add_epi32(s[v], _mm_madd_epi16(av, _mm_loadu_si128(bp + v)));
      }
      alignas(16) int32_t sums[kLanes];
      for (int v = 0; v < 8; v++) _mm_store_si128((__m128i*)sums + v, s[v]);
      for (int l = 0; l < kLanes; l++) totals[i][l] = (p0 == 0 ? 0 : totals[i][l]) + sums[l];
    }
    if (pairs == 0)
      for (int l = 0; l < kLanes; l++) totals[i][l] = 0;
  }
  store_totals(totals, c, assign, sc);
}
#endif

void to_float_rows_portable(const int64_t* acc, int o0, int o1, int shift, float scale, const float* bias, bool relu,
                            float* y) {
  for (int o = o0; o < o1; o++) {
    float v = (float)(acc[o] >> shift) * scale;  // exact: a power of two times an int64 rounded once
    if (bias) v += bias[o];
    if (relu) v = v > 0.f ? v : 0.f;
    y[o] = v;
  }
}

#ifdef QC_HAVE_X86_KERNELS
// acc += vpmaddwd(a, b) (pairwise int16 products summed in int32) in place: written as asm
// because GCC 12 copies the accumulators around the intrinsics (as with vpdpwssd below)
#define QC_MADD_ADD(acc, a, b)                                                        \
  {                                                                                   \
    decltype(acc) t_;                                                                 \
    __asm__("vpmaddwd %2, %3, %1\n\tvpaddd %1, %0, %0" : "+v"(acc), "=&v"(t_) : "v"(b), "v"(a)); \
  }

// ---- avx2: rows in groups of 4 and lanes in halves of 16 (8 ymm accumulators, 2 weight
// vectors, 1 broadcast); each segment's int32 sums widened into int64 totals
__attribute__((target("avx2"))) void micro_kernel_avx2(const int16_t* const* a, int pairs, int seg,
                                                        const int16_t* b, int64_t* const* c, bool assign,
                                                        const Scatter* sc) {
  alignas(32) int64_t totals[kRows][kLanes];
  for (int r0 = 0; r0 < kRows; r0 += 4)
    for (int h = 0; h < 2; h++) {
      const int16_t *a0 = a[r0], *a1 = a[r0 + 1], *a2 = a[r0 + 2], *a3 = a[r0 + 3];
      for (int p0 = 0; p0 < pairs; p0 += seg) {
        const int p1 = std::min(pairs, p0 + seg);
        __m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00,
                s31 = s00;
        for (int p = p0; p < p1; p++) {
          const int16_t* bp = b + (size_t)p * 2 * kLanes + 32 * h;
          const __m256i b0 = _mm256_loadu_si256((const __m256i*)bp), b1 = _mm256_loadu_si256((const __m256i*)(bp + 16));
#define QC_AVX2_ROW(i)                        \
  {                                           \
    int32_t pair;                             \
    memcpy(&pair, a##i + 2 * p, sizeof pair); \
    const __m256i av = _mm256_set1_epi32(pair); \
    QC_MADD_ADD(s##i##0, av, b0);             \
    QC_MADD_ADD(s##i##1, av, b1);             \
  }
          QC_AVX2_ROW(0) QC_AVX2_ROW(1) QC_AVX2_ROW(2) QC_AVX2_ROW(3)
#undef QC_AVX2_ROW
        }
        // the segment's int32 sums widened into the int64 totals (in memory: the registers
        // hold the sums)
        const __m256i sums[4][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};
        for (int r = 0; r < 4; r++)
          for (int v = 0; v < 2; v++)
            for (int q = 0; q < 2; q++) {
              __m256i* t = (__m256i*)(totals[r0 + r] + 16 * h + 8 * v + 4 * q);
              const __m256i wide = _mm256_cvtepi32_epi64(q ? _mm256_extracti128_si256(sums[r][v], 1)
                                                              : _mm256_castsi256_si128(sums[r][v]));
              _mm256_store_si256(t, p0 == 0 ? wide : _mm256_add_epi64(_mm256_load_si256(t), wide));
            }
      }
    }
  store_totals(totals, c, assign, sc);
}

// ---- avx512 and avx512vnni: 8 rows x 32 lanes in 16 zmm accumulators
// acc += pairwise int16 products of a and b (vpdpwssd). Written as asm because GCC 12 copies
// the accumulator around the intrinsic.
#define QC_DPWSSD(acc, a, b) __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))
#define QC_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
static_assert(kRows == 8, "the micro-kernel is written out for 8 rows");

// c[8q..8q+7] += (or = when assign) parts[q], q < 4
__attribute__((target("avx512f"), always_inline)) inline void add_parts(int64_t* c, const __m512i* parts,
                                                                         bool assign) {
  for (int q = 0; q < 4; q++)
    _mm512_storeu_si512(c + 8 * q, assign ? parts[q] : _mm512_add_epi64(_mm512_loadu_si512(c + 8 * q), parts[q]));
}

// c[offset_t + 0..31] += sign_t (parts << shift) for each target t of the scatter
__attribute__((target("avx512f"), always_inline)) inline void scatter_parts(int64_t* c, __m512i* parts,
                                                                             const Scatter& sc) {
  for (int q = 0; q < 4; q++) parts[q] = _mm512_slli_epi64(parts[q], sc.shift);
  for (int t = 0; t < sc.n; t++) {
    int64_t* ct = c + sc.offset[t];
    for (int q = 0; q < 4; q++) {
      const __m512i old = _mm512_loadu_si512(ct + 8 * q);
      _mm512_storeu_si512(ct + 8 * q, sc.sign[t] > 0 ? _mm512_add_epi64(old, parts[q]) : _mm512_sub_epi64(old, parts[q]));
    }
  }
}

// The 32 int32 lanes of lo (0..15) and hi (16..31) widened to int64: into c (added, or
// assigned), or scattered into c when sc is given.
__attribute__((target("avx512f"), always_inline)) inline void flush_widened(int64_t* c, __m512i lo, __m512i hi,
                                                                             bool assign, const Scatter* sc) {
  __m512i parts[4] = {_mm512_cvtepi32_epi64(_mm512_castsi512_si256(lo)),
                      _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(lo, 1)),
                      _mm512_cvtepi32_epi64(_mm512_castsi512_si256(hi)),
                      _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(hi, 1))};
  if (sc)
    scatter_parts(c, parts, *sc);
  else
    add_parts(c, parts, assign);
}

// Named registers: 16 accumulators, two weight vectors and one broadcast. Vnni: vpdpwssd;
// else vpmaddwd (pair sums in int32) then vpaddd, which wraps as vpdpwssd does: the same
// int32 sums, in twice the instructions.
template <bool Vnni>
__attribute__((target("avx512f,avx512bw"), always_inline)) inline void micro_kernel_512(
    const int16_t* const* a, int pairs, int seg, const int16_t* b, int64_t* const* c, bool assign, const Scatter* sc) {
#define QC_ROW_POINTER(i) const int16_t* a##i = a[i];
  QC_ROWS(QC_ROW_POINTER)
  // with a scatter and several segments, the segments' sums meet in `local` first, so that
  // each output is scattered once
  const bool viaLocal = sc && seg < pairs;
  alignas(64) int64_t local[kRows][kLanes];
  int64_t* out[kRows];
  for (int i = 0; i < kRows; i++) out[i] = viaLocal ? local[i] : c[i];
  const Scatter* direct = viaLocal ? nullptr : sc;
  for (int p0 = 0; p0 < pairs; p0 += seg) {
    const int p1 = std::min(pairs, p0 + seg);
#define QC_ZERO(i) __m512i lo##i = _mm512_setzero_si512(), hi##i = _mm512_setzero_si512();
    QC_ROWS(QC_ZERO)
    for (int p = p0; p < p1; p++) {
      const __m512i b0 = _mm512_loadu_si512(b + (size_t)p * 2 * kLanes);
      const __m512i b1 = _mm512_loadu_si512(b + (size_t)p * 2 * kLanes + kLanes);
#define QC_STEP(i)                                            \
  {                                                           \
    int32_t pair;                                             \
    memcpy(&pair, a##i + 2 * p, sizeof pair);                 \
    const __m512i av = _mm512_set1_epi32(pair);               \
    if constexpr (Vnni) {                                     \
      QC_DPWSSD(lo##i, av, b0);                               \
      QC_DPWSSD(hi##i, av, b1);                               \
    } else {                                                  \
      QC_MADD_ADD(lo##i, av, b0);                             \
      QC_MADD_ADD(hi##i, av, b1);                             \
    }                                                         \
  }
      QC_ROWS(QC_STEP)
    }
#define QC_FLUSH(i) flush_widened(out[i], lo##i, hi##i, (assign || viaLocal) && p0 == 0, direct);
    QC_ROWS(QC_FLUSH)
  }
  if (viaLocal)
    for (int i = 0; i < kRows; i++) {
      __m512i parts[4];
      for (int q = 0; q < 4; q++) parts[q] = _mm512_load_si512(local[i] + 8 * q);
      scatter_parts(c[i], parts, *sc);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void micro_kernel_avx512vnni(
    const int16_t* const* a, int pairs, int seg, const int16_t* b, int64_t* const* c, bool assign, const Scatter* sc) {
  micro_kernel_512<true>(a, pairs, seg, b, c, assign, sc);
}

// no avx512vnni in the target: GCC would fuse vpmaddwd + vpaddd into vpdpwssd
__attribute__((target("avx512f,avx512bw"))) void micro_kernel_avx512(const int16_t* const* a, int pairs, int seg,
                                                                      const int16_t* b, int64_t* const* c,
                                                                      bool assign, const Scatter* sc) {
  micro_kernel_512<false>(a, pairs, seg, b, c, assign, sc);
}

// y[o] = float(acc[o] >> shift) * scale (+ bias[o], ReLU) for o in [o0, o1): the conversion
// of an int64 is correctly rounded, as the scalar cast
__attribute__((target("avx512f,avx512dq"))) void to_float_rows_avx512(const int64_t* acc, int o0, int o1, int shift,
                                                                      float scale, const float* bias, bool relu,
                                                                      float* y) {
  int o = o0;
  for (; o + 8 <= o1; o += 8) {
    __m256 v = _mm256_mul_ps(_mm512_cvtepi64_ps(_mm512_srai_epi64(_mm512_loadu_si512(acc + o), shift)),
                             _mm256_set1_ps(scale));
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + o));
    if (relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
    _mm256_storeu_ps(y + o, v);
  }
  to_float_rows_portable(acc, o, o1, shift, scale, bias, relu, y);
}
#endif

}  // namespace

Kernels kernels_for(Isa isa) {
#ifdef QC_HAVE_X86_KERNELS
  switch (isa) {
    case Isa::avx512vnni:
      return {micro_kernel_avx512vnni, to_float_rows_avx512};
    case Isa::avx512:
      return {micro_kernel_avx512, to_float_rows_avx512};
    case Isa::avx2:
      return {micro_kernel_avx2, to_float_rows_portable};
    case Isa::portable:
      break;
  }
#else
  (void)isa;
#endif
#if defined(__x86_64__) && defined(__GNUC__)
  return {micro_kernel_sse2, to_float_rows_portable};
#else
  return {micro_kernel_portable, to_float_rows_portable};
#endif
}

int portable_kernels_disagree(int trials) {
  // pseudo-random rows, blocks, lengths and segments within the int32 bounds (|a|, |b| <= 2^14,
  // at most 3 pairs a segment: |sum| < 2^31); with and without a scatter
  uint32_t x = 12345;
  const auto next = [&x]() { return x = x * 1664525u + 1013904223u; };
  int bad = 0;
  for (int t = 0; t < trials; t++) {
    const int pairs = (int)(next() >> 28) + 1, seg = (int)(next() % 3) + 1;
    std::vector<int16_t> rows((size_t)kRows * 2 * pairs), blk((size_t)pairs * 2 * kLanes);
    for (auto& v : rows) v = (int16_t)((int)(next() >> 17) - 16384);
    for (auto& v : blk) v = (int16_t)((int)(next() >> 17) - 16384);
    const int16_t* a[kRows];
    for (int i = 0; i < kRows; i++) a[i] = rows.data() + (size_t)i * 2 * pairs;
    Scatter sc;
    sc.n = 2, sc.offset[1] = kLanes, sc.sign[0] = 1, sc.sign[1] = -1, sc.shift = (int)(next() >> 30);
    const bool scatter = t % 3 == 2, assign = t % 3 == 0;
    std::vector<int64_t> got((size_t)kRows * 2 * kLanes, 7), want(got);
    int64_t *cg[kRows], *cw[kRows];
    for (int i = 0; i < kRows; i++) cg[i] = got.data() + (size_t)i * 2 * kLanes, cw[i] = want.data() + (size_t)i * 2 * kLanes;
    kernels_for(Isa::portable).micro_kernel(a, pairs, seg, blk.data(), cg, assign, scatter ? &sc : nullptr);
    micro_kernel_portable(a, pairs, seg, blk.data(), cw, assign, scatter ? &sc : nullptr);
    if (got != want) bad++;
  }
  return bad;
}

}  // namespace qc::fixedpoint
