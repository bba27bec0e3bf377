// The C export's command (`qcaps IMAGES`, main.c of src/export/c-export-main.ts) under fuzzing:
// one small model (ShallowCapsNet 18 1 2 2, the smallest input the model takes) exported and
// compiled once per campaign with AddressSanitizer and UndefinedBehaviorSanitizer (float-to-int
// overflow included), then run on each mutated IDX or raw float32 file. Its outcome sorts as a
// reader's: exit 0 is a valid input, exit 1 or 2 with one line on stderr naming the file is
// its own error, and anything else (a signal, a sanitizer report, another exit code, no
// message) is a finding.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportC } from '../../src/export/c-export.js';
import { FileFormatError } from '../../src/io/byte-source.js';
import { buildModel } from '../../src/models/factory.js';
import { quantize } from '../../src/quant/quantized-model.js';
import { bitsFromLists } from '../../src/quant/config.js';

/** The fuzzed model's image: 18 x 18 x 1 values. */
export const C_FUZZ_IMAGE = { height: 18, width: 18, channels: 1 } as const;

/** Where prepareCBinary leaves the binary for the fuzz workers (they inherit the environment). */
const BINARY_ENV = 'QCAPS_FUZZ_C_BINARY';

/** ASan, UBSan and its float-to-int overflow check (not part of -fsanitize=undefined). */
export const SANITIZE_FLAGS = ['-fsanitize=address,undefined,float-cast-overflow', '-fno-sanitize-recover=all'];

/** Exit codes the sanitizers are given, so that a report never reads as the binary's own exit 1. */
const SANITIZER_ENV = {
  ASAN_OPTIONS: 'exitcode=86:detect_leaks=0',
  UBSAN_OPTIONS: 'exitcode=87:halt_on_error=1:print_stacktrace=1',
};
const SANITIZER_REPORT = /runtime error:|AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer/;

/** Exports the small model into `dir` and compiles it with `flags` (warnings are errors);
 *  returns the C folder and the binary, or throws with the compiler's output. */
export function buildCBinary(dir: string, flags: readonly string[] = SANITIZE_FLAGS): { cDir: string; binary: string } {
  const model = buildModel('ShallowCapsNet', [C_FUZZ_IMAGE.height, C_FUZZ_IMAGE.channels, 2, 2], { seed: 3 });
  const bits = {
    weightBits: model.quantLayers.map(() => 4),
    actBits: model.quantLayers.map(() => 6),
    routingBits: model.routingLayerNames.map(() => 6),
  };
  const q = quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'round_to_nearest', seed: 1 });
  const { dir: cDir } = exportC(q, { outDir: dir, stem: 'fuzz_quantized' });
  const args = ['-std=c99', '-O1', '-g', '-Wall', '-Wextra', '-pedantic', '-Werror', ...flags];
  const cc = spawnSync('cc', [...args, '-o', 'qcaps', 'main.c', 'qcaps_model.c', '-lm'], {
    cwd: cDir,
    encoding: 'utf8',
  });
  if (cc.error || cc.status !== 0)
    throw new Error(`cc ${args.join(' ')} failed: ${cc.error?.message ?? ''}${cc.stderr}`.trim());
  return { cDir, binary: join(cDir, 'qcaps') };
}

/** Builds the sanitized binary once for a campaign; returns the function that removes it. */
export function prepareCBinary(): () => void {
  if (process.env[BINARY_ENV]) return () => {};
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-fuzz-c-'));
  try {
    process.env[BINARY_ENV] = buildCBinary(dir).binary;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`fuzz: the C binary readers need cc with AddressSanitizer and UBSan: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return () => {
    delete process.env[BINARY_ENV];
    rmSync(dir, { recursive: true, force: true });
  };
}

export interface CRun {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs `binary` with `args` under the sanitizers' settings. */
export function runCBinary(binary: string, args: readonly string[], timeoutMs = 60_000): CRun {
  const r = spawnSync(binary, args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, ...SANITIZER_ENV },
    maxBuffer: 1 << 24,
  });
  if (r.error && !r.signal) throw r.error;
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** A finding in a run of the binary (null when it exited cleanly or refused the input with its
 *  own one-line message that names `subject`). */
export function cFinding(r: CRun, subject: string): string | null {
  if (r.signal === 'SIGTERM') return `no result within the time limit (killed)`;
  if (r.signal) return `killed by ${r.signal}: ${r.stderr.trim().split('\n')[0] ?? ''}`;
  if (SANITIZER_REPORT.test(r.stderr))
    return `sanitizer report: ${r.stderr.match(/.*(runtime error|Sanitizer).*/)![0]}`;
  if (r.status === 0) return r.stderr === '' ? null : `exit 0 with stderr: ${r.stderr.trim()}`;
  if (r.status !== 1 && r.status !== 2) return `exit ${r.status}: ${r.stderr.trim().split('\n')[0] ?? ''}`;
  const lines = r.stderr.trim().split('\n');
  if (lines.length !== 1 || !lines[0].includes(subject))
    return `exit ${r.status} without one line naming ${subject}: ${r.stderr}`;
  if (r.stdout !== '') return `exit ${r.status} after output on stdout`;
  return null;
}

/** A run of the binary that takes longer is killed and reported (the reader's own limit is
 *  longer, so the child never outlives its worker). */
export const C_RUN_TIMEOUT_MS = 20_000;

/** The fuzz reader: runs the campaign's binary on `file`; a refusal is a FileFormatError. */
export function readWithCBinary(file: string): void {
  const binary = process.env[BINARY_ENV];
  if (!binary) throw new Error(`fuzz: ${BINARY_ENV} is not set (prepareCBinary runs before the workers)`);
  const r = runCBinary(binary, [file], C_RUN_TIMEOUT_MS);
  const finding = cFinding(r, file);
  if (finding) throw new Error(`qcaps ${file}: ${finding}`);
  if (r.status !== 0) throw new FileFormatError(file, r.stderr.trim());
}
