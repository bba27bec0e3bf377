// The built-in single-precision GEMM: what runs where no CBLAS was found at build time, and in
// any build under QCAPS_GEMM=builtin. Row-major C[M,N] = alpha op(A) op(B) + beta C, any
// transposes, leading dimensions and scalars (beta == 0 never reads C).
//
// Blocking after Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication"
// (ACM TOMS 34(3), 2008) and the BLIS loop structure (Van Zee & van de Geijn, ACM TOMS 41(3),
// 2015), written for row-major C (BLIS's loops with the roles of A and B exchanged):
//
//   for jc in N by NC                    B block kc x nc, packed once, stays in L2
//     for pc in K by KC                  (beta applies on the first pc only)
//       pack op(B)[pc:pc+kc, jc:jc+nc] into NR-wide panels, k-major, zero-padded
//       for ir in M by MR                A micro-panel mr x kc, packed here, stays in L1
//         pack op(A)[ir:ir+mr, pc:pc+kc] into one MR-tall panel, k-major
//         for jr in nc by NR             micro-kernel: C[mr x NR] (+)= A panel . B panel,
//                                        in registers, one FMA per k after another
//
// Micro-kernels, chosen once at run time (target attributes, as native/fixedconv.cc does), so
// that one build runs on any x86-64: AVX-512F 12x32 (24 zmm accumulators), AVX2+FMA 6x16 (12
// ymm), and plain C++ 4x8 elsewhere (non-x86 builds, old CPUs; the compiler vectorises it).
// Each kernel is instantiated for every row count 1..MR, so short M (the DFT stages' 6, 12, 22
// rows) does no wasted work; partial columns are masked. Transposed operands are packed through
// 8x8 register transposes. Where packing does not pay, the kernels read the operands in place:
// B when few rows use it (M <= 4 MR, op(B) = B), A unless it has long rows to transpose. Where
// N wastes a tile's width (N = 8 of 32) and M would not, C^T = op(B)^T op(A)^T is computed and
// transposed into C. Each C element is one chain of multiply-adds (FMAs on AVX2/AVX-512) in k
// order from zero per KC block: for K <= KC the order of native/smallconv.cc, so that kernel
// gives the same bits with this GEMM as with OpenBLAS.
// set_builtin_gemm_isa (QCAPS_GEMM_ISA=avx512|avx2|scalar, passed in by src/settings.ts) picks
// another family (tests).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "kernels.h"

