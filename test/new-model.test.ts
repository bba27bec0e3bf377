// A model kind that is not in src/, defined here and added with one call of the public API
// (registerModel), goes through everything a built-in model does: a training step, quantize,
// the search, the packed file and its reload, loadModel, golden vectors, ONNX in onnxruntime
// and C compiled with cc, each giving the quantized forward's predictions. Its layers are
// module kinds the exporters already lower (Conv2d_ReLU on the image and on integers,
// ConvPixelToCapsules and Capsules with 2 routing iterations), at sizes no built-in model has.
// A quantizer with saturation bounds (as a number format with per-tensor ranges gives) is
// exported saturating, ONNX and C still equal to the forward.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type * as Ort from 'onnxruntime-node';
import { loadDataset } from '../src/data/load.js';
import { exportC } from '../src/export/c-export.js';
import { exportGoldenVectors } from '../src/export/golden-vectors.js';
import { exportOnnx } from '../src/export/onnx-export.js';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import { readSafetensorsRaw } from '../src/io/safetensors.js';
import {
  buildModel,
  CapsNet,
  type InferenceStage,
  loadModel,
  ModelDescription,
  registerModel,
  saveModel,
} from '../src/index.js';
import { flattenCapsules, flattenCapsulesBackward } from '../src/nn/capsule-shapes.js';
import { Capsules } from '../src/nn/capsules.js';
import { ConvPixelToCapsules } from '../src/nn/conv-caps.js';
import { Conv2dRelu } from '../src/nn/conv2d.js';
import { Linear } from '../src/nn/linear.js';
import { inputGrad, type QuantHooks } from '../src/nn/module.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { predictedClass } from '../src/models/metrics.js';
import { bitsFromLists, quantize, type QuantizedModel, uniformBits } from '../src/quant/index.js';
import { searchModel } from '../src/search/search-model.js';
import type { QuantSpec } from '../src/tensor/backend.js';
import { kernels } from '../src/tensor/kernels.js';
import { give } from '../src/tensor/pool.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { trainModel } from '../src/train/trainer.js';
import { runC } from './export-c-helpers.js';

