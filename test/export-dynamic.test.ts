// Exports of 'dynamic' models (issue 19; docs/exports.md "The 'dynamic' number format"): for a
// briefly trained ShallowCapsNet and DeepCaps quantized with per-tensor fractional lengths and
// calibrated activation and routing points, read back from their packed files, the ONNX graph
// in onnxruntime-node and the C export compiled with cc give QuantizedModel.forward's
// predictions and class lengths, and golden vectors hold every point's integers within that
// point's width.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type * as Ort from 'onnxruntime-node';
import { loadDataset } from '../src/data/load.js';
import { exportGoldenVectors } from '../src/export/golden-vectors.js';
import { exportOnnx } from '../src/export/onnx-export.js';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { type ImageSource, sourceBatch } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { predictedClass } from '../src/models/metrics.js';
import { calibrate } from '../src/quant/calibration.js';
import { trainModel } from '../src/train/trainer.js';
import { type BitLists, bitsFromLists, quantize, type QuantizedModel } from '../src/quant/index.js';
import { compare, exportAndBuild, runCli } from './export-c-helpers.js';
import { requireNative } from './helpers.js';
import { trainSmallDeepCaps } from './small-trained-model.js';
import { FASHION_MNIST, skipUnless } from './requirements.js';

const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof Ort;
const skip = skipUnless(FASHION_MNIST);
const dir = mkdtempSync(join(tmpdir(), 'qcaps-dynamic-export-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The first n test images at a quarter of their brightness: a calibration on them gives ranges
 *  that the test images exceed, so that the exports' saturation is exercised. */
function dimmed(n: number): ImageSource {
  const t = loadDataset('fashion-mnist', 'test', { limit: n });
  const size = t.height * t.width * t.channels;
  return {
    count: n,
    labels: t.labels,
    height: t.height,
    width: t.width,
    channels: t.channels,
    writeImage: (i, out, offset) => {
      t.writeImage(i, out, offset);
      for (let j = 0; j < size; j++) out[offset + j] *= 0.25;
    },
  };
}

/** `model` quantized under 'dynamic' (calibrated on 2 dimmed images), written as a packed file
 *  and read back: what the export command reads. */
function dynamicPacked(
  model: CapsNet,
  bits: BitLists,
  stem: string,
  weightRange: 'max' | 'mse' = 'max',
): { q: QuantizedModel; file: string } {
  const b = bitsFromLists(model.quantLayers, bits, 'bits', 'dynamic');
  const q = quantize(model, b, {
    method: 'round_to_nearest',
    calibration: calibrate(model, dimmed(2), 2),
    weightRange,
  });
  const file = join(dir, `${stem}.safetensors`);
  writeQuantizedModel(file, q);
  const { quantized: r, info } = readQuantizedModel(file);
  assert.equal(info.numberFormat, 'dynamic');
  assert.equal(info.weightRange, weightRange);
  return { q: r, file };
}

/** ShallowCapsNet (28 1 10 4) after 20 steps of 16 Fashion-MNIST images, so that its class
 *  lengths depend on the image (an untrained one's are its digit bias's). */
async function trainedShallow(): Promise<CapsNet> {
  shallowModel ??= trainShallow();
  return shallowModel;
}
let shallowModel: Promise<CapsNet> | undefined;

async function trainShallow(): Promise<CapsNet> {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed: 7 });
  await trainModel({
    model,
    decoder: { name: 'FCDecoder', args: [4, 784] },
    train: loadDataset('fashion-mnist', 'train', { limit: 320 }),
    test: loadDataset('fashion-mnist', 'test', { limit: 16 }),
    epochs: 1,
    batchSize: 16,
    lr: 0.002,
    fullPrecisionFilename: join(dir, 'shallow.pt'),
    progress: 'none',
    augment: null,
    log: () => undefined,
  });
  return model;
}

/** The graph in onnxruntime against QuantizedModel.forward on the first n test images: the same
 *  predictions, class lengths within 1e-5. */
async function compareOnnx(file: string, q: QuantizedModel, n: number, tag: string): Promise<void> {
  const session = await ort.InferenceSession.create(file);
  const x = sourceBatch(loadDataset('fashion-mnist', 'test', { limit: n }), 0, n);
  const caps = q.forward(x, 0);
  const out = await session.run({ images: new ort.Tensor('float32', x.data.slice(0, x.size), x.shape) });
  const lengths = out.lengths.data as Float32Array;
  const [, K, D] = caps.shape;
  let spread = 0; // how far class 0's length moves between images
  for (let i = 0; i < n; i++) {
    spread = Math.max(spread, Math.abs(lengths[i * K] - lengths[0]));
    let best = 0;
    for (let k = 0; k < K; k++) {
      let n2 = 0;
      for (let d = 0; d < D; d++) n2 += caps.data[(i * K + k) * D + d] ** 2;
      const diff = Math.abs(Math.sqrt(n2) - lengths[i * K + k]);
      assert.ok(diff <= 1e-5, `${tag} image ${i} class ${k}: ONNX length differs by ${diff}`);
      if (lengths[i * K + k] > lengths[i * K + best]) best = k;
    }
    assert.equal(best, predictedClass(caps, i), `${tag}: ONNX prediction of image ${i}`);
  }
  assert.ok(spread > 1e-3, `${tag}: the class lengths hardly depend on the image (${spread})`);
}

/** Golden vectors of the first n test images: every point's integers fit its width (the layer's
 *  activation width; routing's s and logits the routing width), at the fractional length of the
 *  quantizer the model applies there. */