// (-DQC_GEMM_GENERIC compiles the non-x86 build on x86, to test it)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(QC_GEMM_GENERIC)
#include <immintrin.h>
#define QC_GEMM_X86 1
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized in their own code
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace qc {

namespace {

// A growing 64-byte-aligned buffer per thread (packing never allocates once warm).
struct PackBuffer {
  float* p = nullptr;
  size_t cap = 0;
  ~PackBuffer() { free(p); }
  float* get(size_t n) {
    if (n > cap) {
      free(p);
      p = static_cast<float*>(aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
      cap = n;
    }
    return p;
  }
};
thread_local PackBuffer tl_apack, tl_bpack, tl_ctrans;

// C[mr x nc] = alpha acc + beta C from a row-major tile (edges, the scalar kernel)
inline void store_tile(const float* acc, int ldacc, int mr, int nc, float alpha, float beta, float* c,
                       ptrdiff_t ldc) {
  for (int r = 0; r < mr; r++) {
    float* cr = c + r * ldc;
    const float* ar = acc + (size_t)r * ldacc;
    if (beta == 0.f)
      for (int j = 0; j < nc; j++) cr[j] = alpha * ar[j];
    else
      for (int j = 0; j < nc; j++) cr[j] = alpha * ar[j] + beta * cr[j];
  }
}

// Micro-kernel: C tile of R rows (the instance) and nc <= NR columns. A's element (r, k) is at
// a[r*ars + k*aks] (packed: ars = 1, aks = MR), B's (k, j) at b[k*bks + j] (packed: bks = NR,
// 64-byte aligned and zero past nc; unpacked: B's own rows, loads masked to nc).
using Kernel = void (*)(int kc, const float* a, ptrdiff_t ars, ptrdiff_t aks, const float* b, ptrdiff_t bks,
                        float* c, ptrdiff_t ldc, int nc, float alpha, float beta);

// ---- plain C++ 4x8 (packed operands only) ----
constexpr int kScalarMR = 4, kScalarNR = 8;
template <int R, bool PA, bool PB>
void kernel_scalar(int kc, const float* __restrict a, ptrdiff_t, ptrdiff_t, const float* __restrict b, ptrdiff_t,
                   float* c, ptrdiff_t ldc, int nc, float alpha, float beta) {
  static_assert(PA && PB, "the scalar kernel reads packed operands");
  float acc[R][kScalarNR] = {};
  for (int k = 0; k < kc; k++, a += kScalarMR, b += kScalarNR)
    for (int r = 0; r < R; r++)
      for (int j = 0; j < kScalarNR; j++) acc[r][j] += a[r] * b[j];
  store_tile(&acc[0][0], kScalarNR, R, nc, alpha, beta, c, ldc);
}

#ifdef QC_GEMM_X86
// ---- AVX2 + FMA 6x16 ----
constexpr int kAvx2MR = 6, kAvx2NR = 16;
template <int R, bool PA, bool PB>
__attribute__((target("avx2,fma"))) void kernel_avx2(int kc, const float* __restrict a, ptrdiff_t ars,
                                                      ptrdiff_t aks, const float* __restrict b, ptrdiff_t bks,
                                                      float* c, ptrdiff_t ldc, int nc, float alpha, float beta) {
  if (PA) ars = 1, aks = kAvx2MR;
  if (PB) bks = kAvx2NR;
  // lanes of B that exist (unpacked B must not be read past nc)
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mk0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc), lane),
                mk1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc - 8), lane);
  __m256 c0[R], c1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++, a += aks, b += bks) {
    __m256 b0, b1;
    if (PB) {
      b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    } else {
      b0 = _mm256_maskload_ps(b, mk0), b1 = _mm256_maskload_ps(b + 8, mk1);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m256 av = _mm256_broadcast_ss(a + r * ars);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (nc == kAvx2NR) {
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      float* cr = c + r * ldc;
      __m256 v0 = c0[r], v1 = c1[r];
      if (alpha != 1.f) v0 = _mm256_mul_ps(v0, va), v1 = _mm256_mul_ps(v1, va);
      if (beta == 1.f) {
        v0 = _mm256_add_ps(_mm256_loadu_ps(cr), v0);
        v1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), v1);
      } else if (beta != 0.f) {
        v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), v0);
        v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), v1);
      }
      _mm256_storeu_ps(cr, v0);
      _mm256_storeu_ps(cr + 8, v1);
    }
    return;
  }
  alignas(32) float tile[R][kAvx2NR];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) _mm256_store_ps(tile[r], c0[r]), _mm256_store_ps(tile[r] + 8, c1[r]);
  store_tile(&tile[0][0], kAvx2NR, R, nc, alpha, beta, c, ldc);
}

// ---- AVX-512F 12x32 ----
constexpr int kAvx512MR = 12, kAvx512NR = 32;
template <int R, bool PA, bool PB>
__attribute__((target("avx512f"))) void kernel_avx512(int kc, const float* __restrict a, ptrdiff_t ars,
                                                      ptrdiff_t aks, const float* __restrict b, ptrdiff_t bks,
                                                      float* c, ptrdiff_t ldc, int nc, float alpha, float beta) {
  if (PA) ars = 1, aks = kAvx512MR;
  if (PB) bks = kAvx512NR;
  // columns 0..15 and 16..31 of the tile that exist
  const __mmask16 m0 = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
  const __mmask16 m1 = nc >= 32 ? (__mmask16)0xffff : nc <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nc - 16)) - 1);
  __m512 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int k = 0; k < kc; k++, a += aks, b += bks) {
    __m512 b0, b1;
    if (PB) {
      b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    } else {
      b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512 av = _mm512_set1_ps(a[r * ars]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) {
    float* cr = c + r * ldc;
    __m512 v0 = c0[r], v1 = c1[r];
    if (alpha != 1.f) v0 = _mm512_mul_ps(v0, va), v1 = _mm512_mul_ps(v1, va);
    if (nc == kAvx512NR) {  // Zen 4 stores with a mask slowly: full tiles without
      if (beta == 1.f) {
        v0 = _mm512_add_ps(_mm512_loadu_ps(cr), v0);
        v1 = _mm512_add_ps(_mm512_loadu_ps(cr + 16), v1);
      } else if (beta != 0.f) {
        v0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), v1);
      }
      _mm512_storeu_ps(cr, v0);
      _mm512_storeu_ps(cr + 16, v1);
    } else {
      if (beta != 0.f) {
        v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
      }
      _mm512_mask_storeu_ps(cr, m0, v0);
      _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
  }
}

