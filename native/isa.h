// The instruction-set path of the kernels whose results must be the same on every CPU (the
// quantized forward): one process-wide level, the best this CPU and build can run unless the
// caller forces a lower one (QCAPS_ISA, read on the TypeScript side and passed in by setIsa).
// Every path gives the same bits; the level only chooses how fast they are computed.
#pragma once

namespace qc {

enum class Isa : int { portable = 0, avx2 = 1, avx512 = 2, avx512vnni = 3 };

/** The best level this CPU supports with this build (portable off x86-64). */
Isa cpu_isa();
/** The level in effect: the forced one, else cpu_isa(). */
Isa active_isa();
/** Forces `wanted` for the kernels that consult active_isa(); false (nothing changed) when the
 *  CPU cannot run it. */
bool set_isa(Isa wanted);
/** "portable", "avx2", "avx512", "avx512vnni". */
const char* isa_name(Isa isa);
/** The level named `name`; false when the name is none of isa_name's. */
bool parse_isa(const char* name, Isa* out);

}  // namespace qc
