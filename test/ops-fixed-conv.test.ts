// The exact fixed-point convolution (the quantized forward): the TypeScript reference equals
// the correctly rounded exact sums; the native kernels run wherever they must (fixed-point
// inputs and int16 weights), on every CPU, by the method they should report (integer
// Winograd, direct, two passes over limbs), also from conv2dForward, and equal the reference
// bit for bit at every instruction-set level this CPU runs (avx512vnni, avx512, avx2,
// portable: the levels above it are reported as skipped); both backends decline what they
// cannot compute exactly and leave y alone. Skipped only where the addon is not under test (a
// failure under QCAPS_REQUIRE_NATIVE=1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConvGeom, Kernels } from '../src/tensor/backend.js';
import { typescriptKernels } from '../src/tensor/kernels-ts.js';
import { backendCases, forEachIsa, requireNative } from './helpers.js';

function geom(B: number, H: number, C: number, O: number, K: number, stride: number, pad: number): ConvGeom {
  const OH = Math.floor((H + 2 * pad - K) / stride) + 1;
  return { B, H, W: H, C, O, KH: K, KW: K, stride, pad, OH, OW: OH };
}

/** Integers in [-range, range] (or [0, range]) times 2^-frac, from a fixed LCG. */
function fixedPoint(n: number, frac: number, range: number, seed: number, nonNegative = false): Float32Array {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Float32Array.from({ length: n }, () => {
    const k = Math.floor(next() * (range + 1));
    return (nonNegative || next() < 0.5 ? k : -k) * 2 ** -frac;
  });
}

/** float64 direct convolution without bias (exact here: every sum is an integer below 2^53
 *  times a power of two). */
function exactSums(g: ConvGeom, x: Float32Array, w: Float32Array): Float64Array {
  const { B, H, W, C, O, KH, KW, stride, pad, OH, OW } = g;
  const y = new Float64Array(B * OH * OW * O);
  for (let b = 0; b < B; b++)
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OW; ox++)
        for (let o = 0; o < O; o++) {
          let acc = 0;
          for (let ky = 0; ky < KH; ky++)
            for (let kx = 0; kx < KW; kx++) {
              const iy = oy * stride - pad + ky;
              const ix = ox * stride - pad + kx;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              for (let c = 0; c < C; c++)
                acc += x[((b * H + iy) * W + ix) * C + c] * w[((o * KH + ky) * KW + kx) * C + c];
            }
          y[((b * OH + oy) * OW + ox) * O + o] = acc;
        }
  return y;
}

/** The native fixed-point convolution where it must run: asserts it ran, returns its method. */
function mustRun(nat: Kernels, what: string, ...args: Parameters<Kernels['conv2dForwardFixedPoint']>) {
  const method = nat.conv2dForwardFixedPoint(...args);
  assert.ok(method !== null, `${what}: the native fixed-point kernel declined`);
  return method;
}

const cases: [string, ConvGeom][] = [
  ['3x3 pad 1, 48 -> 40 channels', geom(2, 9, 48, 40, 3, 1, 1)],
  ['9x9 stride 2, 32 -> 64 channels (ShallowCapsNet primary-shaped)', geom(2, 20, 32, 64, 9, 2, 0)],
  ['5x5 stride 2 pad 2, 26 -> 17 channels (odd output count)', geom(3, 11, 26, 17, 5, 2, 2)],
];

test('fixed-point convolution reference: the exact sums rounded once to float32, then bias and ReLU', () => {
  for (const [what, g] of cases) {
    const x = fixedPoint(g.B * g.H * g.W * g.C, 10, 1930, 1, true); // like a ReLU output at 10 bits
    const w = fixedPoint(g.O * g.KH * g.KW * g.C, 8, 60, 2);
    const bias = fixedPoint(g.O, 12, 900, 3);
    const y = new Float32Array(g.B * g.OH * g.OW * g.O);
    assert.ok(typescriptKernels.conv2dForwardFixedPoint(g, x, w, bias, y, true), `${what}: applies`);
    const exact = exactSums(g, x, w);
    for (let i = 0; i < y.length; i++) {
      let v = Math.fround(Math.fround(exact[i]) + bias[i % g.O]);
      if (!(v > 0)) v = 0;
      assert.equal(y[i], v, `${what}: element ${i}`);
    }
  }
});