// dst[c*ldd + r] = src[r*ld + c] (r < rows, c < cols), in 8x8 blocks through AVX registers
__attribute__((target("avx2"))) void transpose_avx2(const float* src, ptrdiff_t ld, int rows, int cols, float* dst,
                                                    ptrdiff_t ldd) {
  const int r8 = rows & ~7, c8 = cols & ~7;
  for (int r = 0; r < r8; r += 8) {
    for (int c = 0; c < c8; c += 8) {
      const float* s = src + r * ld + c;
      __m256 t0 = _mm256_loadu_ps(s), t1 = _mm256_loadu_ps(s + ld), t2 = _mm256_loadu_ps(s + 2 * ld),
             t3 = _mm256_loadu_ps(s + 3 * ld), t4 = _mm256_loadu_ps(s + 4 * ld), t5 = _mm256_loadu_ps(s + 5 * ld),
             t6 = _mm256_loadu_ps(s + 6 * ld), t7 = _mm256_loadu_ps(s + 7 * ld);
      __m256 u0 = _mm256_unpacklo_ps(t0, t1), u1 = _mm256_unpackhi_ps(t0, t1), u2 = _mm256_unpacklo_ps(t2, t3),
             u3 = _mm256_unpackhi_ps(t2, t3), u4 = _mm256_unpacklo_ps(t4, t5), u5 = _mm256_unpackhi_ps(t4, t5),
             u6 = _mm256_unpacklo_ps(t6, t7), u7 = _mm256_unpackhi_ps(t6, t7);
      t0 = _mm256_shuffle_ps(u0, u2, 0x44), t1 = _mm256_shuffle_ps(u0, u2, 0xEE);
      t2 = _mm256_shuffle_ps(u1, u3, 0x44), t3 = _mm256_shuffle_ps(u1, u3, 0xEE);
      t4 = _mm256_shuffle_ps(u4, u6, 0x44), t5 = _mm256_shuffle_ps(u4, u6, 0xEE);
      t6 = _mm256_shuffle_ps(u5, u7, 0x44), t7 = _mm256_shuffle_ps(u5, u7, 0xEE);
      float* d = dst + c * ldd + r;
      _mm256_storeu_ps(d, _mm256_permute2f128_ps(t0, t4, 0x20));
      _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(t1, t5, 0x20));
      _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(t2, t6, 0x20));
      _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(t3, t7, 0x20));
      _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(t0, t4, 0x31));
      _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(t1, t5, 0x31));
      _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(t2, t6, 0x31));
      _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(t3, t7, 0x31));
    }
    for (int c = c8; c < cols; c++)
      for (int i = 0; i < 8; i++) dst[c * ldd + r + i] = src[(r + i) * ld + c];
  }
  for (int r = r8; r < rows; r++)
    for (int c = 0; c < cols; c++) dst[c * ldd + r] = src[r * ld + c];
}
#endif

void transpose_scalar(const float* src, ptrdiff_t ld, int rows, int cols, float* dst, ptrdiff_t ldd) {
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) dst[c * ldd + r] = src[r * ld + c];
}

using Transpose = void (*)(const float* src, ptrdiff_t ld, int rows, int cols, float* dst, ptrdiff_t ldd);

// One kernel family: tile sizes, cache blocks, the instances for 1..MR rows and each way of
// reading the operands (kernels[packedA + 2 packedB][rows - 1]), and its transpose.
struct Arch {
  const char* name;
  int MR, NR, KC, NC;
  bool unpacked;  // whether the kernels can read A and B in place
  Kernel kernels[4][16];
  Transpose transpose;
};

