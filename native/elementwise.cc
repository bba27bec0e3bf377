// Row-wise kernels on channels-last data, split over the pool's threads:
//   squash(s) = s |s| / (1 + |s|^2) over rows of D values (Sabour et al. eq. 1) and its gradient
//   ds = f dv + s (s.dv) f'(n)/n,  f(n) = n/(1+n^2), f'(n) = (1-n^2)/(1+n^2)^2 (0 at n = 0)
//   BatchNorm over rows of C channels: per-channel sums, the affine map, and the backward pass.
// Same arithmetic as src/tensor/ops/squash.ts and batchnorm2d.ts.
#include "fp-order.h"  // first: no contraction into FMA anywhere below

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace qc {

void squash_forward(const float* s, float* v, size_t rows, int D) {
  parallel_for(rows, [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; r++) {
      const float* sr = s + r * D;
      double n2 = 0;
      for (int d = 0; d < D; d++) n2 += (double)sr[d] * sr[d];
      const double f = std::sqrt(n2) / (1 + n2);
      for (int d = 0; d < D; d++) v[r * D + d] = (float)(sr[d] * f);
    }
  });
}

void squash_backward(const float* s, const float* dv, float* ds, size_t rows, int D) {
  parallel_for(rows, [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; r++) {
      const float* sr = s + r * D;
      const float* g = dv + r * D;
      double n2 = 0, sdv = 0;
      for (int d = 0; d < D; d++) {
        n2 += (double)sr[d] * sr[d];
        sdv += (double)sr[d] * g[d];
      }
      const double n = std::sqrt(n2);
      const double f = n / (1 + n2);
      const double coef = n > 0 ? ((1 - n2) / ((1 + n2) * (1 + n2) * n)) * sdv : 0;
      for (int d = 0; d < D; d++) ds[r * D + d] = (float)(f * g[d] + coef * sr[d]);
    }
  });
}

// sum[c] = sum_r x[r,c], sumsq[c] = sum_r (x[r,c] - shift[c])^2 (shift may be null)
void channel_sums(const float* x, size_t rows, int C, const double* shift, double* sum) {
  const int T = pool_threads();
  std::vector<double> part((size_t)T * C, 0.0);
  parallel_for(rows, [&](size_t b, size_t e, int t) {
    double* a = &part[(size_t)t * C];
    for (size_t r = b; r < e; r++) {
      const float* xr = x + r * C;
      if (shift)
        for (int c = 0; c < C; c++) {
          double d = xr[c] - shift[c];
          a[c] += d * d;
        }
      else
        for (int c = 0; c < C; c++) a[c] += xr[c];
    }
  });
  for (int c = 0; c < C; c++) sum[c] = 0;
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++) sum[c] += part[(size_t)t * C + c];
}

// y = gamma (x - mean) invStd + beta; xhat = (x - mean) invStd when xhat is not null
void batchnorm_apply(const float* x, size_t rows, int C, const double* mean, const float* invStd, const float* gamma,
                     const float* beta, float* y, float* xhat) {
  parallel_for(rows, [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; r++)
      for (int c = 0; c < C; c++) {
        float h = (float)((x[r * C + c] - mean[c]) * invStd[c]);
        if (xhat) xhat[r * C + c] = h;
        y[r * C + c] = gamma[c] * h + beta[c];
      }
  });
}

