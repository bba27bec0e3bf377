// Channels-last 2-D convolution as im2col + GEMM, chunked over output rows so that the
// column buffer stays bounded (QCAPS_CONV_WORKSPACE_MB, default 64) and is reused.
//   forward:        Y[rows,O]  = col(X)[rows,K] @ W[O,K]^T        (K = KH*KW*C, order ky,kx,c)
//   backward data:  dcol       = dY[rows,O] @ W[O,K];  dX = col2im(dcol)
//   backward weight dW[O,K]   += dY^T[O,rows] @ col(X)[rows,K];  db += sum_rows dY
// Channels-last makes every (ky) slice of a patch one contiguous run of KW*C floats.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace qc {

static size_t chunk_rows(const ConvGeom& g) {
  static size_t budget = 0;
  if (budget == 0) {
    const char* env = getenv("QCAPS_CONV_WORKSPACE_MB");
    budget = (size_t)(env ? std::max(1, atoi(env)) : 64) << 20;
  }
  size_t K = (size_t)g.KH * g.KW * g.C;
  size_t rows = budget / (K * sizeof(float));
  return std::max<size_t>(rows, 1);
}

static bool is_pointwise(const ConvGeom& g) {
  return g.KH == 1 && g.KW == 1 && g.stride == 1 && g.pad == 0;
}

// col[r - r0, :] = patch of output row r (flat over b, oy, ox), zero outside the image.
static void im2col(const ConvGeom& g, const float* x, size_t r0, size_t r1, float* col) {
  const size_t K = (size_t)g.KH * g.KW * g.C;
  const size_t rowLen = (size_t)g.KW * g.C;
  const size_t P = (size_t)g.OH * g.OW;
  for (size_t r = r0; r < r1; r++) {
    float* dst = col + (r - r0) * K;
    int b = (int)(r / P), rem = (int)(r % P);
    int oy = rem / g.OW, ox = rem % g.OW;
    int iy0 = oy * g.stride - g.pad, ix0 = ox * g.stride - g.pad;
    int kx0 = std::max(0, -ix0), kx1 = std::min(g.KW, g.W - ix0);
    for (int ky = 0; ky < g.KH; ky++, dst += rowLen) {
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

// dx[patch of row r] += dcol[r - r0, :]
static void col2im_add(const ConvGeom& g, const float* dcol, size_t r0, size_t r1, float* dx) {
  const size_t K = (size_t)g.KH * g.KW * g.C;
  const size_t P = (size_t)g.OH * g.OW;
  for (size_t r = r0; r < r1; r++) {
    const float* src = dcol + (r - r0) * K;
    int b = (int)(r / P), rem = (int)(r % P);
    int oy = rem / g.OW, ox = rem % g.OW;
    int iy0 = oy * g.stride - g.pad, ix0 = ox * g.stride - g.pad;
    int kx0 = std::max(0, -ix0), kx1 = std::min(g.KW, g.W - ix0);
    for (int ky = 0; ky < g.KH; ky++) {
      int iy = iy0 + ky;
      if (iy < 0 || iy >= g.H || kx1 <= kx0) continue;
      float* d = dx + (((size_t)b * g.H + iy) * g.W + (ix0 + kx0)) * g.C;
      const float* s = src + ((size_t)ky * g.KW + kx0) * g.C;
      size_t n = (size_t)(kx1 - kx0) * g.C;
      for (size_t i = 0; i < n; i++) d[i] += s[i];
    }
  }
}

void conv2d_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu) {
  const size_t K = (size_t)g.KH * g.KW * g.C;
  const size_t rows = (size_t)g.B * g.OH * g.OW;
  const size_t step = is_pointwise(g) ? rows : chunk_rows(g);
  float* col = is_pointwise(g) ? nullptr : workspace(0, std::min(step, rows) * K);
  for (size_t r0 = 0; r0 < rows; r0 += step) {
    size_t r1 = std::min(rows, r0 + step);
    const float* a = x + r0 * K;
    if (col) {
      im2col(g, x, r0, r1, col);
      a = col;
    }
    float* yc = y + r0 * g.O;
    sgemm(false, true, (int)(r1 - r0), g.O, (int)K, 1.f, a, (int)K, w, (int)K, 0.f, yc, g.O);
    if (bias || relu) {
      for (size_t r = 0; r < r1 - r0; r++) {
        float* yr = yc + r * g.O;
        if (bias)
          for (int o = 0; o < g.O; o++) yr[o] += bias[o];
        if (relu)
          for (int o = 0; o < g.O; o++) yr[o] = yr[o] > 0.f ? yr[o] : 0.f;
      }
    }
  }
}

void conv2d_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const size_t K = (size_t)g.KH * g.KW * g.C;
  const size_t rows = (size_t)g.B * g.OH * g.OW;
  if (is_pointwise(g)) {
    sgemm(false, false, (int)rows, (int)K, g.O, 1.f, dy, g.O, w, (int)K, 0.f, dx, (int)K);
    return;
  }
  memset(dx, 0, (size_t)g.B * g.H * g.W * g.C * sizeof(float));
  const size_t step = chunk_rows(g);
  float* dcol = workspace(0, std::min(step, rows) * K);
  for (size_t r0 = 0; r0 < rows; r0 += step) {
    size_t r1 = std::min(rows, r0 + step);
    sgemm(false, false, (int)(r1 - r0), (int)K, g.O, 1.f, dy + r0 * g.O, g.O, w, (int)K, 0.f, dcol, (int)K);
    col2im_add(g, dcol, r0, r1, dx);
  }
}

void conv2d_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db) {
  const size_t K = (size_t)g.KH * g.KW * g.C;
  const size_t rows = (size_t)g.B * g.OH * g.OW;
  const size_t step = is_pointwise(g) ? rows : chunk_rows(g);
  float* col = is_pointwise(g) ? nullptr : workspace(0, std::min(step, rows) * K);
  for (size_t r0 = 0; r0 < rows; r0 += step) {
    size_t r1 = std::min(rows, r0 + step);
    const float* a = x + r0 * K;
    if (col) {
      im2col(g, x, r0, r1, col);
      a = col;
    }
    sgemm(true, false, g.O, (int)K, (int)(r1 - r0), 1.f, dy + r0 * g.O, g.O, a, (int)K, 1.f, dw, (int)K);
  }
  if (db) {
    for (size_t r = 0; r < rows; r++) {
      const float* d = dy + r * g.O;
      for (int o = 0; o < g.O; o++) db[o] += d[o];
    }
  }
}

}  // namespace qc