function checkGoldenVectors(q: QuantizedModel, out: string, tag: string): void {
  const doc = JSON.parse(readFileSync(join(out, 'vectors.json'), 'utf8')) as {
    number_format: string;
    tensors: { name: string; point: string; layer: string; fracBits: number | null; totalBits: number | null }[];
  };
  assert.equal(doc.number_format, 'dynamic');
  let points = 0;
  let full = 0;
  for (const t of doc.tensors) {
    if (t.layer === '') continue; // the images, lengths and predictions
    const b = q.bits.find((x) => x.name === t.layer)!;
    const routing = t.point === 's' || t.point === 'b' || t.point === 'logits';
    const width = routing ? b.routing! : b.act;
    assert.ok(t.totalBits! <= width, `${tag} ${t.name}: ${t.totalBits} bits, more than the point's width ${width}`);
    points++;
    if (t.totalBits === width) full++;
  }
  assert.ok(points > 0, `${tag}: no quantization points`);
  // the images exceed the dimmed calibration's ranges: points saturate, using their whole width
  assert.ok(full > 0, `${tag}: no point uses its whole width`);
}

test(
  "'dynamic' ShallowCapsNet: ONNX, C and golden vectors of its packed file give its forward",
  { skip },
  async (t) => {
    if (!requireNative(t)) return;
    const model = await trainedShallow();
    const { q, file } = dynamicPacked(
      model,
      { weightBits: [6, 5, 4], actBits: [6, 5, 6], routingBits: [5, 4] },
      'shallow_dynamic',
    );
    // the export command, each format, on the packed file
    const onnx = runCli(['export', '--format', 'onnx', '--trained-weights-path', file, '--output-dir', join(dir, 'o')]);
    assert.equal(onnx.status, 0, onnx.stderr);
    await compareOnnx(join(dir, 'o', 'shallow_dynamic.onnx'), q, 20, 'shallow');
    const { cDir, binary } = exportAndBuild(file, join(dir, 'c'));
    const header = readFileSync(join(cDir, 'qcaps_weights.h'), 'utf8');
    assert.match(header, /#define QCAPS_DIGIT_ROUTING_WIDTH 4\n/);
    assert.doesNotMatch(header, /QCAPS_[A-Z]+_(WEIGHT|ACT|ROUTING)_BITS/, 'no width named as fractional bits');
    for (const p of q.integers) {
      const macro = `QCAPS_${p.name.replace(/\./g, '_').toUpperCase()}`;
      assert.ok(header.includes(`#define ${macro}_FRAC_BITS ${p.fracBits}\n`), `${p.name}: its own fractional length`);
    }
    assert.ok(
      q.integers.some((p) => p.fracBits !== q.bits.find((b) => p.name.startsWith(`${b.name}.`))!.weight),
      'a tensor whose fractional length is not its width',
    );
    compare(q, binary, 20, 'ShallowCapsNet dynamic', dir);
    const vectors = join(dir, 'shallow-vectors');
    const v = runCli(['export', '--trained-weights-path', file, '--images', '2', '--output-dir', vectors]);
    assert.equal(v.status, 0, v.stderr);
    checkGoldenVectors(q, vectors, 'shallow');
  },
);

test("'dynamic' DeepCaps: ONNX and C of its packed file give its forward; golden vectors", { skip }, async (t) => {
  if (!requireNative(t)) return;
  const model = await trainSmallDeepCaps(dir);
  const { q, file } = dynamicPacked(
    model,
    { weightBits: [7, 6, 6, 6, 6, 5], actBits: [7, 6, 6, 6, 6, 6], routingBits: [6, 6] },
    'deepcaps_dynamic',
  );
  const onnx = exportOnnx(q, { outDir: join(dir, 'o'), fileName: 'deepcaps_dynamic.onnx' });
  await compareOnnx(onnx.file, q, 4, 'deepcaps');
  const { binary } = exportAndBuild(file, join(dir, 'c'));
  compare(q, binary, 2, 'DeepCaps dynamic', dir);
  const vectors = join(dir, 'deepcaps-vectors');
  exportGoldenVectors(q, loadDataset('fashion-mnist', 'test', { limit: 2 }), { images: 2, outDir: vectors });
  checkGoldenVectors(q, vectors, 'deepcaps');
});

test(
  "'dynamic' ShallowCapsNet with 'mse' weight ranges: ONNX and C of its packed file give its forward",
  { skip },
  async (t) => {
    if (!requireNative(t)) return;
    const model = await trainedShallow();
    const bits = { weightBits: [6, 4, 3], actBits: [6, 5, 6], routingBits: [5, 4] };
    const { q, file } = dynamicPacked(model, bits, 'shallow_mse', 'mse');
    // the rule chose other exponents than the max rule's for some tensor (the exports read them
    // from the model, whatever rule chose them)
    const { q: max } = dynamicPacked(model, bits, 'shallow_max');
    assert.ok(
      q.integers.some((p) => p.fracBits !== max.weightSpec(p.name)!.frac),
      "a tensor whose 'mse' fractional length is not the max rule's",
    );
    const onnx = exportOnnx(q, { outDir: join(dir, 'o'), fileName: 'shallow_mse.onnx' });
    await compareOnnx(onnx.file, q, 20, 'shallow mse');
    const { binary } = exportAndBuild(file, join(dir, 'c-mse'));
    compare(q, binary, 20, 'ShallowCapsNet dynamic mse', dir);
  },
);
