// Every QCAPS_* environment variable the tool itself reads, with its meaning, read once (on
// first use) and checked: a value outside what is listed is one error naming the variable.
// The native kernels read none themselves: what they need is passed in at load
// (nativeSettings(), the addon's configure()). Tests and benchmarks have variables of their own
// (QCAPS_REQUIRE_*, QCAPS_REFERENCE_DIR, QCAPS_BENCH_MODEL); the install script reads
// QCAPS_SKIP_NATIVE_BUILD=1 (do not build the addon).

/** The instruction-set levels of the exact fixed-point kernels, best first. Every level gives
 *  the same bits; they differ in speed only. */
export const ISA_LEVELS = ['avx512vnni', 'avx512', 'avx2', 'portable'] as const;
export type IsaLevel = (typeof ISA_LEVELS)[number];

export interface Settings {
  /** QCAPS_BACKEND: 'native' (fail if the addon does not load), 'typescript', or 'auto' (native,
   *  else TypeScript with a warning). Default 'auto'. */
  backend: 'auto' | 'native' | 'typescript';
  /** QCAPS_THREADS: the threads of the kernels (a positive integer); default every core, at most 8. */
  threads: number | null;
  /** QCAPS_QUIET=1: no backend line on stderr (0: the line even from the CLI, whose banner names
   *  the backend). Unset: null. */
  quiet: boolean | null;
  /** QCAPS_ISA: the instruction-set level of the exact fixed-point convolutions ('avx512vnni',
   *  'avx512', 'avx2', 'portable'); a level above the CPU's best is an error at load. Default:
   *  the CPU's best. */
  isa: IsaLevel | null;
  /** QCAPS_GEMM: 'blas' (the CBLAS the build found; its default) or 'builtin' (the GEMM a build
   *  without CBLAS runs). */
  gemm: 'blas' | 'builtin' | null;
  /** QCAPS_GEMM_ISA: the built-in GEMM's kernels: 'auto', 'avx512', 'avx2' or 'scalar'. */
  gemmIsa: 'auto' | 'avx512' | 'avx2' | 'scalar' | null;
  /** The native kernels' tunables (the defaults are what runs without the variables). */
  native: NativeSettings;
}

/** What the addon's configure() takes (native/settings.h). */
export interface NativeSettings {
  /** QCAPS_WINOGRAD=0: no float Winograd convolutions (3x3). */
  winograd: boolean;
  /** QCAPS_FFT_CONV=0: no DFT convolutions (kernels of 7x7 and more). */
  fftConv: boolean;
  /** QCAPS_FIXED_WINOGRAD=0: the exact fixed-point convolutions sum directly, without integer
   *  Winograd (the same bits, more products). */
  fixedWinograd: boolean;
  /** QCAPS_SMALL_PATCH_CONV=0: no direct kernel for patches of <= 128 values (im2col + GEMM). */
  smallPatchConv: boolean;
  /** QCAPS_CONV_WORKSPACE_KB: the im2col column buffer per thread, in KB (>= 64; 4096). */
  convWorkspaceKB: number;
  /** QCAPS_WINOGRAD_TILE: the float Winograd output tile side, 2 or 4 (0: by the output size). */
  winogradTile: number;
  /** QCAPS_WINOGRAD_KB: the float Winograd transform buffer, in KB (2048). */
  winogradKB: number;
}

type Env = Record<string, string | undefined>;

function oneOf<T extends string>(env: Env, name: string, accepted: readonly T[]): T | null {
  const v = env[name];
  if (v === undefined || v === '') return null;
  const lower = v.toLowerCase() as T;
  if (!accepted.includes(lower)) throw new Error(`${name}=${v}: expected one of ${accepted.join(', ')}`);
  return lower;
}

function integer(env: Env, name: string, fallback: number, min: number, what: string): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${v}: expected ${what}`);
  return n;
}

function onOff(env: Env, name: string): boolean {
  const v = env[name];
  if (v === undefined || v === '' || v === '1') return true;
  if (v === '0') return false;
  throw new Error(`${name}=${v}: expected 0 (off) or 1 (on, the default)`);
}

/** The settings of an environment (process.env for settings()); throws on the first bad value. */
export function readSettings(env: Env): Settings {
  const backend = oneOf(env, 'QCAPS_BACKEND', ['auto', 'native', 'typescript', 'ts']);
  const quiet = oneOf(env, 'QCAPS_QUIET', ['0', '1']);
  const tile = integer(env, 'QCAPS_WINOGRAD_TILE', 0, 0, '2 or 4');
  if (![0, 2, 4].includes(tile)) throw new Error(`QCAPS_WINOGRAD_TILE=${env.QCAPS_WINOGRAD_TILE}: expected 2 or 4`);
  return {
    backend: backend === 'ts' ? 'typescript' : (backend ?? 'auto'),
    threads: env.QCAPS_THREADS === undefined ? null : integer(env, 'QCAPS_THREADS', 1, 1, 'a positive integer'),
    quiet: quiet === null ? null : quiet === '1',
    isa: oneOf(env, 'QCAPS_ISA', ISA_LEVELS),
    gemm: oneOf(env, 'QCAPS_GEMM', ['blas', 'builtin']),
    gemmIsa: oneOf(env, 'QCAPS_GEMM_ISA', ['auto', 'avx512', 'avx2', 'scalar']),
    native: {
      winograd: onOff(env, 'QCAPS_WINOGRAD'),
      fftConv: onOff(env, 'QCAPS_FFT_CONV'),
      fixedWinograd: onOff(env, 'QCAPS_FIXED_WINOGRAD'),
      smallPatchConv: onOff(env, 'QCAPS_SMALL_PATCH_CONV'),
      convWorkspaceKB: integer(env, 'QCAPS_CONV_WORKSPACE_KB', 4096, 64, 'a number of KB, 64 or more'),
      winogradTile: tile,
      winogradKB: integer(env, 'QCAPS_WINOGRAD_KB', 2048, 1, 'a positive number of KB'),
    },
  };
}

let current: Settings | null = null;

/** The settings of this process's environment, read on first use. */
export function settings(): Settings {
  current ??= readSettings(process.env);
  return current;
}
