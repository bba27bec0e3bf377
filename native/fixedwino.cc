// Exact integer Winograd convolution of fixed-point values (the quantized forward, SPEC 4).
// The same contract as the direct kernel (fixedconv.cc): y = 2^-(fx+fw) times the exact
// integer sum, rounded once to float32, then bias and ReLU; so the two give the same bits.
// It needs fewer multiplications. The minimal filtering algorithms F(2, r) (Winograd 1980;
// Lavin & Gray 2016) with the interpolation points 0, 1, -1 and infinity have transforms with
// small integer entries, so in integers they are exact:
//   F(2,3): 4 products for 2 outputs of a 3-tap filter (6 direct). Its filter transform has
//           halves; scaled by 2 here, its sums come out doubled and are halved exactly;
//   F(2,2): 3 products for 2 outputs of a 2-tap filter (4 direct);
//   F(2,1): 2 products (no saving; it covers a single leftover tap).
// A strided convolution is the sum of stride^2 stride-1 convolutions over the phases of x and
// w (w[s t + p] meets x[s i + p]); each phase's taps are cut into pieces of 3 and 2 (a 9x9
// stride-2 kernel has phases of 5 and 4 taps: 5 = 3 + 2, 4 = 2 + 2). In 2-D a pair of pieces
// (ry, rx) is F(2x2, ry x rx): (ry+1)(rx+1) products per 2x2 outputs and input channel. Piece
// pairs of one type share their transforms, so their channels are concatenated into one GEMM
// per transform point (xi, eta):
//   M[xi,eta][tile][o] = sum_k V[xi,eta][tile][k] U[xi,eta][k][o]     (int16 VNNI, exact)
//   V = B^T d B (input windows d), U = G g G^T (filter pieces g), y = sum A^T M A / scale.
// ShallowCapsNet's primary capsules (9x9 stride 2, 6x6 outputs): 169 products per 2x2 outputs
// and input channel instead of 324.
// The transformed values must fit int16: |V| <= 4 max|x| and |U| <= 9 max|w| are checked, and
// the int32 sums run in segments that cannot overflow, as in the direct kernel. Where F(2,3)'s
// do not fit (or even one chunk of its int32 sums could overflow: dac2020's 12-bit layers),
// pieces of at most 2 taps are tried (|U| <= 4 max|w|; 0.6 of the direct products for the
// primary capsules), then the direct kernel.
// Each thread owns output-channel blocks: per transform point the micro-kernel's int64 sums
// are added, with the signs of A^T (x) A^T, into the 2x2 outputs of their tiles.
// It runs at every instruction-set level (isa.h): the GEMMs with that level's micro-kernel
// (fixedkernels.cc); the input transforms with AVX-512 where the level has it, else as GCC
// vectors (the compiler's AVX2, or whatever the CPU has); the same integers everywhere.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fixedpoint.h"
#include "parallel.h"

#include "settings.h"

