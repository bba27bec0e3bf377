// Channels-last 2-D convolution as im2col + GEMM (K = KH*KW*C, column order ky, kx, c):
//   forward          Y[rows,O]  = col(X)[rows,K] @ W[O,K]^T (+ bias, ReLU)
//   backward data    dcol       = dY[rows,O] @ W[O,K];  dX = col2im(dcol)
//   backward weight  dW[O,K]   += dY^T[O,rows] @ col(X)[rows,K];  db += sum_rows dY
// Rows are processed in chunks whose column buffer (4 MB a thread) stays in cache.
// Each thread of the pool owns a contiguous range of output rows (whole images for the
// backward data pass, so that col2im never races) and runs single-threaded GEMMs on it.
// Large K is split into blocks of kernel rows (ky) so the column buffer stays small and
// each block of W is packed once per thread; every row of a block is one contiguous copy
// of KW*C floats thanks to the channels-last layout.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "isa.h"
#include "kernels.h"
#include "parallel.h"
#include "settings.h"

namespace qc {

namespace {

// column-buffer bytes per thread (settings: QCAPS_CONV_WORKSPACE_KB)
size_t col_bytes_per_thread() { return std::max<size_t>(64, settings().convWorkspaceKB) << 10; }
constexpr size_t kMaxUnblockedK = 4096;

struct Plan {
  size_t K, rowLen;  // rowLen = KW*C (one ky)
  int kyPerBlock;    // kernel rows per K block
  size_t chunkRows;  // rows per column-buffer fill
};

Plan plan(const ConvGeom& g) {
  Plan p;
  p.rowLen = (size_t)g.KW * g.C;
  p.K = p.rowLen * g.KH;
  p.kyPerBlock = p.K > kMaxUnblockedK ? std::max<int>(1, (int)(2048 / p.rowLen)) : g.KH;
  p.kyPerBlock = std::min(p.kyPerBlock, g.KH);
  size_t blockK = p.rowLen * p.kyPerBlock;
  p.chunkRows = std::max<size_t>(1, col_bytes_per_thread() / (blockK * sizeof(float)));
  return p;
}

bool use_winograd(const ConvGeom& g, bool fast = true) { return fast && settings().winograd && winograd_applies(g); }

bool use_fft(const ConvGeom& g, bool fast = true) { return fast && settings().fftConv && fft_applies(g); }

bool is_pointwise(const ConvGeom& g) { return g.KH == 1 && g.KW == 1 && g.stride == 1 && g.pad == 0; }

// col[r - r0, :] = kernel rows ky0..ky1-1 of the patch of output row r (zero outside the image)
void im2col(const ConvGeom& g, const float* x, size_t r0, size_t r1, int ky0, int ky1, float* col) {
  const size_t rowLen = (size_t)g.KW * g.C;
  const size_t width = rowLen * (ky1 - ky0);
  const size_t P = (size_t)g.OH * g.OW;
  for (size_t r = r0; r < r1; r++) {
    float* dst = col + (r - r0) * width;
    int b = (int)(r / P), rem = (int)(r % P);
    int oy = rem / g.OW, ox = rem % g.OW;
    int iy0 = oy * g.stride - g.pad, ix0 = ox * g.stride - g.pad;
    int kx0 = std::max(0, -ix0), kx1 = std::min(g.KW, g.W - ix0);
    for (int ky = ky0; ky < ky1; ky++, dst += rowLen) {
      int iy = iy0 + ky;
      if (iy < 0 || iy >= g.H || kx1 <= kx0) {
        memset(dst, 0, rowLen * sizeof(float));
        continue;
      }
      if (kx0 > 0) memset(dst, 0, (size_t)kx0 * g.C * sizeof(float));
      const float* src = x + (((size_t)b * g.H + iy) * g.W + (ix0 + kx0)) * g.C;
      memcpy(dst + (size_t)kx0 * g.C, src, (size_t)(kx1 - kx0) * g.C * sizeof(float));
      if (kx1 < g.KW) memset(dst + (size_t)kx1 * g.C, 0, (size_t)(g.KW - kx1) * g.C * sizeof(float));
    }
  }
}

// dx[patch rows ky0..ky1-1 of output row r] += dcol[r - r0, :]
void col2im_add(const ConvGeom& g, const float* dcol, size_t r0, size_t r1, int ky0, int ky1, float* dx) {
  const size_t rowLen = (size_t)g.KW * g.C;
  const size_t width = rowLen * (ky1 - ky0);
  const size_t P = (size_t)g.OH * g.OW;
  for (size_t r = r0; r < r1; r++) {
    const float* src = dcol + (r - r0) * width;
    int b = (int)(r / P), rem = (int)(r % P);
    int oy = rem / g.OW, ox = rem % g.OW;
    int iy0 = oy * g.stride - g.pad, ix0 = ox * g.stride - g.pad;
    int kx0 = std::max(0, -ix0), kx1 = std::min(g.KW, g.W - ix0);
    for (int ky = ky0; ky < ky1; ky++) {
      int iy = iy0 + ky;
      if (iy < 0 || iy >= g.H || kx1 <= kx0) continue;
      float* d = dx + (((size_t)b * g.H + iy) * g.W + (ix0 + kx0)) * g.C;
      const float* s = src + ((size_t)(ky - ky0) * g.KW + kx0) * g.C;
      size_t n = (size_t)(kx1 - kx0) * g.C;
      for (size_t i = 0; i < n; i++) d[i] += s[i];
    }
  }
}

// Calls fn(a, lda, k0) for each block of the column matrix of rows c0..c1 (k0: the block's
// first column of K); pointwise convolutions use x itself as the column matrix.
template <typename Fn>
void for_each_column_block(const ConvGeom& g, const Plan& p, const float* x, size_t c0, size_t c1, int thread, Fn fn) {
  if (is_pointwise(g)) {
    fn(x + c0 * p.K, (int)p.K, (size_t)0);
    return;
  }
  float* col = workspace(thread, p.chunkRows * p.rowLen * p.kyPerBlock);
  for (int ky0 = 0; ky0 < g.KH; ky0 += p.kyPerBlock) {
    int ky1 = std::min(g.KH, ky0 + p.kyPerBlock);
    im2col(g, x, c0, c1, ky0, ky1, col);
    fn(static_cast<const float*>(col), (int)(p.rowLen * (ky1 - ky0)), ky0 * p.rowLen);
  }
}

}  // namespace

void bias_relu_rows(float* y, size_t rows, int O, const float* bias, bool relu) {
  if (!bias && !relu) return;
  for (size_t r = 0; r < rows; r++) {
    float* yr = y + r * O;
    if (bias)
      for (int o = 0; o < O; o++) yr[o] += bias[o];
    if (relu)
      for (int o = 0; o < O; o++) yr[o] = yr[o] > 0.f ? yr[o] : 0.f;
  }
}

void bias_gradient(const float* dy, size_t rows, int O, float* db) {
  const int T = pool_threads();
  std::vector<double> part((size_t)T * O, 0.0);
  parallel_for(rows, [&](size_t rb, size_t re, int t) {
    double* a = &part[(size_t)t * O];
    for (size_t r = rb; r < re; r++)
      for (int o = 0; o < O; o++) a[o] += dy[r * O + o];
  });
  for (int t = 0; t < T; t++)
    for (int o = 0; o < O; o++) db[o] += (float)part[(size_t)t * O + o];
}

FixedMethod conv2d_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                           const QuantSpec* q, ConvMode mode) {
  // The quantized forward (mode.fixed_point) gives the same bits on every CPU, BLAS and thread
  // count: fixed-point values get exact integer sums wherever they apply, integer Winograd
  // included (the correctly rounded sums that the ONNX and C exports compute too); any other
  // convolution (the first layer's float image, a layer fixed_point_conv declines) runs in the
  // one order of ordered_conv (native/smallconv.cc), as the C export's conv_float_input.
  // Float values elsewhere: Winograd, the DFT, then im2col + GEMM.
  if (mode.fixed_point) {
    const FixedMethod fixed = fixed_point_conv(g, x, w, bias, y, relu, 2);
    if (fixed != FixedMethod::declined) {
      if (q) quantize(y, y, (size_t)g.B * g.OH * g.OW * g.O, *q);
    } else {
      ordered_conv(g, x, w, bias, y, relu, q, active_isa());
    }
    return fixed;
  }
  const FixedMethod fixed = FixedMethod::declined;
  bool done = true;
  if (use_winograd(g, mode.fast))
    winograd_forward(g, x, w, bias, y, relu);
  else if (use_fft(g, mode.fast))
    fft_forward(g, x, w, bias, y, relu);
  else
    done = false;
  if (done) {
    if (q) quantize(y, y, (size_t)g.B * g.OH * g.OW * g.O, *q);
    return fixed;
  }
  if (small_patch_conv(g, x, w, bias, y, relu, q)) return fixed;  // the same bits as below, for K <= 128
  const size_t rows = (size_t)g.B * g.OH * g.OW;
  const Plan p = plan(g);
  const int K = (int)p.K;
  parallel_for(rows, [&](size_t rb, size_t re, int t) {
    for (size_t c0 = rb; c0 < re; c0 += p.chunkRows) {
      size_t c1 = std::min(re, c0 + p.chunkRows);
      int n = (int)(c1 - c0);
      float* yc = y + c0 * g.O;
      for_each_column_block(g, p, x, c0, c1, t, [&](const float* a, int width, size_t k0) {
        sgemm_serial(false, true, n, g.O, width, 1.f, a, width, w + k0, K, k0 == 0 ? 0.f : 1.f, yc, g.O);
      });
      bias_relu_rows(yc, (size_t)n, g.O, bias, relu);
      if (q) quantize_slice(yc, yc, (size_t)n * g.O, *q, c0 * g.O);  // while the chunk is in cache
    }
  });
  return fixed;
}

