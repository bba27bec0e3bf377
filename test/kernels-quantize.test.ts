// The quantizer kernels (SPEC 4) on each backend: hand-computed values, the DAC 2020 arithmetic
// against PyTorch, seeded stochastic rounding, and an output quantizer fused into the convolution
// equal to a separate pass on every path (the native exact fixed-point one asserted to run where
// the CPU has AVX512-VNNI); native and typescript quantize bit-identically.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { QuantMethod, QuantSpec } from '../src/tensor/backend.js';
import { backendCases, fixture, requireBothBackends } from './helpers.js';

const spec = (method: QuantMethod, frac: number, extra: Partial<QuantSpec> = {}): QuantSpec => ({
  method,
  frac,
  compat: false,
  lo: -Infinity,
  hi: Infinity,
  seed: 42,
  stream: 0,
  ...extra,
});

for (const [k, skip] of backendCases()) {
  const q = (xs: number[], s: QuantSpec) => {
    const x = Float32Array.from(xs);
    const y = new Float32Array(x.length);
    k.quantize(x, y, x.length, s);
    return Array.from(y);
  };

  test(`truncation, round-to-nearest, logarithmic on hand-computed values (${k.name})`, { skip }, () => {
    // N = 2: multiples of 0.25
    assert.deepEqual(q([0.3, -0.3, 0.625, 1.0, -0.125], spec('truncation', 2)), [0.25, -0.5, 0.5, 1.0, -0.25]);
    // round half to even at the LSB: 0.125 -> 0 (0.5 LSB), 0.375 -> 0.5 (1.5 LSB), 0.3 -> 0.25
    assert.deepEqual(q([0.3, 0.125, 0.375, -0.375, 0.62], spec('round_to_nearest', 2)), [0.25, 0, 0.5, -0.5, 0.5]);
    // logarithmic: 2^round(log2|x|), below 2^-N -> 0, clamp 2^10
    assert.deepEqual(q([0.3, -3, 0.1, 0, 5000], spec('logarithmic', 3)), [0.25, -4, 0.125, 0, 1024]);
    assert.deepEqual(q([0.05], spec('logarithmic', 3)), [0]);
    // saturation to a range when asked
    assert.deepEqual(q([3.2, -7], spec('round_to_nearest', 1, { lo: -2, hi: 1.5 })), [1.5, -2]);
  });

  test(`the DAC 2020 compatibility arithmetic matches its PyTorch code (${k.name})`, { skip }, () => {
    const f = fixture('quant_compat');
    const x = f.get('x').data;
    for (const n of [1, 3, 7]) {
      const run = (s: QuantSpec) => {
        const y = new Float32Array(x.length);
        k.quantize(x, y, x.length, s);
        return y;
      };
      assert.deepEqual(run(spec('truncation', n, { compat: true })), f.get(`trunc_${n}`).data, `truncation N=${n}`);
      assert.deepEqual(
        run(spec('round_to_nearest', n, { compat: true })),
        f.get(`rtn_compat_${n}`).data,
        `round_to_nearest N=${n}`,
      );
      assert.deepEqual(
        run(spec('logarithmic', n, { compat: true })),
        f.get(`log_compat_${n}`).data,
        `logarithmic N=${n}`,
      );
    }
  });

  test(`stochastic rounding is seeded, unbiased and lands on neighbours (${k.name})`, { skip }, () => {
    const n = 20000;
    const xs = new Array<number>(n).fill(0.3);
    const a = q(xs, spec('stochastic_rounding', 2, { seed: 7 }));
    const b = q(xs, spec('stochastic_rounding', 2, { seed: 7 }));
    const c = q(xs, spec('stochastic_rounding', 2, { seed: 8 }));
    assert.deepEqual(a, b, 'same seed, same result');
    assert.notDeepEqual(a, c, 'another seed, another draw');
    assert.ok(a.every((v) => v === 0.25 || v === 0.5));
    const mean = a.reduce((p, v) => p + v, 0) / n;
    assert.ok(Math.abs(mean - 0.3) < 0.005, `mean ${mean} should be close to 0.3`);
  });
}

for (const [k, skip] of backendCases())
  test(`quantizeMasked's record and maskGradient: the clipped straight-through estimator (${k.name})`, { skip }, () => {
    const x = Float32Array.from([-2, -1.5, -1.25, 0, 0.75, 0.875, 1, NaN, Infinity, -Infinity]);
    const y = new Float32Array(x.length);
    const mask = new Uint8Array(x.length + 2).fill(7);
    k.quantizeMasked(x, y, x.length, spec('round_to_nearest', 3, { lo: -1.5, hi: 0.875 }), mask);
    assert.deepEqual([...mask], [0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 7, 7], 'bounds included, NaN out, n respected');
    k.quantizeMasked(x, y, x.length, spec('round_to_nearest', 3), mask);
    assert.deepEqual([...mask.subarray(0, x.length)], [1, 1, 1, 1, 1, 1, 1, 0, 1, 1], 'no bounds: all but NaN');
    const dy = Float32Array.from([1, -2, 3, -4, 5]);
    const out = new Float32Array(6).fill(9);
    k.maskGradient(dy, Uint8Array.from([1, 0, 1, 0, 0]), 5, out);
    assert.deepEqual([...out], [1, 0, 3, 0, 0, 9]);
  });