namespace qc::fixedpoint {

namespace {

// F(2, r) in integers: U = G g, y = AT M >> shift, alpha = r + 1 points; V = BT d is written
// out in input_transform below.
struct Fir {
  int r, alpha, shift;
  int G[4][3];
  int AT[2][4];
};
constexpr Fir kF21 = {1, 2, 0, {{1}, {1}}, {{1, 0}, {0, 1}}};
constexpr Fir kF22 = {2, 3, 0, {{1, 0}, {1, 1}, {0, 1}}, {{1, 1, 0}, {0, 1, 1}}};
constexpr Fir kF23 = {3, 4, 1, {{2, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 2}}, {{1, 1, 1, 0}, {0, 1, -1, -1}}};
const Fir& fir(int r) { return r == 3 ? kF23 : r == 2 ? kF22 : kF21; }

// B^T d along one direction for F(2, R) (entries 0 and +-1), on any type with + and -: int,
// or GCC vectors of int16 channels (which wrap as the AVX-512 instructions do)
template <int R, typename V>
__attribute__((always_inline)) inline void input_transform(const V* d, V* v) {
  if constexpr (R == 3) {  // [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
    v[0] = d[0] - d[2];
    v[1] = d[1] + d[2];
    v[2] = d[2] - d[1];
    v[3] = d[1] - d[3];
  } else if constexpr (R == 2) {  // [1 -1 0; 0 1 0; 0 -1 1]
    v[0] = d[0] - d[1];
    v[1] = d[1];
    v[2] = d[2] - d[1];
  } else {  // identity
    v[0] = d[0];
    v[1] = d[1];
  }
}

// 32 int16 channels (GCC's generic vectors: AVX-512, AVX2 or SSE2/NEON instructions, as the
// function's target allows)
typedef int16_t I16x32 __attribute__((vector_size(64)));

// V[xi][eta] = (B^T d B)[xi][eta] of the window d[i][j] = window[i rowStride + j colStride],
// 32 channels at a time (the last block copied to Cp); v[p]: where point p goes. Written once,
// compiled for each target below.
template <int RY, int RX>
__attribute__((always_inline)) inline void transform_window_generic(const int16_t* window, size_t rowStride,
                                                                     size_t colStride, int Cp, int16_t* const* v) {
  constexpr int AY = RY + 1, AX = RX + 1;
  for (int c0 = 0; c0 < Cp; c0 += 32) {
    const size_t n = (size_t)std::min(32, Cp - c0) * sizeof(int16_t);
    I16x32 rows[AY][AX];
    for (int i = 0; i < AY; i++) {
      I16x32 d[AX] = {};
      for (int j = 0; j < AX; j++) memcpy(&d[j], window + i * rowStride + j * colStride + c0, n);
      input_transform<RX>(d, rows[i]);
    }
    for (int eta = 0; eta < AX; eta++) {
      I16x32 col[AY], out[AY];
      for (int i = 0; i < AY; i++) col[i] = rows[i][eta];
      input_transform<RY>(col, out);
      for (int xi = 0; xi < AY; xi++) memcpy(v[xi * AX + eta] + c0, &out[xi], n);
    }
  }
}

template <int RY, int RX>
void transform_window_portable(const int16_t* window, size_t rowStride, size_t colStride, int Cp, int16_t* const* v) {
  transform_window_generic<RY, RX>(window, rowStride, colStride, Cp, v);
}

#ifdef QC_HAVE_X86_KERNELS
template <int RY, int RX>
__attribute__((target("avx2"))) void transform_window_avx2(const int16_t* window, size_t rowStride, size_t colStride,
                                                            int Cp, int16_t* const* v) {
  transform_window_generic<RY, RX>(window, rowStride, colStride, Cp, v);
}

// The same with AVX-512 masked loads and stores (no copies at the last block)
template <int RY, int RX>
__attribute__((target("avx512f,avx512bw"))) void transform_window_avx512(const int16_t* window, size_t rowStride,
                                                                          size_t colStride, int Cp, int16_t* const* v) {
  constexpr int AY = RY + 1, AX = RX + 1;
  for (int c0 = 0; c0 < Cp; c0 += 32) {
    const __mmask32 mask = Cp - c0 >= 32 ? ~0u : (1u << (Cp - c0)) - 1;
    I16x32 rows[AY][AX];
    for (int i = 0; i < AY; i++) {
      I16x32 d[AX];
      for (int j = 0; j < AX; j++)
        d[j] = (I16x32)_mm512_maskz_loadu_epi16(mask, window + i * rowStride + j * colStride + c0);
      input_transform<RX>(d, rows[i]);
    }
    for (int eta = 0; eta < AX; eta++) {
      I16x32 col[AY], out[AY];
      for (int i = 0; i < AY; i++) col[i] = rows[i][eta];
      input_transform<RY>(col, out);
      for (int xi = 0; xi < AY; xi++) _mm512_mask_storeu_epi16(v[xi * AX + eta] + c0, mask, (__m512i)out[xi]);
    }
  }
}
#endif

using TransformFn = void (*)(const int16_t*, size_t, size_t, int, int16_t* const*);

#define QC_TRANSFORM_TABLE(fn)                                                   \
  {                                                                              \
    {fn<1, 1>, fn<1, 2>, fn<1, 3>}, {fn<2, 1>, fn<2, 2>, fn<2, 3>}, {fn<3, 1>, fn<3, 2>, fn<3, 3>} \
  }

TransformFn transform_for(Isa isa, int ry, int rx) {
  static const TransformFn portable[3][3] = QC_TRANSFORM_TABLE(transform_window_portable);
#ifdef QC_HAVE_X86_KERNELS
  static const TransformFn avx2[3][3] = QC_TRANSFORM_TABLE(transform_window_avx2);
  static const TransformFn avx512[3][3] = QC_TRANSFORM_TABLE(transform_window_avx512);
  if (isa == Isa::avx512 || isa == Isa::avx512vnni) return avx512[ry - 1][rx - 1];
  if (isa == Isa::avx2) return avx2[ry - 1][rx - 1];
#else
  (void)isa;
#endif
  return portable[ry - 1][rx - 1];
}

// B^T of input_transform<R>, read back from it (row xi, column j)
template <int R>
std::vector<std::vector<int>> input_matrix() {
  std::vector<std::vector<int>> bt(R + 1, std::vector<int>(R + 1));
  for (int j = 0; j <= R; j++) {
    int d[R + 1], v[R + 1];
    for (int i = 0; i <= R; i++) d[i] = i == j ? 1 : 0;
    input_transform<R>(d, v);
    for (int xi = 0; xi <= R; xi++) bt[xi][j] = v[xi];
  }
  return bt;
}

// For each 2-D point p = xi (R_x + 1) + eta of F(2x2, ry x rx): the bound of |V_p| / max|x|,
// the larger of its positive and negative coefficient sums when x >= 0, else their sum
std::vector<int> point_bounds(int ry, int rx, bool nonNegative) {
  static const std::vector<std::vector<int>> bts[3] = {input_matrix<1>(), input_matrix<2>(), input_matrix<3>()};
  const auto &by = bts[ry - 1], &bx = bts[rx - 1];
  std::vector<int> out;
  for (size_t xi = 0; xi < by.size(); xi++)
    for (size_t eta = 0; eta < bx.size(); eta++) {
      int pos = 0, neg = 0;
      for (size_t i = 0; i < by.size(); i++)
        for (size_t j = 0; j < bx.size(); j++) {
          const int c = by[xi][i] * bx[eta][j];
          (c > 0 ? pos : neg) += std::abs(c);
        }
      out.push_back(nonNegative ? std::max(pos, neg) : pos + neg);
    }
  return out;
}

// a run of taps of one phase along one axis: taps s (offset + i) + phase, i < r
struct Piece {
  int phase, offset, r;
};

// With pieces of up to 3 taps: 5 = 3 + 2, 4 = 2 + 2, 7 = 3 + 2 + 2, ... (pieces of 3 while
// the rest is not 1 or 4); of up to 2: 5 = 2 + 2 + 1, 4 = 2 + 2.
std::vector<Piece> axis_pieces(int K, int s, int maxPiece) {
  std::vector<Piece> out;
  for (int p = 0; p < s && p < K; p++) {
    int L = (K - p + s - 1) / s, off = 0;
    while (L > 0) {
      const int r = maxPiece == 2 ? std::min(L, 2) : L == 4 ? 2 : std::min(L, 3);
      out.push_back({p, off, r});
      off += r, L -= r;
    }
  }
  return out;
}

struct Type {
  int ry, rx;
  std::vector<std::pair<Piece, Piece>> comps;  // (y piece, x piece)
  int points = 0, K = 0, pairs = 0, shift = 0;
  std::vector<int> bound;  // per point: |V_p| <= bound[p] max|x|
  size_t vOffset = 0;  // int16 values into one tile's V, points x K
  size_t uOffset = 0;  // int16 values into the packed U
};

struct Plan {
  std::vector<Type> types;
  int Cp = 0;  // channels padded to even (a pad channel of zeros)
  int OHt = 0, OWt = 0, Hq = 0, Wq = 0, maxShift = 0;
  size_t vPerTile = 0, uSize = 0;
  double products = 0;  // per tile and output channel
};

Plan make_plan(const ConvGeom& g, int maxPiece, bool nonNegative) {
  Plan pl;
  pl.Cp = g.C + (g.C & 1);
  pl.OHt = (g.OH + 1) / 2, pl.OWt = (g.OW + 1) / 2;
  const std::vector<Piece> py = axis_pieces(g.KH, g.stride, maxPiece),
                           px = axis_pieces(g.KW, g.stride, maxPiece);
  Type byKind[3][3];
  for (const Piece& a : py)
    for (const Piece& b : px) byKind[a.r - 1][b.r - 1].comps.push_back({a, b});
  // the padded int16 input must hold every window of the last tiles (zero past the image)
  pl.Hq = g.H + 2 * g.pad, pl.Wq = g.W + 2 * g.pad;
  for (const Piece& a : py) pl.Hq = std::max(pl.Hq, g.stride * (2 * (pl.OHt - 1) + a.offset + a.r) + a.phase + 1);
  for (const Piece& b : px) pl.Wq = std::max(pl.Wq, g.stride * (2 * (pl.OWt - 1) + b.offset + b.r) + b.phase + 1);
  const int blocks = (g.O + kLanes - 1) / kLanes;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      Type t = byKind[i][j];
      if (t.comps.empty()) continue;
      t.ry = i + 1, t.rx = j + 1;
      const Fir &fy = fir(t.ry), &fx = fir(t.rx);
      t.points = fy.alpha * fx.alpha;
      t.K = (int)t.comps.size() * pl.Cp;
      t.pairs = t.K / 2;
      t.shift = fy.shift + fx.shift;
      t.bound = point_bounds(t.ry, t.rx, nonNegative);
      t.vOffset = pl.vPerTile;
      t.uOffset = pl.uSize;
      pl.vPerTile += (size_t)t.points * t.K;
      pl.uSize += (size_t)t.points * blocks * t.pairs * 2 * kLanes;
      pl.products += (double)t.points * t.K;
      pl.maxShift = std::max(pl.maxShift, t.shift);
      pl.types.push_back(t);
    }
  return pl;
}

// The int32 overflow bounds of the Winograd GEMMs are kept in finer chunks than the direct
// kernel's: the (1,1) point of F(2x2,3x3) sums 4 inputs and 9 weights.
constexpr int kWinoChunkPairs = 8;

}  // namespace

