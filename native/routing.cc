// Fused dynamic routing (SPEC 2.1), forward and backward, one batch element at a time so
// that its votes (e.g. 1152x10x16 floats for ShallowCapsNet) stay in cache across all
// iterations. Same arithmetic and layouts as src/tensor/ts/routing.ts.
//   c = softmax(b);  s_j = sum_i c_ij u_j|i + bias_j;  v_j = squash(s_j);  b_ij += <u_j|i, v_j>
//
// The forward's one order of float operations, the same at every instruction-set level (the
// AVX-512 kernels repeat the plain loops' operations; no contraction into fused multiply-adds,
// native/fp-order.h), thread count (threads split the images) and BLAS (no GEMM here), and
// the C export's (src/export/c-export-runtime.ts):
//   votes      u_j|i[jd] = (((0 + x_i0 w_i0[jd]) + x_i1 w_i1[jd]) + ...) in float, each product
//              rounded, in the order of k = 0 .. Din-1
//   softmax    m = max_k l_k; e_k = expf(l_k - m) (native/expf.cc); sum of e_k in double in the
//              order of k; c_k = e_k * (float)(1 / sum)
//   s          s_j = (((bias_j + c_0j u_j|0) + c_1j u_j|1) + ...) in float, in the order of i
//   squash     n2 = sum_d s_d s_d in float in the order of d; f = sqrtf(n2) / (1 + n2);
//              v_d = s_d f
//   agreement  b_ij += (((0 + u_0 v_0) + u_1 v_1) + ...) in float, in the order of d
// with each layer's quantizers between the steps (see route_one).
#include "fp-order.h"  // first: no contraction into FMA anywhere below

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "isa.h"
#include "kernels.h"
#include "parallel.h"

