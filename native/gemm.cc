// GEMM: CBLAS when the build found it (OpenBLAS via pkg-config, Accelerate on macOS),
// otherwise a cache-blocked GEMM in plain C++ so that the addon builds everywhere.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "parallel.h"

#if defined(QC_CBLAS_OPENBLAS)
#include <cblas.h>
extern "C" {
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
char* openblas_get_corename(void);
}
#elif defined(QC_CBLAS_ACCELERATE)
#include <Accelerate/Accelerate.h>
#endif

namespace qc {

static int g_threads = 1;

#if defined(QC_CBLAS_OPENBLAS) || defined(QC_CBLAS_ACCELERATE)
void sgemm_serial(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
}
#else
// Built-in: C += A_blk * B_blk over 64x256x256 blocks, inner loop vectorisable over j.
void sgemm_serial(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.f ? 0.f : beta * C[(size_t)i * ldc + j];
  const int MB = 64, KB = 256, NB = 512;
  std::vector<float> bpack((size_t)KB * NB);
  for (int k0 = 0; k0 < K; k0 += KB) {
    int kb = std::min(KB, K - k0);
    for (int j0 = 0; j0 < N; j0 += NB) {
      int nb = std::min(NB, N - j0);
      for (int k = 0; k < kb; k++)
        for (int j = 0; j < nb; j++)
          bpack[(size_t)k * nb + j] = tB ? B[(size_t)(j0 + j) * ldb + k0 + k] : B[(size_t)(k0 + k) * ldb + j0 + j];
      for (int i0 = 0; i0 < M; i0 += MB) {
        int ib = std::min(MB, M - i0);
        for (int i = 0; i < ib; i++) {
          float* c = C + (size_t)(i0 + i) * ldc + j0;
          for (int k = 0; k < kb; k++) {
            float a = alpha * (tA ? A[(size_t)(k0 + k) * lda + i0 + i] : A[(size_t)(i0 + i) * lda + k0 + k]);
            const float* b = &bpack[(size_t)k * nb];
            for (int j = 0; j < nb; j++) c[j] += a * b[j];
          }
        }
      }
    }
  }
}
#endif

// All parallelism is ours (native/parallel.cc): OpenBLAS always runs single-threaded inside
// our threads, so no BLAS worker spins against them.
void set_threads(int n) {
  g_threads = std::min(8, std::max(1, n));
  pool_set_threads(g_threads);
#if defined(QC_CBLAS_OPENBLAS)
  openblas_set_num_threads(1);
#endif
}

// Splits C by rows (or by columns when it has few rows) across the pool's threads.
void sgemm(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc) {
  const double flops = 2.0 * M * N * K;
  const int T = pool_threads();
  if (T <= 1 || flops < 4e6) {
    sgemm_serial(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (M >= 32 * T) {
    parallel_for((size_t)M, [&](size_t b, size_t e, int) {
      const float* a = tA ? A + b : A + b * (size_t)lda;
      sgemm_serial(tA, tB, (int)(e - b), N, K, alpha, a, lda, B, ldb, beta, C + b * (size_t)ldc, ldc);
    });
  } else {
    parallel_for((size_t)N, [&](size_t b, size_t e, int) {
      const float* bb = tB ? B + b * (size_t)ldb : B + b;
      sgemm_serial(tA, tB, M, (int)(e - b), K, alpha, A, lda, bb, ldb, beta, C + b, ldc);
    });
  }
}

int get_threads() { return g_threads; }

const char* blas_info() {
  static char buf[512];
#if defined(QC_CBLAS_OPENBLAS)
  snprintf(buf, sizeof buf, "OpenBLAS %s; core %s", openblas_get_config(), openblas_get_corename());
#elif defined(QC_CBLAS_ACCELERATE)
  snprintf(buf, sizeof buf, "Accelerate");
#else
  snprintf(buf, sizeof buf, "built-in blocked GEMM (no CBLAS found at build time)");
#endif
  return buf;
}

float* workspace(int slot, size_t floats) {
  static float* bufs[16] = {nullptr};
  static size_t caps[16] = {0};
  if (floats > caps[slot]) {
    free(bufs[slot]);
    bufs[slot] = static_cast<float*>(aligned_alloc(64, ((floats * 4 + 63) / 64) * 64));
    caps[slot] = floats;
  }
  return bufs[slot];
}

}  // namespace qc