// The transformed, packed weights of one set of weights (WinoCache, kept with them), for the
// geometry it was built for (the same weights may be convolved with another stride), with
// each type's overflow bounds.
struct WinoWeights {
  bool built = false;
  int maxPiece = 0;
  int O = -1, C = -1, KH = -1, KW = -1, stride = -1;
  bool fits = false;
  std::vector<int16_t> packed;
  std::vector<std::vector<RunBounds>> worst;  // [type][point], over the output channels
};

WinoCache::WinoCache() : plans{nullptr, nullptr} {}
WinoCache::~WinoCache() {
  for (WinoWeights* p : plans) delete p;
}

namespace {

// One pair (k, k+1) of one transform point for every output channel: u[e][o] = sum over the
// terms of coef * row[o] (int16 weight rows, o < n, n a multiple of 32); l1[o] += |u0| + |u1|;
// the pairs go into the packed blocks (dst: block 0 at this pair, blocks blockStride apart).
// Returns the largest |u|.
using PackPairFn = int32_t (*)(const int16_t* const (*rows)[9], const int (*coefs)[9], const int* terms, int n,
                               int64_t* l1, int16_t* dst, size_t blockStride);

int32_t pack_pair_portable(const int16_t* const (*rows)[9], const int (*coefs)[9], const int* terms, int n,
                           int64_t* l1, int16_t* dst, size_t blockStride) {
  int32_t worst = 0;
  for (int o = 0; o < n; o++) {
    int32_t u[2] = {0, 0};
    for (int e = 0; e < 2; e++)
      for (int t = 0; t < terms[e]; t++) u[e] += coefs[e][t] * rows[e][t][o];
    const int32_t a0 = std::abs(u[0]), a1 = std::abs(u[1]);
    worst = std::max(worst, std::max(a0, a1));
    l1[o] += a0 + a1;
    int16_t* d = dst + (size_t)(o / kLanes) * blockStride + 2 * (o % kLanes);
    d[0] = (int16_t)u[0], d[1] = (int16_t)u[1];  // past int16 only when worst says so
  }
  return worst;
}

#ifdef QC_HAVE_X86_KERNELS
// One pair (k, k+1) of one transform point for every output channel: u[e][o] = sum over the
// terms of coef * row[o] (int16 weight rows, o < n, n a multiple of 32); l1[o] += |u0| + |u1|;
// the pairs go into the packed blocks (dst: block 0 at this pair, blocks blockStride apart).
// Returns the largest |u|.
__attribute__((target("avx512f,avx512bw"))) int32_t pack_pair_avx512(const int16_t* const (*rows)[9],
                                                                       const int (*coefs)[9], const int* terms, int n,
                                                                       int64_t* l1, int16_t* dst, size_t blockStride) {
  __m512i worst = _mm512_setzero_si512();
  for (int o0 = 0; o0 < n; o0 += kLanes) {
    __m512i u[2][2];  // [e][lanes 0-15, 16-31]
    for (int e = 0; e < 2; e++) {
      u[e][0] = u[e][1] = _mm512_setzero_si512();
      for (int t = 0; t < terms[e]; t++) {
        const __m512i cf = _mm512_set1_epi32(coefs[e][t]);
        const __m256i* r = (const __m256i*)(rows[e][t] + o0);
        u[e][0] = _mm512_add_epi32(u[e][0], _mm512_mullo_epi32(cf, _mm512_cvtepi16_epi32(_mm256_loadu_si256(r))));
        u[e][1] = _mm512_add_epi32(u[e][1], _mm512_mullo_epi32(cf, _mm512_cvtepi16_epi32(_mm256_loadu_si256(r + 1))));
      }
    }
    for (int h = 0; h < 2; h++) {
      const __m512i a0 = _mm512_abs_epi32(u[0][h]), a1 = _mm512_abs_epi32(u[1][h]);
      worst = _mm512_max_epi32(worst, _mm512_max_epi32(a0, a1));
      const __m512i sum = _mm512_add_epi32(a0, a1);
      int64_t* l = l1 + o0 + 16 * h;
      _mm512_storeu_si512(l, _mm512_add_epi64(_mm512_loadu_si512(l), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(sum))));
      _mm512_storeu_si512(l + 8, _mm512_add_epi64(_mm512_loadu_si512(l + 8),
                                                   _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(sum, 1))));
      // int32 lanes: low 16 bits u0, high 16 bits u1 = the pair (k, k+1) for that channel
      const __m512i pairs = _mm512_or_si512(_mm512_and_si512(u[0][h], _mm512_set1_epi32(0xffff)),
                                            _mm512_slli_epi32(u[1][h], 16));
      _mm512_storeu_si512(dst + (size_t)(o0 / kLanes) * blockStride + 32 * h, pairs);
    }
  }
  return _mm512_reduce_max_epi32(worst);
}
#endif

