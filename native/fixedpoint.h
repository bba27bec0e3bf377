// What the two exact fixed-point convolutions share (fixedconv.cc: direct; fixedwino.cc:
// integer Winograd): the fixed-point format of a tensor, the micro-kernels of each
// instruction-set level (fixedkernels.cc), and the int32 overflow bounds that say how long
// their int32 sums may run before going into int64.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "isa.h"
#include "kernels.h"

// The x86 micro-kernels (AVX2, AVX-512, AVX512-VNNI intrinsics) are compiled where a GCC-compatible
// compiler targets x86-64: QC_HAVE_X86_KERNELS, for fixedkernels.cc and fixedwino.cc (the
// portable kernels run elsewhere).
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QC_HAVE_X86_KERNELS 1
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized and -Wuninitialized in their own code
// (_mm512_extracti64x4_epi64, _mm512_cvtepi64_ps), in every file that includes this header
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qc::fixedpoint {

constexpr int kLanes = 32;       // output channels per packed block (two zmm of int32)
constexpr int kRows = 8;         // GEMM rows per micro-kernel call (2 accumulators each)
constexpr int kChunkPairs = 32;  // granularity of the int32 -> int64 flushes (64 products)

// The fixed-point format of n values: fractional bits (the smallest f >= 0 with every v * 2^f
// an integer) and the largest |value|.
struct Format {
  int frac = 0;
  float maxAbs = 0;
  bool negative = false;  // some value below zero
};

Format format_of(const float* v, size_t n);
bool fits_int16(const Format& f);
bool fits_int30(const Format& f);

// The packed layout the micro-kernel reads, for a K x O weight matrix (K even, k = 2p + e):
// [O block][pair p][lane][e], 32 lanes (output channels) per block, zero past O.
inline size_t packed_index(int pairs, int o, int k) {
  return (((size_t)(o / kLanes) * pairs + k / 2) * kLanes + o % kLanes) * 2 + k % 2;
}

// The int32 overflow bounds of a GEMM over K split into chunks of chunkPairs pairs: for aligned
// runs of 1, 2, 4, ... chunks and of all of them, the largest sum of |w| over a run of any row
// (an output channel's weights, for one kernel row or transform point).
struct RunBounds {
  int chunkPairs = 0;
  std::vector<int> runs;  // in chunks, increasing
  std::vector<int64_t> worst;
};
// chunkL1: rows x chunks, the sum of |w| over each chunk
RunBounds run_bounds(const int64_t* chunkL1, size_t rows, int chunks, int chunkPairs);

// The longest segment, in pairs (at most `pairs`), whose int32 sums cannot overflow for inputs
// up to maxX in magnitude; 0 when even one chunk could.
int segment_pairs(const RunBounds& rb, int64_t maxX, int pairs);

// dst (and low, with limbs) = the integers x 2^frac (sx = 2^frac) as int16, zero-padded to
// [B, Hq, Wq, Cp] (x's [B, H, W, C] at (pad, pad); Cp >= C), in one pass that also writes
// the zeros. limbBits > 0: dst = floor(v / 2^limbBits), low = v mod 2^limbBits.
void to_int16_padded(const ConvGeom& g, const float* x, float sx, int Hq, int Wq, int Cp, int limbBits, int16_t* dst,
                     int16_t* low);

// Where the micro-kernel's sums go instead of c[i]: c[i] + offset[t] for its n targets, added
// with sign[t] and shifted left by shift (the output transform of the integer Winograd).
struct Scatter {
  int n = 0;
  ptrdiff_t offset[4] = {};
  int sign[4] = {};
  int shift = 0;
};

// The inner loops of one instruction-set level (fixedkernels.cc); every level gives the same
// integers, so the same bits.
struct Kernels {
  // c[i][0..31] += sum_p a_i[2p..2p+1] . b[p][lane][0..1] for the kRows rows i, in int32 sums
  // over segments of `seg` pairs added into the int64 c (b: one packed block of 32 output
  // channels); assign: c = the sums instead; sc: scattered as it says instead (each
  // segment's sums: the scatter is linear).
  void (*micro_kernel)(const int16_t* const* a, int pairs, int seg, const int16_t* b, int64_t* const* c, bool assign,
                       const Scatter* sc);
  // y[o] = float(acc[o] >> shift) * scale, + bias[o], ReLU, for o in [o0, o1) (bias may be null)
  void (*to_float_rows)(const int64_t* acc, int o0, int o1, int shift, float scale, const float* bias, bool relu,
                        float* y);
};
Kernels kernels_for(Isa isa);
// How many of `trials` pseudo-random micro-kernel calls the portable level's kernel (SSE2 on
// x86-64) and the plain C++ loops (every other CPU) disagree on (0: the same integers); the
// plain loops run nowhere else on x86, so the tests check them here.
int portable_kernels_disagree(int trials);

// The transformed, packed weights of the integer Winograd for one set of weights (fixedwino.cc),
// per plan (pieces of up to 3 or 2 taps); kept with the direct kernel's packing of the same
// weights (fixedconv.cc's cache).
struct WinoWeights;
struct WinoCache {
  WinoCache();
  ~WinoCache();
  WinoCache(const WinoCache&) = delete;  // owns the plans
  WinoCache& operator=(const WinoCache&) = delete;
  WinoWeights* plans[2];  // [maxPiece == 3]; null until first built
};

// The convolution as exact integer Winograd (fixedwino.cc), for inputs whose integers fit
// int16 (largest maxX) and weights w in format fw (cache: their packings, empty for new
// weights); false when it does not apply or would not save enough products (the caller runs
// the direct sums; also when settings().fixedWinograd is off).
bool winograd_fixed_conv(Isa isa, const ConvGeom& g, const float* x, const Format& fx, int64_t maxX, const float* w,
                         const Format& fw, WinoCache& cache, const float* bias, float* y, bool relu);

}  // namespace qc::fixedpoint
