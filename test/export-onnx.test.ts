// `qcapsnets export --format onnx`: the graph, run in onnxruntime-node, gives our quantized
// forward's class lengths (within 1e-4) and predictions (identical), on both models; weights are
// int8/int16 initializers behind DequantizeLinear; stochastic rounding needs --onnx-rounding;
// bad input is a one-line error and leaves no file behind.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import type * as Ort from 'onnxruntime-node';
import { loadDataset } from '../src/data/load.js';
import type { Dataset } from '../src/data/dataset.js';
import { exportOnnx } from '../src/export/onnx-export.js';
import { OnnxGraph } from '../src/export/onnx-graph.js';
import { convOp } from '../src/export/onnx-layers.js';
import { writeQuantizedModel } from '../src/export/quantized-file.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { type BitLists, bitsFromLists, quantize, type QuantizedModel } from '../src/quant/index.js';
import { trainModel } from '../src/train/trainer.js';
import { trainSmallDeepCaps } from './small-trained-model.js';
import { FASHION_MNIST, requirePackages, skipUnless } from './requirements.js';

const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof Ort;
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const dir = mkdtempSync(join(tmpdir(), 'qcaps-onnx-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const lib = join(dir, 'library'); // where the library calls write

/** The first 1,000 Fashion-MNIST test images, read when a test first needs them. */
let fashionTest: Dataset | null = null;
const fashion = (): Dataset => {
  requirePackages(FASHION_MNIST);
  return (fashionTest ??= loadDataset('fashion-mnist', 'test', { limit: 1000 }));
};
const needsFashion = { skip: skipUnless(FASHION_MNIST) };
const shallowBits: BitLists = { weightBits: [8, 7, 6], actBits: [6, 6, 6], routingBits: [5, 5] };

/** ShallowCapsNet after 20 steps of 16 real Fashion-MNIST images (well above chance). */
let trained: CapsNet | null = null;
async function trainedShallow(): Promise<CapsNet> {
  if (trained) return trained;
  requirePackages(FASHION_MNIST);
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  await trainModel({
    model,
    decoder: { name: 'FCDecoder', args: [16, 784] },
    train: loadDataset('fashion-mnist', 'train', { limit: 320 }),
    test: loadDataset('fashion-mnist', 'test', { limit: 16 }),
    epochs: 1,
    batchSize: 16,
    lr: 0.002,
    fullPrecisionFilename: join(dir, 'trained.pt'),
    progress: 'none',
    augment: null,
  });
  trained = model;
  return model;
}

/** The largest |length difference| and the images whose predicted class differs, between the
 *  graph in onnxruntime and our quantized forward, over the first n images in batches of 100. */
async function compare(file: string, q: QuantizedModel, data: Dataset, n: number) {
  const session = await ort.InferenceSession.create(file);
  const K = q.model.numClasses;
  let maxDiff = 0;
  let correct = 0;
  const differ: number[] = [];
  for (let b = 0; b * 100 < n; b++) {
    const x = sourceBatch(data, b, Math.min(100, n - b * 100));
    const caps = q.forward(x, b);
    const out = await session.run({ images: new ort.Tensor('float32', x.data.slice(0, x.size), x.shape) });
    const lengths = out.lengths.data as Float32Array;
    const D = caps.shape[2];
    for (let i = 0; i < x.shape[0]; i++) {
      const ours = new Float64Array(K);
      for (let k = 0; k < K; k++) {
        for (let d = 0; d < D; d++) ours[k] += caps.data[(i * K + k) * D + d] ** 2;
        ours[k] = Math.sqrt(ours[k]);
        maxDiff = Math.max(maxDiff, Math.abs(ours[k] - lengths[i * K + k]));
      }
      const predicted = argmax(ours);
      if (predicted !== argmax(lengths.subarray(i * K, (i + 1) * K))) differ.push(b * 100 + i);
      if (predicted === data.labels[b * 100 + i]) correct++;
    }
  }
  return { maxDiff, differ, accuracy: correct / n };
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < v.length; k++) if (v[k] > v[best]) best = k;
  return best;
}

/** The weight initializers of an exported graph: integer tensors, each read by a DequantizeLinear. */
function checkIntegerWeights(file: string, q: QuantizedModel): void {
  const m = onnxProto.onnx.ModelProto.decode(readFileSync(file));
  const T = onnxProto.onnx.TensorProto.DataType;
  assert.equal(Number(m.opsetImport![0].version), 21);
  const dq = new Map(m.graph!.node!.filter((n) => n.opType === 'DequantizeLinear').map((n) => [n.input![0], n]));
  for (const p of q.integerParameters()) {
    const init = m.graph!.initializer!.find((t) => t.name === `${p.name}.int`);
    assert.ok(init, `${p.name}: no integer initializer`);
    assert.equal(init.dataType, p.totalBits <= 8 ? T.INT8 : T.INT16, `${p.name}: ${p.totalBits} bits`);
    assert.ok(dq.has(`${p.name}.int`), `${p.name}: no DequantizeLinear`);
    assert.equal(dq.get(`${p.name}.int`)!.output![0], p.name);
  }
  const floatWeights = m.graph!.initializer!.filter((t) => t.dataType === T.FLOAT && t.dims!.length > 1);
  assert.deepEqual(
    floatWeights.map((t) => t.name),
    [],
    'no float weight tensors',
  );
}

test(
  'ShallowCapsNet trained on Fashion-MNIST, exported by the CLI: 1,000 test images as ours',
  needsFashion,
  async (t) => {
    const model = await trainedShallow();
    const q = quantize(model, bitsFromLists(model.quantLayers, shallowBits), { method: 'round_to_nearest' });
    const packed = join(dir, 'fashion_quantized_accuracy.safetensors');
    writeQuantizedModel(packed, q);
    const out = join(dir, 'onnx-out');
    const r = run(['export', '--format', 'onnx', '--trained-weights-path', packed, '--output-dir', out]);
    assert.equal(r.status, 0, r.stderr);
    const file = join(out, 'fashion_quantized_accuracy.onnx');
    assert.match(r.stdout, /ONNX graph \(opset 21, \d+ nodes, round_to_nearest\)/);
    checkIntegerWeights(file, q);
    const c = await compare(file, q, fashion(), 1000);
    t.diagnostic(`max |length difference| ${c.maxDiff}, quantized accuracy ${c.accuracy}`);
    assert.ok(c.maxDiff <= 1e-4, `max |length difference| ${c.maxDiff}`);
    assert.deepEqual(c.differ, [], 'images whose prediction differs');
    assert.ok(c.accuracy > 0.4, `quantized accuracy ${c.accuracy}: the model should have learned something`);
  },
);

test('ShallowCapsNet with truncation (dac2020) and logarithmic rounding', needsFashion, async () => {
  const model = await trainedShallow();
  for (const [method, compat, n] of [
    ['truncation', 'dac2020', 200],
    ['logarithmic', 'none', 20],
  ] as const) {
    const q = quantize(model, bitsFromLists(model.quantLayers, shallowBits), { method, compat });
    const r = exportOnnx(q, { outDir: lib });
    assert.equal(r.file, join(lib, `ShallowCapsNet_quantized_${method}.onnx`));
    assert.equal(r.rounding, method);
    const c = await compare(r.file, q, fashion(), n);
    assert.ok(c.maxDiff <= 1e-4, `${method}: max |length difference| ${c.maxDiff}`);
    assert.deepEqual(c.differ, [], `${method}: images whose prediction differs`);
  }
});

test(
  'DeepCaps (28 1 10 32, briefly trained): 1,000 test images as ours, in both arithmetics',
  needsFashion,
  async (t) => {
    const model = await trainSmallDeepCaps(dir);
    const bits = { weightBits: [8, 7, 7, 7, 7, 6], actBits: [6, 6, 5, 6, 6, 6], routingBits: [5, 6] };
    for (const compat of ['none', 'dac2020'] as const) {
      const q = quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'round_to_nearest', compat });
      const r = exportOnnx(q, { outDir: lib, fileName: `deepcaps-${compat}.onnx` });
      checkIntegerWeights(r.file, q);
      const c = await compare(r.file, q, fashion(), 1000);
      t.diagnostic(`${compat}: max |length difference| ${c.maxDiff}`);
      assert.ok(c.maxDiff <= 1e-4, `${compat}: max |length difference| ${c.maxDiff}`);
      assert.deepEqual(c.differ, [], `${compat}: images whose prediction differs`);
    }
  },
);