PackPairFn pack_pair_for(Isa isa) {
#ifdef QC_HAVE_X86_KERNELS
  if (isa == Isa::avx512 || isa == Isa::avx512vnni) return pack_pair_avx512;
#else
  (void)isa;
#endif
  return pack_pair_portable;
}

// The packings of w (format fw) for plan pl, from the cache kept with w, built on first use.
const WinoWeights& wino_weights(Isa isa, const ConvGeom& g, const Plan& pl, int maxPiece, const float* w,
                                const Format& fw, WinoCache& cache) {
  WinoWeights*& slot = cache.plans[maxPiece == 3];
  if (!slot) slot = new WinoWeights;
  WinoWeights& ww = *slot;
  if (ww.built && ww.O == g.O && ww.C == g.C && ww.KH == g.KH && ww.KW == g.KW && ww.stride == g.stride &&
      ww.maxPiece == maxPiece)
    return ww;
  const PackPairFn pack_pair = pack_pair_for(isa);
  ww.built = true, ww.maxPiece = maxPiece;
  ww.O = g.O, ww.C = g.C, ww.KH = g.KH, ww.KW = g.KW, ww.stride = g.stride;
  const int O = g.O, C = g.C, Cp = pl.Cp, s = g.stride, taps = g.KH * g.KW;
  const int blocks = (O + kLanes - 1) / kLanes, Opad = blocks * kLanes;
  // the weight integers as wt[tap][c][o] (o contiguous, zero past O), so that the transforms
  // below run over 32 output channels at a time
  const float sw = std::ldexp(1.f, fw.frac);
  static std::vector<int16_t> wt;
  wt.resize((size_t)taps * C * Opad);  // every value below is written: o < O, or a pad lane's 0
  parallel_for((size_t)taps, [&](size_t tb, size_t te, int) {
    for (size_t tap = tb; tap < te; tap++) {
      for (int c0 = 0; c0 < C; c0 += 16)  // 16 x 16 blocks: reads and writes stay in a few lines
        for (int o0 = 0; o0 < O; o0 += 16)
          for (int o = o0; o < std::min(O, o0 + 16); o++) {
            const float* src = w + ((size_t)o * taps + tap) * C;
            int16_t* dst = wt.data() + tap * C * Opad + o;
            for (int c = c0; c < std::min(C, c0 + 16); c++) dst[(size_t)c * Opad] = (int16_t)(src[c] * sw);
          }
      for (int c = 0; c < C; c++)
        for (int o = O; o < Opad; o++) wt[(tap * C + c) * Opad + o] = 0;
    }
  });
  ww.packed.assign(pl.uSize, 0);
  ww.worst.assign(pl.types.size(), {});
  // jobs: one chunk of kWinoChunkPairs pairs of one type (its overflow bounds are per chunk)
  std::vector<std::pair<int, int>> jobs;
  std::vector<int> chunksOf(pl.types.size());
  for (size_t ti = 0; ti < pl.types.size(); ti++) {
    chunksOf[ti] = (pl.types[ti].pairs + kWinoChunkPairs - 1) / kWinoChunkPairs;
    for (int ch = 0; ch < chunksOf[ti]; ch++) jobs.push_back({(int)ti, ch});
  }
  std::vector<std::vector<int64_t>> chunkL1(pl.types.size());
  for (size_t ti = 0; ti < pl.types.size(); ti++)
    chunkL1[ti].assign((size_t)pl.types[ti].points * O * chunksOf[ti], 0);
  std::vector<char> tooBig(jobs.size(), 0);
  parallel_for(jobs.size(), [&](size_t jb, size_t je, int) {
    std::vector<int64_t> l1(16 * (size_t)Opad);
    for (size_t job = jb; job < je; job++) {
      const Type& t = pl.types[jobs[job].first];
      const int chunk = jobs[job].second, chunks = chunksOf[jobs[job].first];
      const Fir &fy = fir(t.ry), &fx = fir(t.rx);
      const size_t pointSize = (size_t)blocks * t.pairs * 2 * kLanes;
      std::fill(l1.begin(), l1.end(), 0);
      const int pairEnd = std::min(t.pairs, (chunk + 1) * kWinoChunkPairs);
      for (int pair = chunk * kWinoChunkPairs; pair < pairEnd; pair++)
        for (int xi = 0; xi < fy.alpha; xi++)
          for (int eta = 0; eta < fx.alpha; eta++) {
            // u[e][o] = (G g G^T)[xi][eta] of the piece pair's weights at k = 2 pair + e
            const int16_t* rows[2][9];
            int coefs[2][9], terms[2] = {0, 0};
            for (int e = 0; e < 2; e++) {
              const int k = 2 * pair + e, ci = k / Cp, c = k % Cp;
              if (c >= C) continue;  // the pad channel
              const Piece &a = t.comps[ci].first, &b = t.comps[ci].second;
              for (int i = 0; i < t.ry; i++)
                for (int j = 0; j < t.rx; j++) {
                  const int coef = fy.G[xi][i] * fx.G[eta][j];
                  if (coef == 0) continue;
                  const int tap = (s * (a.offset + i) + a.phase) * g.KW + s * (b.offset + j) + b.phase;
                  rows[e][terms[e]] = wt.data() + ((size_t)tap * C + c) * Opad;
                  coefs[e][terms[e]++] = coef;
                }
            }
            const int p = xi * fx.alpha + eta;
            if (pack_pair(rows, coefs, terms, Opad, l1.data() + (size_t)p * Opad,
                          ww.packed.data() + t.uOffset + p * pointSize + (size_t)pair * 2 * kLanes,
                          (size_t)t.pairs * 2 * kLanes) > 32767)
              tooBig[job] = 1;
          }
      for (int p = 0; p < t.points; p++)
        for (int o = 0; o < O; o++)
          chunkL1[jobs[job].first][((size_t)p * O + o) * chunks + chunk] = l1[(size_t)p * Opad + o];
    }
  });
  for (size_t ti = 0; ti < pl.types.size(); ti++)
    for (int p = 0; p < pl.types[ti].points; p++) {
      const size_t rowLen = (size_t)O * chunksOf[ti];
      ww.worst[ti].push_back(run_bounds(chunkL1[ti].data() + p * rowLen, O, chunksOf[ti], kWinoChunkPairs));
    }
  ww.fits = std::find(tooBig.begin(), tooBig.end(), 1) == tooBig.end();
  return ww;
}