template <template <int, bool, bool> class F, bool PA, bool PB, int... R>
constexpr std::array<Kernel, 16> instances(std::integer_sequence<int, R...>) {
  return {F<R + 1, PA, PB>::fn...};
}
template <template <int, bool, bool> class F, int MR>
constexpr Arch make_arch(const char* name, int NR, int KC, int NC, bool unpacked, Transpose t) {
  Arch a{name, MR, NR, KC, NC, unpacked, {}, t};
  const auto seq = std::make_integer_sequence<int, MR>();
  const std::array<Kernel, 16> k[4] = {instances<F, false, false>(seq), instances<F, true, false>(seq),
                                       instances<F, false, true>(seq), instances<F, true, true>(seq)};
  for (int m = 0; m < 4; m++)
    for (int r = 0; r < 16; r++) a.kernels[m][r] = unpacked || m == 3 ? k[m][r] : nullptr;
  return a;
}
template <int R, bool PA, bool PB>
struct ScalarK {
  static constexpr Kernel fn = PA && PB ? kernel_scalar<R, true, true> : nullptr;
};
#ifdef QC_GEMM_X86
template <int R, bool PA, bool PB>
struct Avx2K {
  static constexpr Kernel fn = kernel_avx2<R, PA, PB>;
};
template <int R, bool PA, bool PB>
struct Avx512K {
  static constexpr Kernel fn = kernel_avx512<R, PA, PB>;
};
#endif

// KC x NC floats of packed B (384 KB for AVX2, 512 KB for AVX-512) are sized for the 1 MB L2 of
// the Zen 4 cores this was tuned on (a smaller L2 costs a few percent: the panels stream in
// order); the MR x KC A panel (6-12 KB) stays in L1.
const Arch kScalar = make_arch<ScalarK, kScalarMR>("scalar 4x8", kScalarNR, 256, 256, false, transpose_scalar);
#ifdef QC_GEMM_X86
const Arch kAvx2 = make_arch<Avx2K, kAvx2MR>("AVX2 6x16", kAvx2NR, 256, 384, true, transpose_avx2);
const Arch kAvx512 = make_arch<Avx512K, kAvx512MR>("AVX-512 12x32", kAvx512NR, 256, 512, true, transpose_avx2);
#endif

// The best kernel family the CPU runs, or the one named (null where the CPU lacks it)
const Arch* pick(const char* want) {
  const std::string w = want ? want : "auto";
#ifdef QC_GEMM_X86
  __builtin_cpu_init();  // may run before libgcc's constructor (static initialisation)
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (w == "auto") return avx512 ? &kAvx512 : avx2 ? &kAvx2 : &kScalar;
  if (w == "avx512") return avx512 ? &kAvx512 : nullptr;
  if (w == "avx2") return avx2 ? &kAvx2 : nullptr;
#else
  if (w == "auto") return &kScalar;
#endif
  return w == "scalar" ? &kScalar : nullptr;
}

const Arch* g_arch = pick("auto");

// Packed B: panels of NR columns, each kc rows of NR floats (zero past nc).
void pack_b(const Arch& a, bool tB, const float* B, ptrdiff_t ldb, int k0, int kc, int j0, int nc, float* out) {
  const int NR = a.NR;
  for (int jp = 0; jp < nc; jp += NR, out += (size_t)kc * NR) {
    const int w = std::min(NR, nc - jp);
    if (!tB) {  // B[k][j]: rows of w contiguous floats
      for (int k = 0; k < kc; k++) {
        const float* src = B + (k0 + k) * ldb + j0 + jp;
        float* dst = out + (size_t)k * NR;
        for (int j = 0; j < w; j++) dst[j] = src[j];
        for (int j = w; j < NR; j++) dst[j] = 0.f;
      }
    } else {  // B[j][k]: the panel is a transposed block of B
      a.transpose(B + (j0 + jp) * ldb + k0, ldb, w, kc, out, NR);
      if (w < NR)
        for (int k = 0; k < kc; k++)
          for (int j = w; j < NR; j++) out[(size_t)k * NR + j] = 0.f;
    }
  }
}

// Packed A: one panel of MR rows, kc columns of MR floats (zero past mr).
void pack_a(const Arch& a, bool tA, const float* A, ptrdiff_t lda, int i0, int mr, int k0, int kc, float* out) {
  const int MR = a.MR;
  if (tA) {  // A[k][i]: each k gives mr contiguous floats
    for (int k = 0; k < kc; k++) {
      const float* src = A + (k0 + k) * lda + i0;
      float* dst = out + (size_t)k * MR;
      for (int r = 0; r < mr; r++) dst[r] = src[r];
      for (int r = mr; r < MR; r++) dst[r] = 0.f;
    }
  } else {  // A[i][k]: the panel is a transposed block of A
    a.transpose(A + i0 * lda + k0, lda, mr, kc, out, MR);
    if (mr < MR)
      for (int k = 0; k < kc; k++)
        for (int r = mr; r < MR; r++) out[(size_t)k * MR + r] = 0.f;
  }
}

