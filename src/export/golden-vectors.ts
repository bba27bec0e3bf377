// Golden vectors for hardware testbenches (issue 10): for the first N test images, the integers
// at every quantization point of the quantized forward pass (SPEC 4), each with its fixed-point
// format (value = integer * 2^-frac, frac that of the quantizer the model applies there: its
// hooks' activationSpec and routing specs), plus the class capsules' lengths and the predictions.
// The capture pass runs the current kernels but for routing, which its hooks hand to the
// TypeScript reference with a recorder (it reports c, s, v and the logits of every iteration;
// no process-wide state changes), and hooks that call activation() at every point; its class
// capsules are checked against the normal QuantizedModel.forward.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CapsNet } from '../models/capsnet.js';
import { type ImageSource, sourceBatch } from '../models/evaluate.js';
import type { QuantHooks } from '../nn/module.js';
import { bitsToLists, formatOf } from '../quant/config.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import type { RoutingRecord } from '../tensor/backend.js';
import { give } from '../tensor/pool.js';
import type { Tensor } from '../tensor/tensor.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { type RawTensor, writeSafetensorsRaw } from '../io/safetensors.js';

export interface GoldenVectorOptions {
  images: number;
  outDir: string;
  /** images per forward batch (default 100; batch b draws stochastic stream b, as evaluate) */
  batchSize?: number;
}

export interface GoldenTensorInfo {
  name: string;
  point: string;
  layer: string;
  shape: number[];
  dtype: 'I32' | 'I64' | 'F32';
  fracBits: number | null;
  totalBits: number | null;
  iteration: number | null;
}

type PointInfo = Omit<GoldenTensorInfo, 'shape' | 'dtype' | 'totalBits'>;

/** The values seen at every quantization point, batch after batch, in the order first seen. */
class PointRecorder {
  readonly points = new Map<string, { info: PointInfo; parts: { values: Float32Array; shape: number[] }[] }>();

  put(info: PointInfo, values: Float32Array, shape: number[]): void {
    let r = this.points.get(info.name);
    if (!r) this.points.set(info.name, (r = { info, parts: [] }));
    r.parts.push({ values: values.slice(), shape });
  }
}

/** The first n images of `data` and what the capture found for them. */
interface Capture {
  points: PointRecorder;
  /** the images [n, H, W, C] */
  input: Float32Array;
  /** class capsule lengths [n, K] */
  lengths: Float32Array;
  predictions: Int32Array;
}

export function exportGoldenVectors(
  q: QuantizedModel,
  data: ImageSource,
  options: GoldenVectorOptions,
): { safetensors: string; json: string; tensors: GoldenTensorInfo[] } {
  const n = options.images;
  if (!(Number.isInteger(n) && n >= 1 && n <= data.count))
    throw new Error(`exportGoldenVectors: options.images ${n}: expected an integer in [1, ${data.count}]`);
  const batchSize = options.batchSize ?? 100;
  const capture = captureImages(q, firstImages(data, n), batchSize);
  mkdirSync(options.outDir, { recursive: true });
  const { raw, tensors } = goldenTensors(q.model, capture, n);
  const safetensors = join(options.outDir, 'vectors.safetensors');
  const json = join(options.outDir, 'vectors.json');
  writeSafetensorsRaw(safetensors, raw, { format: 'qcapsnets-golden-vectors' });
  const doc = {
    format: 'qcapsnets-golden-vectors',
    value:
      "integer * 2^-frac_bits; shapes in this tool's layout (images NHWC, batch first); routing values flattened per image",
    model: q.model.kind,
    method: q.method,
    compat: q.compat,
    seed: q.seed,
    ...(formatOf(q.bits) === 'dynamic' ? { number_format: 'dynamic' } : {}),
    bits: bitsToLists(q.bits),
    batch_size: batchSize,
    images: Array.from({ length: n }, (_, i) => i),
    tensors,
  };
  writeFileAtomic(json, () => [new TextEncoder().encode(JSON.stringify(doc, null, 1) + '\n')]);
  return { safetensors, json, tensors };
}

