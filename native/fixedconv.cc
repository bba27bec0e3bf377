// Exact convolution of fixed-point values (the quantized forward, SPEC 4). When every input
// value is an integer multiple of 2^-fx and every weight one of 2^-fw, with integers that fit
// int16, the convolution is an integer dot product:
//   y[r,o] = 2^-(fx+fw) * sum_k X16[r,k] W16[o,k]   (+ bias, ReLU)
// computed exactly on every CPU: int16 products summed in int32 (with AVX512-VNNI's vpdpwssd,
// 32 products per instruction, twice the float32 FMA rate; or vpmaddwd on AVX-512 and AVX2;
// or plain loops, fixedkernels.cc), added into int64 totals often enough that the int32 sums
// cannot overflow. The only roundings are the conversion of the exact sum to float32 and the
// bias add, so the result depends neither on a summation order nor on the CPU: it is the
// correctly rounded sum that a float convolution approximates. Whether it applies depends on
// the values and the geometry alone; what it declines (values that are not fixed point, too
// many bits, too few channels) the caller runs as a float convolution.
//
// Layout: no im2col. With channels-last input, the KW*C values of one kernel row (ky) of an
// output's patch are contiguous in the zero-padded int16 copy of the input, so each GEMM row
// is read in place. Weights are packed per kernel row and per block of 32 output channels,
// as int16 pairs (k, k+1) interleaved over the 32 lanes that vpdpwssd fills (and two vpmaddwd).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <vector>

#include <list>

#include "fixedpoint.h"
#include "parallel.h"

