// Winograd convolution F(m x m, 3x3) (Lavin & Gray 2016) for 3x3 stride-1 layers,
// channels-last, with output tiles of m = 4 (input tiles of 6x6) where the output is at
// least 7 wide, else m = 2 (4x4 input tiles). Per output tile and input tile d:
//   y = A^T [ (G g G^T) (.) (B^T d B) ] A
// The elementwise product summed over channels becomes alpha^2 GEMMs (alpha = m + 2, one
// per transformed position xi): M_xi[t,o] = sum_c V_xi[t,c] U_xi[o,c]. Multiplications per
// output fall from 9 (direct) to 4 (m = 2) or 2.25 (m = 4). Tiles are processed in blocks
// small enough to stay in cache.
//   backward data   = the same forward on dY with the kernel rotated by 180 degrees and
//                     its channel axes swapped, padding 2 - pad
//   backward weight: dU_xi[o,c] = sum_t dM_xi[t,o] V_xi[t,c] with dM = A dy A^T, then
//                     dW = G^T dU G
// F(2x2, 3x3), points 0, 1, -1, inf:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// F(4x4, 3x3), points 0, 1, -1, 2, -2, inf:
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "settings.h"

namespace qc {

namespace {

struct Tiles {
  int B, H, W, C, O, pad, OH, OW;
  int m;       // output tile side: 2 or 4
  int TH, TW;  // tiles per column and per row
  int alpha() const { return m + 2; }
  int planes() const { return (m + 2) * (m + 2); }
  size_t count() const { return (size_t)B * TH * TW; }
};

// settings().winogradTile (QCAPS_WINOGRAD_TILE) = 2 or 4 forces a tile size (benchmarks and
// tests of both)
int tile_side(int OH, int OW) {
  const int forced = settings().winogradTile;
  if (forced == 2 || forced == 4) return forced;
  return std::min(OH, OW) >= 7 ? 4 : 2;
}

Tiles make_tiles(int B, int H, int W, int C, int O, int pad, int OH, int OW) {
  const int m = tile_side(OH, OW);
  return Tiles{B, H, W, C, O, pad, OH, OW, m, (OH + m - 1) / m, (OW + m - 1) / m};
}

size_t block_tiles(const Tiles& T) {
  const size_t budget = settings().winogradKB << 10;  // QCAPS_WINOGRAD_KB
  size_t t = budget / ((size_t)T.planes() * sizeof(float) * (size_t)(T.C + T.O));
  return std::max<size_t>(16, std::min<size_t>(t, 1024));
}

// ---- one-dimensional transforms; each vector holds n channels and the loops run over them

// out = B^T in (alpha -> alpha)
QC_VECTOR_CLONES
void input_1d(int m, const float* const* in, float* const* out, int n) {
  if (m == 2) {
    const float *d0 = in[0], *d1 = in[1], *d2 = in[2], *d3 = in[3];
    float *r0 = out[0], *r1 = out[1], *r2 = out[2], *r3 = out[3];
    #pragma GCC ivdep  // the vectors never overlap
    for (int c = 0; c < n; c++) {
      r0[c] = d0[c] - d2[c];
      r1[c] = d1[c] + d2[c];
      r2[c] = d2[c] - d1[c];
      r3[c] = d1[c] - d3[c];
    }
  } else {
    const float *d0 = in[0], *d1 = in[1], *d2 = in[2], *d3 = in[3], *d4 = in[4], *d5 = in[5];
    float *r0 = out[0], *r1 = out[1], *r2 = out[2], *r3 = out[3], *r4 = out[4], *r5 = out[5];
    #pragma GCC ivdep  // the vectors never overlap
    for (int c = 0; c < n; c++) {
      const float a = d4[c] - 4.f * d2[c], b = d3[c] - 4.f * d1[c];  // r1, r2 = a +- b
      const float p = d4[c] - d2[c], q = 2.f * (d3[c] - d1[c]);       // r3, r4 = p +- q
      r0[c] = 4.f * d0[c] - 5.f * d2[c] + d4[c];
      r1[c] = a + b;
      r2[c] = a - b;
      r3[c] = p + q;
      r4[c] = p - q;
      r5[c] = 4.f * d1[c] - 5.f * d3[c] + d5[c];
    }
  }
}

// out = A^T in (alpha -> m)
QC_VECTOR_CLONES
void output_1d(int m, const float* const* in, float* const* out, int n) {
  if (m == 2) {
    const float *m0 = in[0], *m1 = in[1], *m2 = in[2], *m3 = in[3];
    float *y0 = out[0], *y1 = out[1];
    #pragma GCC ivdep  // the vectors never overlap
    for (int o = 0; o < n; o++) {
      y0[o] = m0[o] + m1[o] + m2[o];
      y1[o] = m1[o] - m2[o] - m3[o];
    }
  } else {
    const float *m0 = in[0], *m1 = in[1], *m2 = in[2], *m3 = in[3], *m4 = in[4], *m5 = in[5];
    float *y0 = out[0], *y1 = out[1], *y2 = out[2], *y3 = out[3];
    #pragma GCC ivdep  // the vectors never overlap
    for (int o = 0; o < n; o++) {
      const float s12 = m1[o] + m2[o], d12 = m1[o] - m2[o], s34 = m3[o] + m4[o], d34 = m3[o] - m4[o];
      y0[o] = m0[o] + s12 + s34;
      y1[o] = d12 + 2.f * d34;
      y2[o] = s12 + 4.f * s34;
      y3[o] = d12 + 8.f * d34 + m5[o];
    }
  }
}

// out = A in (m -> alpha), the transpose of output_1d
QC_VECTOR_CLONES
void grad_output_1d(int m, const float* const* in, float* const* out, int n) {
  if (m == 2) {
    const float *g0 = in[0], *g1 = in[1];
    float *r0 = out[0], *r1 = out[1], *r2 = out[2], *r3 = out[3];
    #pragma GCC ivdep  // the vectors never overlap
    for (int o = 0; o < n; o++) {
      r0[o] = g0[o];
      r1[o] = g0[o] + g1[o];
      r2[o] = g0[o] - g1[o];
      r3[o] = -g1[o];
    }
  } else {
    const float *g0 = in[0], *g1 = in[1], *g2 = in[2], *g3 = in[3];
    float *r0 = out[0], *r1 = out[1], *r2 = out[2], *r3 = out[3], *r4 = out[4], *r5 = out[5];
    #pragma GCC ivdep  // the vectors never overlap
    for (int o = 0; o < n; o++) {
      const float e1 = g0[o] + g2[o], o1 = g1[o] + g3[o];                    // r1, r2 = e1 +- o1
      const float e2 = g0[o] + 4.f * g2[o], o2 = 2.f * g1[o] + 8.f * g3[o];  // r3, r4 = e2 +- o2
      r0[o] = g0[o];
      r1[o] = e1 + o1;
      r2[o] = e1 - o1;
      r3[o] = e2 + o2;
      r4[o] = e2 - o2;
      r5[o] = g3[o];
    }
  }
}

// w = G^T u (alpha -> 3), the transpose of kernel_1d_vec
void kernel_grad_1d(int m, const float* u, float* w) {
  if (m == 2) {
    w[0] = u[0] + 0.5f * (u[1] + u[2]);
    w[1] = 0.5f * (u[1] - u[2]);
    w[2] = 0.5f * (u[1] + u[2]) + u[3];
  } else {
    w[0] = u[0] / 4.f - (u[1] + u[2]) / 6.f + (u[3] + u[4]) / 24.f;
    w[1] = (u[2] - u[1]) / 6.f + (u[3] - u[4]) / 12.f;
    w[2] = -(u[1] + u[2]) / 6.f + (u[3] + u[4]) / 6.f + u[5];
  }
}

// ---- two-dimensional transforms: rows first, then columns

// out = G in (3 -> alpha) for vectors of n channels
QC_VECTOR_CLONES
void kernel_1d_vec(int m, const float* const* in, float* const* out, int n) {
  const float *g0 = in[0], *g1 = in[1], *g2 = in[2];
  if (m == 2) {
    float *u0 = out[0], *u1 = out[1], *u2 = out[2], *u3 = out[3];
#pragma GCC ivdep  // the vectors never overlap
    for (int c = 0; c < n; c++) {
      u0[c] = g0[c];
      u1[c] = 0.5f * (g0[c] + g1[c] + g2[c]);
      u2[c] = 0.5f * (g0[c] - g1[c] + g2[c]);
      u3[c] = g2[c];
    }
  } else {
    float *u0 = out[0], *u1 = out[1], *u2 = out[2], *u3 = out[3], *u4 = out[4], *u5 = out[5];
#pragma GCC ivdep  // the vectors never overlap
    for (int c = 0; c < n; c++) {
      u0[c] = g0[c] / 4.f;
      u1[c] = -(g0[c] + g1[c] + g2[c]) / 6.f;
      u2[c] = -(g0[c] - g1[c] + g2[c]) / 6.f;
      u3[c] = g0[c] / 24.f + g1[c] / 12.f + g2[c] / 6.f;
      u4[c] = g0[c] / 24.f - g1[c] / 12.f + g2[c] / 6.f;
      u5[c] = g2[c];
    }
  }
}

// U[xi][o][c] = (G g G^T)[xi] with g[ky][kx] = w[o, ky, kx, c] (w [O,3,3,C]), or the kernel
// rotated by 180 degrees (rot180), vectorised over the contiguous channels
void transform_kernel(int m, int O, int C, const float* w, bool rot180, float* U) {
  const int a = m + 2;
  const size_t OC = (size_t)O * C;
  parallel_for((size_t)O, [&](size_t ob, size_t oe, int) {
    std::vector<float> t((size_t)6 * 3 * C);  // G g: alpha x 3 rows of C
    const float* in[3];
    float* out[6];
    for (size_t o = ob; o < oe; o++) {
      for (int kx = 0; kx < 3; kx++) {
        for (int ky = 0; ky < 3; ky++)
          in[ky] = w + ((o * 3 + (rot180 ? 2 - ky : ky)) * 3 + (rot180 ? 2 - kx : kx)) * C;
        for (int i = 0; i < a; i++) out[i] = t.data() + (size_t)(i * 3 + kx) * C;
        kernel_1d_vec(m, in, out, C);
      }
      for (int i = 0; i < a; i++) {  // (.) G^T
        for (int kx = 0; kx < 3; kx++) in[kx] = t.data() + (size_t)(i * 3 + kx) * C;
        for (int j = 0; j < a; j++) out[j] = U + (size_t)(i * a + j) * OC + o * C;
        kernel_1d_vec(m, in, out, C);
      }
    }
  });
}

// tile t's batch index and top-left output position
void tile_origin(const Tiles& T, size_t t, int& b, int& oy0, int& ox0) {
  b = (int)(t / ((size_t)T.TH * T.TW));
  int rem = (int)(t % ((size_t)T.TH * T.TW));
  oy0 = (rem / T.TW) * T.m;
  ox0 = (rem % T.TW) * T.m;
}

// V[xi][k][:] = (B^T d B)[xi] for tiles t0..t0+n-1 of input x [B,H,W,C]
void transform_input(const Tiles& T, const float* x, size_t t0, size_t n, float* V, std::vector<float>& scratch) {
  const int C = T.C, a = T.alpha(), P = T.planes();
  scratch.assign((size_t)(P + 1) * C, 0.f);
  float* r = scratch.data();                  // B^T d, one row of C per position
  const float* zeros = r + (size_t)P * C;     // stands for the padding
  const size_t stride = n * C;                // between xi planes of V
  const float* in[6];
  float* out[6];
  for (size_t k = 0; k < n; k++) {
    int b, iy0, ix0;
    tile_origin(T, t0 + k, b, iy0, ix0);
    iy0 -= T.pad;
    ix0 -= T.pad;
    for (int j = 0; j < a; j++) {  // B^T d: combine rows, read straight from x
      const int ix = ix0 + j;
      for (int i = 0; i < a; i++) {
        const int iy = iy0 + i;
        const bool inside = iy >= 0 && iy < T.H && ix >= 0 && ix < T.W;
        in[i] = inside ? x + (((size_t)b * T.H + iy) * T.W + ix) * C : zeros;
        out[i] = r + (size_t)(i * a + j) * C;
      }
      input_1d(T.m, in, out, C);
    }
    for (int i = 0; i < a; i++) {  // (.) B: combine columns
      for (int j = 0; j < a; j++) in[j] = r + (size_t)(i * a + j) * C, out[j] = V + (i * a + j) * stride + k * C;
      input_1d(T.m, in, out, C);
    }
  }
}

QC_VECTOR_CLONES
void add_bias_relu(float* y, const float* bias, bool relu, int n) {
  if (bias)
    for (int o = 0; o < n; o++) y[o] += bias[o];
  if (relu)
    for (int o = 0; o < n; o++) y[o] = y[o] > 0.f ? y[o] : 0.f;
}

// y tile = A^T M A (+ bias, ReLU), written where the output exists
void transform_output(const Tiles& T, const float* M, size_t t0, size_t n, const float* bias, bool relu, float* y,
                      std::vector<float>& scratch) {
  const int O = T.O, a = T.alpha(), m = T.m;
  const size_t stride = n * O;
  scratch.resize((size_t)(a * m + 1) * O);
  float* r = scratch.data();                    // A^T M: m rows of alpha
  float* sink = scratch.data() + (size_t)a * m * O;  // takes the outputs past the edge
  const float* in[6];
  float* out[6];
  for (size_t k = 0; k < n; k++) {
    int b, oy0, ox0;
    tile_origin(T, t0 + k, b, oy0, ox0);
    for (int j = 0; j < a; j++) {
      for (int i = 0; i < a; i++) in[i] = M + (i * a + j) * stride + k * O;
      for (int i = 0; i < m; i++) out[i] = r + (size_t)(i * a + j) * O;
      output_1d(m, in, out, O);
    }
    for (int i = 0; i < m; i++) {  // straight into y
      const int oy = oy0 + i;
      for (int j = 0; j < a; j++) in[j] = r + (size_t)(i * a + j) * O;
      for (int j = 0; j < m; j++) {
        const int ox = ox0 + j;
        out[j] = oy < T.OH && ox < T.OW ? y + (((size_t)b * T.OH + oy) * T.OW + ox) * O : sink;
      }
      output_1d(m, in, out, O);
      if (bias || relu)
        for (int j = 0; j < m; j++)
          if (out[j] != sink) add_bias_relu(out[j], bias, relu, O);
    }
  }
}

// dM[xi][k][:] = (A dy A^T)[xi] for the m x m dy tile (zero where the output does not exist)
void transform_grad_output(const Tiles& T, const float* dy, size_t t0, size_t n, float* dM, std::vector<float>& scratch) {
  const int O = T.O, a = T.alpha(), m = T.m;
  const size_t stride = n * O;
  scratch.resize((size_t)(m * m + a * m) * O);
  float* g = scratch.data();                       // the m x m dy tile
  float* r = scratch.data() + (size_t)m * m * O;  // A dy: alpha rows of m
  const float* in[6];
  float* out[6];
  for (size_t k = 0; k < n; k++) {
    int b, oy0, ox0;
    tile_origin(T, t0 + k, b, oy0, ox0);
    for (int i = 0; i < m; i++)
      for (int j = 0; j < m; j++) {
        float* dst = g + (size_t)(i * m + j) * O;
        if (oy0 + i < T.OH && ox0 + j < T.OW)
          memcpy(dst, dy + (((size_t)b * T.OH + oy0 + i) * T.OW + ox0 + j) * O, O * sizeof(float));
        else
          memset(dst, 0, O * sizeof(float));
      }
    for (int j = 0; j < m; j++) {
      for (int i = 0; i < m; i++) in[i] = g + (size_t)(i * m + j) * O;
      for (int i = 0; i < a; i++) out[i] = r + (size_t)(i * m + j) * O;
      grad_output_1d(m, in, out, O);
    }
    for (int i = 0; i < a; i++) {
      for (int j = 0; j < m; j++) in[j] = r + (size_t)(i * m + j) * O;
      for (int j = 0; j < a; j++) out[j] = dM + (i * a + j) * stride + k * O;
      grad_output_1d(m, in, out, O);
    }
  }
}

// y = conv3x3(x) with U already transformed: x [B,H,W,C] -> y [B,OH,OW,O]; U planes are
// [O][C], or [C][O] when transposed
void winograd_run(const Tiles& T, const float* x, const float* U, bool transposed, const float* bias, bool relu,
                  float* y) {
  const size_t total = T.count(), tb = block_tiles(T);
  const size_t blocks = (total + tb - 1) / tb;
  const size_t OC = (size_t)T.O * T.C;
  const int P = T.planes();
  parallel_for(blocks, [&](size_t bb, size_t be, int thread) {
    float* V = workspace(thread, P * tb * T.C);
    float* M = workspace(8 + thread, P * tb * T.O);
    std::vector<float> d, e;
    for (size_t blk = bb; blk < be; blk++) {
      size_t t0 = blk * tb, n = std::min(tb, total - t0);
      transform_input(T, x, t0, n, V, d);
      for (int xi = 0; xi < P; xi++)
        sgemm_serial(false, !transposed, (int)n, T.O, T.C, 1.f, V + xi * n * T.C, T.C, U + xi * OC,
                     transposed ? T.O : T.C, 0.f, M + xi * n * T.O, T.O);
      transform_output(T, M, t0, n, bias, relu, y, e);
    }
  });
}

}  // namespace

bool winograd_applies(const ConvGeom& g) {
  return g.KH == 3 && g.KW == 3 && g.stride == 1 && g.pad <= 2 && g.C >= 16 && g.O >= 16;
}

void winograd_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu) {
  const Tiles T = make_tiles(g.B, g.H, g.W, g.C, g.O, g.pad, g.OH, g.OW);
  std::vector<float> U((size_t)T.planes() * g.O * g.C);
  transform_kernel(T.m, g.O, g.C, w, false, U.data());
  winograd_run(T, x, U.data(), false, bias, relu, y);
}

