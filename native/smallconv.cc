// Direct convolution for a small patch (K = KH*KW*C <= 128 values, such as the first layer of
// a network: ShallowCapsNet's 9x9 over one channel), with the bits of im2col + OpenBLAS:
// OpenBLAS sums a K this short in one block, each output one fused multiply-add after another
// in column order (ky, kx, c) from zero, then the bias is added and the ReLU applied; this
// kernel does exactly that, in registers. What it saves: the column matrix, OpenBLAS's packing
// and zeroing of C, and a second pass over the output for the bias and ReLU (13 -> 9.5 ms for
// ShallowCapsNet's first conv on 100 images).
// Micro-kernel: 6 output pixels x 64 channels (24 zmm accumulators); per patch value four
// weight vectors and six broadcasts of x.
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QC_HAVE_SMALL_CONV_BUILD 1
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized in their own code
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels.h"
#include "parallel.h"
#include "settings.h"

namespace qc {

namespace {

constexpr int kMaxPatch = 128;
constexpr int kPixels = 6;

#ifdef QC_HAVE_SMALL_CONV_BUILD
#define QC_PIXELS(X) X(0) X(1) X(2) X(3) X(4) X(5)
static_assert(kPixels == 6, "the micro-kernel is written out for 6 pixels");

// y[p][o0..o0+63] for np <= kPixels pixels whose patch value t is at xp[p] + off[t], weights
// wt[t][o] (ldw floats a row, zero past O); named accumulators stay in registers
__attribute__((target("avx512f"))) void pixels_block(const float* const* xp, const int* off, int K, const float* wt,
                                                      int ldw, int o0, int no, const float* bias, bool relu, float* y,
                                                      int ldy, int np) {
#define QC_INIT(p)                                  \
  const float* x##p = xp[std::min(p, np - 1)];      \
  __m512 a##p##0 = _mm512_setzero_ps(), a##p##1 = _mm512_setzero_ps(), a##p##2 = _mm512_setzero_ps(), \
         a##p##3 = _mm512_setzero_ps();
  QC_PIXELS(QC_INIT)
  for (int t = 0; t < K; t++) {
    const float* wr = wt + (size_t)t * ldw + o0;
    const __m512 w0 = _mm512_loadu_ps(wr), w1 = _mm512_loadu_ps(wr + 16), w2 = _mm512_loadu_ps(wr + 32),
                 w3 = _mm512_loadu_ps(wr + 48);
    const int ot = off[t];
#define QC_FMA(p)                                \
  {                                              \
    const __m512 xv = _mm512_set1_ps(x##p[ot]);  \
    a##p##0 = _mm512_fmadd_ps(xv, w0, a##p##0);  \
    a##p##1 = _mm512_fmadd_ps(xv, w1, a##p##1);  \
    a##p##2 = _mm512_fmadd_ps(xv, w2, a##p##2);  \
    a##p##3 = _mm512_fmadd_ps(xv, w3, a##p##3);  \
  }
    QC_PIXELS(QC_FMA)
  }
#define QC_STORE(p)                                                                         \
  if (p < np) {                                                                             \
    const __m512 acc[4] = {a##p##0, a##p##1, a##p##2, a##p##3};                             \
    for (int v = 0; v < 4; v++) {                                                           \
      const int n = std::min(16, no - 16 * v);                                              \
      if (n <= 0) break;                                                                    \
      const __mmask16 m = n == 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);         \
      __m512 r = acc[v];                                                                    \
      if (bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, bias + o0 + 16 * v));         \
      if (relu) r = _mm512_max_ps(r, _mm512_setzero_ps());                                  \
      if (n == 16) /* Zen 4 stores with a mask slowly */                                    \
        _mm512_storeu_ps(y + (size_t)p * ldy + o0 + 16 * v, r);                             \
      else                                                                                  \
        _mm512_mask_storeu_ps(y + (size_t)p * ldy + o0 + 16 * v, m, r);                     \
    }                                                                                       \
  }
  QC_PIXELS(QC_STORE)
}
#endif

}  // namespace

bool small_patch_conv(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                      const QuantSpec* q) {
#if !defined(QC_HAVE_SMALL_CONV_BUILD) || !defined(QC_CBLAS_OPENBLAS)
  (void)g, (void)x, (void)w, (void)bias, (void)y, (void)relu, (void)q;
  return false;  // its bits are OpenBLAS's: elsewhere im2col + GEMM stays the reference
#else
  const int K = g.KH * g.KW * g.C;
  if (!settings().smallPatchConv || K > kMaxPatch || !cpu_has_avx512f()) return false;
  // x zero-padded (the zeros take part in the sums, as im2col's do), weights as wt[t][o]
  const int Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad;
  const float* xs = x;
  static std::vector<float> xp;
  if (g.pad > 0) {
    xp.assign((size_t)g.B * Hp * Wp * g.C, 0.f);
    for (int b = 0; b < g.B; b++)
      for (int iy = 0; iy < g.H; iy++)
        memcpy(&xp[(((size_t)b * Hp + iy + g.pad) * Wp + g.pad) * g.C], x + (((size_t)b * g.H + iy) * g.W) * g.C,
               (size_t)g.W * g.C * sizeof(float));
    xs = xp.data();
  }
  const int ldw = (g.O + 63) / 64 * 64;
  std::vector<float> wt((size_t)K * ldw, 0.f);
  for (int o = 0; o < g.O; o++)
    for (int t = 0; t < K; t++) wt[(size_t)t * ldw + o] = w[(size_t)o * K + t];
  int off[kMaxPatch];
  for (int ky = 0, t = 0; ky < g.KH; ky++)
    for (int kx = 0; kx < g.KW; kx++)
      for (int c = 0; c < g.C; c++) off[t++] = (ky * Wp + kx) * g.C + c;
  // output pixels in blocks of kPixels, over row ends (each pixel finds its own patch)
  const size_t pixels = (size_t)g.B * g.OH * g.OW, blocks = (pixels + kPixels - 1) / kPixels;
  parallel_for(blocks, [&](size_t bb, size_t be, int) {
    for (size_t blk = bb; blk < be; blk++) {
      const size_t p0 = blk * kPixels;
      const int np = (int)std::min<size_t>(kPixels, pixels - p0);
      const float* xp[kPixels];
      for (int p = 0; p < np; p++) {
        const size_t q = p0 + p, b = q / ((size_t)g.OH * g.OW), rem = q % ((size_t)g.OH * g.OW);
        const size_t oy = rem / g.OW, ox = rem % g.OW;
        xp[p] = xs + ((b * Hp + oy * g.stride) * Wp + ox * g.stride) * g.C;
      }
      for (int o0 = 0; o0 < g.O; o0 += 64)
        pixels_block(xp, off, K, wt.data(), ldw, o0, std::min(64, g.O - o0), bias, relu, y + p0 * g.O, g.O, np);
      // the output quantizer, while the block is in L1 (global element indices, as one pass)
      if (q) quantize_slice(y + p0 * g.O, y + p0 * g.O, (size_t)np * g.O, *q, p0 * g.O);
    }
  });
  return true;
#endif
}

}  // namespace qc
