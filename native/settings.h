// The tunables of the native kernels. The TypeScript side reads them once from the
// environment (src/settings.ts, with their meaning) and passes them in at load (the addon's
// configure()); no kernel reads the environment itself. The defaults are what runs without
// any QCAPS_* variable.
#pragma once
#include <cstddef>

namespace qc {

struct Settings {
  bool winograd = true;           // float Winograd convolutions (QCAPS_WINOGRAD)
  bool fftConv = true;            // DFT convolutions for large kernels (QCAPS_FFT_CONV)
  bool fixedWinograd = true;      // exact integer Winograd of fixed-point values (QCAPS_FIXED_WINOGRAD)
  bool smallPatchConv = true;     // direct kernel for patches of <= 128 values (QCAPS_SMALL_PATCH_CONV)
  size_t convWorkspaceKB = 4096;  // im2col column buffer per thread (QCAPS_CONV_WORKSPACE_KB)
  int winogradTile = 0;           // float Winograd output tile side, 2 or 4; 0: by size (QCAPS_WINOGRAD_TILE)
  size_t winogradKB = 2048;       // float Winograd transform buffer (QCAPS_WINOGRAD_KB)
};

const Settings& settings();
// Replaces the settings (between kernel calls, from the JavaScript thread).
void configure(const Settings& s);

}  // namespace qc