namespace qc {

namespace fixedpoint {

// Integer-only and branch-free, so that it vectorises: the largest |v| as its bit pattern
// (non-negative floats order like their bits; inf and NaN come out huge and never fit), and
// the exponent of the lowest set bit of each nonzero v (|v| = m * 2^(e - 150), m with its
// implicit bit; the lowest set bit of m comes from converting m & -m to float).
QC_VECTOR_CLONES
static Format format_of_slice(const float* v, size_t n) {
  uint32_t maxBits = 0, negative = 0;
  int32_t minLow = INT32_MAX;
  for (size_t i = 0; i < n; i++) {
    uint32_t a;
    memcpy(&a, v + i, sizeof a);
    negative |= (a >> 31) & (uint32_t)((a & 0x7fffffffu) != 0);
    a &= 0x7fffffffu;
    maxBits = std::max(maxBits, a);
    const int32_t e = (int32_t)(a >> 23);
    const int32_t m = (int32_t)((a & 0x7fffffu) | 0x800000u);
    const float lowest = (float)(m & -m);  // 2^ctz(m), exact
    int32_t lb;
    memcpy(&lb, &lowest, sizeof lb);
    const int32_t low = (lb >> 23) - 127 + e - 150;  // subnormals land below -126: never fit
    const int32_t zero = -(int32_t)(a == 0);         // all ones for 0, which fits any format
    minLow = std::min(minLow, (low & ~zero) | (INT32_MAX & zero));
  }
  Format f;
  memcpy(&f.maxAbs, &maxBits, sizeof maxBits);
  f.frac = minLow == INT32_MAX || minLow >= 0 ? 0 : -minLow;
  f.negative = negative != 0;
  return f;
}

Format format_of(const float* v, size_t n) {
  const int T = pool_threads();
  std::vector<Format> part(T);
  parallel_for(n, [&](size_t b, size_t e, int t) {
    const Format p = format_of_slice(v + b, e - b);
    part[t].frac = std::max(part[t].frac, p.frac);
    part[t].maxAbs = std::max(part[t].maxAbs, p.maxAbs);
    part[t].negative = part[t].negative || p.negative;
  });
  Format r;
  for (const Format& p : part)
    r.frac = std::max(r.frac, p.frac), r.maxAbs = std::max(r.maxAbs, p.maxAbs), r.negative = r.negative || p.negative;
  return r;
}

bool fits_int16(const Format& f) { return f.frac <= 30 && std::ldexp((double)f.maxAbs, f.frac) <= 32767.0; }
bool fits_int30(const Format& f) { return f.frac <= 30 && std::ldexp((double)f.maxAbs, f.frac) < 0x1p30; }

RunBounds run_bounds(const int64_t* chunkL1, size_t rows, int chunks, int chunkPairs) {
  RunBounds rb;
  rb.chunkPairs = chunkPairs;
  std::vector<int64_t> sums(chunkL1, chunkL1 + rows * chunks);  // aligned runs of `run` chunks
  for (int run = 1, n = chunks;; run *= 2, n = (n + 1) / 2) {
    rb.runs.push_back(run);
    rb.worst.push_back(*std::max_element(sums.begin(), sums.begin() + rows * n));
    if (n == 1) break;
    // pairs of runs into runs twice as long, in place (writes never pass the reads)
    const int n2 = (n + 1) / 2;
    for (size_t r = 0; r < rows; r++)
      for (int c = 0; c < n2; c++)
        sums[r * n2 + c] = sums[r * n + 2 * c] + (2 * c + 1 < n ? sums[r * n + 2 * c + 1] : 0);
  }
  return rb;
}

int segment_pairs(const RunBounds& rb, int64_t maxX, int pairs) {
  for (size_t i = rb.runs.size(); i-- > 0;)
    if (maxX * rb.worst[i] < ((int64_t)1 << 31)) return std::min(pairs, rb.runs[i] * rb.chunkPairs);
  return 0;
}


void to_int16_padded(const ConvGeom& g, const float* x, float sx, int Hq, int Wq, int Cp, int limbBits, int16_t* dst,
                     int16_t* low) {
  const int32_t lowMask = (1 << limbBits) - 1;
  const size_t rowLen = (size_t)Wq * Cp;
  parallel_for((size_t)g.B * Hq, [&](size_t rb, size_t re, int) {
    for (size_t r = rb; r < re; r++) {
      const size_t b = r / Hq;
      const int iy = (int)(r % Hq) - g.pad;
      int16_t* d = dst + r * rowLen;
      int16_t* l = low ? low + r * rowLen : nullptr;
      if (iy < 0 || iy >= g.H) {
        memset(d, 0, rowLen * sizeof(int16_t));
        if (l) memset(l, 0, rowLen * sizeof(int16_t));
        continue;
      }
      const float* src = x + ((b * g.H + iy) * g.W) * g.C;
      for (int ix = 0; ix < Wq; ix++) {
        int16_t* dp = d + (size_t)ix * Cp;
        int16_t* lp = l ? l + (size_t)ix * Cp : nullptr;
        const int jx = ix - g.pad;
        if (jx < 0 || jx >= g.W) {
          memset(dp, 0, Cp * sizeof(int16_t));
          if (lp) memset(lp, 0, Cp * sizeof(int16_t));
          continue;
        }
        const float* sp = src + (size_t)jx * g.C;
        if (!lp) {
          for (int c = 0; c < g.C; c++) dp[c] = (int16_t)(sp[c] * sx);
        } else {
          for (int c = 0; c < g.C; c++) {
            const int32_t v = (int32_t)(sp[c] * sx);
            dp[c] = (int16_t)(v >> limbBits);  // floor division
            lp[c] = (int16_t)(v & lowMask);
          }
          for (int c = g.C; c < Cp; c++) lp[c] = 0;
        }
        for (int c = g.C; c < Cp; c++) dp[c] = 0;
      }
    }
  });
}

}  // namespace fixedpoint

namespace {

using namespace fixedpoint;

// The weights as int16, packed [ky][O block][pair][lane][2], with what the overflow bound
// needs: a sum over a run of chunks of a kernel row is bounded by max|x16| times the sum of
// |w16| over those chunks (bounds: the largest such sums, over every output channel and kernel
// row). The bounds are computed at once, the packing when the direct kernel first runs; the
// integer Winograd keeps its own packings of the same weights in `wino`.
struct PackedWeights {
  std::vector<float> source;  // the float weights packed: with the geometry, the cache's key
  int O = 0, KH = 0, rowLen = 0;
  bool fits = false;  // fixed point within int16
  Format fw;
  std::vector<int16_t> packed;
  RunBounds bounds;
  int64_t patchL1 = 0;  // the largest sum of |w16| over a whole kernel (bounds |y|)
  WinoCache wino;
};

// The packings of the last weights seen, keyed by their values and geometry (compared with
// memcmp, so that weights changed in place are packed again): a quantized forward convolves
// every batch with the same weights of each layer, and DeepCaps has a dozen such layers.
constexpr size_t kCachedWeights = 16;
std::list<PackedWeights> g_weights;  // most recently used first

// sum of |int(v[i] * scale)| (weights already known to be such integers within int16)
QC_VECTOR_CLONES
int64_t abs_sum_int(const float* v, int n, float scale) {
  int32_t sum = 0;  // n <= 64 values of at most 2^15
  for (int i = 0; i < n; i++) {
    const int32_t q = (int32_t)(v[i] * scale);
    sum += q < 0 ? -q : q;
  }
  return sum;
}

PackedWeights& packed_weights(const ConvGeom& g, const float* w) {
  const int rowLen = g.KW * g.C;
  const size_t nw = (size_t)g.O * g.KH * rowLen;
  for (auto it = g_weights.begin(); it != g_weights.end(); ++it)
    if (it->O == g.O && it->KH == g.KH && it->rowLen == rowLen && it->source.size() == nw &&
        memcmp(it->source.data(), w, nw * sizeof(float)) == 0) {
      g_weights.splice(g_weights.begin(), g_weights, it);
      return g_weights.front();
    }
  if (g_weights.size() >= kCachedWeights) g_weights.pop_back();
  PackedWeights& pw = g_weights.emplace_front();
  pw.source.assign(w, w + nw);
  pw.O = g.O, pw.KH = g.KH, pw.rowLen = rowLen;
  const Format fw = pw.fw = format_of(w, nw);
  pw.fits = fits_int16(fw);
  if (!pw.fits) return pw;
  const float sw = std::ldexp(1.f, fw.frac);
  const int pairs = rowLen / 2;
  const int chunks = (pairs + kChunkPairs - 1) / kChunkPairs;  // per kernel row
  std::vector<int64_t> chunkL1((size_t)g.O * g.KH * chunks, 0);
  parallel_for((size_t)g.O * g.KH, [&](size_t rb, size_t re, int) {
    for (size_t r = rb; r < re; r++)
      for (int c = 0; c < chunks; c++) {
        const int k0 = c * 2 * kChunkPairs;
        chunkL1[r * chunks + c] = abs_sum_int(w + r * rowLen + k0, std::min(rowLen - k0, 2 * kChunkPairs), sw);
      }
  });
  pw.patchL1 = 0;
  for (int o = 0; o < g.O; o++) {
    int64_t sum = 0;
    for (size_t c = 0; c < (size_t)g.KH * chunks; c++) sum += chunkL1[(size_t)o * g.KH * chunks + c];
    pw.patchL1 = std::max(pw.patchL1, sum);
  }
  pw.bounds = run_bounds(chunkL1.data(), (size_t)g.O * g.KH, chunks, kChunkPairs);
  return pw;
}

// The weights packed for the direct kernel (done once per weights, on first use).
const int16_t* packed_data(PackedWeights& pw) {
  if (!pw.packed.empty()) return pw.packed.data();
  const float sw = std::ldexp(1.f, pw.fw.frac);
  const int rowLen = pw.rowLen, pairs = rowLen / 2, blocks = (pw.O + kLanes - 1) / kLanes;
  pw.packed.assign((size_t)pw.KH * blocks * pairs * 2 * kLanes, 0);
  parallel_for((size_t)pw.O, [&](size_t ob, size_t oe, int) {
    for (size_t o = ob; o < oe; o++) {
      const size_t blk = o / kLanes, lane = o % kLanes;
      for (int ky = 0; ky < pw.KH; ky++) {
        const float* src = pw.source.data() + ((size_t)o * pw.KH + ky) * rowLen;
        int16_t* dst = pw.packed.data() + (((size_t)ky * blocks + blk) * pairs) * 2 * kLanes + lane * 2;
        for (int k = 0; k < rowLen; k++) dst[(size_t)(k / 2) * 2 * kLanes + (k % 2)] = (int16_t)(src[k] * sw);
      }
    }
  });
  return pw.packed.data();
}

}  // namespace

const char* fixed_method_name(FixedMethod m) {
  switch (m) {
    case FixedMethod::direct:
      return "direct";
    case FixedMethod::limbs:
      return "limbs";
    case FixedMethod::winograd:
      return "winograd";
    case FixedMethod::declined:
      break;
  }
  return "declined";
}

FixedMethod fixed_point_conv(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y, bool relu,
                             int maxPasses) {
  // Whether it applies depends on the values and the geometry only, never on the CPU: every
  // instruction-set level computes the same integers.
  const Isa isa = active_isa();
  const int rowLen = g.KW * g.C;  // one kernel row of a patch, contiguous in the padded input
  if (rowLen % 2 != 0 || rowLen < 64 || g.O < 16) return FixedMethod::declined;
  const size_t nx = (size_t)g.B * g.H * g.W * g.C;
  const Format fx = format_of(x, nx);
  if (!fits_int30(fx)) return FixedMethod::declined;
  const float sx = std::ldexp(1.f, fx.frac);
  PackedWeights& pw = packed_weights(g, w);
  if (!pw.fits) return FixedMethod::declined;
  const int pairs = rowLen / 2, blocks = (g.O + kLanes - 1) / kLanes;
  const int64_t maxX = (int64_t)std::ldexp((double)fx.maxAbs, fx.frac);
  if ((double)maxX * (double)pw.patchL1 >= 0x1p53) return FixedMethod::declined;  // as the reference: below 2^53
  // One pass over x when its integers fit int16 and the int32 sums cannot overflow. Else two,
  // over the limbs of x = 2^b high + low (low in [0, 2^b), high = floor(x / 2^b)), with the b
  // that gives both the longest int32 segments; the high limb's sums are scaled by 2^b.
  int limbBits = 0;
  int segs[2] = {fits_int16(fx) ? segment_pairs(pw.bounds, maxX, pairs) : 0, 0};
  if (segs[0] == 0) {
    if (maxPasses < 2) return FixedMethod::declined;
    for (int b = 1; b <= 15; b++) {
      const int64_t maxHigh = (maxX + ((int64_t)1 << b) - 1) >> b;
      const int high = maxHigh <= 32767 ? segment_pairs(pw.bounds, maxHigh, pairs) : 0;
      const int low = segment_pairs(pw.bounds, ((int64_t)1 << b) - 1, pairs);
      if (std::min(high, low) > std::min(segs[0], segs[1])) limbBits = b, segs[0] = high, segs[1] = low;
    }
    if (limbBits == 0) return FixedMethod::declined;
  }
  // the same exact sums with fewer products, where that applies
  if (!limbBits && winograd_fixed_conv(isa, g, x, fx, maxX, w, pw.fw, pw.wino, bias, y, relu))
    return FixedMethod::winograd;
  const Kernels kern = kernels_for(isa);
  const int16_t* packed = packed_data(pw);

  // input: int16, zero-padded [B, H + 2 pad, W + 2 pad, C]: x itself, or its high and low limbs
  const int Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad, C = g.C;
  static std::vector<int16_t> xp, xpLow;  // workspaces, reused
  xp.resize((size_t)g.B * Hp * Wp * C);
  if (limbBits) xpLow.resize(xp.size());
  to_int16_padded(g, x, sx, Hp, Wp, C, limbBits, xp.data(), limbBits ? xpLow.data() : nullptr);

  // rows of output (b, oy, ox) in blocks of kRows; each thread owns whole blocks and walks
  // ky and the weight blocks outside its rows, so a kernel row's weights stay in cache
  const size_t rows = (size_t)g.B * g.OH * g.OW, rowBlocks = (rows + kRows - 1) / kRows;
  const int ldc = blocks * kLanes;
  static std::vector<int64_t> acc;  // workspace, reused
  acc.resize(rows * ldc);  // the first kernel row's sums are assigned
  const float scale = std::ldexp(1.f, -(fx.frac + pw.fw.frac));
  parallel_for(rowBlocks, [&](size_t bb, size_t be, int) {
    alignas(64) int64_t scratch[kLanes];
    constexpr int kBlocksPerPass = 4;  // 4 x 32 channels of one kernel row: <= 600 KB of weights
    const size_t rb = bb * kRows, re = std::min(rows, be * kRows);
    // acc[rows of this thread] += the int16 input xs convolved with the weights
    auto sweep = [&](const int16_t* xs, int segPairs, bool first) {
      for (int ky = 0; ky < g.KH; ky++)
        for (int nb0 = 0; nb0 < blocks; nb0 += kBlocksPerPass)
          for (size_t rbk = bb; rbk < be; rbk++) {
            const size_t r0 = rbk * kRows;
            const int mr = (int)std::min<size_t>(kRows, rows - r0);
            // a partial block repeats its last row and sends those sums to a scratch row
            const int16_t* a[kRows];
            for (int i = 0; i < kRows; i++) {
              const size_t r = r0 + std::min(i, mr - 1), b = r / ((size_t)g.OH * g.OW), rem = r % ((size_t)g.OH * g.OW);
              const size_t oy = rem / g.OW, ox = rem % g.OW;
              a[i] = xs + ((b * Hp + oy * g.stride + ky) * Wp + ox * g.stride) * C;
            }
            for (int nb = nb0; nb < std::min(blocks, nb0 + kBlocksPerPass); nb++) {
              int64_t* c[kRows];
              for (int i = 0; i < kRows; i++)
                c[i] = i < mr ? acc.data() + (r0 + i) * ldc + (size_t)nb * kLanes : scratch;
              kern.micro_kernel(a, pairs, segPairs, packed + (((size_t)ky * blocks + nb) * pairs) * 2 * kLanes, c,
                                first && ky == 0, nullptr);
            }
          }
    };
    sweep(xp.data(), segs[0], true);
    if (limbBits) {  // the high limb's sums times 2^b, then the low limb's added
      for (size_t r = rb; r < re; r++)
        for (int o = 0; o < g.O; o++) acc[r * ldc + o] *= (int64_t)1 << limbBits;
      sweep(xpLow.data(), segs[1], false);
    }
    // y = the exact sum, rounded once to float32, times 2^-(fx+fw)
    for (size_t r = rb; r < re; r++)
      kern.to_float_rows(acc.data() + r * ldc, 0, g.O, 0, scale, bias, relu, y + r * g.O);
  });
  return limbBits ? FixedMethod::limbs : FixedMethod::direct;
}

}  // namespace qc