void run_winograd(Isa isa, const ConvGeom& g, const Plan& pl, const WinoWeights& ww,
                  const std::vector<std::vector<int>>& segs, const float* x, const Format& fx, const Format& fw,
                  const float* bias, float* y, bool relu) {
  const Kernels kern = kernels_for(isa);
  // int16 copy of x, zero-padded to [B, Hq, Wq, Cp]
  const int s = g.stride, Cp = pl.Cp, Hq = pl.Hq, Wq = pl.Wq;
  static std::vector<int16_t> xq;
  xq.resize((size_t)g.B * Hq * Wq * Cp);
  to_int16_padded(g, x, std::ldexp(1.f, fx.frac), Hq, Wq, Cp, 0, xq.data(), nullptr);

  // tiles in groups: the group's V is transformed by all threads, then each thread runs the
  // GEMMs of its own output-channel blocks over the whole group (its weights stay in cache)
  const int blocks = (g.O + kLanes - 1) / kLanes, ldy = blocks * kLanes;
  const size_t tilesPerImage = (size_t)pl.OHt * pl.OWt, tiles = (size_t)g.B * tilesPerImage;
  const size_t groupTiles = 128;  // V of a group: 11 MB for the primary capsules, in L3
  static std::vector<int16_t> V;
  static std::vector<int64_t> Y;  // [tile in group][2x2 outputs][ldy], scaled by 2^maxShift
  V.resize(groupTiles * pl.vPerTile);
  Y.resize(groupTiles * 4 * ldy);
  const float scale = std::ldexp(1.f, -(fx.frac + fw.frac));
  for (size_t t0 = 0; t0 < tiles; t0 += groupTiles) {
    const size_t nt = std::min(groupTiles, tiles - t0);
    parallel_for(nt, [&](size_t ib, size_t ie, int) {
      int16_t* v[16];
      for (size_t i = ib; i < ie; i++) {
        const size_t tile = t0 + i, b = tile / tilesPerImage, rem = tile % tilesPerImage;
        const int ty = (int)(rem / pl.OWt), tx = (int)(rem % pl.OWt);
        for (const Type& t : pl.types) {
          const TransformFn transform = transform_for(isa, t.ry, t.rx);
          for (size_t ci = 0; ci < t.comps.size(); ci++) {
            const Piece &a = t.comps[ci].first, &bb = t.comps[ci].second;
            const int y0 = s * (2 * ty + a.offset) + a.phase, x0 = s * (2 * tx + bb.offset) + bb.phase;
            for (int p = 0; p < t.points; p++)
              v[p] = V.data() + t.vOffset * groupTiles + ((size_t)p * groupTiles + i) * t.K + ci * Cp;
            transform(xq.data() + ((b * Hq + y0) * Wq + x0) * Cp, (size_t)s * Wq * Cp, (size_t)s * Cp, Cp, v);
          }
        }
      }
    });
    parallel_for((size_t)blocks, [&](size_t nbBegin, size_t nbEnd, int) {
      std::vector<int64_t> spare(4 * (size_t)ldy);  // where a partial row block's extra rows go
      for (size_t i = 0; i < nt; i++)
        for (int q = 0; q < 4; q++)
          memset(&Y[(i * 4 + q) * ldy + nbBegin * kLanes], 0, (nbEnd - nbBegin) * kLanes * sizeof(int64_t));
      for (size_t ti = 0; ti < pl.types.size(); ti++) {
        const Type& t = pl.types[ti];
        const Fir &fy = fir(t.ry), &fxr = fir(t.rx);
        const size_t pointSize = (size_t)blocks * t.pairs * 2 * kLanes;
        for (int p = 0; p < t.points; p++) {
          const int xi = p / fxr.alpha, eta = p % fxr.alpha;
          // the 2x2 outputs this point adds into (A^T (x) A^T), with their signs
          Scatter sc;
          sc.shift = pl.maxShift - t.shift;
          for (int qy = 0; qy < 2; qy++)
            for (int qx = 0; qx < 2; qx++) {
              const int cf = fy.AT[qy][xi] * fxr.AT[qx][eta];
              if (cf != 0) sc.offset[sc.n] = (qy * 2 + qx) * (ptrdiff_t)ldy, sc.sign[sc.n++] = cf;
            }
          const int16_t* vp = V.data() + t.vOffset * groupTiles + (size_t)p * groupTiles * t.K;
          for (size_t nb = nbBegin; nb < nbEnd; nb++) {
            const int16_t* u = ww.packed.data() + t.uOffset + p * pointSize + nb * t.pairs * 2 * kLanes;
            for (size_t r0 = 0; r0 < nt; r0 += kRows) {
              const int mr = (int)std::min<size_t>(kRows, nt - r0);
              const int16_t* a[kRows];
              int64_t* c[kRows];
              for (int i = 0; i < kRows; i++) {
                a[i] = vp + (r0 + std::min(i, mr - 1)) * t.K;
                c[i] = i < mr ? &Y[(r0 + i) * 4 * ldy + nb * kLanes] : spare.data();
              }
              kern.micro_kernel(a, t.pairs, segs[ti][p], u, c, false, &sc);
            }
          }
        }
      }
      // y = the exact sums (exact multiples of 2^maxShift), rounded once to float32
      for (size_t i = 0; i < nt; i++) {
        const size_t tile = t0 + i, b = tile / tilesPerImage, rem = tile % tilesPerImage;
        const int ty = (int)(rem / pl.OWt), tx = (int)(rem % pl.OWt);
        for (int q = 0; q < 4; q++) {
          const int oy = 2 * ty + q / 2, ox = 2 * tx + q % 2;
          if (oy >= g.OH || ox >= g.OW) continue;
          float* yr = y + (((size_t)b * g.OH + oy) * g.OW + ox) * g.O;
          const int64_t* acc = &Y[(i * 4 + q) * ldy];
          const int oEnd = std::min(g.O, (int)(nbEnd * kLanes));
          kern.to_float_rows(acc, (int)(nbBegin * kLanes), oEnd, pl.maxShift, scale, bias, relu, yr);
        }
      }
    });
  }
}

}  // namespace

