// Test helpers: PyTorch fixtures (fixtures/core/*.safetensors, written by
// tools/make-fixtures.py), layout conversions, tolerant comparison, and which backends are
// under test: a test that needs the native addon is an explicit skip where it did not load
// (or QCAPS_BACKEND=typescript), a failure under QCAPS_REQUIRE_NATIVE=1 (CI).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../src/io/safetensors.js';
import { isaInfo, loadNativeKernels, setIsa } from '../src/tensor/kernels-native.js';
import { ISA_LEVELS, type IsaLevel } from '../src/settings.js';
import { typescriptKernels, useKernels } from '../src/tensor/kernels.js';
import type { Kernels } from '../src/tensor/backend.js';
import { permute } from '../src/tensor/ops/shape.js';
import { Tensor } from '../src/tensor/tensor.js';
import type { ImageSource } from '../src/models/evaluate.js';

export interface Fixture {
  get(name: string): Tensor;
  has(name: string): boolean;
  meta: Record<string, unknown>;
}

/** A fixture written by tools/: fixtures/<dir>/<name>.safetensors (metadata values are JSON). */
export function fixture(name: string, dir = 'core'): Fixture {
  const path = fileURLToPath(new URL(`../../fixtures/${dir}/${name}.safetensors`, import.meta.url));
  const { tensors, metadata } = readSafetensors(path);
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) meta[k] = JSON.parse(v);
  return {
    meta,
    has: (key) => tensors.has(key),
    get(key: string): Tensor {
      const e = tensors.get(key);
      if (!e) throw new Error(`fixture ${name} has no tensor '${key}'`);
      return new Tensor(e.data, e.shape);
    },
  };
}

/** [B,C,H,W] -> [B,H,W,C] */
export const nchwToNhwc = (t: Tensor) => permute(t, [0, 2, 3, 1]);
/** [B,H,W,C] -> [B,C,H,W] */
export const nhwcToNchw = (t: Tensor) => permute(t, [0, 3, 1, 2]);

/** |a - e| <= rtol * |e| + atol * max|e| elementwise (rtol 1e-4 by default). */
export function assertClose(
  actual: Tensor | Float32Array,
  expected: Tensor | Float32Array,
  what: string,
  rtol = 1e-4,
  atol = 1e-5,
): void {
  const a = actual instanceof Tensor ? actual.data : actual;
  const e = expected instanceof Tensor ? expected.data : expected;
  assert.equal(a.length, e.length, `${what}: ${a.length} values, expected ${e.length}`);
  let scale = 0;
  for (let i = 0; i < e.length; i++) scale = Math.max(scale, Math.abs(e[i]));
  for (let i = 0; i < e.length; i++) {
    const tol = rtol * Math.abs(e[i]) + atol * Math.max(scale, 1e-30);
    if (!(Math.abs(a[i] - e[i]) <= tol)) {
      assert.fail(`${what}: element ${i} is ${a[i]}, expected ${e[i]} (tolerance ${tol.toExponential(2)})`);
    }
  }
}

/** Whether a missing native addon is a failure: QCAPS_REQUIRE_NATIVE=1 (CI, .ci/run) or
 *  QCAPS_BACKEND=native. */
export function nativeRequired(): boolean {
  return process.env.QCAPS_REQUIRE_NATIVE === '1' || (process.env.QCAPS_BACKEND ?? '').toLowerCase() === 'native';
}

let nativeState: { kernels: Kernels } | { missing: string } | undefined;

/** The one place that decides whether the native kernels are under test: null when they are,
 *  else why not (the addon did not load, or QCAPS_BACKEND=typescript asks for TypeScript alone,
 *  as src/tensor/kernels.ts does). */
export function nativeMissing(): string | null {
  if (nativeState === undefined) {
    const wanted = (process.env.QCAPS_BACKEND ?? 'auto').toLowerCase();
    if (wanted === 'typescript' || wanted === 'ts') nativeState = { missing: `QCAPS_BACKEND=${wanted}` };
    else
      try {
        nativeState = { kernels: loadNativeKernels().kernels };
      } catch (err) {
        nativeState = { missing: `the addon did not load: ${(err as Error).message}` };
      }
  }
  return 'missing' in nativeState ? nativeState.missing : null;
}

/** The error of a native test where the addon is not under test but required. */
function nativeRequiredError(why: string): Error {
  const by = process.env.QCAPS_REQUIRE_NATIVE === '1' ? 'QCAPS_REQUIRE_NATIVE=1' : 'QCAPS_BACKEND=native';
  return new Error(`${by} but the native addon is not under test: ${why}`);
}

/** The native kernels, or null where they are not under test; throws instead under
 *  QCAPS_REQUIRE_NATIVE=1. Tests should use requireNative(t) or backendCases(), which make the
 *  missing addon an explicit skip. */
export function native(): Kernels | null {
  const why = nativeMissing();
  if (why === null) return (nativeState as { kernels: Kernels }).kernels;
  if (nativeRequired()) throw nativeRequiredError(why);
  return null;
}