/** The first n images of `data`. */
function firstImages(data: ImageSource, n: number): ImageSource {
  return {
    count: n,
    labels: data.labels.subarray(0, n),
    height: data.height,
    width: data.width,
    channels: data.channels,
    writeImage: (i, out, offset) => data.writeImage(i, out, offset),
  };
}

/** Every batch of `images` through the capture pass, checked against QuantizedModel.forward. */
function captureImages(q: QuantizedModel, images: ImageSource, batchSize: number): Capture {
  const m = q.model;
  const n = images.count;
  const imageSize = m.inputWh * m.inputWh * m.inputCh;
  const capture: Capture = {
    points: new PointRecorder(),
    input: new Float32Array(n * imageSize),
    lengths: new Float32Array(n * m.numClasses),
    predictions: new Int32Array(n),
  };
  for (let b = 0; b * batchSize < n; b++) {
    const xb = sourceBatch(images, b, batchSize);
    const reference = q.forward(xb, b);
    const caps = m.forward(xb, { training: false, quant: captureHooks(q, b, capture.points) });
    checkCapture(caps, reference);
    classify(caps, reference, b * batchSize, capture);
    capture.input.set(xb.data.subarray(0, xb.shape[0] * imageSize), b * batchSize * imageSize);
    for (const t of [caps, reference, xb]) give(t.data);
  }
  return capture;
}

/** Batch b's hooks that quantize as q's and record every quantized value with the fractional
 *  bits of its quantizer; the routing runs in the TypeScript reference, which reports c, s, v
 *  and the logits of every iteration. */
function captureHooks(q: QuantizedModel, batch: number, points: PointRecorder): QuantHooks {
  const inner = q.hooks(batch);
  const layerOf = (path: string) => q.model.description.layerOf(path).name;
  const recorder = (path: string, fracs: Record<'act' | 'routing' | 'votes', number>): RoutingRecord => {
    const layer = layerOf(path);
    return (it, name, values) => {
      const name_ = it < 0 ? `${path}/${name}` : `${path}/iter${it}/${name}`;
      const frac = name === 's' || name === 'logits' ? fracs.routing : name === 'votes' ? fracs.votes : fracs.act;
      points.put({ name: name_, point: name, layer, fracBits: frac, iteration: it < 0 ? null : it }, values, [
        values.length,
      ]);
    };
  };
  return {
    conv: inner.conv,
    activation: (path, point, t) => {
      inner.activation(path, point, t);
      const frac = inner.activationSpec?.(path, point)?.frac ?? null;
      const name = `${path}/${point}`;
      points.put({ name, point, layer: layerOf(path), fracBits: frac, iteration: null }, t.data.subarray(0, t.size), [
        ...t.shape,
      ]);
    },
    routing: (path) => {
      const r = inner.routing(path);
      if (!r?.act || !r.routing) return r;
      const fracs = { act: r.act.frac, routing: r.routing.frac, votes: r.votes?.frac ?? r.act.frac };
      return { ...r, record: recorder(path, fracs) };
    },
  };
}

/** The capture's class capsules are QuantizedModel.forward's (within 1e-5). */
function checkCapture(caps: Tensor, reference: Tensor): void {
  for (let i = 0; i < caps.size; i++)
    if (Math.abs(caps.data[i] - reference.data[i]) > 1e-5)
      throw new Error(
        `exportGoldenVectors: the capture pass's class capsules differ from QuantizedModel.forward at ${i} (${caps.data[i]} vs ${reference.data[i]})`,
      );
}

/** The class lengths and predictions of a batch whose first image is `first`; the prediction
 *  must be QuantizedModel.forward's. */
