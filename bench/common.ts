// What the benchmarks share: flags, medians, child processes, and the malloc setting PyTorch
// runs fastest with.
import { spawnSync } from 'node:child_process';

/** glibc malloc reusing freed memory (PyTorch's fastest setting on these machines). */
export const MALLOC_REUSE = {
  MALLOC_MMAP_MAX_: '0',
  MALLOC_TRIM_THRESHOLD_: '20000000000',
  MALLOC_TOP_PAD_: '1000000000',
};

/** The value after `--name`, or `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

export const peakRssMb = (): number => process.resourceUsage().maxRSS / 1024;

/** Runs a measurement in a child process; its last stdout line is one JSON object. */
export function runChild<T>(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): T | null {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    process.stderr.write(`${label}: ${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}\n`);
    return null;
  }
}
