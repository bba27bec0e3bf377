// Winograd F(2x2, 3x3) convolution (Lavin & Gray 2016) for 3x3 stride-1 layers, channels-last.
// Per output tile of 2x2 and input tile d of 4x4 (per channel):
//   y = A^T [ (G g G^T) (.) (B^T d B) ] A
// The elementwise product summed over channels becomes 16 GEMMs (one per transformed
// position xi): M_xi[t,o] = sum_c V_xi[t,c] U_xi[o,c], with 2.25x fewer multiplications
// than direct convolution. Tiles are processed in blocks small enough to stay in cache.
//   backward data   = the same forward on dY with the kernel rotated by 180 degrees and
//                     its channel axes swapped, padding 2 - pad
//   backward weight: dU_xi[o,c] = sum_t dM_xi[t,o] V_xi[t,c] with dM = A dy A^T, then
//                     dW = G^T dU G
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace qc {

namespace {

struct Tiles {
  int B, H, W, C, O, pad, OH, OW, TH, TW;
  size_t count() const { return (size_t)B * TH * TW; }
};

size_t block_tiles(int C, int O) {
  static const size_t budget = [] {
    const char* e = getenv("QCAPS_WINOGRAD_KB");
    return (size_t)(e ? atoi(e) : 2048) << 10;
  }();
  size_t t = budget / (16 * sizeof(float) * (size_t)(C + O));
  return std::max<size_t>(16, std::min<size_t>(t, 1024));
}

// U[xi][o][c] = (G g G^T)[xi] with g[ky][kx] = w(o, c, ky, kx)
template <typename Weight>
void transform_kernel(int O, int C, Weight w, float* U) {
  const size_t OC = (size_t)O * C;
  parallel_for((size_t)O, [&](size_t ob, size_t oe, int) {
    for (size_t o = ob; o < oe; o++)
      for (int c = 0; c < C; c++) {
        float g[3][3], t[4][3];
        for (int ky = 0; ky < 3; ky++)
          for (int kx = 0; kx < 3; kx++) g[ky][kx] = w((int)o, c, ky, kx);
        for (int j = 0; j < 3; j++) {
          t[0][j] = g[0][j];
          t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
          t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
          t[3][j] = g[2][j];
        }
        for (int i = 0; i < 4; i++) {
          float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
          for (int j = 0; j < 4; j++) U[(size_t)(i * 4 + j) * OC + o * C + c] = u[j];
        }
      }
  });
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QC_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QC_VECTOR_CLONES
#endif

// The transforms below loop over channels innermost, so that they vectorise.

// V[xi][k][:] = (B^T d B)[xi] for tiles t0..t0+n-1 of input x [B,H,W,C]
QC_VECTOR_CLONES
void transform_input(const Tiles& T, const float* x, size_t t0, size_t n, float* V, std::vector<float>& scratch) {
  const int C = T.C;
  scratch.resize((size_t)32 * C);
  float* d = scratch.data();            // 16 rows of C: the 4x4 input tile
  float* r = scratch.data() + 16 * C;   // 16 rows of C: B^T d
  const size_t stride = n * C;          // between xi planes of V
  for (size_t k = 0; k < n; k++) {
    size_t t = t0 + k;
    int b = (int)(t / ((size_t)T.TH * T.TW));
    int rem = (int)(t % ((size_t)T.TH * T.TW));
    int iy0 = (rem / T.TW) * 2 - T.pad, ix0 = (rem % T.TW) * 2 - T.pad;
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++) {
        int iy = iy0 + i, ix = ix0 + j;
        float* dst = d + (size_t)(i * 4 + j) * C;
        if (iy < 0 || iy >= T.H || ix < 0 || ix >= T.W)
          memset(dst, 0, C * sizeof(float));
        else
          memcpy(dst, x + (((size_t)b * T.H + iy) * T.W + ix) * C, C * sizeof(float));
      }
    for (int j = 0; j < 4; j++) {  // B^T d: combine rows
      const float *d0 = d + (0 * 4 + j) * C, *d1 = d + (1 * 4 + j) * C, *d2 = d + (2 * 4 + j) * C,
                  *d3 = d + (3 * 4 + j) * C;
      float *r0 = r + (0 * 4 + j) * C, *r1 = r + (1 * 4 + j) * C, *r2 = r + (2 * 4 + j) * C, *r3 = r + (3 * 4 + j) * C;
      for (int c = 0; c < C; c++) {
        r0[c] = d0[c] - d2[c];
        r1[c] = d1[c] + d2[c];
        r2[c] = d2[c] - d1[c];
        r3[c] = d1[c] - d3[c];
      }
    }
    float* v = V + k * C;
    for (int i = 0; i < 4; i++) {  // (.) B: combine columns
      const float *a0 = r + (i * 4 + 0) * C, *a1 = r + (i * 4 + 1) * C, *a2 = r + (i * 4 + 2) * C,
                  *a3 = r + (i * 4 + 3) * C;
      float *v0 = v + (i * 4 + 0) * stride, *v1 = v + (i * 4 + 1) * stride, *v2 = v + (i * 4 + 2) * stride,
            *v3 = v + (i * 4 + 3) * stride;
      for (int c = 0; c < C; c++) {
        v0[c] = a0[c] - a2[c];
        v1[c] = a1[c] + a2[c];
        v2[c] = a2[c] - a1[c];
        v3[c] = a1[c] - a3[c];
      }
    }
  }
}

// y tile = A^T M A (+ bias, ReLU), written where the output exists
QC_VECTOR_CLONES
void transform_output(const Tiles& T, const float* M, size_t t0, size_t n, const float* bias, bool relu, float* y,
                      std::vector<float>& scratch) {
  const int O = T.O;
  const size_t stride = n * O;
  scratch.resize((size_t)12 * O);
  float* r = scratch.data();  // 8 rows of O: A^T M
  float* out = scratch.data() + 8 * O;
  for (size_t k = 0; k < n; k++) {
    size_t t = t0 + k;
    int b = (int)(t / ((size_t)T.TH * T.TW));
    int rem = (int)(t % ((size_t)T.TH * T.TW));
    int oy0 = (rem / T.TW) * 2, ox0 = (rem % T.TW) * 2;
    const float* m = M + k * O;
    for (int j = 0; j < 4; j++) {
      const float *m0 = m + (0 * 4 + j) * stride, *m1 = m + (1 * 4 + j) * stride, *m2 = m + (2 * 4 + j) * stride,
                  *m3 = m + (3 * 4 + j) * stride;
      float *r0 = r + j * O, *r1 = r + (4 + j) * O;
      for (int o = 0; o < O; o++) {
        r0[o] = m0[o] + m1[o] + m2[o];
        r1[o] = m1[o] - m2[o] - m3[o];
      }
    }
    for (int i = 0; i < 2; i++) {
      const float *a0 = r + (i * 4 + 0) * O, *a1 = r + (i * 4 + 1) * O, *a2 = r + (i * 4 + 2) * O,
                  *a3 = r + (i * 4 + 3) * O;
      float *y0 = out + (i * 2) * O, *y1 = out + (i * 2 + 1) * O;
      for (int o = 0; o < O; o++) {
        float bo = bias ? bias[o] : 0.f;
        y0[o] = a0[o] + a1[o] + a2[o] + bo;
        y1[o] = a1[o] - a2[o] - a3[o] + bo;
      }
      if (relu)
        for (int o = 0; o < 2 * O; o++) y0[o] = y0[o] > 0.f ? y0[o] : 0.f;
      for (int j = 0; j < 2; j++)
        if (oy0 + i < T.OH && ox0 + j < T.OW)
          memcpy(y + (((size_t)b * T.OH + oy0 + i) * T.OW + ox0 + j) * O, out + (i * 2 + j) * O, O * sizeof(float));
    }
  }
}

// dM[xi][k][:] = (A dy A^T)[xi] for the 2x2 dy tile (zero where the output does not exist)
QC_VECTOR_CLONES
void transform_grad_output(const Tiles& T, const float* dy, size_t t0, size_t n, float* dM, std::vector<float>& scratch) {
  const int O = T.O;
  const size_t stride = n * O;
  scratch.resize((size_t)12 * O);
  float* g = scratch.data();       // 4 rows of O: the 2x2 dy tile
  float* r = scratch.data() + 4 * O;  // 8 rows of O: A dy (4 x 2)
  for (size_t k = 0; k < n; k++) {
    size_t t = t0 + k;
    int b = (int)(t / ((size_t)T.TH * T.TW));
    int rem = (int)(t % ((size_t)T.TH * T.TW));
    int oy0 = (rem / T.TW) * 2, ox0 = (rem % T.TW) * 2;
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        float* dst = g + (i * 2 + j) * O;
        if (oy0 + i < T.OH && ox0 + j < T.OW)
          memcpy(dst, dy + (((size_t)b * T.OH + oy0 + i) * T.OW + ox0 + j) * O, O * sizeof(float));
        else
          memset(dst, 0, O * sizeof(float));
      }
    for (int j = 0; j < 2; j++) {  // A dy: rows [g0, g0 + g1, g0 - g1, -g1]
      const float *g0 = g + j * O, *g1 = g + (2 + j) * O;
      float *r0 = r + (0 * 2 + j) * O, *r1 = r + (1 * 2 + j) * O, *r2 = r + (2 * 2 + j) * O, *r3 = r + (3 * 2 + j) * O;
      for (int o = 0; o < O; o++) {
        r0[o] = g0[o];
        r1[o] = g0[o] + g1[o];
        r2[o] = g0[o] - g1[o];
        r3[o] = -g1[o];
      }
    }
    float* m = dM + k * O;
    for (int i = 0; i < 4; i++) {  // (.) A^T: columns [r0, r0 + r1, r0 - r1, -r1]
      const float *a0 = r + (i * 2) * O, *a1 = r + (i * 2 + 1) * O;
      float *m0 = m + (i * 4 + 0) * stride, *m1 = m + (i * 4 + 1) * stride, *m2 = m + (i * 4 + 2) * stride,
            *m3 = m + (i * 4 + 3) * stride;
      for (int o = 0; o < O; o++) {
        m0[o] = a0[o];
        m1[o] = a0[o] + a1[o];
        m2[o] = a0[o] - a1[o];
        m3[o] = -a1[o];
      }
    }
  }
}

// y = conv3x3(x) with U already transformed: x [B,H,W,C] -> y [B,OH,OW,O]
void winograd_run(const Tiles& T, const float* x, const float* U, const float* bias, bool relu, float* y) {
  const size_t total = T.count(), tb = block_tiles(T.C, T.O);
  const size_t blocks = (total + tb - 1) / tb;
  const size_t OC = (size_t)T.O * T.C;
  parallel_for(blocks, [&](size_t bb, size_t be, int thread) {
    float* V = workspace(thread, 16 * tb * T.C);
    float* M = workspace(8 + thread, 16 * tb * T.O);
    std::vector<float> d, e;
    for (size_t blk = bb; blk < be; blk++) {
      size_t t0 = blk * tb, n = std::min(tb, total - t0);
      transform_input(T, x, t0, n, V, d);
      for (int xi = 0; xi < 16; xi++)
        sgemm_serial(false, true, (int)n, T.O, T.C, 1.f, V + xi * n * T.C, T.C, U + xi * OC, T.C, 0.f, M + xi * n * T.O,
                     T.O);
      transform_output(T, M, t0, n, bias, relu, y, e);
    }
  });
}

}  // namespace