const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof Ort;
const dir = mkdtempSync(join(tmpdir(), 'qcaps-new-model-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const PCAPS = { ci: 1, ni: 12, co: 6, no: 4, kernel: 5, stride: 2, pad: 1 };

/** stem: 5x5 conv of the image; features: 3x3 conv (pad 1) of its integers; pcaps: 6 capsule
 *  types of 4 from a 5x5 stride-2 conv, 2 routing iterations; classes: capsules of capsDim,
 *  2 routing iterations. */
class TinyCapsNet extends CapsNet {
  readonly kind = 'TinyCapsNet';
  readonly stem: Conv2dRelu;
  readonly features: Conv2dRelu;
  readonly pcaps: ConvPixelToCapsules;
  readonly classes: Capsules;
  readonly description: ModelDescription;
  readonly grid: number;

  constructor(
    readonly inputWh: number,
    readonly inputCh: number,
    readonly numClasses: number,
    readonly capsDim: number,
    seed: number,
  ) {
    super();
    const stem = { kernel: 5, stride: 1, pad: 0 };
    const features = { kernel: 3, stride: 1, pad: 1 };
    this.grid = Math.floor((inputWh - 4 + 2 * PCAPS.pad - PCAPS.kernel) / PCAPS.stride) + 1;
    this.stem = this.addChild('stem', new Conv2dRelu({ inChannels: inputCh, outChannels: 8, ...stem }));
    this.features = this.addChild('features', new Conv2dRelu({ inChannels: 8, outChannels: 12, ...features }));
    this.pcaps = this.addChild('pcaps', new ConvPixelToCapsules(PCAPS, 2));
    const n = PCAPS.co * this.grid * this.grid;
    this.classes = this.addChild('classes', new Capsules(n, PCAPS.no, numClasses, capsDim, 2));
    this.resetParameters(seed);
    this.description = new ModelDescription(this, [
      { name: 'stem', module: this.stem, capsule: false, routingIterations: null, conv: stem },
      { name: 'features', module: this.features, capsule: false, routingIterations: null, conv: features },
      { name: 'pcaps', module: this.pcaps, capsule: true, routingIterations: 2, conv: PCAPS },
      {
        name: 'classes',
        module: this.classes,
        capsule: true,
        routingIterations: 2,
        input: { from: ['pcaps'], flatten: true },
      },
    ]);
  }

  readonly stages: readonly InferenceStage[] = [
    { name: 'stem', run: (x, ctx) => this.stem.forward(x, ctx) },
    { name: 'features', run: (x, ctx) => this.features.forward(x, ctx) },
    {
      name: 'pcaps',
      run: (x, ctx) => {
        const map = this.pcaps.forward(x, ctx);
        const caps = flattenCapsules(map);
        give(map.data);
        return caps;
      },
    },
    { name: 'classes', run: (x, ctx) => this.classes.forward(x, ctx) },
  ];

  backward(dCaps: Tensor): void {
    const [h1, h2, caps] = this.takeKept();
    const dList = inputGrad(this.classes.backward(dCaps));
    give(caps.data);
    const dMap = flattenCapsulesBackward(dList, [h2.shape[0], this.grid, this.grid, PCAPS.co, PCAPS.no]);
    give(dList.data);
    const dh2 = inputGrad(this.pcaps.backward(dMap));
    give(dMap.data);
    const dh1 = inputGrad(this.features.backward(dh2));
    for (const t of [dh2, h2]) give(t.data);
    this.stem.backward(dh1, false);
    for (const t of [dh1, h1]) give(t.data);
  }
}

registerModel({
  name: 'TinyCapsNet',
  argNames: ['input_wh', 'input_ch', 'num_classes', 'caps_dim'],
  build: ([wh, ch, classes, dim], seed) => new TinyCapsNet(wh, ch, classes, dim, seed),
});

const ARGS = [28, 1, 10, 6];
const train = loadDataset('mnist', 'train', { limit: 96 });
const testSet = loadDataset('mnist', 'test', { limit: 40 });
const N = 24; // images the exports are compared on

/** Trained for one epoch (6 steps), through the registry by name. */
let trained: CapsNet | null = null;
async function trainedModel(): Promise<CapsNet> {
  if (trained) return trained;
  const model = buildModel('TinyCapsNet', ARGS, { seed: 5 });
  await trainModel({
    model,
    decoder: { name: 'FCDecoder', args: [6, 784] },
    train,
    test: testSet,
    epochs: 1,
    batchSize: 16,
    lr: 0.01,
    fullPrecisionFilename: join(dir, 'tiny.pt'),
    progress: 'none',
    augment: null,
    log: () => {},
  });
  return (trained = model);
}

function quantized(model: CapsNet): QuantizedModel {
  const bits = { weightBits: [9, 8, 7, 6], actBits: [6, 6, 5, 5], routingBits: [5, 4] };
  return quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'round_to_nearest' });
}

/** The quantized forward's predictions and class lengths (double sums, rounded to float32, as
 *  the C prints them) of the first N test images. */
function forwardOf(q: QuantizedModel): { pred: number[]; lengths: number[][] } {
  const caps = q.forward(sourceBatch(testSet, 0, N), 0);
  const [B, K, D] = caps.shape;
  const pred: number[] = [];
  const lengths: number[][] = [];
  for (let i = 0; i < B; i++) {
    pred.push(predictedClass(caps, i));
    lengths.push(
      Array.from({ length: K }, (_, k) => {
        let n2 = 0;
        for (let d = 0; d < D; d++) n2 += caps.data[(i * K + k) * D + d] ** 2;
        return Math.fround(Math.sqrt(n2));
      }),
    );
  }
  give(caps.data);
  return { pred, lengths };
}

