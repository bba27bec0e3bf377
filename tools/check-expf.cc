// Checks native/expf.cc against glibc's expf for every float32 input, at the CPU's best
// instruction-set level and at the portable one (std::fma), about a minute each:
//   g++ -O2 -std=c++17 tools/check-expf.cc native/expf.cc native/isa.cc -o /tmp/check-expf && /tmp/check-expf
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../native/isa.h"
#include "../native/kernels.h"

// The mismatches of exp_in_place at the level in effect.
static uint64_t mismatches_at_active_level() {
  const size_t block = 1 << 20;
  std::vector<float> x(block), y(block);
  uint64_t mismatches = 0;
  for (uint64_t start = 0; start < (1ull << 32); start += block) {
    for (size_t i = 0; i < block; i++) {
      const uint32_t bits = (uint32_t)(start + i);
      memcpy(&x[i], &bits, 4);
    }
    y = x;
    qc::exp_in_place(y.data(), block);
    for (size_t i = 0; i < block; i++) {
      const float e = std::exp(x[i]);
      if (memcmp(&e, &y[i], 4) != 0 && !(std::isnan(e) && std::isnan(y[i]))) {
        if (mismatches++ < 10) std::printf("x = %a: expf %a, exp_in_place %a\n", x[i], e, y[i]);
      }
    }
  }
  std::printf("%s: %llu mismatches over all 2^32 inputs\n", qc::isa_name(qc::active_isa()),
              (unsigned long long)mismatches);
  return mismatches;
}

int main() {
  uint64_t mismatches = mismatches_at_active_level();
  if (qc::cpu_isa() != qc::Isa::portable) {
    qc::set_isa(qc::Isa::portable);
    mismatches += mismatches_at_active_level();
  }
  return mismatches ? 1 : 0;
}