test('native fixed-point convolution runs in one pass and equals the reference bit for bit, at every level', async (t) => {
  const nat = requireNative(t);
  if (!nat) return;
  await forEachIsa(t, () => {
    for (const [what, g] of cases) {
      for (const relu of [false, true]) {
        const x = fixedPoint(g.B * g.H * g.W * g.C, 10, 1930, 4, true);
        const w = fixedPoint(g.O * g.KH * g.KW * g.C, 9, 120, 5);
        const bias = fixedPoint(g.O, 12, 900, 6);
        const a = new Float32Array(g.B * g.OH * g.OW * g.O).fill(NaN);
        const b = new Float32Array(a.length);
        const method = mustRun(nat, what, g, x, w, bias, a, relu);
        // int16 inputs: one pass (integer Winograd where it saves products, else direct)
        assert.ok(method === 'winograd' || method === 'direct', `${what}: method '${method}'`);
        assert.ok(typescriptKernels.conv2dForwardFixedPoint(g, x, w, bias, b, relu));
        assert.deepEqual(a, b, `${what}, relu ${relu}`);
        // conv2dForward takes the same path when the quantized forward's mode asks for it (under
        // dac2020 arithmetic, whose float convolutions are im2col; in the default one Winograd
        // keeps the 3x3 layers, where it is faster)
        const c = new Float32Array(a.length);
        const viaForward = nat.conv2dForward(g, x, w, bias, c, relu, null, { fastAlgorithms: false, fixedPoint: true });
        assert.equal(viaForward, method, `${what}: conv2dForward dispatches to it`);
        assert.deepEqual(c, a, `${what}: conv2dForward gives its bits`);
      }
    }
  });
});

test('native fixed-point convolution: exact integer Winograd where it saves products, bit for bit, at every level', async (t) => {
  // F(2,3) and F(2,2) minimal filtering in integers over the stride phases of the kernel;
  // the sums are the same exact integers as the direct kernel's, so the bits are the same
  const nat = requireNative(t);
  if (!nat) return;
  const winogradCases: [string, ConvGeom][] = [
    ...cases,
    ['3x3 stride 2 pad 1, 40 -> 32 channels (phases of 2 and 1 taps)', geom(2, 12, 40, 32, 3, 2, 1)],
    ['7x7 pad 3, 64 -> 32 channels (3 + 2 + 2 taps)', geom(1, 9, 64, 32, 7, 1, 3)],
    ['2x2, 33 -> 20 channels (odd channel count: a pad channel)', geom(2, 9, 33, 20, 2, 1, 0)],
    ['9x9 stride 2, 256 -> 256 channels (ShallowCapsNet primary capsules)', geom(2, 20, 256, 256, 9, 2, 0)],
  ];
  // the reference once (the slow part), then each level against it
  const runs = winogradCases.flatMap(([what, g]) => {
    const x = fixedPoint(g.B * g.H * g.W * g.C, 10, 1930, 41, true);
    const w = fixedPoint(g.O * g.KH * g.KW * g.C, 9, 300, 42);
    const bias = fixedPoint(g.O, 12, 900, 43);
    return [false, true].map((relu) => {
      const ref = new Float32Array(g.B * g.OH * g.OW * g.O);
      assert.ok(typescriptKernels.conv2dForwardFixedPoint(g, x, w, bias, ref, relu));
      return { what: `${what}, relu ${relu}`, g, x, w, bias, relu, ref };
    });
  });
  await forEachIsa(t, () => {
    for (const { what, g, x, w, bias, relu, ref } of runs) {
      const a = new Float32Array(ref.length).fill(NaN);
      assert.equal(mustRun(nat, what, g, x, w, bias, a, relu), 'winograd', `${what}: integer Winograd ran`);
      assert.deepEqual(a, ref, what);
    }
  });
});