/** For a test that needs the native kernels: them; where the addon is not under test, a failure
 *  (thrown) under QCAPS_REQUIRE_NATIVE=1, else an explicit skip of t, and null (return then). */
export function requireNative(t: TestContext): Kernels | null {
  const n = native();
  if (!n) t.skip(`native addon not loaded (${nativeMissing()})`);
  return n;
}

/** For a test that compares the two backends: [native, typescript], or null after
 *  requireNative's skip (a failure under QCAPS_REQUIRE_NATIVE=1). */
export function requireBothBackends(t: TestContext): [Kernels, Kernels] | null {
  const n = requireNative(t);
  return n ? [n, typescriptKernels] : null;
}

/** The error of using native kernels that are not under test. */
function notLoadedError(why: string): Error {
  return nativeRequired()
    ? nativeRequiredError(why)
    : new Error(`native kernels used but not loaded (${why}): register this test with { skip } from backendCases()`);
}

let standIn: Kernels | undefined;
/** Stands in for native kernels that are not under test: any use but its name throws. */
function missingNative(why: string): Kernels {
  standIn ??= new Proxy({} as Kernels, {
    get(_, prop) {
      if (prop === 'name') return 'native';
      throw notLoadedError(why);
    },
  });
  return standIn;
}

/** One test per backend: `for (const [k, skip] of backendCases()) test(title, { skip }, ...)`.
 *  Native first, then typescript. Where the native addon is not under test, its entry is an
 *  explicit skip (skip = the reason) with stand-in kernels that throw when used; under
 *  QCAPS_REQUIRE_NATIVE=1 it is not skipped, so its tests fail with the reason. */
export function backendCases(): [Kernels, string | false][] {
  const why = nativeMissing();
  if (why === null)
    return [
      [native()!, false],
      [typescriptKernels, false],
    ];
  return [
    [missingNative(why), nativeRequired() ? false : `native addon not loaded (${why})`],
    [typescriptKernels, false],
  ];
}

/** The backends under test, native first (throws under QCAPS_REQUIRE_NATIVE=1 when the addon is
 *  not under test). It keeps no record of a missing native backend: prefer backendCases(). */
export function backends(): Kernels[] {
  const n = native();
  return n ? [n, typescriptKernels] : [typescriptKernels];
}

/** The best instruction-set level of the exact kernels by the CPU's flags in /proc/cpuinfo,
 *  independently of the addon's own detection (null where there is no /proc/cpuinfo). */
export function cpuinfoIsa(): IsaLevel | null {
  if (process.arch !== 'x64') return 'portable';
  let cpuinfo: string;
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
  const line = cpuinfo.split('\n').find((l) => /^flags\s*:/.test(l)) ?? '';
  const flags = new Set(
    line
      .replace(/^flags\s*:/, '')
      .trim()
      .split(/\s+/),
  );
  const has = (...f: string[]) => f.every((x) => flags.has(x));
  if (!has('avx2', 'fma')) return 'portable';
  if (!has('avx512f', 'avx512bw', 'avx512dq', 'avx512vl')) return 'avx2';
  return has('avx512_vnni') ? 'avx512vnni' : 'avx512';
}

/** The instruction-set levels of the exact fixed-point kernels (src/settings.ts), each with null
 *  where this CPU runs it, else why not: every test of those kernels runs under each level
 *  (forEachIsa), reporting the others as skipped. */
export function isaLevels(): [IsaLevel, string | null][] {
  const { cpu } = isaInfo();
  const best = ISA_LEVELS.indexOf(cpu);
  return ISA_LEVELS.map((l, i) => [l, i < best ? `this CPU runs at most ${cpu}` : null]);
}

/** Runs fn as one subtest of t per instruction-set level, the level forced (setIsa) during it
 *  and the CPU's best restored after; levels the CPU cannot run are skipped with the reason. */
export async function forEachIsa(t: TestContext, fn: (level: IsaLevel) => void): Promise<void> {
  const levels = isaLevels();
  const best = levels.find(([, why]) => why === null)![0];
  for (const [level, why] of levels)
    await t.test(`isa ${level}`, why === null ? {} : { skip: why }, () => {
      setIsa(level);
      try {
        fn(level);
      } finally {
        setIsa(best);
      }
    });
}

/** Runs fn with backend k active (k must be under test: see backendCases). */
export function withBackend<T>(k: Kernels, fn: () => T): T {
  if (k === standIn) throw notLoadedError(nativeMissing()!);
  useKernels(k);
  return fn();
}

/** n synthetic 28x28x1 images (70% background, seeded) with random labels, as an ImageSource. */
export function syntheticImages(n: number, seed: number): ImageSource {
  let s = seed;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 16777216;
  const pixels = Float32Array.from({ length: n * 784 }, () => (rnd() < 0.7 ? 0 : rnd()));
  const labels = Int32Array.from({ length: n }, () => Math.floor(rnd() * 10));
  return {
    count: n,
    labels,
    height: 28,
    width: 28,
    channels: 1,
    writeImage: (i, out, off) => out.set(pixels.subarray(i * 784, (i + 1) * 784), off),
  };
}