test('a convolution of fixed-point values is summed exactly, where float32 sums would round', async () => {
  // 12-bit inputs and weights over 8 channels of 5x5 taps: products up to 2^22 grid units, sums
  // past 2^24, so float32 partial sums round; ours (and the graph) sum exactly, then round once
  const [C, H, O, k] = [8, 9, 4, 5];
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const x = Float32Array.from({ length: C * H * H }, () => Math.round(rand() * 4095) / 2 ** 6); // NCHW
  const w = Float32Array.from({ length: O * C * k * k }, () => Math.round(rand() * 2047) / 2 ** 11);
  const OH = H - k + 1;
  const expected = new Float32Array(O * OH * OH);
  for (let o = 0; o < O; o++)
    for (let y = 0; y < OH; y++)
      for (let xx = 0; xx < OH; xx++) {
        let sum = 0; // integer multiples of 2^-17 below 2^53: exact in float64
        for (let c = 0; c < C; c++)
          for (let i = 0; i < k; i++)
            for (let j = 0; j < k; j++) sum += x[(c * H + y + i) * H + xx + j] * w[((o * C + c) * k + i) * k + j];
        expected[(o * OH + y) * OH + xx] = sum;
      }
  const graphOf = async (exact: boolean) => {
    const g = new OnnxGraph();
    const wName = g.floats(w, [O, C, k, k], 'w');
    const geom = { inChannels: C, inSide: H, outChannels: O, kernel: k, stride: 1, pad: 0, relu: false };
    g.op('Identity', [convOp(g, 'x', wName, null, geom, exact)], {}, 'y');
    const bytes = g.encode(
      'conv',
      [{ name: 'x', dims: ['batch', C, H, H] }],
      [{ name: 'y', dims: ['batch', O, OH, OH] }],
      '',
    );
    const session = await ort.InferenceSession.create(bytes);
    const out = await session.run({ x: new ort.Tensor('float32', x, [1, C, H, H]) });
    return out.y.data as Float32Array;
  };
  assert.deepEqual(await graphOf(true), expected, 'the exact lowering: every sum rounded once');
  const float = await graphOf(false);
  assert.ok(
    float.some((v, i) => v !== expected[i]),
    "ORT's float32 Conv rounds some of these sums: the case needs the exact lowering",
  );
});

