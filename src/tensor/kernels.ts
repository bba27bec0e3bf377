// Picks the backend once: native unless QCAPS_BACKEND=typescript, falling back to
// typescript with one warning when the addon cannot load. One log line says which runs.
import { availableParallelism } from 'node:os';
import type { Kernels } from './backend.js';
import { typescriptKernels } from './kernels-ts.js';
import { loadNativeKernels } from './kernels-native.js';

let active: Kernels | null = null;
let activeInfo = '';

function log(line: string): void {
  if (process.env.QCAPS_QUIET !== '1') process.stderr.write(`qcapsnets: ${line}\n`);
}

function choose(): Kernels {
  const wanted = (process.env.QCAPS_BACKEND ?? 'auto').toLowerCase();
  if (!['auto', 'native', 'typescript', 'ts'].includes(wanted)) {
    throw new Error(`QCAPS_BACKEND=${wanted}: expected one of native, typescript, auto`);
  }
  if (wanted === 'typescript' || wanted === 'ts') {
    activeInfo = 'typescript kernels (QCAPS_BACKEND=typescript)';
    log(`backend: ${activeInfo}`);
    return typescriptKernels;
  }
  try {
    const { kernels, info } = loadNativeKernels();
    activeInfo = `native kernels (${info})`;
    log(`backend: ${activeInfo}`);
    return kernels;
  } catch (err) {
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
  const env = process.env.QCAPS_THREADS;
  if (env !== undefined) {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`QCAPS_THREADS=${env}: expected a positive integer`);
    return n;
  }
  return Math.min(8, availableParallelism());
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

/** Switches the backend (tests use this to run every op on both). */
export function useKernels(k: Kernels): void {
  active = k;
}

export { typescriptKernels };
