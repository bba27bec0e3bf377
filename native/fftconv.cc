// Convolution with large kernels (ShallowCapsNet's 9x9, 256 -> 256) through the 2-D DFT.
// With Ny x Nx = the padded input size, circular correlation equals the linear one at
// every valid output, so the convolution theorem applies without extra padding:
//   y = IDFT( X . conj(W) ) sampled at (s*oy, s*ox)       (forward)
//   dX = IDFT( DY . W ) cropped to the unpadded input      (DY: dy placed at s*oy, s*ox)
//   dW = IDFT( conj(DY) . X ) sampled at (ky, kx)
// Each product sums over channels, so it is a complex GEMM per frequency bin: for 9x9
// kernels on 20x20 inputs that is 11.5 GFLOP instead of 38 for direct convolution.
// The DFTs themselves are GEMMs too (real input: half spectrum along x, Kx = Nx/2 + 1):
//   stage x: T[kx][re|im][i][n][c] = sum_j Fx[kx][j] * img[n][i][j][c]   (one GEMM per image row)
//   stage y: Z[kx][re|im][ky][n][c] = sum_i Omega[ky][i] T[kx][.][i][n][c] (one GEMM per kx)
// and the inverse runs the same stages backwards, evaluated only where outputs are wanted.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace qc {

