// Picks the backend once: native unless QCAPS_BACKEND=typescript, falling back to
// typescript with one warning when the addon cannot load. One log line says which runs,
// with the instruction-set level of the exact fixed-point kernels.
import { availableParallelism } from 'node:os';
import type { Kernels } from './backend.js';
import { typescriptKernels } from './kernels-ts.js';
import { isaInfo, loadNativeKernels, NativeSettingsError } from './kernels-native.js';
import { settings, type IsaLevel } from '../settings.js';

let active: Kernels | null = null;
let activeInfo = '';
let lineByDefault = true;

/** Whether the backend line is printed when QCAPS_QUIET is unset (the CLI turns it off: its
 *  banner names the backend). */
export function backendLineByDefault(show: boolean): void {
  lineByDefault = show;
}

function log(line: string): void {
  if (!(settings().quiet ?? !lineByDefault)) process.stderr.write(`qcapsnets: ${line}\n`);
}

/** "isa avx2", and why where it is not the CPU's best: forced by QCAPS_ISA. */
function isaText(): string {
  const { active: level, cpu } = isaInfo();
  return level === cpu ? `isa ${level}` : `isa ${level} (QCAPS_ISA; this CPU: ${cpu})`;
}

function choose(): Kernels {
  const wanted = settings().backend;
  if (wanted === 'typescript') {
    activeInfo = 'typescript kernels (QCAPS_BACKEND=typescript)';
    log(`backend: ${activeInfo}`);
    return typescriptKernels;
  }
  try {
    const { kernels, info } = loadNativeKernels();
    activeInfo = `native kernels (${info}; ${isaText()})`;
    log(`backend: ${activeInfo}`);
    return kernels;
  } catch (err) {
    if (err instanceof NativeSettingsError) throw err; // the addon loaded: a setting is wrong
    if (wanted === 'native')
      throw new Error(`QCAPS_BACKEND=native but the addon did not load: ${(err as Error).message}`, { cause: err });
    activeInfo = 'typescript kernels (native addon unavailable)';
    // a warning is always shown, QCAPS_QUIET or not
    process.stderr.write(
      `qcapsnets: WARNING: native addon unavailable (${(err as Error).message}); using the slow TypeScript kernels\n`,
    );
    return typescriptKernels;
  }
}

/** Default thread count: QCAPS_THREADS, else every core (the bench measures 1 vs 2). */
export function defaultThreads(): number {
  return settings().threads ?? Math.min(8, availableParallelism());
}

export function kernels(): Kernels {
  if (!active) {
    active = choose();
    active.setThreads(defaultThreads());
  }
  return active;
}

export function backendInfo(): string {
  kernels();
  return activeInfo;
}

/** The instruction-set level the exact fixed-point convolutions of the active backend run at
 *  ('avx512vnni', 'avx512', 'avx2', 'portable'), or null on the TypeScript kernels (which sum
 *  them in float64: see conv2dForwardFixedPoint). The `isa` of the --json outputs. */
export function activeIsa(): IsaLevel | null {
  return kernels().name === 'native' ? isaInfo().active : null;
}

/** Switches the backend (tests use this to run every op on both). */
export function useKernels(k: Kernels): void {
  active = k;
}

export { typescriptKernels };
