// qcapsnets native kernels: shared declarations. Layouts match src/tensor/backend.ts.
#pragma once
#include <cstddef>
#include <cstdint>

// Functions whose loops should vectorise with AVX2 where the CPU has it (floor, blends),
// with a baseline clone for the others.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QC_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QC_VECTOR_CLONES
#endif

namespace qc {

// Whether the CPU runs AVX-512F, which the hand-vectorised paths need (the others are plain loops).
inline bool cpu_has_avx512f() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
#else
  return false;
#endif
}

// Row-major C[M,N] = alpha * op(A) op(B) + beta * C (CBLAS, or the built-in GEMM).
void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);
// The same on the calling thread only (for use inside parallel regions).
void sgemm_serial(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc);
void set_threads(int n);
int get_threads();
// What runs the GEMMs: the CBLAS the build found, or the built-in GEMM.
const char* blas_info();
// "builtin" or "blas" (false, nothing changed: no CBLAS in this build, or another name).
// Builds without CBLAS always run the built-in GEMM; QCAPS_GEMM=builtin sets it at load.
bool set_gemm(const char* which);
// The built-in GEMM (gemm-builtin.cc), its micro-kernel ("AVX-512 12x32", ...) and the choice
// of kernel family: "auto", "avx512", "avx2", "scalar" (false where the CPU lacks it).
void sgemm_builtin(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc);
const char* sgemm_builtin_kernel();
bool set_builtin_gemm_isa(const char* isa);

// Channels-last convolution: x [B,H,W,C], w [O,KH,KW,C], y [B,OH,OW,O].
struct ConvGeom {
  int B, H, W, C, O, KH, KW, stride, pad, OH, OW;
};
struct QuantSpec;
// How an exact fixed-point convolution ran (fixed_point_conv below).
enum class FixedMethod { declined, direct, limbs, winograd };
// ... then quantized by q when given (the layer's output quantizer, applied where the output is
// still in cache: per chunk of rows, or per block of a direct kernel). The mode travels with
// the call (no process-wide switch): fast = false allows only im2col + GEMM (summation order
// close to a direct convolution; where results must match another implementation bit for bit,
// e.g. --rounding-compat dac2020); fixed_point = true first tries the exact fixed-point
// convolution (below) where Winograd does not apply, with two passes only where the
// alternative is im2col.
struct ConvMode {
  bool fast = true;
  bool fixed_point = false;
};
// Returns how the exact fixed-point convolution ran (mode.fixed_point), else declined.
FixedMethod conv2d_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                           const QuantSpec* q = nullptr, ConvMode mode = ConvMode{});
void conv2d_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx);
void conv2d_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db);
// Winograd F(2x2,3x3) versions, used by the conv2d_* entry points when they apply
// (3x3, stride 1, pad <= 2, at least 16 channels in and out; QCAPS_WINOGRAD=0 disables).
bool winograd_applies(const ConvGeom& g);
void winograd_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu);
void winograd_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx);
void winograd_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db);

// DFT versions for large kernels (>= 7x7, stride <= 2, >= 32 channels; QCAPS_FFT_CONV=0 disables).
bool fft_applies(const ConvGeom& g);
void fft_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu);
void fft_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx);
void fft_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw, float* db);

// Exact convolution of fixed-point values with int16 GEMMs (fixedconv.cc), on every CPU at the
// level active_isa() names (isa.h), each giving the same bits: when the geometry and the values
// allow it, writes y and returns how it ran: "winograd" (exact integer Winograd,
// fixedwino.cc), "direct" (one pass), "limbs" (two passes: inputs wider than int16, up to 2^30,
// one pass per 15-bit-or-less limb of x; maxPasses = 1 declines them); else declined, y
// untouched. conv2d_forward tries it when its mode asks for it.
const char* fixed_method_name(FixedMethod m);
FixedMethod fixed_point_conv(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                             int maxPasses = 2);

// The float convolution in one fixed order (smallconv.cc): per output, one fused multiply-add
// per value of the zero-padded patch in column order (ky, kx, c) from +0, then + bias, ReLU and
// q; the same bits at every instruction-set level `isa` (which picks only the kernel), thread
// count and BLAS. The quantized forward's convolutions that are not exact integer sums.
enum class Isa : int;
void ordered_conv(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                  const QuantSpec* q, Isa isa);
// ordered_conv's AVX-512 kernel for patches of K = KH*KW*C <= 128 values, where it is bit for
// bit what im2col + OpenBLAS gives; false where it does not apply (other BLAS, no AVX-512,
// larger K, QCAPS_SMALL_PATCH_CONV=0).
bool small_patch_conv(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                      const QuantSpec* q);