/** ONNX in onnxruntime and C compiled with cc, each against the quantized forward. */
async function checkExports(q: QuantizedModel, stem: string): Promise<void> {
  const want = forwardOf(q);
  const x = sourceBatch(testSet, 0, N);
  const onnx = exportOnnx(q, { outDir: dir, fileName: `${stem}.onnx` });
  const session = await ort.InferenceSession.create(onnx.file);
  const out = await session.run({ images: new ort.Tensor('float32', x.data.slice(0, x.size), x.shape) });
  const lengths = out.lengths.data as Float32Array;
  for (let i = 0; i < N; i++) {
    const row = Array.from(lengths.subarray(i * 10, (i + 1) * 10));
    assert.equal(row.indexOf(Math.max(...row)), want.pred[i], `${stem}: ONNX prediction of image ${i}`);
    for (let k = 0; k < 10; k++) assert.ok(Math.abs(row[k] - want.lengths[i][k]) < 1e-5, `${stem}: ONNX length`);
  }
  const { dir: cDir } = exportC(q, { outDir: dir, stem });
  const cc = spawnSync(
    'cc',
    ['-std=c99', '-O2', '-Wall', '-Wextra', '-pedantic', '-Werror', '-o', 'qcaps', 'main.c', 'qcaps_model.c', '-lm'],
    { cwd: cDir, encoding: 'utf8' },
  );
  assert.equal(cc.status, 0, cc.stderr);
  const images = join(dir, `${stem}.f32`);
  writeFileSync(images, new Uint8Array(x.data.buffer, x.data.byteOffset, x.size * 4));
  give(x.data);
  const c = runC(join(cDir, 'qcaps'), images, N);
  assert.deepEqual(c.pred, want.pred, `${stem}: C predictions`);
  assert.deepEqual(
    c.lengths.map((r) => r.map(Math.fround)),
    want.lengths,
    `${stem}: C class lengths, bit for bit`,
  );
}

test('a registered model trains, quantizes, searches, and its packed file and .pt reload through the registry', async () => {
  const model = await trainedModel();
  assert.equal(model.kind, 'TinyCapsNet');
  const reloaded = loadModel(join(dir, 'tiny.pt'), { model: 'TinyCapsNet', args: ARGS });
  const q = quantized(model);
  const fromPt = quantized(reloaded);
  assert.deepEqual(fromPt.evaluate(testSet), q.evaluate(testSet), 'the saved .pt reloads as the trained model');
  const packed = join(dir, 'tiny_quantized.safetensors');
  writeQuantizedModel(packed, q);
  const { quantized: back, info } = readQuantizedModel(packed);
  assert.equal(info.model, 'TinyCapsNet');
  assert.ok(back.model instanceof TinyCapsNet);
  assert.equal(back.evaluate(testSet).correct, q.evaluate(testSet).correct);
  const r = await searchModel(model, testSet, { method: 'round_to_nearest', memoryBudgetMB: 0.2, batchSize: 20 });
  assert.ok(r.models.length >= 1);
  for (const m of r.models)
    assert.deepEqual(
      m.model.layers.map((l) => l.name),
      ['stem', 'features', 'pcaps', 'classes'],
    );
  saveModel(join(dir, 'copy.pt'), back);
  assert.equal(loadModel(join(dir, 'copy.pt'), { model: 'TinyCapsNet', args: ARGS }).kind, 'TinyCapsNet');
});

test('a registered model exports golden vectors, ONNX and C that give its quantized forward', async () => {
  const q = quantized(await trainedModel());
  const golden = exportGoldenVectors(q, testSet, { images: 3, outDir: join(dir, 'golden') });
  const doc = JSON.parse(readFileSync(golden.json, 'utf8'));
  assert.equal(doc.model, 'TinyCapsNet');
  const file = readSafetensorsRaw(golden.safetensors);
  const v = new Int32Array(file.tensors.get('classes/iter1/v')!.bytes.slice().buffer);
  const caps = q.forward(sourceBatch(testSet, 0, 3), 0);
  for (let i = 0; i < v.length; i++) assert.equal(v[i] / 2 ** 5, caps.data[i]);
  assert.deepEqual(
    Array.from(new Int32Array(file.tensors.get('predictions')!.bytes.slice().buffer)),
    forwardOf(q).pred.slice(0, 3),
  );
  await checkExports(q, 'tiny');
});

