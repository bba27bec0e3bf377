// conv2d and conv_transpose2d match PyTorch (forward and all gradients) on each backend, and
// refuse mismatched shapes; the native algorithms (K split into kernel-row blocks, Winograd,
// DFT) match the typescript kernels, and its direct small-patch kernel gives im2col + GEMM's bits.
import { test } from 'node:test';
import {
  conv2dBackward,
  conv2dForward,
  convTranspose2dBackward,
  convTranspose2dForward,
  convTransposeWeightFromTorch,
  convTransposeWeightToTorch,
  ohwiToOihw,
  oihwToOhwi,
} from '../src/tensor/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import {
  assertClose,
  backendCases,
  fixture,
  nchwToNhwc,
  nhwcToNchw,
  requireBothBackends,
  requireNative,
  withBackend,
} from './helpers.js';
import type { ConvGeom, Kernels } from '../src/tensor/backend.js';
import assert from 'node:assert/strict';

/** Forward (+ bias, ReLU), input gradient and weight/bias gradients (accumulated onto dwInit,
 *  dbInit) of one convolution geometry on kernels k. */
function convKernelOutputs(
  k: Kernels,
  g: ConvGeom,
  x: Float32Array,
  w: Float32Array,
  dy: Float32Array,
  bias: Float32Array,
  dwInit = 0,
  dbInit = 0,
) {
  const y = new Float32Array(g.B * g.OH * g.OW * g.O);
  const dx = new Float32Array(x.length);
  const dw = new Float32Array(w.length).fill(dwInit);
  const db = new Float32Array(g.O).fill(dbInit);
  k.conv2dForward(g, x, w, bias, y, true);
  k.conv2dBackwardData(g, dy, w, dx);
  k.conv2dBackwardWeight(g, x, dy, dw, db);
  return { y, dx, dw, db };
}

const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));

for (const [k, skip] of backendCases()) {
  for (const name of ['conv2d_k3s1p1', 'conv2d_k3s2p1_relu', 'conv2d_k5s2p0', 'conv2d_k1s1p0']) {
    test(`${name} forward and backward match PyTorch (${k.name})`, { skip }, () =>
      withBackend(k, () => {
        const f = fixture(name);
        const opts = { stride: f.meta.stride as number, pad: f.meta.pad as number, relu: f.meta.relu as boolean };
        const x = nchwToNhwc(f.get('x'));
        const w = oihwToOhwi(f.get('w'));
        const y = conv2dForward(x, w, f.get('b'), opts);
        assertClose(nhwcToNchw(y), f.get('y'), `${name} y`);
        const g = nchwToNhwc(f.get('g'));
        const { dx, dw, db } = conv2dBackward(g, x, w, { ...opts, y });
        assertClose(nhwcToNchw(dx!), f.get('dx'), `${name} dx`);
        assertClose(ohwiToOihw(dw), f.get('dw'), `${name} dw`);
        assertClose(db!, f.get('db'), `${name} db`);
      }),
    );
  }
  for (const name of ['conv_transpose2d_k3s2p1op1', 'conv_transpose2d_k4s2p1', 'conv_transpose2d_k3s1p1']) {
    test(`${name} forward and backward match PyTorch (${k.name})`, { skip }, () =>
      withBackend(k, () => {
        const f = fixture(name);
        const opts = {
          stride: f.meta.stride as number,
          pad: f.meta.pad as number,
          outputPadding: f.meta.outputPadding as number,
        };
        const x = nchwToNhwc(f.get('x'));
        const w = convTransposeWeightFromTorch(f.get('w'));
        const y = convTranspose2dForward(x, w, f.get('b'), opts);
        assertClose(nhwcToNchw(y), f.get('y'), `${name} y`);
        const dw = Tensor.zeros(w.shape);
        const db = Tensor.zeros([w.shape[3]]);
        const dx = convTranspose2dBackward(nchwToNhwc(f.get('g')), x, w, opts, { dw, db });
        assertClose(nhwcToNchw(dx!), f.get('dx'), `${name} dx`);
        assertClose(convTransposeWeightToTorch(dw), f.get('dw'), `${name} dw`);
        assertClose(db, f.get('db'), `${name} db`);
      }),
    );
  }
  test(`conv2d rejects mismatched channels with the op and shapes in the message (${k.name})`, { skip }, () =>
    withBackend(k, () => {
      const x = Tensor.zeros([1, 5, 5, 3]);
      const w = Tensor.zeros([4, 3, 3, 2]);
      assert.throws(
        () => conv2dForward(x, w, null),
        /conv2d: input \[1, 5, 5, 3\] has 3 channels but weight \[4, 3, 3, 2\] expects 2/,
      );
      assert.throws(() => conv2dForward(Tensor.zeros([1, 2, 2, 2]), w, null, {}), /conv2d: kernel 3x3 does not fit/);
    }),
  );
}