namespace qc {

// c = softmax over each group of logits: exp(l - max), summed in double, times 1 / sum
static void softmax_groups(const float* logits, float* c, size_t n, size_t group) {
  for (size_t o = 0; o < n; o += group) {
    float m = -INFINITY;
    for (size_t k = 0; k < group; k++) m = std::max(m, logits[o + k]);
    for (size_t k = 0; k < group; k++) c[o + k] = logits[o + k] - m;
  }
  exp_in_place(c, n);  // expf's values, all groups at once
  for (size_t o = 0; o < n; o += group) {
    double sum = 0;
    for (size_t k = 0; k < group; k++) sum += c[o + k];
    float inv = (float)(1.0 / sum);
    for (size_t k = 0; k < group; k++) c[o + k] *= inv;
  }
}

static void squash_rows(const float* s, float* v, size_t rows, int D) {
  for (size_t r = 0; r < rows; r++) {
    const float* sr = s + r * D;
    float n2 = 0;
    for (int d = 0; d < D; d++) n2 += sr[d] * sr[d];
    float f = std::sqrt(n2) / (1.f + n2);
    for (int d = 0; d < D; d++) v[r * D + d] = sr[d] * f;
  }
}

namespace {

// The AVX-512 kernels below run at the levels avx512 and avx512vnni (QCAPS_ISA); each gives the
// bits of its plain loop, so the level chooses only the speed.
bool avx512_level() { return active_isa() >= Isa::avx512; }

void quantize_in_place(const QuantSpec* spec, float* buf, size_t n, size_t index0, uint32_t streamAdd) {
  if (!spec) return;
  QuantSpec qs = *spec;
  qs.stream += streamAdd;
  quantize_slice(buf, buf, n, qs, index0);
}

// The two sums of an iteration, in plain loops and, for capsules of 16 values (one zmm
// register each), with AVX-512. Both versions round each product, then add in the order of i
// (s) or of d (the dot products): the same float32 arithmetic as the reference's
// (route * votes).sum(dim=1) and (votes * v).sum(dim=3), whatever the instruction set.

// s[pj] += sum_i c_ij u_j|i   (s holds the bias)
QC_VECTOR_CLONES
void weighted_sum_plain(const float* u, const float* c, float* s, int I, size_t PJ, int D) {
  for (int i = 0; i < I; i++) {
    const float* ui = u + (size_t)i * PJ * D;
    const float* ci = c + (size_t)i * PJ;
    for (size_t pj = 0; pj < PJ; pj++) {
      const float cv = ci[pj];
      const float* up = ui + pj * D;
      float* sp = s + pj * D;
#pragma GCC ivdep  // s is scratch, apart from the votes
      for (int d = 0; d < D; d++) sp[d] += cv * up[d];
    }
  }
}

// logits[q] += <u_q, v_{q mod PJ}> for the n = I*PJ pairs q = (i, pj)
QC_VECTOR_CLONES
void agreement_plain(const float* u, const float* v, float* logits, size_t n, size_t PJ, int D) {
  for (size_t q = 0; q < n; q++) {
    const float* up = u + q * D;
    const float* vp = v + (q % PJ) * D;
    float dot = 0;
    for (int d = 0; d < D; d++) dot += up[d] * vp[d];
    logits[q] += dot;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define QC_HAVE_AVX512_ROUTING 1

// no fused multiply-adds below: every product is rounded before it is added, as above
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// s for N consecutive pairs pj0.. (N accumulators stay in registers across i)
template <int N>
__attribute__((target("avx512f"))) void weighted_sum16_block(const float* u, const float* c, float* s, int I,
                                                              size_t PJ, size_t pj0) {
  __m512 acc[N];
  for (int k = 0; k < N; k++) acc[k] = _mm512_loadu_ps(s + (pj0 + k) * 16);
  for (int i = 0; i < I; i++) {
    const float* ui = u + ((size_t)i * PJ + pj0) * 16;
    const float* ci = c + (size_t)i * PJ + pj0;
    for (int k = 0; k < N; k++)
      acc[k] = _mm512_add_ps(acc[k], _mm512_mul_ps(_mm512_set1_ps(ci[k]), _mm512_loadu_ps(ui + k * 16)));
  }
  for (int k = 0; k < N; k++) _mm512_storeu_ps(s + (pj0 + k) * 16, acc[k]);
}

__attribute__((target("avx512f"))) void weighted_sum16(const float* u, const float* c, float* s, int I, size_t PJ) {
  size_t pj0 = 0;
  for (; pj0 + 8 <= PJ; pj0 += 8) weighted_sum16_block<8>(u, c, s, I, PJ, pj0);
  switch (PJ - pj0) {
#define QC_REST(n) \
  case n:          \
    weighted_sum16_block<n>(u, c, s, I, PJ, pj0); \
    break;
    QC_REST(1) QC_REST(2) QC_REST(3) QC_REST(4) QC_REST(5) QC_REST(6) QC_REST(7)
#undef QC_REST
    default:
      break;
  }
}

// r[l][d] -> r[d][l] for a 16x16 block of floats (three rounds of shuffles)
__attribute__((target("avx512f"), always_inline)) inline void transpose16(__m512 r[16]) {
  __m512 t[16], w[16];
  for (int k = 0; k < 8; k++) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);      // rows 2k, 2k+1 interleaved, even pairs
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);  // odd pairs
  }
  for (int k = 0; k < 4; k++) {
    const int b = 4 * k;
    w[b] = _mm512_shuffle_ps(t[b], t[b + 2], 0x44);
    w[b + 1] = _mm512_shuffle_ps(t[b], t[b + 2], 0xEE);
    w[b + 2] = _mm512_shuffle_ps(t[b + 1], t[b + 3], 0x44);
    w[b + 3] = _mm512_shuffle_ps(t[b + 1], t[b + 3], 0xEE);
  }
  // w[4k + j] holds, in each 128-bit lane L, column 4L + j of rows 4k..4k+3
  for (int j = 0; j < 4; j++) {
    t[j] = _mm512_shuffle_f32x4(w[j], w[4 + j], 0x88);       // lanes 0, 2 of rows 0-3 | 4-7
    t[4 + j] = _mm512_shuffle_f32x4(w[j], w[4 + j], 0xDD);   // lanes 1, 3
    t[8 + j] = _mm512_shuffle_f32x4(w[8 + j], w[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(w[8 + j], w[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);           // columns j
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);       // columns 8 + j
    r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);  // columns 4 + j
    r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD); // columns 12 + j
  }
}

// 16 pairs at a time: their 16 product vectors, transposed, summed over d in order
__attribute__((target("avx512f"))) void agreement16(const float* u, const float* v, float* logits, size_t n,
                                                    size_t PJ) {
  size_t q0 = 0;
  for (; q0 + 16 <= n; q0 += 16) {
    __m512 r[16];
    size_t pj = q0 % PJ;
    for (int l = 0; l < 16; l++) {
      r[l] = _mm512_mul_ps(_mm512_loadu_ps(u + (q0 + l) * 16), _mm512_loadu_ps(v + pj * 16));
      if (++pj == PJ) pj = 0;
    }
    transpose16(r);
    __m512 dot = _mm512_setzero_ps();
    for (int d = 0; d < 16; d++) dot = _mm512_add_ps(dot, r[d]);
    _mm512_storeu_ps(logits + q0, _mm512_add_ps(_mm512_loadu_ps(logits + q0), dot));
  }
  for (size_t q = q0; q < n; q++) {
    const float* up = u + q * 16;
    const float* vp = v + (q % PJ) * 16;
    float dot = 0;
    for (int d = 0; d < 16; d++) dot += up[d] * vp[d];
    logits[q] += dot;
  }
}
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

void weighted_sum(const float* u, const float* c, float* s, int I, size_t PJ, int D) {
#ifdef QC_HAVE_AVX512_ROUTING
  if (D == 16 && avx512_level()) return weighted_sum16(u, c, s, I, PJ);
#endif
  weighted_sum_plain(u, c, s, I, PJ, D);
}

void agreement(const float* u, const float* v, float* logits, size_t n, size_t PJ, int D) {
#ifdef QC_HAVE_AVX512_ROUTING
  if (D == 16 && avx512_level()) return agreement16(u, v, logits, n, PJ);
#endif
  agreement_plain(u, v, logits, n, PJ, D);
}

// The routing of batch element b, whose votes are ub; logits, c and s are its scratch buffers.
void route_one(const RoutingGeom& g, size_t b, const float* ub, const float* bias, float* v, float* saveS,
               float* saveC, const QuantSpec* qAct, const QuantSpec* qRouting, float* logits, float* c, float* s) {
  const int I = g.I, P = g.P, J = g.J, D = g.D;
  const size_t PJ = (size_t)P * J;
  const size_t ncB = (size_t)I * PJ, nsB = PJ * D;  // per batch element
  const size_t nc = ncB * g.B, ns = nsB * g.B;
  const size_t group = g.joint ? PJ : (size_t)J;
  float* vb = v + b * nsB;
  std::fill(logits, logits + ncB, 0.f);
  for (int t = 0; t < g.iterations; t++) {
    // the first softmax is of zeros: exp(0) = 1 everywhere, so c = 1 * (float)(1 / group)
    if (t == 0) std::fill(c, c + ncB, (float)(1.0 / (double)group));
    else softmax_groups(logits, c, ncB, group);
    quantize_in_place(qAct, c, ncB, b * ncB, 4 * t);
    for (size_t pj = 0; pj < PJ; pj++) memcpy(s + pj * D, bias + (pj % J) * D, D * sizeof(float));
    weighted_sum(ub, c, s, I, PJ, D);
    quantize_in_place(qRouting, s, nsB, b * nsB, 4 * t + 1);
    squash_rows(s, vb, PJ, D);
    quantize_in_place(qAct, vb, nsB, b * nsB, 4 * t + 2);
    if (saveS) memcpy(saveS + t * ns + b * nsB, s, nsB * sizeof(float));
    if (saveC) memcpy(saveC + t * nc + b * ncB, c, ncB * sizeof(float));
    if (t == g.iterations - 1) break;  // the last logits update is never used
    agreement(ub, vb, logits, ncB, PJ, D);
    quantize_in_place(qRouting, logits, ncB, b * ncB, 4 * t + 3);
  }
}

// u[n][i] = sum_k x[n][i][k] W[i][k] for N images: I input capsules of Din values, JD = J*D
// votes each. W[i] is read once for all N images. Products rounded, then added in the order
// of k (no fused multiply-add in either clone), as the reference's (x.unsqueeze(3) * W).sum(dim=2).
QC_VECTOR_CLONES
void capsule_votes_plain(const float* x, const float* w, float* u, size_t N, int I, int Din, size_t JD) {
  for (int i = 0; i < I; i++) {
    const float* wi = w + (size_t)i * Din * JD;
    for (size_t n = 0; n < N; n++) {
      const float* xi = x + (n * I + i) * Din;
      float* ui = u + (n * I + i) * JD;
      std::fill(ui, ui + JD, 0.f);
      for (int k = 0; k < Din; k++) {
        const float xk = xi[k];
        const float* wk = wi + (size_t)k * JD;
#pragma GCC ivdep  // u is scratch, apart from x and W
        for (size_t jd = 0; jd < JD; jd++) ui[jd] += xk * wk[jd];
      }
    }
  }
}

#ifdef QC_HAVE_AVX512_ROUTING
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
// the same for JD a multiple of 16: each group of 16 votes summed in a register, up to
// kVoteVectors groups at once so that their add chains overlap (each still adds in k order)
constexpr int kVoteVectors = 10;

template <int NV>
__attribute__((target("avx512f"), always_inline)) inline void votes16_block(const float* xi, const float* wi, float* ui,
                                                                            int Din, size_t JD) {
  __m512 acc[NV];
  for (int v = 0; v < NV; v++) acc[v] = _mm512_setzero_ps();
  for (int k = 0; k < Din; k++) {
    const __m512 xk = _mm512_set1_ps(xi[k]);
    const float* wk = wi + (size_t)k * JD;
    for (int v = 0; v < NV; v++) acc[v] = _mm512_add_ps(acc[v], _mm512_mul_ps(xk, _mm512_loadu_ps(wk + 16 * v)));
  }
  for (int v = 0; v < NV; v++) _mm512_storeu_ps(ui + 16 * v, acc[v]);
}

__attribute__((target("avx512f"))) void capsule_votes16(const float* x, const float* w, float* u, size_t N, int I,
                                                        int Din, size_t JD) {
  for (int i = 0; i < I; i++) {
    const float* wi = w + (size_t)i * Din * JD;
    for (size_t n = 0; n < N; n++) {
      const float* xi = x + (n * I + i) * Din;
      float* ui = u + (n * I + i) * JD;
      size_t jd = 0;
      for (; jd + 16 * kVoteVectors <= JD; jd += 16 * kVoteVectors) votes16_block<kVoteVectors>(xi, wi + jd, ui + jd, Din, JD);
      for (; jd < JD; jd += 16) votes16_block<1>(xi, wi + jd, ui + jd, Din, JD);
    }
  }
}
#pragma GCC pop_options
#endif

void capsule_votes(const float* x, const float* w, float* u, size_t N, int I, int Din, size_t JD) {
#ifdef QC_HAVE_AVX512_ROUTING
  if (JD % 16 == 0 && avx512_level()) return capsule_votes16(x, w, u, N, I, Din, JD);
#endif
  capsule_votes_plain(x, w, u, N, I, Din, JD);
}

}  // namespace