test('native fixed-point Winograd: int64 totals past int32, and the direct kernel where transforms overflow int16', async (t) => {
  const nat = requireNative(t);
  if (!nat) return;
  // a 4x4 kernel: F(2,2) in both directions, so |U| <= 4 max|w|
  const g = geom(1, 12, 256, 32, 4, 1, 0);
  /** integers in [lo, hi] from a fixed LCG */
  const ints = (n: number, lo: number, hi: number, seed: number) =>
    fixedPoint(n, 0, hi - lo, seed, true).map((v) => v + lo);
  const n = g.B * g.H * g.W * g.C;
  const nw = g.O * g.KH * g.KW * g.C;
  await forEachIsa(t, () => {
    for (const [what, x, w, method] of [
      // |V| <= 32000 and |U| <= 480: int32 sums of a chunk stay below 2^30, the totals pass 2^31
      ['totals past int32', ints(n, 7000, 8000, 51), ints(nw, 80, 120, 52), 'winograd'],
      // 16 products of 32000 x 4000 stay below 2^31, 32 would not: int32 segments of 8 pairs
      ['int32 segments of a chunk', ints(n, 15000, 16000, 59), ints(nw, 900, 1000, 60), 'winograd'],
      // |V| <= 4 max|x| for signed inputs, 2 max|x| for non-negative ones (ReLU outputs)
      [
        'signed inputs whose transform could pass int16 (4 x 9000)',
        fixedPoint(n, 0, 9000, 53),
        ints(nw, 1, 20, 54),
        'direct',
      ],
      [
        'non-negative inputs whose transform could pass int16 (2 x 17000)',
        ints(n, 16500, 17000, 57),
        ints(nw, 1, 20, 54),
        'direct',
      ],
      [
        'signed inputs whose transform fits int16 (4 x 8000)',
        fixedPoint(n, 0, 8000, 58),
        ints(nw, 1, 20, 54),
        'winograd',
      ],
      ['weights whose transform passes int16 (4 x 9000)', ints(n, 0, 100, 55), ints(nw, 8500, 9000, 56), 'direct'],
    ] as const) {
      const a = new Float32Array(g.B * g.OH * g.OW * g.O);
      const b = new Float32Array(a.length);
      assert.equal(mustRun(nat, what, g, x, w, null, a, false), method, what);
      assert.ok(typescriptKernels.conv2dForwardFixedPoint(g, x, w, null, b, false));
      assert.deepEqual(a, b, what);
      const exact = exactSums(g, x, w);
      if (what === 'totals past int32')
        assert.ok(
          exact.every((v) => v >= 2 ** 31),
          'every sum exceeds int32',
        );
      b.forEach((v, i) => assert.equal(v, Math.fround(exact[i]), `${what}: element ${i}`));
    }
  });
});

test('fixed-point convolution: sums past int32 are still exact (int64 totals), at every level', async (t) => {
  // the sums exceed int32: the kernel adds its int32 partial sums into int64 totals
  const g = geom(2, 8, 64, 32, 3, 1, 1);
  const x = fixedPoint(g.B * g.H * g.W * g.C, 0, 32000, 13, true);
  const w = fixedPoint(g.O * 9 * g.C, 0, 500, 14, true);
  const ref = new Float32Array(g.B * g.OH * g.OW * g.O);
  assert.ok(typescriptKernels.conv2dForwardFixedPoint(g, x, w, null, ref, false));
  const exact = exactSums(g, x, w);
  assert.ok(
    exact.some((v) => v >= 2 ** 31),
    'some sums exceed int32',
  );
  ref.forEach((v, i) => assert.equal(v, Math.fround(exact[i]), `element ${i}`));
  const nat = requireNative(t);
  if (!nat) return;
  await forEachIsa(t, () => {
    const y = new Float32Array(ref.length);
    // |V| could reach 2 x 32000, past int16: the direct kernel, int32 partial sums into int64
    assert.equal(mustRun(nat, 'sums past int32', g, x, w, null, y, false), 'direct');
    assert.deepEqual(y, ref);
  });
});

