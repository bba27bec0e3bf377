// The float convolution in one fixed order ("ordered convolution"), for the convolutions of the
// quantized forward that are not exact integer sums (the first layer, whose input image is not
// fixed point; any layer fixed_point_conv declines), and, under OpenBLAS, for short patches in
// the float forward. The order, the same on every instruction-set level, thread count and BLAS,
// and the C export's conv_float_input (src/export/c-export-runtime.ts):
//
//   y[pixel][o] = relu( fma(x_{K-1}, w[o][K-1], ... fma(x_1, w[o][1], fma(x_0, w[o][0], +0))) + bias[o] )
//
// one fused multiply-add (one rounding) per patch value, in column order t = (ky, kx, c), over
// all KH*KW*C values of the zero-padded patch (the padding's zeros take part, as im2col's do),
// then + bias (one rounding), then ReLU (max with +0: NaN and -0 give +0), then the layer's
// output quantizer. OpenBLAS sums a K <= 128 in one block in exactly this order, and so does
// the built-in GEMM for K up to its KC (native/gemm-builtin.cc), so the bits are those of
// im2col + either GEMM there.
//
// Three kernels compute it, chosen by qc::active_isa(): AVX-512 (6 pixels x 64 channels, 24 zmm
// accumulators), AVX2 (6 pixels x 16 channels, 12 ymm), and portable C++ (std::fma). Long
// patches are cut into blocks of kKBlock values; an accumulator stored to y between two blocks
// continues its chain unchanged (a float in memory is the float in the register). Threads
// split the output pixels: each output is one chain on one thread.
#include "fp-order.h"  // first: no contraction into FMA anywhere below

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QC_HAVE_SMALL_CONV_BUILD 1
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized in their own code
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "isa.h"
#include "kernels.h"
#include "parallel.h"
#include "settings.h"

