// Fixed-point quantizers (SPEC 4), float32 arithmetic identical to src/tensor/ts/quantize.ts.
#include <cmath>

#include "kernels.h"
#include "parallel.h"

namespace qc {

static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

static inline uint32_t stream_key(uint32_t seed, uint32_t stream) {
  return fmix32(seed ^ ((stream + 1u) * 0x9e3779b9u));
}

static inline float uniform_at(uint32_t key, uint32_t i) {
  return (float)(fmix32(key ^ ((i + 1u) * 0xcc9e2d51u)) >> 8) * 5.9604644775390625e-8f;
}

// v clamped to [lo, hi], NaN kept; two selects that map onto maxps/minps, so loops vectorise
static inline float clampf(float v, float lo, float hi) {
  const float t = v < lo ? lo : v;
  return t > hi ? hi : t;
}

// x * 2^frac is exact in float32 (a power-of-two scale), so a fused multiply-add of the
// scaling and the compat offset rounds exactly as PyTorch's two separate operations do; the
// loops vectorise.
QC_VECTOR_CLONES
void quantize_slice(const float* x, float* y, size_t n, const QuantSpec& q, size_t index0) {
  const float scale = std::ldexp(1.f, q.frac);
  const float inv = std::ldexp(1.f, -q.frac);
  const float half = std::ldexp(1.f, -q.frac - 1);
  const float lo = q.lo, hi = q.hi;
  switch (q.method) {
    case 0:
      for (size_t i = 0; i < n; i++) y[i] = clampf(std::floor(x[i] * scale) * inv, lo, hi);
      break;
    case 1:
      if (q.compat)
        for (size_t i = 0; i < n; i++) y[i] = clampf(std::floor(x[i] * scale + half) * inv, lo, hi);  // + 2^(-N-1)
      else
        for (size_t i = 0; i < n; i++) y[i] = clampf(std::nearbyint(x[i] * scale) * inv, lo, hi);
      break;
    case 2: {
      const uint32_t key = stream_key(q.seed, q.stream);
      for (size_t i = 0; i < n; i++) {
        const float xi = x[i];
        const float u = uniform_at(key, (uint32_t)(index0 + i));
        float v;
        if (q.compat) {
          const float base = std::floor(xi * scale + half) * inv;
          v = u < (xi - base) * scale ? base + inv : base;  // (x - base) / 2^-N, exact either way
        } else {
          float s = xi * scale;
          float fl = std::floor(s);
          v = (u < s - fl ? fl + 1.f : fl) * inv;
        }
        y[i] = clampf(v, lo, hi);
      }
      break;
    }
    case 3: {
      const double minMag = std::ldexp(1.0, -q.frac);
      for (size_t i = 0; i < n; i++) {
        const float xi = x[i];
        const float a = std::fabs(xi);
        double m;
        if (a == 0.f && !q.compat) {
          m = 0;
        } else {
          volatile float arg = q.compat ? a + 1e-8f : a;
          m = std::exp2(std::nearbyint(std::log2((double)arg)));
        }
        if (m < minMag) m = 0;
        if (m > 1024.0) m = 1024.0;
        float r = (float)m;
        y[i] = clampf(xi > 0 ? r : (xi < 0 ? -r : 0.f), lo, hi);
      }
      break;
    }
  }
}

// Split over the pool's threads; each slice keeps its global element indices, so stochastic
// rounding draws the same uniforms whatever the thread count.
void quantize(const float* x, float* y, size_t n, const QuantSpec& q) {
  if (n < (1u << 16)) return quantize_slice(x, y, n, q, 0);
  parallel_for(n, [&](size_t b, size_t e, int) { quantize_slice(x + b, y + b, e - b, q, b); });
}

void quantize_masked(const float* x, float* y, size_t n, const QuantSpec& q, uint8_t* mask) {
  // block by block, so the quantizer reads what the mask has just brought into cache
  auto run = [&](size_t b, size_t e) {
    constexpr size_t kBlock = 4096;
    for (size_t c = b; c < e; c += kBlock) {
      const size_t m = std::min(e, c + kBlock) - c;
      for (size_t i = c; i < c + m; i++) mask[i] = (uint8_t)((x[i] >= q.lo) & (x[i] <= q.hi));  // NaN: 0
      quantize_slice(x + c, y + c, m, q, c);
    }
  };
  if (n < (1u << 16)) return run(0, n);
  parallel_for(n, [&](size_t b, size_t e, int) { run(b, e); });
}

void mask_gradient(const float* dy, const uint8_t* mask, size_t n, float* out) {
  parallel_for(n, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; i++) out[i] = mask[i] ? dy[i] : 0.f;
  });
}

}  // namespace qc