// n split into pieces of at most `block`, all about the same size (no sliver at the end)
inline int even_block(int n, int block) {
  const int pieces = (n + block - 1) / block;
  return (n + pieces - 1) / pieces;
}

// C = alpha op(A) op(B) + beta C through the loops above (K >= 1, alpha != 0)
void blocked(const Arch& a, bool tA, bool tB, int M, int N, int K, float alpha, const float* A, ptrdiff_t lda,
             const float* B, ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc) {
  const int MR = a.MR, NR = a.NR;
  const int KC = even_block(K, a.KC), NC = even_block(N, a.NC);
  // Packing B pays where its panels serve many A panels: few rows (the DFT stages, capsule
  // votes) read B in place. A is packed only where its rows would be transposed and long
  // (rows of A far apart in memory share L1 sets); op(A) = A^T already has the panel's layout.
  const bool packB = !a.unpacked || tB || M > 4 * MR;
  const bool packA = !a.unpacked || (!tA && K > 32);
  const int mode = (packA ? 1 : 0) + (packB ? 2 : 0);
  float* bp = packB ? tl_bpack.get((size_t)KC * ((std::min(NC, N) + NR - 1) / NR * NR)) : nullptr;
  float* ap = packA ? tl_apack.get((size_t)KC * MR) : nullptr;
  const ptrdiff_t ars = tA ? 1 : lda, aks = tA ? lda : 1;
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc);
      const float b = pc == 0 ? beta : 1.f;
      if (packB) pack_b(a, tB, B, ldb, pc, kc, jc, nc, bp);
      for (int ir = 0; ir < M; ir += MR) {
        const int mr = std::min(MR, M - ir);
        const float* at = A + ir * ars + pc * aks;
        if (packA) pack_a(a, tA, A, lda, ir, mr, pc, kc, ap), at = ap;
        const Kernel kern = a.kernels[mode][mr - 1];
        float* c = C + ir * ldc + jc;
        for (int jr = 0; jr < nc; jr += NR) {
          const float* bt = packB ? bp + (size_t)(jr / NR) * kc * NR : B + pc * ldb + jc + jr;
          kern(kc, at, ars, aks, bt, ldb, c + jr, ldc, std::min(NR, nc - jr), alpha, b);
        }
      }
    }
  }
}

// Share of the lanes of n that a tile width of w computes usefully
inline double lane_use(int n, int w) { return (double)n / ((n + w - 1) / w * w); }

}  // namespace

const char* sgemm_builtin_kernel() { return g_arch->name; }

bool set_builtin_gemm_isa(const char* isa) {
  const Arch* a = pick(isa);
  if (a) g_arch = a;
  return a != nullptr;
}

void sgemm_builtin(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                   int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // C = beta C; A and B are not read
    for (int i = 0; i < M; i++) {
      float* c = C + (size_t)i * ldc;
      if (beta == 0.f)
        memset(c, 0, (size_t)N * sizeof(float));
      else if (beta != 1.f)
        for (int j = 0; j < N; j++) c[j] *= beta;
    }
    return;
  }
  const Arch& a = *g_arch;
  // Few columns waste most of each tile's width (N = 8 of 32, 81 of 96): where rows would not,
  // compute C^T = op(B)^T op(A)^T (N x M) instead and transpose it into C.
  if (K >= 16 && M >= 4 && lane_use(N, a.NR) < 0.9 && lane_use(M, a.NR) > lane_use(N, a.NR) + 0.1) {
    float* t = tl_ctrans.get((size_t)N * M);
    blocked(a, !tB, !tA, N, M, K, alpha, B, ldb, A, lda, 0.f, t, M);
    if (beta == 0.f) {
      a.transpose(t, M, N, M, C, ldc);
    } else {
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = t[(size_t)j * M + i] + beta * C[(size_t)i * ldc + j];
    }
    return;
  }
  blocked(a, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace qc