namespace {

// Grid placement of an image's pixels: pixel (i, j) sits at (y0 + ys*i, x0 + xs*j).
struct Placement {
  int rows, cols, y0, ys, x0, xs;
};

struct Spectrum {
  int Ny, Nx, Kx;
  size_t width;  // n * C: floats per (kx, re|im, ky) row
  float* data;   // [Kx][2][Ny][width]
  float* row(int kx, int ri, int ky) const { return data + (((size_t)kx * 2 + ri) * Ny + ky) * width; }
};

constexpr double kTwoPi = 6.283185307179586476925286766559;

// Z = DFT of n images [rows][cols][C] (channels-last) placed on the Ny x Nx grid.
// tmp holds Kx*2*rows*width floats.
void dft_forward(const float* img, int n, int C, const Placement& pl, Spectrum& Z, float* tmp) {
  const int Ny = Z.Ny, Nx = Z.Nx, Kx = Z.Kx;
  const size_t width = (size_t)n * C;
  // stage x: Fx [2Kx x cols]: rows (kx, re) = cos, (kx, im) = -sin of 2 pi kx x / Nx
  std::vector<float> Fx((size_t)2 * Kx * pl.cols);
  for (int kx = 0; kx < Kx; kx++)
    for (int j = 0; j < pl.cols; j++) {
      double a = kTwoPi * kx * (double)(pl.x0 + pl.xs * j) / Nx;
      Fx[(size_t)(2 * kx) * pl.cols + j] = (float)std::cos(a);
      Fx[(size_t)(2 * kx + 1) * pl.cols + j] = (float)-std::sin(a);
    }
  // tmp[kx][ri][i][n][c]: the GEMM's output row (kx, ri) strides rows*width
  const size_t ldt = (size_t)pl.rows * width;
  parallel_for((size_t)n * pl.rows, [&](size_t b, size_t e, int) {
    for (size_t q = b; q < e; q++) {
      size_t item = q / pl.rows, i = q % pl.rows;
      const float* src = img + (item * pl.rows + i) * (size_t)pl.cols * C;
      // output rows (kx, ri) are 2*Kx rows of stride ldt, at column offset (i*width + item*C)
      sgemm_serial(false, false, 2 * Kx, C, pl.cols, 1.f, Fx.data(), pl.cols, src, C, 0.f,
                   tmp + i * width + item * C, (int)ldt);
    }
  });
  // stage y: per kx, Z[kx] (2Ny x width) = A (2Ny x 2rows) @ tmp[kx] (2rows x width)
  //   Z = e^{-i theta} T:  Zr = cos Tr + sin Ti,  Zi = -sin Tr + cos Ti,  theta = 2 pi ky y / Ny
  std::vector<float> A((size_t)2 * Ny * 2 * pl.rows);
  for (int ky = 0; ky < Ny; ky++)
    for (int i = 0; i < pl.rows; i++) {
      double a = kTwoPi * ky * (double)(pl.y0 + pl.ys * i) / Ny;
      float c = (float)std::cos(a), s = (float)std::sin(a);
      A[(size_t)ky * 2 * pl.rows + i] = c;
      A[(size_t)ky * 2 * pl.rows + pl.rows + i] = s;
      A[(size_t)(Ny + ky) * 2 * pl.rows + i] = -s;
      A[(size_t)(Ny + ky) * 2 * pl.rows + pl.rows + i] = c;
    }
  parallel_for((size_t)Kx * 4, [&](size_t b, size_t e, int) {
    for (size_t q = b; q < e; q++) {
      // split each kx's GEMM into 4 column blocks so that 2 threads balance
      size_t kx = q / 4, part = q % 4;
      size_t c0 = width * part / 4, c1 = width * (part + 1) / 4;
      if (c0 == c1) continue;
      const float* T = tmp + kx * 2 * ldt;
      sgemm_serial(false, false, 2 * Ny, (int)(c1 - c0), 2 * pl.rows, 1.f, A.data(), 2 * pl.rows, T + c0, (int)width,
                   0.f, Z.row((int)kx, 0, 0) + c0, (int)width);
    }
  });
}

// out[n][r][q][C] (+)= real inverse DFT of Z evaluated at grid points (y0 + ys*r, x0 + xs*q).
// tmp holds Kx*2*rows*width + rows*cols*width floats.
void dft_inverse(const Spectrum& Z, int n, int C, const Placement& pl, float* out, bool accumulate, float* tmp) {
  const int Ny = Z.Ny, Nx = Z.Nx, Kx = Z.Kx;
  const size_t width = (size_t)n * C;
  const size_t ldg = (size_t)pl.rows * width;
  float* G = tmp;                             // [kx][ri][r][width]
  float* P = tmp + (size_t)Kx * 2 * ldg;      // [r][q][width]
  // stage y: G = sum_ky e^{+i theta} Z:  Gr = cos Zr - sin Zi,  Gi = sin Zr + cos Zi
  std::vector<float> A((size_t)2 * pl.rows * 2 * Ny);
  for (int r = 0; r < pl.rows; r++)
    for (int ky = 0; ky < Ny; ky++) {
      double a = kTwoPi * ky * (double)(pl.y0 + pl.ys * r) / Ny;
      float c = (float)std::cos(a), s = (float)std::sin(a);
      A[(size_t)r * 2 * Ny + ky] = c;
      A[(size_t)r * 2 * Ny + Ny + ky] = -s;
      A[(size_t)(pl.rows + r) * 2 * Ny + ky] = s;
      A[(size_t)(pl.rows + r) * 2 * Ny + Ny + ky] = c;
    }
  parallel_for((size_t)Kx * 4, [&](size_t b, size_t e, int) {
    for (size_t q = b; q < e; q++) {
      size_t kx = q / 4, part = q % 4;
      size_t c0 = width * part / 4, c1 = width * (part + 1) / 4;
      if (c0 == c1) continue;
      sgemm_serial(false, false, 2 * pl.rows, (int)(c1 - c0), 2 * Ny, 1.f, A.data(), 2 * Ny, Z.row((int)kx, 0, 0) + c0,
                   (int)width, 0.f, G + kx * 2 * ldg + c0, (int)width);
    }
  });
  // stage x (complex -> real, Hermitian half spectrum): P[r][q] = sum_kx h (Gr cos - Gi sin) / (Ny Nx)
  std::vector<float> B((size_t)pl.cols * 2 * Kx);
  for (int q = 0; q < pl.cols; q++)
    for (int kx = 0; kx < Kx; kx++) {
      double h = (kx == 0 || (Nx % 2 == 0 && kx == Nx / 2)) ? 1.0 : 2.0;
      double a = kTwoPi * kx * (double)(pl.x0 + pl.xs * q) / Nx;
      B[(size_t)q * 2 * Kx + 2 * kx] = (float)(h * std::cos(a) / ((double)Ny * Nx));
      B[(size_t)q * 2 * Kx + 2 * kx + 1] = (float)(-h * std::sin(a) / ((double)Ny * Nx));
    }
  parallel_for((size_t)pl.rows * 2, [&](size_t b, size_t e, int) {
    for (size_t q = b; q < e; q++) {
      size_t r = q / 2, part = q % 2;
      size_t c0 = width * part / 2, c1 = width * (part + 1) / 2;
      // rows (kx, ri) of G for this r are 2*Kx rows of stride ldg
      sgemm_serial(false, false, pl.cols, (int)(c1 - c0), 2 * Kx, 1.f, B.data(), 2 * Kx, G + r * width + c0, (int)ldg,
                   0.f, P + r * pl.cols * width + c0, (int)width);
    }
  });
  // P[r][q][n][c] -> out[n][r][q][c]
  parallel_for((size_t)n, [&](size_t b, size_t e, int) {
    for (size_t item = b; item < e; item++)
      for (int r = 0; r < pl.rows; r++)
        for (int q = 0; q < pl.cols; q++) {
          const float* s = P + ((size_t)r * pl.cols + q) * width + item * C;
          float* d = out + ((item * pl.rows + r) * pl.cols + q) * C;
          if (accumulate)
            for (int c = 0; c < C; c++) d[c] += s[c];
          else
            memcpy(d, s, C * sizeof(float));
        }
  });
}

struct FftPlan {
  int Ny, Nx, Kx;
};

FftPlan fft_plan(const ConvGeom& g) {
  FftPlan p;
  p.Ny = g.H + 2 * g.pad;
  p.Nx = g.W + 2 * g.pad;
  p.Kx = p.Nx / 2 + 1;
  return p;
}

// Complex products per frequency bin (ky, kx), each a GEMM over channels:
//   mode 0 (forward):  Y[n][o] = sum_c X[n][c] conj(W[o][c])
//   mode 1 (data):     X[n][c] = sum_o Y[n][o] W[o][c]
//   mode 2 (weight):   W[o][c] = sum_n conj(Y[n][o]) X[n][c]
// with X of width n*C, Y of width n*O, W of width O*C (split re/im planes, see Spectrum).
void bin_products(int mode, const FftPlan& p, int n, int C, int O, Spectrum& X, Spectrum& Y, Spectrum& W) {
  parallel_for((size_t)p.Ny * p.Kx, [&](size_t b, size_t e, int) {
    for (size_t f = b; f < e; f++) {
      int ky = (int)(f / p.Kx), kx = (int)(f % p.Kx);
      float *Xr = X.row(kx, 0, ky), *Xi = X.row(kx, 1, ky);
      float *Yr = Y.row(kx, 0, ky), *Yi = Y.row(kx, 1, ky);
      float *Wr = W.row(kx, 0, ky), *Wi = W.row(kx, 1, ky);
      if (mode == 0) {  // Yr = Xr Wr^T + Xi Wi^T;  Yi = Xi Wr^T - Xr Wi^T
        sgemm_serial(false, true, n, O, C, 1.f, Xr, C, Wr, C, 0.f, Yr, O);
        sgemm_serial(false, true, n, O, C, 1.f, Xi, C, Wi, C, 1.f, Yr, O);
        sgemm_serial(false, true, n, O, C, 1.f, Xi, C, Wr, C, 0.f, Yi, O);
        sgemm_serial(false, true, n, O, C, -1.f, Xr, C, Wi, C, 1.f, Yi, O);
      } else if (mode == 1) {  // Xr = Yr Wr - Yi Wi;  Xi = Yr Wi + Yi Wr
        sgemm_serial(false, false, n, C, O, 1.f, Yr, O, Wr, C, 0.f, Xr, C);
        sgemm_serial(false, false, n, C, O, -1.f, Yi, O, Wi, C, 1.f, Xr, C);
        sgemm_serial(false, false, n, C, O, 1.f, Yr, O, Wi, C, 0.f, Xi, C);
        sgemm_serial(false, false, n, C, O, 1.f, Yi, O, Wr, C, 1.f, Xi, C);
      } else {  // Wr = Yr^T Xr + Yi^T Xi;  Wi = Yr^T Xi - Yi^T Xr
        sgemm_serial(true, false, O, C, n, 1.f, Yr, O, Xr, C, 0.f, Wr, C);
        sgemm_serial(true, false, O, C, n, 1.f, Yi, O, Xi, C, 1.f, Wr, C);
        sgemm_serial(true, false, O, C, n, 1.f, Yr, O, Xi, C, 0.f, Wi, C);
        sgemm_serial(true, false, O, C, n, -1.f, Yi, O, Xr, C, 1.f, Wi, C);
      }
    }
  });
}

Spectrum spectrum(const FftPlan& p, size_t width, int slot) {
  Spectrum s{p.Ny, p.Nx, p.Kx, width, nullptr};
  s.data = workspace(slot, (size_t)p.Kx * 2 * p.Ny * width);
  return s;
}

float* stage_tmp(const FftPlan& p, size_t width, int rows, int cols) {
  return workspace(13, (size_t)p.Kx * 2 * rows * width + (size_t)rows * cols * width);
}

// Spectra of the input (placed at pad offset), of the weights (kernel at the origin) and
// of the output gradient (placed at stride multiples).
void input_spectrum(const ConvGeom& g, const FftPlan& p, const float* x, Spectrum& X) {
  Placement pl{g.H, g.W, g.pad, 1, g.pad, 1};
  dft_forward(x, g.B, g.C, pl, X, stage_tmp(p, X.width, g.H, g.W));
}

void weight_spectrum(const ConvGeom& g, const FftPlan& p, const float* w, Spectrum& W) {
  Placement pl{g.KH, g.KW, 0, 1, 0, 1};
  dft_forward(w, g.O, g.C, pl, W, stage_tmp(p, W.width, g.KH, g.KW));
}

void output_spectrum(const ConvGeom& g, const FftPlan& p, const float* y, Spectrum& Y) {
  Placement pl{g.OH, g.OW, 0, g.stride, 0, g.stride};
  dft_forward(y, g.B, g.O, pl, Y, stage_tmp(p, Y.width, g.OH, g.OW));
}

}  // namespace