namespace qc {

namespace {

constexpr int kMaxPatch = 128;  // small_patch_conv's limit
constexpr int kPixels = 6;      // output pixels per micro-kernel call
constexpr int kKBlock = 512;    // patch values per pass over a block of pixels
constexpr int kChunkPixels = 16 * kPixels;

// The operands of one micro-kernel call: np <= kPixels pixels whose patch value t is at
// xp[p] + off[t], weights wt[t][o] (ldw floats a row, zero past O), outputs o0 .. o0+no-1 of
// each pixel at y + p*ldy. Values t0 .. t1-1 are added; first: the chains start at +0 (else
// they continue from y); last: + bias, ReLU.
struct Block {
  const float* const* xp;
  const int* off;
  int t0, t1;
  const float* wt;
  int ldw, o0, no;
  const float* bias;
  bool relu, first, last;
  float* y;
  int ldy, np;
};

// The scalar order itself (also the reference the vector kernels are tested against): each
// output's chain runs over t in order, as above; the loops run t outside and 16 of the block's
// channels inside, so that compilers vectorise the channels and keep them in registers (each
// lane one output's chain: the order of every chain is unchanged). std::fma rounds once
// wherever it runs: an instruction where the target has FMA (AArch64, or the clone below), else
// the C library's.
//
// One pixel's chains for channels o0 .. o0+no-1 of the block (N > 0: exactly N of them, a
// constant the compiler keeps in vector registers)
template <int N>
__attribute__((always_inline)) inline void pixel_chains(const Block& k, int p, int o0, int no) {
  constexpr int kMax = N > 0 ? N : 64;
  const int n = N > 0 ? N : no;
  float* yp = k.y + (size_t)p * k.ldy + k.o0 + o0;
  const float* xp = k.xp[p];
  float acc[kMax];
  for (int o = 0; o < n; o++) acc[o] = k.first ? 0.f : yp[o];
  for (int t = k.t0; t < k.t1; t++) {
    const float xv = xp[k.off[t]];
    const float* wr = k.wt + (size_t)t * k.ldw + k.o0 + o0;
    for (int o = 0; o < n; o++) acc[o] = std::fma(xv, wr[o], acc[o]);
  }
  for (int o = 0; o < n; o++) {
    float v = acc[o];
    if (k.last) {
      if (k.bias) v = v + k.bias[k.o0 + o0 + o];
      if (k.relu) v = v > 0.f ? v : 0.f;
    }
    yp[o] = v;
  }
}

// The block: every pixel, 16 channels at a time.
__attribute__((always_inline)) inline void block_portable_body(const Block& k) {
  for (int p = 0; p < k.np; p++)
    for (int o0 = 0; o0 < k.no; o0 += 16) {
      if (k.no - o0 >= 16)
        pixel_chains<16>(k, p, o0, 16);
      else
        pixel_chains<0>(k, p, o0, k.no - o0);
    }
}

void block_portable_generic(const Block& k) { block_portable_body(k); }

#if defined(__x86_64__) && defined(__GNUC__)
// the same source where the x86 CPU has FMA (any forced level, portable included): std::fma
// becomes vfmadd, vectorised over the channels; the same bits as the library's fma
__attribute__((target("fma"))) void block_portable_fma(const Block& k) { block_portable_body(k); }
#endif

void block_portable(const Block& k) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool fma = __builtin_cpu_supports("fma");
  if (fma) return block_portable_fma(k);
#endif
  block_portable_generic(k);
}

#ifdef QC_HAVE_SMALL_CONV_BUILD
#define QC_PIXELS(X) X(0) X(1) X(2) X(3) X(4) X(5)
static_assert(kPixels == 6, "the micro-kernels are written out for 6 pixels");

// 64 channels: four zmm accumulators per pixel
__attribute__((target("avx512f"))) void block_avx512(const Block& k) {
  const int np = k.np;
#define QC_INIT(p)                                                                                      \
  const float* x##p = k.xp[std::min(p, np - 1)];                                                        \
  __m512 a##p##0, a##p##1, a##p##2, a##p##3;                                                            \
  if (k.first) {                                                                                        \
    a##p##0 = a##p##1 = a##p##2 = a##p##3 = _mm512_setzero_ps();                                        \
  } else {                                                                                              \
    const float* yp = k.y + (size_t)std::min(p, np - 1) * k.ldy + k.o0;                                 \
    const int n = k.no;                                                                                 \
    a##p##0 = _mm512_maskz_loadu_ps(n >= 16 ? 0xffff : (__mmask16)((1u << std::max(n, 0)) - 1), yp);   \
    a##p##1 = _mm512_maskz_loadu_ps(n >= 32 ? 0xffff : (__mmask16)((1u << std::max(n - 16, 0)) - 1), yp + 16); \
    a##p##2 = _mm512_maskz_loadu_ps(n >= 48 ? 0xffff : (__mmask16)((1u << std::max(n - 32, 0)) - 1), yp + 32); \
    a##p##3 = _mm512_maskz_loadu_ps(n >= 64 ? 0xffff : (__mmask16)((1u << std::max(n - 48, 0)) - 1), yp + 48); \
  }
  QC_PIXELS(QC_INIT)
#undef QC_INIT
  for (int t = k.t0; t < k.t1; t++) {
    const float* wr = k.wt + (size_t)t * k.ldw + k.o0;
    const __m512 w0 = _mm512_loadu_ps(wr), w1 = _mm512_loadu_ps(wr + 16), w2 = _mm512_loadu_ps(wr + 32),
                 w3 = _mm512_loadu_ps(wr + 48);
    const int ot = k.off[t];
#define QC_FMA(p)                                \
  {                                              \
    const __m512 xv = _mm512_set1_ps(x##p[ot]);  \
    a##p##0 = _mm512_fmadd_ps(xv, w0, a##p##0);  \
    a##p##1 = _mm512_fmadd_ps(xv, w1, a##p##1);  \
    a##p##2 = _mm512_fmadd_ps(xv, w2, a##p##2);  \
    a##p##3 = _mm512_fmadd_ps(xv, w3, a##p##3);  \
  }
    QC_PIXELS(QC_FMA)
#undef QC_FMA
  }
#define QC_STORE(p)                                                                         \
  if (p < np) {                                                                             \
    const __m512 acc[4] = {a##p##0, a##p##1, a##p##2, a##p##3};                             \
    for (int v = 0; v < 4; v++) {                                                           \
      const int n = std::min(16, k.no - 16 * v);                                            \
      if (n <= 0) break;                                                                    \
      const __mmask16 m = n == 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);         \
      __m512 r = acc[v];                                                                    \
      if (k.last && k.bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, k.bias + k.o0 + 16 * v)); \
      if (k.last && k.relu) r = _mm512_max_ps(r, _mm512_setzero_ps()); /* NaN, -0 -> +0 */ \
      float* dst = k.y + (size_t)p * k.ldy + k.o0 + 16 * v;                                 \
      if (n == 16) /* Zen 4 stores with a mask slowly */                                    \
        _mm512_storeu_ps(dst, r);                                                           \
      else                                                                                  \
        _mm512_mask_storeu_ps(dst, m, r);                                                   \
    }                                                                                       \
  }
  QC_PIXELS(QC_STORE)
#undef QC_STORE
}

// 16 channels: two ymm accumulators per pixel (12 in all, with two weight vectors and a
// broadcast: 15 of the 16 registers)
__attribute__((target("avx2,fma"))) void block_avx2(const Block& k) {
  const int np = k.np;
  float in[kPixels][16];  // the chains' starting values (zero-padded past no)
  for (int p = 0; p < kPixels; p++) {
    std::fill(in[p], in[p] + 16, 0.f);
    if (!k.first && p < np) std::memcpy(in[p], k.y + (size_t)p * k.ldy + k.o0, (size_t)k.no * sizeof(float));
  }
#define QC_INIT(p)                                         \
  const float* x##p = k.xp[std::min(p, np - 1)];           \
  __m256 a##p##0 = _mm256_loadu_ps(in[p]), a##p##1 = _mm256_loadu_ps(in[p] + 8);
  QC_PIXELS(QC_INIT)
#undef QC_INIT
  for (int t = k.t0; t < k.t1; t++) {
    const float* wr = k.wt + (size_t)t * k.ldw + k.o0;
    const __m256 w0 = _mm256_loadu_ps(wr), w1 = _mm256_loadu_ps(wr + 8);
    const int ot = k.off[t];
#define QC_FMA(p)                                \
  {                                              \
    const __m256 xv = _mm256_set1_ps(x##p[ot]);  \
    a##p##0 = _mm256_fmadd_ps(xv, w0, a##p##0);  \
    a##p##1 = _mm256_fmadd_ps(xv, w1, a##p##1);  \
  }
    QC_PIXELS(QC_FMA)
#undef QC_FMA
  }
  const __m256 b0 = k.last && k.bias ? _mm256_loadu_ps(k.bias + k.o0) : _mm256_setzero_ps();
  const __m256 b1 = k.last && k.bias ? _mm256_loadu_ps(k.bias + k.o0 + 8) : _mm256_setzero_ps();
#define QC_STORE(p)                                                        \
  if (p < np) {                                                            \
    __m256 r0 = a##p##0, r1 = a##p##1;                                     \
    if (k.last && k.bias) r0 = _mm256_add_ps(r0, b0), r1 = _mm256_add_ps(r1, b1); \
    if (k.last && k.relu)                                                  \
      r0 = _mm256_max_ps(r0, _mm256_setzero_ps()), r1 = _mm256_max_ps(r1, _mm256_setzero_ps()); \
    float out[16];                                                         \
    _mm256_storeu_ps(out, r0);                                             \
    _mm256_storeu_ps(out + 8, r1);                                         \
    std::memcpy(k.y + (size_t)p * k.ldy + k.o0, out, (size_t)k.no * sizeof(float)); \
  }
  QC_PIXELS(QC_STORE)
#undef QC_STORE
}
#undef QC_PIXELS
#endif

// Channels per micro-kernel call at this level (the weights are padded to a multiple of 64).
int channels_per_block(Isa isa) {
#ifdef QC_HAVE_SMALL_CONV_BUILD
  if (isa >= Isa::avx512) return 64;
  if (isa == Isa::avx2) return 16;
#endif
  (void)isa;
  return 64;
}

void run_block(Isa isa, const Block& k) {
#ifdef QC_HAVE_SMALL_CONV_BUILD
  if (isa >= Isa::avx512) return block_avx512(k);
  if (isa == Isa::avx2) return block_avx2(k);
#endif
  (void)isa;
  block_portable(k);
}

}  // namespace

void ordered_conv(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                  const QuantSpec* q, Isa isa) {
  const int K = g.KH * g.KW * g.C;
  // x zero-padded, weights as wt[t][o]
  const int Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad;
  const float* xs = x;
  std::vector<float> xpad;
  if (g.pad > 0) {
    xpad.assign((size_t)g.B * Hp * Wp * g.C, 0.f);
    for (int b = 0; b < g.B; b++)
      for (int iy = 0; iy < g.H; iy++)
        std::memcpy(&xpad[(((size_t)b * Hp + iy + g.pad) * Wp + g.pad) * g.C],
                    x + (((size_t)b * g.H + iy) * g.W) * g.C, (size_t)g.W * g.C * sizeof(float));
    xs = xpad.data();
  }
  const int ldw = (g.O + 63) / 64 * 64;
  std::vector<float> wt((size_t)K * ldw, 0.f);
  for (int o = 0; o < g.O; o++)
    for (int t = 0; t < K; t++) wt[(size_t)t * ldw + o] = w[(size_t)o * K + t];
  std::vector<int> off(K);
  for (int ky = 0, t = 0; ky < g.KH; ky++)
    for (int kx = 0; kx < g.KW; kx++)
      for (int c = 0; c < g.C; c++) off[t++] = (ky * Wp + kx) * g.C + c;
  const int step = channels_per_block(isa);
  // chunks of output pixels (over row ends: each pixel finds its own patch); within a chunk,
  // each block of channels and of patch values runs over all its pixels
  const size_t pixels = (size_t)g.B * g.OH * g.OW, chunks = (pixels + kChunkPixels - 1) / kChunkPixels;
  parallel_for(chunks, [&](size_t cb, size_t ce, int) {
    for (size_t ch = cb; ch < ce; ch++) {
      const size_t c0 = ch * kChunkPixels, c1 = std::min(pixels, c0 + kChunkPixels);
      const float* xp[kChunkPixels];  // each pixel's patch
      for (size_t px = c0; px < c1; px++) {
        const size_t b = px / ((size_t)g.OH * g.OW), rem = px % ((size_t)g.OH * g.OW);
        const size_t oy = rem / g.OW, ox = rem % g.OW;
        xp[px - c0] = xs + ((b * Hp + oy * g.stride) * Wp + ox * g.stride) * g.C;
      }
      for (int o0 = 0; o0 < g.O; o0 += step)
        for (int t0 = 0; t0 < K; t0 += kKBlock)
          for (size_t p0 = c0; p0 < c1; p0 += kPixels) {
            const int np = (int)std::min<size_t>(kPixels, c1 - p0);
            const int t1 = std::min(K, t0 + kKBlock);
            const Block k{xp + (p0 - c0), off.data(), t0,   t1,     wt.data(), ldw, o0, std::min(step, g.O - o0),
                          bias,           relu,       t0 == 0, t1 == K, y + p0 * g.O, g.O, np};
            run_block(isa, k);
          }
      // the output quantizer, while the chunk is in cache (global element indices, as one pass)
      if (q) quantize_slice(y + c0 * g.O, y + c0 * g.O, (c1 - c0) * g.O, *q, c0 * g.O);
    }
  });
}

bool small_patch_conv(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                      const QuantSpec* q) {
#if !defined(QC_HAVE_SMALL_CONV_BUILD) || !defined(QC_CBLAS_OPENBLAS)
  (void)g, (void)x, (void)w, (void)bias, (void)y, (void)relu, (void)q;
  return false;  // its bits are OpenBLAS's: elsewhere im2col + GEMM stays the reference
#else
  if (!settings().smallPatchConv || g.KH * g.KW * g.C > kMaxPatch || !cpu_has_avx512f()) return false;
  ordered_conv(g, x, w, bias, y, relu, q, Isa::avx512);
  return true;
#endif
}

}  // namespace qc