// y[r, :] += bias, then max(0, .) when relu, for rows of O values (either may be off)
void bias_relu_rows(float* y, size_t rows, int O, const float* bias, bool relu);
// db[o] += sum over rows of dy[r, o] (double sums, split over the pool's threads)
void bias_gradient(const float* dy, size_t rows, int O, float* db);

// dy[i] = 0 where y[i] <= 0 (the gradient of a ReLU from its output)
void relu_mask(float* dy, const float* y, size_t n);

// y = x.permute(perm) made contiguous, x of shape [shape[0], ..., shape[rank-1]], rank <= 8
void permute(const float* x, const int* shape, const int* perm, int rank, float* y);

// Fixed-point quantizer (SPEC 4). method: 0 truncation, 1 round_to_nearest,
// 2 stochastic_rounding, 3 logarithmic.
struct QuantSpec {
  int method;
  int frac;
  bool compat;
  float lo, hi;
  uint32_t seed, stream;
};
void quantize(const float* x, float* y, size_t n, const QuantSpec& q);
// Same, for a slice that starts at element `index0` of a larger tensor (stochastic rounding
// draws the uniforms of those elements).
void quantize_slice(const float* x, float* y, size_t n, const QuantSpec& q, size_t index0);

// The clipped straight-through estimator's record and its use (src/search/straight-through.ts):
// quantize(x, y, n, q) with mask[i] = 1 where q.lo <= x[i] <= q.hi (NaN: 0), else 0, in one pass
// over x (x may be y); then out[i] = mask[i] ? dy[i] : 0.
void quantize_masked(const float* x, float* y, size_t n, const QuantSpec& q, uint8_t* mask);
void mask_gradient(const float* dy, const uint8_t* mask, size_t n, float* out);

// errors[j] = sum_i (q(x_i) - x_i)^2 for j < count <= FRAC_ERRORS_LANES, q round-to-nearest (ties
// to even) at 2^-(frac0 + j), saturating to the width-bit integers [-2^(w-1), top] (top as
// src/quant/dynamic.ts's dynamicRange), in float64, each sum in index order; NaN left out.
constexpr int FRAC_ERRORS_LANES = 9;
void frac_errors(const float* x, size_t n, int frac0, int count, int width, double* errors);

// Dynamic routing: votes [B,I,P,J,D], bias [J,D], v [B,P,J,D]; softmax over J (joint=false)
// or jointly over P,J (joint=true).
struct RoutingGeom {
  int B, I, P, J, D, iterations;
  bool joint;
};
void routing_forward(const RoutingGeom& g, const float* u, const float* bias, float* v, float* saveS,
                     float* saveC, const QuantSpec* qAct, const QuantSpec* qRouting);
// Inference of a fully connected capsule layer: x [B,I,Din], w [I,Din,J*D], bias [J,D] ->
// v [B,J,D]. Per image: votes u_j|i = sum_k x_ik w_ik,j (the reference's order), quantized
// with qVotes, then routed (softmax over J), with every quantizer optional. Each image's votes
// stay in cache from their product to the last iteration.
struct CapsulesGeom {
  int B, I, Din, J, D, iterations;
};
void capsules_forward(const CapsulesGeom& g, const float* x, const float* w, const float* bias, float* v,
                      const QuantSpec* qVotes, const QuantSpec* qAct, const QuantSpec* qRouting);
void routing_backward(const RoutingGeom& g, const float* u, const float* saveS, const float* saveC,
                      const float* dv, float* du, float* dbias);

// v[i] = expf(v[i]), bit for bit as glibc's expf, vectorised where the CPU allows (expf.cc)
void exp_in_place(float* v, size_t n);

// Row-wise kernels (native/elementwise.cc)
void squash_forward(const float* s, float* v, size_t rows, int D);
void squash_backward(const float* s, const float* dv, float* ds, size_t rows, int D);
void channel_sums(const float* x, size_t rows, int C, const double* shift, double* sum);
void batchnorm_apply(const float* x, size_t rows, int C, const double* mean, const float* invStd, const float* gamma,
                     const float* beta, float* y, float* xhat);
void batchnorm_backward(const float* dy, const float* xhat, size_t rows, int C, const float* gamma,
                        const float* invStd, float* dx, float* dgamma, float* dbeta);

void adam_update(float* p, const float* g, float* m, float* v, size_t n, float b1, float c1, float b2, float c2,
                 float stepSize, float bc2sqrt, float eps);

// A workspace that grows and is reused (fresh memory costs ~3 ms/MB here).
float* workspace(int slot, size_t floats);

}  // namespace qc