bool fft_applies(const ConvGeom& g) {
  // worthwhile for large kernels over many channels; the grid must cover every stride step
  return g.KH >= 7 && g.KW >= 7 && g.C >= 32 && g.O >= 32 && g.stride <= 2 &&
         (g.OH - 1) * g.stride + g.KH <= g.H + 2 * g.pad && (g.OW - 1) * g.stride + g.KW <= g.W + 2 * g.pad;
}

void fft_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu) {
  const FftPlan p = fft_plan(g);
  Spectrum X = spectrum(p, (size_t)g.B * g.C, 10), W = spectrum(p, (size_t)g.O * g.C, 11),
           Y = spectrum(p, (size_t)g.B * g.O, 12);
  input_spectrum(g, p, x, X);
  weight_spectrum(g, p, w, W);
  bin_products(0, p, g.B, g.C, g.O, X, Y, W);
  Placement out{g.OH, g.OW, 0, g.stride, 0, g.stride};
  dft_inverse(Y, g.B, g.O, out, y, false, stage_tmp(p, Y.width, g.OH, g.OW));
  parallel_for((size_t)g.B * g.OH * g.OW,
               [&](size_t b, size_t e, int) { bias_relu_rows(y + b * g.O, e - b, g.O, bias, relu); });
}

void fft_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const FftPlan p = fft_plan(g);
  Spectrum X = spectrum(p, (size_t)g.B * g.C, 10), W = spectrum(p, (size_t)g.O * g.C, 11),
           Y = spectrum(p, (size_t)g.B * g.O, 12);
  output_spectrum(g, p, dy, Y);
  weight_spectrum(g, p, w, W);
  bin_products(1, p, g.B, g.C, g.O, X, Y, W);
  Placement crop{g.H, g.W, g.pad, 1, g.pad, 1};
  dft_inverse(X, g.B, g.C, crop, dx, false, stage_tmp(p, X.width, g.H, g.W));
}

void fft_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db) {
  const FftPlan p = fft_plan(g);
  Spectrum X = spectrum(p, (size_t)g.B * g.C, 10), W = spectrum(p, (size_t)g.O * g.C, 11),
           Y = spectrum(p, (size_t)g.B * g.O, 12);
  input_spectrum(g, p, x, X);
  output_spectrum(g, p, dy, Y);
  bin_products(2, p, g.B, g.C, g.O, X, Y, W);
  Placement taps{g.KH, g.KW, 0, 1, 0, 1};
  dft_inverse(W, g.O, g.C, taps, dw, true, stage_tmp(p, W.width, g.KH, g.KW));
  if (db) bias_gradient(dy, (size_t)g.B * g.OH * g.OW, g.O, db);
}

}  // namespace qc