void capsules_forward(const CapsulesGeom& g, const float* x, const float* w, const float* bias, float* v,
                      const QuantSpec* qVotes, const QuantSpec* qAct, const QuantSpec* qRouting) {
  const RoutingGeom rg{g.B, g.I, 1, g.J, g.D, g.iterations, false};
  const size_t JD = (size_t)g.J * g.D, nu = (size_t)g.I * JD, nc = (size_t)g.I * g.J;
  // images per pass over the weights: W (5.9 MB for ShallowCapsNet) is read once per chunk,
  // and a chunk's votes (0.7 MB per image) stay in the last-level cache until routed
  constexpr size_t kChunk = 4;
  parallel_for(g.B, [&](size_t bBegin, size_t bEnd, int) {
    std::vector<float> u(nu * std::min(kChunk, bEnd - bBegin)), logits(nc), c(nc), s(JD);
    for (size_t b0 = bBegin; b0 < bEnd; b0 += kChunk) {
      const size_t n = std::min(kChunk, bEnd - b0);
      capsule_votes(x + b0 * g.I * g.Din, w, u.data(), n, g.I, g.Din, JD);
      for (size_t k = 0; k < n; k++) {
        const size_t b = b0 + k;
        float* ub = u.data() + k * nu;
        quantize_in_place(qVotes, ub, nu, b * nu, 0);  // as one quantize of all [B, I, JD] votes
        route_one(rg, b, ub, bias, v, nullptr, nullptr, qAct, qRouting, logits.data(), c.data(), s.data());
      }
    }
  });
}