// dx = gamma invStd (dy - sum(dy)/n - xhat sum(dy xhat)/n); dgamma += sum(dy xhat); dbeta += sum(dy)
void batchnorm_backward(const float* dy, const float* xhat, size_t rows, int C, const float* gamma,
                        const float* invStd, float* dx, float* dgamma, float* dbeta) {
  const int T = pool_threads();
  std::vector<double> part((size_t)T * 2 * C, 0.0);
  parallel_for(rows, [&](size_t b, size_t e, int t) {
    double* sd = &part[(size_t)t * 2 * C];
    double* sdx = sd + C;
    for (size_t r = b; r < e; r++)
      for (int c = 0; c < C; c++) {
        sd[c] += dy[r * C + c];
        sdx[c] += (double)dy[r * C + c] * xhat[r * C + c];
      }
  });
  std::vector<double> sumDy(C, 0.0), sumDyXh(C, 0.0);
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++) {
      sumDy[c] += part[(size_t)t * 2 * C + c];
      sumDyXh[c] += part[(size_t)t * 2 * C + C + c];
    }
  for (int c = 0; c < C; c++) {
    dbeta[c] += (float)sumDy[c];
    dgamma[c] += (float)sumDyXh[c];
  }
  const double n = (double)rows;
  parallel_for(rows, [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; r++)
      for (int c = 0; c < C; c++) {
        double k = (double)gamma[c] * invStd[c];
        dx[r * C + c] = (float)(k * (dy[r * C + c] - sumDy[c] / n - xhat[r * C + c] * sumDyXh[c] / n));
      }
  });
}

}  // namespace qc

namespace qc {

// One Adam step (torch.optim.Adam, no weight decay, amsgrad off), float32 as PyTorch:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= stepSize * m / (sqrt(v) / bc2sqrt + eps)
// Every product and sum is rounded on its own (no fused multiply-add), as PyTorch's kernels do;
// with contraction off for this function the loop still vectorises.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
QC_VECTOR_CLONES
static void adam_slice(float* p, const float* g, float* m, float* v, size_t n, float b1, float c1, float b2, float c2,
                       float stepSize, float bc2sqrt, float eps) {
  for (size_t i = 0; i < n; i++) {
    const float gi = g[i];
    const float mi = m[i] * b1 + gi * c1;
    const float vi = v[i] * b2 + (gi * gi) * c2;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2sqrt + eps;
    p[i] = p[i] - stepSize * (mi / denom);
  }
}
#pragma GCC pop_options

void adam_update(float* p, const float* g, float* m, float* v, size_t n, float b1, float c1, float b2, float c2,
                 float stepSize, float bc2sqrt, float eps) {
  parallel_for(n, [&](size_t b, size_t e, int) {
    adam_slice(p + b, g + b, m + b, v + b, e - b, b1, c1, b2, c2, stepSize, bc2sqrt, eps);
  });
}

// y = x permuted (see kernels.h): output rows of the innermost axis, split over the pool's
// threads; each range starts its odometer from its first row
void permute(const float* x, const int* shape, const int* perm, int rank, float* y) {
  if (rank == 0) {
    y[0] = x[0];
    return;
  }
  int64_t inStride[8], stride[8], outShape[8];
  int64_t s = 1;
  for (int k = rank - 1; k >= 0; k--) inStride[k] = s, s *= shape[k];
  for (int k = 0; k < rank; k++) stride[k] = inStride[perm[k]], outShape[k] = shape[perm[k]];
  const int last = rank - 1;
  const int64_t n = outShape[last], st = stride[last];
  const size_t rows = n == 0 ? 0 : (size_t)(s / n);
  parallel_for(rows, [&](size_t rb, size_t re, int) {
    int64_t idx[8] = {}, base = 0;
    size_t rem = rb;
    for (int k = last - 1; k >= 0; k--) {
      idx[k] = (int64_t)(rem % (size_t)outShape[k]);
      rem /= (size_t)outShape[k];
      base += idx[k] * stride[k];
    }
    float* out = y + rb * n;
    for (size_t r = rb; r < re; r++, out += n) {
      const float* in = x + base;
      if (st == 1)
        memcpy(out, in, (size_t)n * sizeof(float));
      else
        for (int64_t j = 0; j < n; j++) out[j] = in[j * st];
      for (int k = last - 1; k >= 0; k--) {
        if (++idx[k] < outShape[k]) {
          base += stride[k];
          break;
        }
        idx[k] = 0;
        base -= (outShape[k] - 1) * stride[k];
      }
    }
  });
}

}  // namespace qc
