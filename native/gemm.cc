// GEMM: CBLAS when the build found it (OpenBLAS via pkg-config, Accelerate on macOS),
// otherwise the built-in packed, register-blocked GEMM of native/gemm-builtin.cc, so that the
// addon builds everywhere; QCAPS_GEMM=builtin runs the built-in one in a CBLAS build too.
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
#define QC_HAVE_CBLAS 1
#endif

namespace {

// Which GEMM runs: CBLAS where the build found one, unless configure({ gemm: 'builtin' })
// (QCAPS_GEMM=builtin, read by src/settings.ts) or set_gemm("builtin"); builds without CBLAS
// always run the built-in one (native/gemm-builtin.cc). Switched only between kernel calls, from
// the JavaScript thread. Everything else stays as it is: the direct small-patch kernel
// (native/smallconv.cc, built with OpenBLAS only) still runs under the built-in GEMM, since its
// multiply-adds in column order from zero are the built-in AVX2/AVX-512 kernels' too (K <= 128,
// one block): the same bits as im2col + the built-in GEMM, i.e. as a build without CBLAS, only
// faster (test/gemm-builtin.test.ts checks the bits; the bench's built-in rows turn it off to
// time what such a build runs).
#ifdef QC_HAVE_CBLAS
bool g_builtin = false;
#else
bool g_builtin = true;
#endif

}  // namespace

bool set_gemm(const char* which) {
  if (strcmp(which, "builtin") == 0) {
    g_builtin = true;
    return true;
  }
#ifdef QC_HAVE_CBLAS
  if (strcmp(which, "blas") == 0) {
    g_builtin = false;
    return true;
  }
#endif
  return false;
}

void sgemm_serial(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc) {
#ifdef QC_HAVE_CBLAS
  if (!g_builtin) {
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
    return;
  }
#endif
  sgemm_builtin(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

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
  if (g_builtin)
    snprintf(buf, sizeof buf, "built-in GEMM %s (forced; build has OpenBLAS)", sgemm_builtin_kernel());
  else
    snprintf(buf, sizeof buf, "OpenBLAS %s; core %s", openblas_get_config(), openblas_get_corename());
#elif defined(QC_CBLAS_ACCELERATE)
  if (g_builtin)
    snprintf(buf, sizeof buf, "built-in GEMM %s (forced; build has Accelerate)", sgemm_builtin_kernel());
  else
    snprintf(buf, sizeof buf, "Accelerate");
#else
  snprintf(buf, sizeof buf, "built-in GEMM %s (no CBLAS found at build time)", sgemm_builtin_kernel());
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