for (const [k, skip] of backendCases())
  test(`quantizeMasked: quantize and the range mask of its bounds in one pass, in place (${k.name})`, { skip }, () => {
    const n = 70_001; // past the native kernel's split over threads
    const x = Float32Array.from({ length: n }, (_, i) => (i % 101 === 0 ? NaN : Math.sin(i * 0.7) * 1.5));
    for (const method of ['truncation', 'round_to_nearest', 'stochastic_rounding'] as const) {
      const q = spec(method, 3, { lo: -1, hi: 1 - 2 ** -3, stream: 5 });
      const want = new Float32Array(n);
      k.quantize(x, want, n, q);
      const wantMask = Uint8Array.from(x, (v) => (v >= q.lo && v <= q.hi ? 1 : 0));
      const y = Float32Array.from(x);
      const mask = new Uint8Array(n);
      k.quantizeMasked(y, y, n, q, mask);
      assert.deepEqual(y, want, method);
      assert.deepEqual(mask, wantMask, method);
      assert.ok(mask.includes(0) && mask.includes(1), 'both kinds of values occur');
    }
  });

test('both backends give the same range masks and masked gradients', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const n = 100_003; // past the native kernel's split over threads
  const x = Float32Array.from({ length: n }, (_, i) => (i % 97 === 0 ? NaN : Math.sin(i * 1.3) * 2));
  const dy = Float32Array.from({ length: n }, (_, i) => Math.cos(i));
  for (const [lo, hi] of [
    [-1, 1 - 2 ** -7],
    [-0.25, 0.125],
    [-Infinity, 0.5],
    [0, Infinity],
  ]) {
    const masks: Uint8Array[] = [new Uint8Array(n), new Uint8Array(n)];
    const outs: Float32Array[] = [new Float32Array(n), new Float32Array(n)];
    ks.forEach((k, j) => {
      k.quantizeMasked(x, new Float32Array(n), n, spec('stochastic_rounding', 7, { lo, hi, stream: 2 }), masks[j]);
      k.maskGradient(dy, masks[j], n, outs[j]);
    });
    assert.deepEqual(masks[0], masks[1], `[${lo}, ${hi}]`);
    assert.deepEqual(outs[0], outs[1], `[${lo}, ${hi}]`);
  }
});

test('both backends quantize bit-identically, stochastic rounding included', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const x = Float32Array.from({ length: 5000 }, (_, i) => Math.sin(i * 1.7) * 3);
  for (const method of ['truncation', 'round_to_nearest', 'stochastic_rounding', 'logarithmic'] as const)
    for (const compat of [false, true])
      for (const frac of [0, 4, 11]) {
        const outs: Float32Array[] = ks.map((k) => {
          const y = new Float32Array(x.length);
          k.quantize(x, y, x.length, spec(method, frac, { compat, stream: 3 }));
          return y;
        });
        assert.deepEqual(outs[0], outs[1], `${method} compat=${compat} N=${frac}`);
      }
});

// the quantized forward hands a Conv2d's output quantizer to the kernel, which applies it
// while the output is in cache (per chunk of rows, per block of pixels): the same elements,
// the same stochastic draws (global element indices)
const geo = (H: number, C: number, O: number, K: number, stride: number, pad: number) => {
  const OH = Math.floor((H + 2 * pad - K) / stride) + 1;
  return { B: 2, H, W: H, C, O, KH: K, KW: K, stride, pad, OH, OW: OH };
};
const lcg = (n: number, seed: number, frac: number | null) => {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32 - 0.25;
    return frac === null ? u : Math.round(u * 2 ** frac) / 2 ** frac;
  });
};
const paths = [
  ['small patch (9x9 over one channel)', geo(20, 1, 64, 9, 1, 0), null, false],
  ['im2col + GEMM (3x3 over 40 channels)', geo(9, 40, 48, 3, 1, 1), null, false],
  ['exact fixed point (9x9 stride 2 over 32 channels)', geo(20, 32, 64, 9, 2, 0), 10, true],
] as const;
for (const [k, skip] of backendCases())
  test(
    `a convolution with its output quantizer fused equals the convolution then quantize, on every path (${k.name})`,
    { skip },
    () => {
      // natively, the exact fixed-point path must be the one tested (it runs on every CPU)
      const fixedRuns = k.name === 'native';
      for (const [what, g, frac, fixedPoint] of paths)
        for (const q of [
          spec('round_to_nearest', 6, { compat: true }),
          spec('stochastic_rounding', 5, { seed: 9, stream: 77 }),
        ]) {
          const x = lcg(g.B * g.H * g.W * g.C, 1, frac).map((v) => Math.abs(v));
          const w = lcg(g.O * g.KH * g.KW * g.C, 2, frac === null ? null : 8);
          const bias = lcg(g.O, 3, frac === null ? null : 12);
          const fused = new Float32Array(g.B * g.OH * g.OW * g.O);
          const apart = new Float32Array(fused.length);
          const mode = { fastAlgorithms: false, fixedPoint }; // dac2020's setting
          const method = k.conv2dForward(g, x, w, bias, fused, true, q, mode);
          if (fixedRuns && fixedPoint)
            assert.notEqual(method, null, `${what}: the fused convolution ran in fixed point`);
          k.conv2dForward(g, x, w, bias, apart, true, null, mode);
          k.quantize(apart, apart, apart.length, q);
          assert.deepEqual(fused, apart, `${k.name}: ${what}, ${q.method}`);
        }
    },
  );