bool winograd_fixed_conv(Isa isa, const ConvGeom& g, const float* x, const Format& fx, int64_t maxX, const float* w,
                         const Format& fw, WinoCache& cache, const float* bias, float* y, bool relu) {
  if (!settings().fixedWinograd || !fits_int16(fx)) return false;
  // pieces of up to 3 taps (F(2,3): fewest products, but |U| <= 9 max|w|), else of up to 2
  // (|U| <= 4 max|w|, and shorter int32 sums)
  for (int maxPiece = 3; maxPiece >= 2; maxPiece--) {
    const Plan pl = make_plan(g, maxPiece, !fx.negative);
    // worth it only with clearly fewer products than the direct sums (tiles of 2x2 outputs
    // overhang an odd output size)
    const double direct = (double)g.OH * g.OW * g.KH * g.KW * g.C;
    if ((double)pl.OHt * pl.OWt * pl.products > 0.8 * direct) continue;
    bool fits = true;
    for (const Type& t : pl.types)
      for (int b : t.bound) fits = fits && b * maxX <= 32767;
    if (!fits) continue;
    const WinoWeights& ww = wino_weights(isa, g, pl, maxPiece, w, fw, cache);
    if (!ww.fits) continue;
    // per type and point: the longest int32 segments that cannot overflow
    std::vector<std::vector<int>> segs(pl.types.size());
    for (size_t ti = 0; ti < pl.types.size(); ti++)
      for (int p = 0; p < pl.types[ti].points; p++) {
        const Type& t = pl.types[ti];
        segs[ti].push_back(segment_pairs(ww.worst[ti][p], t.bound[p] * maxX, t.pairs));
        fits = fits && segs[ti].back() > 0;
      }
    if (!fits) continue;
    run_winograd(isa, g, pl, ww, segs, x, fx, fw, bias, y, relu);
    return true;
  }
  return false;
}

}  // namespace qc::fixedpoint
