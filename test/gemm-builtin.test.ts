// The built-in GEMM (native/gemm-builtin.cc) against a float64 reference on odd shapes, every
// transpose, alpha/beta, strided operands and beta = 0 over NaN, for each kernel family the CPU
// runs; and ShallowCapsNet-shaped convolutions on it against the CBLAS build's (float32
// tolerance), and its first layer bit for bit with im2col + the built-in GEMM.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import { conv2dBackward, conv2dForward, Tensor } from '../src/tensor/index.js';
import { blasInfo, setGemm } from '../src/tensor/kernels-native.js';
import type { Kernels } from '../src/tensor/backend.js';
import { assertClose, requireNative, withBackend } from './helpers.js';

type Isa = 'avx512' | 'avx2' | 'scalar';

function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s >>> 8) / 16777216 - 0.5;
  }
  return a;
}

/** The built-in GEMM on, with kernels `isa` (false where the CPU lacks them); fn; then back to
 *  the build's default (CBLAS where there is one) and the best kernels. */
function withBuiltin(isa: Isa | 'auto', fn: () => void): boolean {
  try {
    setGemm('builtin', isa);
  } catch {
    if (hasBlas()) setGemm('blas');
    return false;
  }
  try {
    fn();
  } finally {
    setGemm('builtin', 'auto');
    if (hasBlas()) setGemm('blas');
  }
  return true;
}

function hasBlas(): boolean {
  return !blasInfo().includes('no CBLAS');
}

/** C = alpha op(A) op(B) + beta C on k with offsets and padded rows, checked element by element
 *  against float64 within the float32 bound (K + 2) u (|alpha| sum |a b| + |beta c|); the padding
 *  of C must stay untouched and beta = 0 must not read C (NaN there). */
function checkGemm(k: Kernels, tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, beta: number) {
  const what = `sgemm ${tA ? 'T' : 'N'}${tB ? 'T' : 'N'} M${M} N${N} K${K} alpha ${alpha} beta ${beta}`;
  const lda = (tA ? M : K) + 3,
    ldb = (tB ? K : N) + 5,
    ldc = N + 2;
  const aOff = 7,
    bOff = 1,
    cOff = 3;
  const A = random(aOff + (tA ? K : M) * lda, M * 7 + N + K),
    B = random(bOff + (tB ? N : K) * ldb, N * 11 + K),
    C = random(cOff + M * ldc, K * 3 + 1);
  if (beta === 0) C.fill(NaN);
  const C0 = C.slice();
  k.sgemm(tA, tB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
  const u = 2 ** -24;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0,
        sa = 0;
      for (let p = 0; p < K; p++) {
        const a = tA ? A[aOff + p * lda + i] : A[aOff + i * lda + p];
        const b = tB ? B[bOff + j * ldb + p] : B[bOff + p * ldb + j];
        s += a * b;
        sa += Math.abs(a * b);
      }
      const c0 = C0[cOff + i * ldc + j];
      const ref = alpha * s + (beta === 0 ? 0 : beta * c0);
      const bound = (K + 2) * u * (Math.abs(alpha) * sa + (beta === 0 ? 0 : Math.abs(beta * c0))) + 1e-30;
      const got = C[cOff + i * ldc + j];
      if (!(Math.abs(got - ref) <= bound)) assert.fail(`${what}: C[${i}][${j}] = ${got}, expected ${ref} (+-${bound})`);
    }
    for (let j = N; j < ldc && cOff + i * ldc + j < C.length; j++)
      if (!Object.is(C[cOff + i * ldc + j], C0[cOff + i * ldc + j]))
        assert.fail(`${what}: padding C[${i}][${j}] written`);
  }
}

const small = [1, 3, 17, 65];
const scalars: [number, number][] = [
  [1, 0],
  [0.7, -1.3],
  [-1, 1],
];

for (const isa of ['avx512', 'avx2', 'scalar'] as const) {
  test(`built-in GEMM (${isa} kernels) matches float64 on odd shapes, all transposes, alpha/beta`, (t) => {
    const k = requireNative(t);
    if (!k) return;
    k.setThreads(1);
    const ran = withBuiltin(isa, () => {
      assert.match(blasInfo(), /^built-in GEMM/);
      for (const tA of [false, true])
        for (const tB of [false, true]) {
          for (const M of small)
            for (const N of small) for (const K of small) checkGemm(k, tA, tB, M, N, K, ...scalars[(M + N + K) % 3]);
          // rows and columns past the tiles, K over several cache blocks, a transposed C
          for (const [M, N, K] of [
            [257, 17, 300],
            [17, 257, 65],
            [257, 3, 600],
            [100, 8, 160],
            [65, 257, 257],
          ])
            for (const [alpha, beta] of scalars) checkGemm(k, tA, tB, M, N, K, alpha, beta);
        }
    });
    if (!ran) t.skip(`this CPU has no ${isa} kernels`);
  });
}

test('built-in GEMM: K = 0 and alpha = 0 scale C by beta without reading A or B; 2 threads', (t) => {
  const k = requireNative(t);
  if (!k) return;
  withBuiltin('auto', () => {
    const A = new Float32Array(64).fill(NaN),
      B = new Float32Array(64).fill(NaN);
    const C = Float32Array.from({ length: 12 }, (_, i) => i);
    k.sgemm(false, false, 3, 4, 0, 1, A, 0, 1, B, 0, 4, 0.5, C, 0, 4);
    assert.deepEqual([...C], [...Float32Array.from({ length: 12 }, (_, i) => i * 0.5)]);
    k.sgemm(false, false, 3, 4, 5, 0, A, 0, 5, B, 0, 4, 0, C, 0, 4);
    assert.deepEqual([...C], new Array(12).fill(0));
    // split across the pool's threads (by rows, then by columns)
    k.setThreads(2);
    try {
      checkGemm(k, false, true, 260, 70, 300, 1, 0);
      checkGemm(k, true, false, 20, 300, 700, 0.5, 1);
    } finally {
      k.setThreads(1);
    }
  });
});