bool winograd_applies(const ConvGeom& g) {
  return g.KH == 3 && g.KW == 3 && g.stride == 1 && g.pad <= 2 && g.C >= 16 && g.O >= 16;
}

void winograd_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu) {
  Tiles T{g.B, g.H, g.W, g.C, g.O, g.pad, g.OH, g.OW, (g.OH + 1) / 2, (g.OW + 1) / 2};
  std::vector<float> U((size_t)16 * g.O * g.C);
  const int C = g.C;
  transform_kernel(g.O, g.C, [&](int o, int c, int ky, int kx) { return w[(((size_t)o * 3 + ky) * 3 + kx) * C + c]; },
                   U.data());
  winograd_run(T, x, U.data(), bias, relu, y);
}

void winograd_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  // dX = conv(dY, W rotated 180 degrees with O and C swapped), padding 2 - pad
  Tiles T{g.B, g.OH, g.OW, g.O, g.C, 2 - g.pad, g.H, g.W, (g.H + 1) / 2, (g.W + 1) / 2};
  std::vector<float> U((size_t)16 * g.O * g.C);
  const int C = g.C;
  transform_kernel(g.C, g.O,
                   [&](int c, int o, int ky, int kx) { return w[(((size_t)o * 3 + (2 - ky)) * 3 + (2 - kx)) * C + c]; },
                   U.data());
  winograd_run(T, dy, U.data(), nullptr, false, dx);
}

