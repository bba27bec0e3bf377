// Fused dynamic routing (SPEC 2.1), forward and backward, one batch element at a time so
// that its votes (e.g. 1152x10x16 floats for ShallowCapsNet) stay in cache across all
// iterations. Same arithmetic and layouts as src/tensor/ts/routing.ts.
//   c = softmax(b);  s_j = sum_i c_ij u_j|i + bias_j;  v_j = squash(s_j);  b_ij += <u_j|i, v_j>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace qc {

static void softmax_groups(const float* logits, float* c, size_t n, size_t group) {
  for (size_t o = 0; o < n; o += group) {
    float m = -INFINITY;
    for (size_t k = 0; k < group; k++) m = std::max(m, logits[o + k]);
    double sum = 0;
    for (size_t k = 0; k < group; k++) {
      float e = std::exp(logits[o + k] - m);
      c[o + k] = e;
      sum += e;
    }
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

void quantize_in_place(const QuantSpec* spec, float* buf, size_t n, size_t index0, uint32_t streamAdd) {
  if (!spec) return;
  QuantSpec qs = *spec;
  qs.stream += streamAdd;
  quantize_slice(buf, buf, n, qs, index0);
}

// The routing of batch element b; logits, c and s are its scratch buffers.
QC_VECTOR_CLONES
void route_one(const RoutingGeom& g, size_t b, const float* u, const float* bias, float* v, float* saveS, float* saveC,
               const QuantSpec* qAct, const QuantSpec* qRouting, float* logits, float* c, float* s) {
  const int I = g.I, P = g.P, J = g.J, D = g.D;
  const size_t PJ = (size_t)P * J;
  const size_t ncB = (size_t)I * PJ, nsB = PJ * D;  // per batch element
  const size_t nc = ncB * g.B, ns = nsB * g.B;
  const size_t group = g.joint ? PJ : (size_t)J;
  const float* ub = u + b * ncB * D;
  float* vb = v + b * nsB;
  std::fill(logits, logits + ncB, 0.f);
  for (int t = 0; t < g.iterations; t++) {
    softmax_groups(logits, c, ncB, group);
    quantize_in_place(qAct, c, ncB, b * ncB, 4 * t);
    for (size_t pj = 0; pj < PJ; pj++) memcpy(s + pj * D, bias + (pj % J) * D, D * sizeof(float));
    for (int i = 0; i < I; i++) {  // s_j += c_ij u_j|i, in the order of i
      const float* ui = ub + (size_t)i * PJ * D;
      const float* ci = c + (size_t)i * PJ;
      for (size_t pj = 0; pj < PJ; pj++) {
        const float cv = ci[pj];
        const float* up = ui + pj * D;
        float* sp = s + pj * D;
#pragma GCC ivdep  // s is scratch, apart from the votes
        for (int d = 0; d < D; d++) sp[d] += cv * up[d];
      }
    }
    quantize_in_place(qRouting, s, nsB, b * nsB, 4 * t + 1);
    squash_rows(s, vb, PJ, D);
    quantize_in_place(qAct, vb, nsB, b * nsB, 4 * t + 2);
    if (saveS) memcpy(saveS + t * ns + b * nsB, s, nsB * sizeof(float));
    if (saveC) memcpy(saveC + t * nc + b * ncB, c, ncB * sizeof(float));
    if (t == g.iterations - 1) break;  // the last logits update is never used
    for (int i = 0; i < I; i++) {  // b_ij += <u_j|i, v_j>
      const float* ui = ub + (size_t)i * PJ * D;
      float* li = logits + (size_t)i * PJ;
      for (size_t pj = 0; pj < PJ; pj++) {
        const float* up = ui + pj * D;
        const float* vp = vb + pj * D;
        float dot = 0;
        for (int d = 0; d < D; d++) dot += up[d] * vp[d];
        li[pj] += dot;
      }
    }
    quantize_in_place(qRouting, logits, ncB, b * ncB, 4 * t + 3);
  }
}

}  // namespace

void routing_forward(const RoutingGeom& g, const float* u, const float* bias, float* v, float* saveS,
                     float* saveC, const QuantSpec* qAct, const QuantSpec* qRouting) {
  const size_t ncB = (size_t)g.I * g.P * g.J, nsB = (size_t)g.P * g.J * g.D;
  parallel_for(g.B, [&](size_t bBegin, size_t bEnd, int) {
    std::vector<float> logits(ncB), c(ncB), s(nsB);
    for (size_t b = bBegin; b < bEnd; b++)
      route_one(g, b, u, bias, v, saveS, saveC, qAct, qRouting, logits.data(), c.data(), s.data());
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