test('native conv2d (K split into kernel-row blocks, 2 threads) matches the typescript kernels', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const [nat, ts] = ks;
  // K = 9*9*64 = 5184 > 4096: the native kernels split K into blocks of kernel rows
  const g = { B: 3, H: 13, W: 13, C: 64, O: 8, KH: 9, KW: 9, stride: 2, pad: 1, OH: 4, OW: 4 };
  const x = wave(g.B * g.H * g.W * g.C, 0.37);
  const w = wave(g.O * g.KH * g.KW * g.C, 0.11).map((v) => v * 0.05);
  const dy = wave(g.B * g.OH * g.OW * g.O, 0.23);
  const bias = wave(g.O, 1.3);
  nat.setThreads(2);
  try {
    const a = convKernelOutputs(nat, g, x, w, dy, bias, 0.5, 0.25);
    const b = convKernelOutputs(ts, g, x, w, dy, bias, 0.5, 0.25);
    assertClose(a.y, b.y, 'forward');
    assertClose(a.dx, b.dx, 'backward data');
    assertClose(a.dw, b.dw, 'backward weight (accumulated onto 0.5)');
    assertClose(a.db, b.db, 'bias gradient (accumulated onto 0.25)');
  } finally {
    nat.setThreads(1);
  }
});

test('native conv2d matches the typescript kernel on a strided, padded shape', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const x = Tensor.from(
    Array.from({ length: 3 * 8 * 8 * 16 }, (_, i) => Math.sin(i * 0.37)),
    [3, 8, 8, 16],
  );
  const w = Tensor.from(
    Array.from({ length: 12 * 3 * 3 * 16 }, (_, i) => Math.cos(i * 0.11) * 0.2),
    [12, 3, 3, 16],
  );
  const b = Tensor.from(
    Array.from({ length: 12 }, (_, i) => i * 0.1 - 0.5),
    [12],
  );
  const outs = ks.map((k) => withBackend(k, () => conv2dForward(x, w, b, { stride: 2, pad: 1, relu: true })));
  assertClose(outs[0], outs[1], 'native vs typescript conv2d', 1e-5);
});

test('native Winograd F(2x2,3x3) and F(4x4,3x3) conv (odd sizes, pad 0/1/2, 2 threads) matches the typescript kernels', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const [nat, ts] = ks;
  nat.setThreads(2);
  try {
    for (const [B, H, C, O, pad] of [
      [2, 7, 16, 24, 1],
      [2, 8, 32, 16, 0],
      [3, 5, 16, 16, 2],
    ]) {
      const OH = H + 2 * pad - 2;
      const g = { B, H, W: H, C, O, KH: 3, KW: 3, stride: 1, pad, OH, OW: OH };
      const x = wave(B * H * H * C, 0.37);
      const w = wave(O * 9 * C, 0.11);
      const dy = wave(B * OH * OH * O, 0.23);
      const bias = wave(O, 1.3);
      const a = convKernelOutputs(nat, g, x, w, dy, bias);
      const b = convKernelOutputs(ts, g, x, w, dy, bias);
      const what = `B${B} ${H}x${H} C${C} O${O} pad ${pad}`;
      // outputs at least 7 wide take F(4x4,3x3): its larger transform coefficients (up to 8
      // in A^T, 1/24 in G) leave float32 errors of 1e-5 to 1e-4 of the largest value, where
      // F(2x2,3x3) stays near the direct sums
      const atol = OH >= 7 ? 1e-4 : 1e-5;
      assertClose(a.y, b.y, `${what} forward + ReLU`, 1e-4, atol);
      assertClose(a.dx, b.dx, `${what} backward data`, 1e-4, atol);
      assertClose(a.dw, b.dw, `${what} backward weight`, 1e-4, atol);
      assertClose(a.db, b.db, `${what} bias gradient`);
    }
  } finally {
    nat.setThreads(1);
  }
});

