// Prints compiler or linker flags for CBLAS, found through pkg-config (OpenBLAS first).
// With no CBLAS found, or QCAPS_NO_BLAS=1, it prints none (a marker define only): the addon
// then runs the built-in GEMM (native/gemm-builtin.cc) and builds on any machine with a C++
// compiler. A build with CBLAS runs the built-in GEMM too under QCAPS_GEMM=builtin.
import { execFileSync } from 'node:child_process';

const what = process.argv[2];
function pkgConfig(args) {
  try {
    return execFileSync('pkg-config', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
const forced = process.env.QCAPS_NO_BLAS === '1';
let found = null;
if (!forced) {
  for (const name of ['openblas', 'cblas', 'blas-openblas']) {
    const libs = pkgConfig(['--libs', name]);
    if (libs !== null) {
      found = { name, cflags: pkgConfig(['--cflags', name]) ?? '', libs };
      break;
    }
  }
}
if (what === 'cflags') {
  console.log(found ? `-DQC_CBLAS_OPENBLAS=1 ${found.cflags}` : '-DQC_BUILTIN_GEMM=1');
} else {
  console.log(found ? found.libs : '');
}