void winograd_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db) {
  Tiles T{g.B, g.H, g.W, g.C, g.O, g.pad, g.OH, g.OW, (g.OH + 1) / 2, (g.OW + 1) / 2};
  const size_t total = T.count(), tb = block_tiles(T.C, T.O);
  const size_t blocks = (total + tb - 1) / tb;
  const size_t OC = (size_t)g.O * g.C;
  const int threads = pool_threads();
  std::vector<std::vector<float>> dU(threads);
  parallel_for(blocks, [&](size_t bb, size_t be, int thread) {
    float* V = workspace(thread, 16 * tb * T.C);
    float* dM = workspace(8 + thread, 16 * tb * T.O);
    std::vector<float>& acc = dU[thread];
    acc.assign(16 * OC, 0.f);
    std::vector<float> d, e;
    for (size_t blk = bb; blk < be; blk++) {
      size_t t0 = blk * tb, n = std::min(tb, total - t0);
      transform_input(T, x, t0, n, V, d);
      transform_grad_output(T, dy, t0, n, dM, e);
      for (int xi = 0; xi < 16; xi++)
        sgemm_serial(true, false, g.O, g.C, (int)n, 1.f, dM + xi * n * g.O, g.O, V + xi * n * g.C, g.C, 1.f,
                     acc.data() + xi * OC, g.C);
    }
  });
  // reduce the per-thread transformed gradients, then dW += G^T dU G
  for (int t = 1; t < threads; t++)
    if (!dU[t].empty()) {
      if (dU[0].empty()) dU[0].assign(16 * OC, 0.f);
      for (size_t i = 0; i < 16 * OC; i++) dU[0][i] += dU[t][i];
    }
  const float* u = dU[0].data();
  const int C = g.C;
  parallel_for((size_t)g.O, [&](size_t ob, size_t oe, int) {
    for (size_t o = ob; o < oe; o++)
      for (int c = 0; c < C; c++) {
        float m[4][4], r[3][4];
        for (int xi = 0; xi < 16; xi++) m[xi / 4][xi % 4] = u[(size_t)xi * OC + o * C + c];
        for (int j = 0; j < 4; j++) {  // G^T dU: rows [u0 + u1/2 + u2/2, u1/2 - u2/2, u1/2 + u2/2 + u3]
          r[0][j] = m[0][j] + 0.5f * (m[1][j] + m[2][j]);
          r[1][j] = 0.5f * (m[1][j] - m[2][j]);
          r[2][j] = 0.5f * (m[1][j] + m[2][j]) + m[3][j];
        }
        for (int i = 0; i < 3; i++) {  // (.) G
          float* out = dw + (((size_t)o * 3 + i) * 3) * C + c;
          out[0] += r[i][0] + 0.5f * (r[i][1] + r[i][2]);
          out[(size_t)C] += 0.5f * (r[i][1] - r[i][2]);
          out[(size_t)2 * C] += 0.5f * (r[i][1] + r[i][2]) + r[i][3];
        }
      }
  });
  if (db) bias_gradient(dy, (size_t)g.B * g.OH * g.OW, g.O, db);
}

}  // namespace qc