test('native DFT convolution for large kernels (9x9 and 7x7, stride 1 and 2, padded) matches the typescript kernels', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const [nat, ts] = ks;
  nat.setThreads(2);
  try {
    for (const [B, H, C, O, KH, stride, pad] of [
      [2, 20, 32, 40, 9, 2, 0],
      [2, 13, 32, 32, 7, 1, 1],
      [3, 16, 48, 32, 9, 2, 2],
    ]) {
      const OH = Math.floor((H + 2 * pad - KH) / stride) + 1;
      const g = { B, H, W: H, C, O, KH, KW: KH, stride, pad, OH, OW: OH };
      const x = wave(B * H * H * C, 0.37);
      const w = wave(O * KH * KH * C, 0.11);
      const dy = wave(B * OH * OH * O, 0.23);
      const bias = wave(O, 1.3);
      const a = convKernelOutputs(nat, g, x, w, dy, bias, 0.5);
      const b = convKernelOutputs(ts, g, x, w, dy, bias, 0.5);
      const what = `B${B} ${H}x${H} C${C} O${O} k${KH} s${stride} pad ${pad}`;
      assertClose(a.y, b.y, `${what} forward + ReLU`);
      assertClose(a.dx, b.dx, `${what} backward data`);
      assertClose(a.dw, b.dw, `${what} backward weight (accumulated onto 0.5)`);
      assertClose(a.db, b.db, `${what} bias gradient`);
    }
  } finally {
    nat.setThreads(1);
  }
});

test('native direct convolution of small patches (K <= 128) gives the sums of im2col + the native GEMM', (t) => {
  // the first layers (ShallowCapsNet's 9x9 over one channel) skip the column matrix: fused
  // multiply-adds in column order (ordered_conv), which is the order of OpenBLAS's AVX-512
  // kernels (the same bits there) but not of every GEMM (OpenBLAS's Haswell kernels, picked on
  // AMD Zen, sum in another order): the same sums to float32 rounding. The order itself is
  // pinned bit for bit by test/float-order.test.ts.
  const nat = requireNative(t);
  if (!nat) return;
  const geo = (B: number, H: number, C: number, O: number, K: number, stride: number, pad: number): ConvGeom => {
    const OH = Math.floor((H + 2 * pad - K) / stride) + 1;
    return { B, H, W: H, C, O, KH: K, KW: K, stride, pad, OH, OW: OH };
  };
  for (const [what, g] of [
    ['9x9 over one channel (ShallowCapsNet conv1)', geo(3, 28, 1, 256, 9, 1, 0)],
    ['3x3 pad 1 over three channels, 40 outputs', geo(2, 13, 3, 40, 3, 1, 1)],
    ['3x3 stride 2 pad 1 over 14 channels (K = 126), 70 outputs', geo(2, 11, 14, 70, 3, 2, 1)],
  ] as const) {
    const x = Float32Array.from({ length: g.B * g.H * g.W * g.C }, (_, i) => Math.fround(((i * 7919) % 256) / 255));
    const w = wave(g.O * g.KH * g.KW * g.C, 0.37).map((v) => Math.round(v * 300) / 1024);
    const bias = wave(g.O, 1.3).map((v) => v / 8);
    const K = g.KH * g.KW * g.C;
    const rows = g.B * g.OH * g.OW;
    const col = new Float32Array(rows * K);
    for (let r = 0; r < rows; r++) {
      const b = Math.floor(r / (g.OH * g.OW));
      const oy = Math.floor((r % (g.OH * g.OW)) / g.OW);
      const ox = r % g.OW;
      for (let ky = 0; ky < g.KH; ky++)
        for (let kx = 0; kx < g.KW; kx++)
          for (let c = 0; c < g.C; c++) {
            const iy = oy * g.stride - g.pad + ky;
            const ix = ox * g.stride - g.pad + kx;
            const inside = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
            col[r * K + (ky * g.KW + kx) * g.C + c] = inside ? x[((b * g.H + iy) * g.W + ix) * g.C + c] : 0;
          }
    }
    const ref = new Float32Array(rows * g.O);
    nat.sgemm(false, true, rows, g.O, K, 1, col, 0, K, w, 0, K, 0, ref, 0, g.O);
    for (let i = 0; i < ref.length; i++) ref[i] = Math.max(0, Math.fround(ref[i] + bias[i % g.O]));
    const y = new Float32Array(ref.length);
    // dac2020's setting: no Winograd or DFT in front of it
    nat.conv2dForward(g, x, w, bias, y, true, null, { fastAlgorithms: false, fixedPoint: false });
    assertClose(y, ref, what, 1e-5, 1e-6);
  }
});
