// See isa.h.
#include "isa.h"

#include <cstring>
#include <initializer_list>

namespace qc {

namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
  return vnni ? Isa::avx512vnni : avx512 ? Isa::avx512 : avx2 ? Isa::avx2 : Isa::portable;
#else
  return Isa::portable;
#endif
}

const Isa g_cpu = detect();
Isa g_active = g_cpu;

}  // namespace

Isa cpu_isa() { return g_cpu; }
Isa active_isa() { return g_active; }

bool set_isa(Isa wanted) {
  if ((int)wanted > (int)g_cpu) return false;
  g_active = wanted;
  return true;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable:
      return "portable";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512vnni:
      return "avx512vnni";
  }
  return "portable";
}

bool parse_isa(const char* name, Isa* out) {
  for (Isa i : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512vnni})
    if (std::strcmp(name, isa_name(i)) == 0) return *out = i, true;
  return false;
}

}  // namespace qc