test('fixed-point convolution of inputs wider than int16: two passes over limbs of x, still exact, at every level', async (t) => {
  // like activations at 16 fractional bits without saturation (dac2020): integers of 18 bits,
  // and weights of 16 bits, whose int32 sums over 64 products could overflow: the native
  // kernel convolves x = 2^b high + low limb by limb and adds 2^b * high + low in int64
  const g = geom(2, 20, 32, 64, 9, 2, 0);
  const x = fixedPoint(g.B * g.H * g.W * g.C, 16, 110000, 31, true);
  const w = fixedPoint(g.O * 81 * g.C, 16, 29000, 32);
  const bias = fixedPoint(g.O, 12, 900, 33);
  for (const [what, xs] of [
    ['x of 18 bits', x],
    ['x of 15 bits, sums that overflow int32', x.map((v) => Math.min(v, 0.5))],
  ] as const) {
    const ref = new Float32Array(g.B * g.OH * g.OW * g.O);
    assert.ok(typescriptKernels.conv2dForwardFixedPoint(g, xs, w, bias, ref, true), `${what}: applies`);
    const exact = exactSums(g, xs, w);
    ref.forEach((v, i) => {
      let e = Math.fround(Math.fround(exact[i]) + bias[i % g.O]);
      if (!(e > 0)) e = 0;
      assert.equal(v, e, `${what}: element ${i}`);
    });
    const nat = requireNative(t);
    if (!nat) return;
    await forEachIsa(t, () => {
      const y = new Float32Array(ref.length);
      assert.equal(mustRun(nat, what, g, xs, w, bias, y, true), 'limbs', `${what}: two passes over limbs`);
      assert.deepEqual(y, ref, what);
    });
  }
});

const declineGeom = geom(1, 9, 32, 16, 3, 1, 1);
for (const [k, skip] of backendCases())
  test(
    `fixed-point convolution declines what it cannot compute exactly, and leaves y alone (${k.name})`,
    { skip },
    () => {
      const g = declineGeom;
      const n = g.B * g.H * g.W * g.C;
      const w = fixedPoint(g.O * 9 * g.C, 8, 100, 7);
      const declined: [string, Float32Array, Float32Array, ConvGeom][] = [
        ['inputs that are not fixed point', Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1e-3), w, g],
        ['input integers of 2^30 and more', fixedPoint(n, 0, 2 ** 31, 9), w, g],
        [
          'sums that could reach 2^53 (exact in neither kernel)',
          fixedPoint(n, 0, 2 ** 30 - 1, 9),
          fixedPoint(w.length, 0, 32767, 10),
          g,
        ],
        [
          'an odd kernel row (KW*C = 3*21)',
          fixedPoint(9 * 9 * 21, 4, 100, 11),
          fixedPoint(16 * 9 * 21, 8, 100, 12),
          { ...g, C: 21 },
        ],
      ];
      for (const [what, x, wt, geo] of declined) {
        const y = new Float32Array(geo.B * geo.OH * geo.OW * geo.O).fill(7);
        assert.equal(k.conv2dForwardFixedPoint(geo, x, wt, null, y, false), null, `${k.name}: ${what}`);
        assert.ok(
          y.every((v) => v === 7),
          `${k.name}: ${what}: y untouched`,
        );
      }
    },
  );

test('native fixed-point convolution: weights changed in place between calls are packed again', (t) => {
  // the kernel keeps the packings of the last weights it saw, keyed by their values (every
  // batch of a quantized forward has the same ones); a new quantization written into the same
  // buffer must not reuse them
  const nat = requireNative(t);
  if (!nat) return;
  const [, g] = cases[1];
  const x = fixedPoint(g.B * g.H * g.W * g.C, 10, 1930, 21, true);
  const w = fixedPoint(g.O * g.KH * g.KW * g.C, 9, 120, 22);
  for (const [step, change] of [
    ['first weights', () => {}],
    ['same weights again', () => {}],
    ['one weight changed in place', () => (w[w.length - 1] += 2 ** -9)],
    ['other weights, other format', () => w.set(fixedPoint(w.length, 7, 60, 23))],
  ] as const) {
    change();
    const a = new Float32Array(g.B * g.OH * g.OW * g.O);
    const b = new Float32Array(a.length);
    mustRun(nat, step, g, x, w, null, a, false);
    assert.ok(typescriptKernels.conv2dForwardFixedPoint(g, x, w, null, b, false));
    assert.deepEqual(a, b, step);
  }
});