/** ShallowCapsNet's two convolutions (forward, data and weight gradients) at batch 3, with O
 *  output channels in the second: 256 runs it through the DFT, 24 (below the DFT's 32) through
 *  im2col + GEMM with K = 20736 in kernel-row blocks, as dac2020's exact-order convolutions run. */
function w1Convs(k: Kernels, O2: number): Float32Array[] {
  return withBackend(k, () => {
    const B = 3;
    const x = new Tensor(
      random(B * 28 * 28, 1).map((v) => v + 0.5),
      [B, 28, 28, 1],
    );
    const w1 = new Tensor(
      random(256 * 81, 2).map((v) => v / 4.5),
      [256, 9, 9, 1],
    );
    const b1 = new Tensor(random(256, 3), [256]);
    const w2 = new Tensor(
      random(O2 * 81 * 256, 4).map((v) => v / 72),
      [O2, 9, 9, 256],
    );
    const h1 = conv2dForward(x, w1, b1, { relu: true });
    const u2 = conv2dForward(h1, w2, null, { stride: 2 });
    const dy = new Tensor(random(u2.size, 5), u2.shape);
    const g2 = conv2dBackward(dy, h1, w2, { stride: 2 });
    const g1 = conv2dBackward(g2.dx!, x, w1, { relu: true, y: h1, needInputGrad: false });
    return [h1.data, u2.data, g2.dx!.data, g2.dw.data, g1.dw.data, g1.db!.data].map((a) => a.slice());
  });
}

function compareW1(t: TestContext, k: Kernels, O2: number) {
  if (!hasBlas()) {
    t.skip(`no CBLAS in this build (${blasInfo()}): nothing to compare the built-in GEMM with`);
    return;
  }
  k.setThreads(1);
  setGemm('blas');
  const blas = w1Convs(k, O2);
  let builtin: Float32Array[] = [];
  withBuiltin('auto', () => (builtin = w1Convs(k, O2)));
  const names = ['conv1 y', 'conv2 y', 'conv2 dx', 'conv2 dw', 'conv1 dw', 'conv1 db'];
  names.forEach((n, i) => assertClose(builtin[i], blas[i], `${n} built-in vs CBLAS`, 1e-4, 1e-5));
}

test('ShallowCapsNet-shaped convolutions: built-in GEMM vs CBLAS (DFT path)', (t) => {
  const k = requireNative(t);
  if (k) compareW1(t, k, 256);
});

test('ShallowCapsNet-shaped convolutions: built-in GEMM vs CBLAS (im2col path, K = 20736)', (t) => {
  const k = requireNative(t);
  if (k) compareW1(t, k, 24);
});

// The direct small-patch kernel (native/smallconv.cc) stays on under QCAPS_GEMM=builtin: its
// fused multiply-adds are the built-in GEMM's, so a build without CBLAS (im2col + built-in GEMM)
// gives the same bits.
test('first layer under the built-in GEMM: the same bits with and without the small-patch kernel', (t) => {
  const k = requireNative(t);
  if (!k) return;
  const index = new URL('../src/tensor/index.js', import.meta.url).href;
  const script = `
    import { conv2dForward, Tensor, kernels } from ${JSON.stringify(index)};
    import { createHash } from 'node:crypto';
        const data = (n, f) => Float32Array.from({ length: n }, (_, i) => f(i));
    const x = new Tensor(data(5 * 28 * 28, (i) => (Math.sin(i * 0.37) + 1) / 2), [5, 28, 28, 1]);
    const w = new Tensor(data(256 * 81, (i) => Math.cos(i * 0.11) / 9), [256, 9, 9, 1]);
    const b = new Tensor(data(256, (i) => Math.sin(i) * 0.1), [256]);
    kernels().setThreads(1);
    const y = conv2dForward(x, w, b, { relu: true });
    const y2 = conv2dForward(x, w, null, { pad: 2 });
    const h = createHash('sha256');
    h.update(new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength));
    h.update(new Uint8Array(y2.data.buffer, y2.data.byteOffset, y2.data.byteLength));
    console.log(h.digest('hex'));`;
  const run = (extra: NodeJS.ProcessEnv) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, QCAPS_QUIET: '1', QCAPS_BACKEND: 'native', QCAPS_GEMM: 'builtin', ...extra },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  const direct = run({});
  const im2col = run({ QCAPS_SMALL_PATCH_CONV: '0' });
  assert.match(direct, /^[0-9a-f]{64}$/);
  assert.equal(direct, im2col);
});

// QCAPS_GEMM and QCAPS_GEMM_ISA are read once by src/settings.ts and passed to the addon (it
// reads no environment itself): the backend line names the family the variables chose.
test('QCAPS_GEMM=builtin with QCAPS_GEMM_ISA=scalar reaches the addon through the settings', (t) => {
  const k = requireNative(t);
  if (!k) return;
  const index = new URL('../src/tensor/kernels.js', import.meta.url).href;
  const r = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', `import(${JSON.stringify(index)}).then((k) => console.log(k.backendInfo()))`],
    {
      env: {
        ...process.env,
        QCAPS_QUIET: '1',
        QCAPS_BACKEND: 'native',
        QCAPS_GEMM: 'builtin',
        QCAPS_GEMM_ISA: 'scalar',
      },
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /built-in GEMM scalar/i);
});