void conv2d_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  if (use_winograd(g)) return winograd_backward_data(g, dy, w, dx);
  if (use_fft(g)) return fft_backward_data(g, dy, w, dx);
  const Plan p = plan(g);
  const int K = (int)p.K;
  const size_t P = (size_t)g.OH * g.OW;
  const size_t imageX = (size_t)g.H * g.W * g.C;
  if (is_pointwise(g)) {
    sgemm(false, false, g.B * (int)P, K, g.O, 1.f, dy, g.O, w, K, 0.f, dx, K);
    return;
  }
  // whole images per thread: col2im of different images never touch the same dx
  parallel_for((size_t)g.B, [&](size_t bb, size_t be, int t) {
    memset(dx + bb * imageX, 0, (be - bb) * imageX * sizeof(float));
    float* dcol = workspace(t, p.chunkRows * p.rowLen * p.kyPerBlock);
    for (size_t c0 = bb * P; c0 < be * P; c0 += p.chunkRows) {
      size_t c1 = std::min(be * P, c0 + p.chunkRows);
      for (int ky0 = 0; ky0 < g.KH; ky0 += p.kyPerBlock) {
        int ky1 = std::min(g.KH, ky0 + p.kyPerBlock);
        int width = (int)(p.rowLen * (ky1 - ky0));
        sgemm_serial(false, false, (int)(c1 - c0), width, g.O, 1.f, dy + c0 * g.O, g.O, w + ky0 * p.rowLen, K, 0.f,
                     dcol, width);
        col2im_add(g, dcol, c0, c1, ky0, ky1, dx);
      }
    }
  });
}