test('stochastic rounding: refused in one line naming --onnx-rounding, exported with it', needsFashion, async () => {
  const model = await trainedShallow();
  const q = quantize(model, bitsFromLists(model.quantLayers, shallowBits), { method: 'stochastic_rounding', seed: 7 });
  const packed = join(dir, 'sr_quantized_memory.safetensors');
  writeQuantizedModel(packed, q);
  const out = join(dir, 'sr-out');
  const refused = run(['export', '--format', 'onnx', '--trained-weights-path', packed, '--output-dir', out]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /stochastic rounding has no deterministic graph; pass --onnx-rounding round_to_nearest/);
  assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  assert.ok(!existsSync(join(out, 'sr_quantized_memory.onnx')));
  const ok = run([
    'export',
    '--format',
    'onnx',
    '--trained-weights-path',
    packed,
    '--output-dir',
    out,
    '--onnx-rounding',
    'round_to_nearest',
  ]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /round_to_nearest/);
  const file = join(out, 'sr_quantized_memory.onnx');
  // the stored (stochastically rounded) weight integers, as they are in the packed file
  checkIntegerWeights(file, q);
  const m = onnxProto.onnx.ModelProto.decode(readFileSync(file));
  const w = m.graph!.initializer!.find((t) => t.name === 'digit.weight.int')!;
  const stored = q.integerParameters().find((p) => p.name === 'digit.weight')!.values;
  assert.deepEqual(Int8Array.from(stored as Int32Array), new Int8Array(Uint8Array.from(w.rawData!).buffer));
  assert.throws(() => exportOnnx(q, { outDir: lib }), /stochastic rounding has no deterministic graph/);
});

test('bad input: clear errors naming the file or flag, and no file left behind', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const bad = join(dir, 'bad');
  const ckpt = join(dir, 'model.ckpt.safetensors');
  writeSafetensors(ckpt, model.stateDict(), { format: 'qcapsnets-training-checkpoint', version: '1' });
  const notQuantized = run(['export', '--format', 'onnx', '--trained-weights-path', ckpt, '--output-dir', bad]);
  assert.notEqual(notQuantized.status, 0);
  assert.match(notQuantized.stderr, /model\.ckpt\.safetensors: not a qcapsnets quantized model/);
  const pt = join(dir, 'model.pt');
  writeFileSync(pt, 'not a packed file');
  const ptRun = run(['export', '--format', 'onnx', '--trained-weights-path', pt, '--output-dir', bad]);
  assert.match(ptRun.stderr, /--trained-weights-path .*model\.pt: holds no quantized configuration/);
  const format = run(['export', '--format', 'tflite', '--trained-weights-path', ckpt]);
  assert.notEqual(format.status, 0);
  assert.match(format.stderr, /--format tflite: expected one of vectors, onnx/);
  // an output folder under a regular file cannot be created
  const packed = join(dir, 'small_quantized_satisfied.safetensors');
  writeQuantizedModel(
    packed,
    quantize(model, bitsFromLists(model.quantLayers, shallowBits), { method: 'round_to_nearest' }),
  );
  const unwritable = run([
    'export',
    '--format',
    'onnx',
    '--trained-weights-path',
    packed,
    '--output-dir',
    join(pt, 'out'),
  ]);
  assert.notEqual(unwritable.status, 0);
  assert.match(unwritable.stderr, /--output-dir .*model\.pt\/out: .*model\.pt is a file, not a folder/);
  const rounding = run(['export', '--format', 'onnx', '--trained-weights-path', packed, '--onnx-rounding', 'floor']);
  assert.match(rounding.stderr, /--onnx-rounding floor: expected round_to_nearest/);
  assert.ok(!existsSync(bad));
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith('.onnx') || f.endsWith('.tmp')),
    [],
    'no graph or temporary file beside the packed files',
  );
});