void routing_forward(const RoutingGeom& g, const float* u, const float* bias, float* v, float* saveS,
                     float* saveC, const QuantSpec* qAct, const QuantSpec* qRouting) {
  const size_t ncB = (size_t)g.I * g.P * g.J, nsB = (size_t)g.P * g.J * g.D;
  parallel_for(g.B, [&](size_t bBegin, size_t bEnd, int) {
    std::vector<float> logits(ncB), c(ncB), s(nsB);
    for (size_t b = bBegin; b < bEnd; b++)
      route_one(g, b, u + b * ncB * g.D, bias, v, saveS, saveC, qAct, qRouting, logits.data(), c.data(), s.data());
  });
}

void routing_backward(const RoutingGeom& g, const float* u, const float* saveS, const float* saveC,
                      const float* dvOut, float* du, float* dbias) {
  const int I = g.I, P = g.P, J = g.J, D = g.D;
  const size_t PJ = (size_t)P * J;
  const size_t ncB = (size_t)I * PJ, nsB = PJ * D;
  const size_t nc = ncB * g.B, ns = nsB * g.B;
  const size_t group = g.joint ? PJ : (size_t)J;
  std::vector<float> dbiasPart((size_t)pool_threads() * J * D, 0.f);
  parallel_for(g.B, [&](size_t bBegin, size_t bEnd, int thread) {
  std::vector<float> gb(ncB), dv(nsB), ds(nsB), dc(ncB), v(nsB);
  float* dbiasT = &dbiasPart[(size_t)thread * J * D];
  for (size_t b = bBegin; b < bEnd; b++) {
    const float* ub = u + (size_t)b * ncB * D;
    float* dub = du + (size_t)b * ncB * D;
    memset(dub, 0, ncB * D * sizeof(float));
    std::fill(gb.begin(), gb.end(), 0.f);
    for (int t = g.iterations - 1; t >= 0; t--) {
      const float* s = saveS + t * ns + b * nsB;
      const float* c = saveC + t * nc + b * ncB;
      squash_rows(s, v.data(), PJ, D);
      if (t == g.iterations - 1) {
        memcpy(dv.data(), dvOut + b * nsB, nsB * sizeof(float));
      } else {
        // b_{t+1} = b_t + <u, v_t>
        std::fill(dv.begin(), dv.end(), 0.f);
        for (int i = 0; i < I; i++)
          for (size_t pj = 0; pj < PJ; pj++) {
            const float gi = gb[i * PJ + pj];
            const float* up = ub + (i * PJ + pj) * D;
            float* dup = dub + (i * PJ + pj) * D;
            const float* vp = &v[pj * D];
            float* dvp = &dv[pj * D];
            for (int d = 0; d < D; d++) {
              dup[d] += gi * vp[d];
              dvp[d] += gi * up[d];
            }
          }
      }
      // squash backward: ds = f dv + s (s.dv) f'(n)/n, f(n) = n/(1+n^2), f'(n) = (1-n^2)/(1+n^2)^2
      for (size_t r = 0; r < PJ; r++) {
        const float* sr = s + r * D;
        float n2 = 0, sdv = 0;
        for (int d = 0; d < D; d++) {
          n2 += sr[d] * sr[d];
          sdv += sr[d] * dv[r * D + d];
        }
        float n = std::sqrt(n2);
        float f = n / (1.f + n2);
        float coef = n > 0 ? (1.f - n2) / ((1.f + n2) * (1.f + n2) * n) * sdv : 0.f;
        for (int d = 0; d < D; d++) ds[r * D + d] = f * dv[r * D + d] + coef * sr[d];
      }
      // s = sum_i c u + bias
      for (size_t r = 0; r < PJ; r++) {
        float* db = dbiasT + (r % J) * D;
        for (int d = 0; d < D; d++) db[d] += ds[r * D + d];
      }
      for (int i = 0; i < I; i++)
        for (size_t pj = 0; pj < PJ; pj++) {
          const size_t ci = i * PJ + pj;
          const float cv = c[ci];
          const float* up = ub + ci * D;
          float* dup = dub + ci * D;
          const float* dsp = &ds[pj * D];
          float dot = 0;
          for (int d = 0; d < D; d++) {
            dup[d] += cv * dsp[d];
            dot += up[d] * dsp[d];
          }
          dc[ci] = dot;
        }
      // c = softmax(b_t): db_t = c (dc - sum c dc); flows on to b_{t-1} through the identity
      for (size_t o = 0; o < ncB; o += group) {
        float dot = 0;
        for (size_t k = 0; k < group; k++) dot += c[o + k] * dc[o + k];
        for (size_t k = 0; k < group; k++) gb[o + k] += c[o + k] * (dc[o + k] - dot);
      }
    }
  }
  });
  for (int t = 0; t < pool_threads(); t++)
    for (size_t k = 0; k < (size_t)J * D; k++) dbias[k] += dbiasPart[(size_t)t * J * D + k];
}

}  // namespace qc