void conv2d_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db) {
  if (use_winograd(g)) return winograd_backward_weight(g, x, dy, dw, db);
  if (use_fft(g)) return fft_backward_weight(g, x, dy, dw, db);
  const size_t rows = (size_t)g.B * g.OH * g.OW;
  const Plan p = plan(g);
  const int K = (int)p.K;
  const size_t nw = (size_t)g.O * K;
  const int T = pool_threads();
  // thread 0 accumulates into dw, the others into zeroed partial sums added at the end
  std::vector<float*> parts(T, nullptr);
  parallel_for(rows, [&](size_t rb, size_t re, int t) {
    float* acc = dw;
    if (t > 0) {
      acc = workspace(8 + t, nw);
      memset(acc, 0, nw * sizeof(float));
      parts[t] = acc;
    }
    for (size_t c0 = rb; c0 < re; c0 += p.chunkRows) {
      size_t c1 = std::min(re, c0 + p.chunkRows);
      int n = (int)(c1 - c0);
      for_each_column_block(g, p, x, c0, c1, t, [&](const float* a, int width, size_t k0) {
        sgemm_serial(true, false, g.O, width, n, 1.f, dy + c0 * g.O, g.O, a, width, 1.f, acc + k0, K);
      });
    }
  });
  if (T > 1) {
    parallel_for(nw, [&](size_t b, size_t e, int) {
      for (int t = 1; t < T; t++)
        if (parts[t])
          for (size_t i = b; i < e; i++) dw[i] += parts[t][i];
    });
  }
  if (db) bias_gradient(dy, rows, g.O, db);
}

void relu_mask(float* dy, const float* y, size_t n) {
  parallel_for(n, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; i++) dy[i] = y[i] > 0.f ? dy[i] : 0.f;
  });
}

}  // namespace qc
