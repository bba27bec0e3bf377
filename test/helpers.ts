// Test helpers: PyTorch fixtures (fixtures/core/*.safetensors, written by
// tools/make-fixtures.py), layout conversions, tolerant comparison, both backends.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../src/io/safetensors.js';
import { loadNativeKernels } from '../src/tensor/kernels-native.js';
import { typescriptKernels, useKernels } from '../src/tensor/kernels.js';
import type { Kernels } from '../src/tensor/backend.js';
import { permute } from '../src/tensor/ops/shape.js';
import { Tensor } from '../src/tensor/tensor.js';

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

let nativeKernels: Kernels | null | undefined;
export function native(): Kernels | null {
  if (nativeKernels === undefined) {
    try {
      nativeKernels = loadNativeKernels().kernels;
    } catch (err) {
      if (process.env.QCAPS_REQUIRE_NATIVE === '1') throw err;
      nativeKernels = null;
    }
  }
  return nativeKernels;
}

/** The backends to run a test on: typescript always, native when it loads
 *  (required when QCAPS_REQUIRE_NATIVE=1, as in CI). */
export function backends(): Kernels[] {
  const n = native();
  return n ? [n, typescriptKernels] : [typescriptKernels];
}

/** Runs fn with backend k active. */
export function withBackend<T>(k: Kernels, fn: () => T): T {
  useKernels(k);
  return fn();
}