test('quantizers with saturation bounds export saturating: ONNX and C give the forward', async () => {
  const q = quantized(await trainedModel());
  // every activation and routing value saturates to [-1, 1 - 2^-frac] (as a format with
  // per-tensor ranges would), so the clamp changes the numbers
  const bounded = (s: QuantSpec | null) => s && { ...s, lo: -1, hi: 1 - 2 ** -s.frac };
  const hooks = q.hooks.bind(q);
  q.hooks = (batch = 0): QuantHooks => {
    const h = hooks(batch);
    const spec = (path: string, point: string) => bounded(h.activationSpec!(path, point));
    return {
      conv: h.conv,
      activationSpec: spec,
      activation: (path, point, t) => {
        const s = spec(path, point);
        if (s) kernels().quantize(t.data, t.data, t.size, s);
      },
      routing: (path) => {
        const r = h.routing(path);
        return r && { ...r, act: bounded(r.act), routing: bounded(r.routing), votes: bounded(r.votes ?? null) };
      },
    };
  };
  const plain = forwardOf(quantized(await trainedModel()));
  const saturated = forwardOf(q);
  assert.notDeepEqual(saturated.pred, plain.pred, 'the bounds change predictions');
  assert.ok(new Set(saturated.pred).size > 1, 'and leave them depending on the image');
  await checkExports(q, 'tiny_saturating');
});

/** A model with a layer kind the exporters do not lower (Linear): it builds and quantizes, but
 *  does not export. */
class LinearCapsNet extends CapsNet {
  readonly kind = 'LinearCapsNet';
  readonly inputWh = 4;
  readonly inputCh = 1;
  readonly numClasses = 2;
  readonly capsDim = 2;
  readonly fc = this.addChild('fc', new Linear(16, 8));
  readonly caps = this.addChild('caps', new Capsules(4, 2, 2, 2, 1));
  readonly stages: readonly InferenceStage[] = [];
  readonly description = new ModelDescription(this, [
    { name: 'fc', module: this.fc, capsule: false, routingIterations: null },
    { name: 'caps', module: this.caps, capsule: true, routingIterations: 1 },
  ]);

  override get args(): number[] {
    return [];
  }

  backward(): void {}
}

test('registerModel refuses a bad or taken kind, and an export of a layer kind with no lowering is one error before any file', () => {
  const build = () => new LinearCapsNet();
  assert.throws(
    () => registerModel({ name: 'TinyCapsNet', argNames: [], build }),
    /^Error: registerModel: a model kind named 'TinyCapsNet' is already registered$/,
  );
  assert.throws(() => registerModel({ name: 'ShallowCapsNet', argNames: [], build }), /already registered/);
  assert.throws(
    () => registerModel({ name: 'two words', argNames: [], build }),
    /registerModel: kind.name "two words"/,
  );
  assert.throws(
    () => registerModel({ name: 'NoBuild', argNames: [] } as never),
    /registerModel: NoBuild: kind.build must be a function/,
  );
  registerModel({ name: 'LinearCapsNet', argNames: [], build });
  registerModel({ name: 'Misnamed', argNames: [], build });
  assert.throws(
    () => buildModel('Misnamed', []),
    /^Error: buildModel: Misnamed's build\(\[\]\) gave a model of kind 'LinearCapsNet' whose args are \[\]; expected kind 'Misnamed'/,
  );
  assert.throws(
    () => buildModel('LinearCapsNet', [1]),
    /buildModel\('LinearCapsNet', args\): args needs 0 values \(\), got 1 \(1\)/,
  );
  const q = quantize(buildModel('LinearCapsNet', []), uniformBits(new LinearCapsNet().quantLayers, 6), {
    method: 'truncation',
  });
  const out = join(dir, 'unexported');
  assert.throws(
    () => exportC(q, { outDir: out, stem: 'linear' }),
    /^Error: C export: layer 'fc' is a Linear, a kind with no lowering \(the kinds with one: Conv2d_ReLU, /,
  );
  assert.throws(
    () => exportOnnx(q, { outDir: out }),
    /^Error: ONNX export: layer 'fc' is a Linear, a kind with no lowering/,
  );
  assert.equal(existsSync(out), false, 'nothing written');
});