function classify(caps: Tensor, reference: Tensor, first: number, capture: Capture): void {
  const [B, K] = caps.shape;
  const D = caps.size / (B * K);
  for (let i = 0; i < B; i++) {
    let best = 0;
    let bestRef = 0;
    const lens: number[] = [];
    const lensRef: number[] = [];
    for (let k = 0; k < K; k++) {
      let s = 0;
      let sr = 0;
      for (let d = 0; d < D; d++) {
        s += caps.data[(i * K + k) * D + d] ** 2;
        sr += reference.data[(i * K + k) * D + d] ** 2;
      }
      lens.push(Math.sqrt(s));
      capture.lengths[(first + i) * K + k] = Math.sqrt(s);
      if (Math.sqrt(s) > lens[best]) best = k;
      if (sr > lensRef[bestRef]) bestRef = k;
      lensRef.push(sr);
    }
    if (best !== bestRef)
      throw new Error(
        `exportGoldenVectors: image ${first + i}: the capture pass predicts ${best}, QuantizedModel.forward ${bestRef}`,
      );
    capture.predictions[first + i] = best;
  }
}

/** The file's tensors: the images, every quantization point's integers, the lengths and the
 *  predictions, with their descriptions. */
function goldenTensors(m: CapsNet, c: Capture, n: number): { raw: [string, RawTensor][]; tensors: GoldenTensorInfo[] } {
  const raw: [string, RawTensor][] = [];
  const tensors: GoldenTensorInfo[] = [];
  const plain = (name: string, dtype: 'F32' | 'I32', shape: number[], values: Float32Array | Int32Array) => {
    raw.push([name, { dtype, shape, bytes: new Uint8Array(values.buffer) }]);
    tensors.push({ name, point: name, layer: '', shape, dtype, fracBits: null, totalBits: null, iteration: null });
  };
  plain('input', 'F32', [n, m.inputWh, m.inputWh, m.inputCh], c.input);
  for (const { info, parts } of c.points.points.values()) {
    const t = pointIntegers(info.name, info.fracBits!, parts, n);
    raw.push([info.name, { dtype: t.dtype, shape: t.shape, bytes: t.bytes }]);
    tensors.push({ ...info, shape: t.shape, dtype: t.dtype, totalBits: t.totalBits });
  }
  plain('lengths', 'F32', [n, m.numClasses], c.lengths);
  plain('predictions', 'I32', [n], c.predictions);
  return { raw, tensors };
}

/** One point's values over every batch as integers at `frac` bits (each must be a multiple of
 *  2^-frac), in int32 where they fit, else int64; the shape is the batch's with every image. */
function pointIntegers(
  name: string,
  frac: number,
  parts: readonly { values: Float32Array; shape: number[] }[],
  n: number,
): { dtype: 'I32' | 'I64'; shape: number[]; bytes: Uint8Array; totalBits: number } {
  const total = parts.reduce((a, p) => a + p.values.length, 0);
  const scale = 2 ** frac;
  const ints = new Float64Array(total);
  let o = 0;
  let lo = 0;
  let hi = 0;
  for (const p of parts)
    for (let i = 0; i < p.values.length; i++, o++) {
      const v = p.values[i] * scale;
      if (!Number.isInteger(v))
        throw new Error(`exportGoldenVectors: ${name}[${o}] = ${p.values[i]} is not a multiple of 2^-${frac}`);
      ints[o] = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  let totalBits = 1;
  while (lo < -(2 ** (totalBits - 1)) || hi > 2 ** (totalBits - 1) - 1) totalBits++;
  const first = parts[0].shape;
  const shape =
    first.length > 1 ? [total / (first.reduce((a, d) => a * d, 1) / first[0]), ...first.slice(1)] : [n, total / n];
  const i32 = totalBits <= 32;
  const bytes = i32
    ? new Uint8Array(Int32Array.from(ints).buffer)
    : new Uint8Array(BigInt64Array.from(ints, (v) => BigInt(v)).buffer);
  return { dtype: i32 ? 'I32' : 'I64', shape, bytes, totalBits };
}