void winograd_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  // dX = conv(dY, W rotated 180 degrees with O and C swapped), padding 2 - pad; the
  // transformed kernel is built [O][C] and used transposed
  const Tiles T = make_tiles(g.B, g.OH, g.OW, g.O, g.C, 2 - g.pad, g.H, g.W);
  std::vector<float> U((size_t)T.planes() * g.O * g.C);
  transform_kernel(T.m, g.O, g.C, w, true, U.data());
  winograd_run(T, dy, U.data(), true, nullptr, false, dx);
}

void winograd_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db) {
  const Tiles T = make_tiles(g.B, g.H, g.W, g.C, g.O, g.pad, g.OH, g.OW);
  const size_t total = T.count(), tb = block_tiles(T);
  const size_t blocks = (total + tb - 1) / tb;
  const size_t OC = (size_t)g.O * g.C;
  const int P = T.planes(), a = T.alpha();
  const int threads = pool_threads();
  std::vector<std::vector<float>> dU(threads);
  parallel_for(blocks, [&](size_t bb, size_t be, int thread) {
    float* V = workspace(thread, P * tb * T.C);
    float* dM = workspace(8 + thread, P * tb * T.O);
    std::vector<float>& acc = dU[thread];
    acc.assign(P * OC, 0.f);
    std::vector<float> d, e;
    for (size_t blk = bb; blk < be; blk++) {
      size_t t0 = blk * tb, n = std::min(tb, total - t0);
      transform_input(T, x, t0, n, V, d);
      transform_grad_output(T, dy, t0, n, dM, e);
      for (int xi = 0; xi < P; xi++)
        sgemm_serial(true, false, g.O, g.C, (int)n, 1.f, dM + xi * n * g.O, g.O, V + xi * n * g.C, g.C, 1.f,
                     acc.data() + xi * OC, g.C);
    }
  });
  // reduce the per-thread transformed gradients, then dW += G^T dU G
  for (int t = 1; t < threads; t++)
    if (!dU[t].empty()) {
      if (dU[0].empty()) dU[0].assign(P * OC, 0.f);
      for (size_t i = 0; i < P * OC; i++) dU[0][i] += dU[t][i];
    }
  const float* u = dU[0].data();
  const int C = g.C, m = T.m;
  parallel_for((size_t)g.O, [&](size_t ob, size_t oe, int) {
    for (size_t o = ob; o < oe; o++)
      for (int c = 0; c < C; c++) {
        float r[3][6], col[6], w3[3];
        for (int j = 0; j < a; j++) {  // r = G^T dU
          for (int i = 0; i < a; i++) col[i] = u[(size_t)(i * a + j) * OC + o * C + c];
          kernel_grad_1d(m, col, w3);
          for (int i = 0; i < 3; i++) r[i][j] = w3[i];
        }
        for (int i = 0; i < 3; i++) {  // (.) G
          kernel_grad_1d(m, r[i], w3);
          for (int j = 0; j < 3; j++) dw[(((size_t)o * 3 + i) * 3 + j) * C + c] += w3[j];
        }
      }
  });
  if (db) bias_gradient(dy, (size_t)g.B * g.OH * g.OW, g.O, db);
}

}  // namespace qc
