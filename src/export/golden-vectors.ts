// Golden vectors for hardware testbenches (issue 10): for the first N test images, the integers
// at every quantization point of the quantized forward pass (SPEC 4), each with its fixed-point
// format (value = integer * 2^-frac: the fractional bits of the quantizer the forward applies
// there, QuantizedModel.activationSpec / routingSpecs: under 'fixed' activations use the layer's
// activation bits, routing's s and logits its routing bits; under 'dynamic' each point's own
// calibrated fractional length), plus the class capsules' lengths and the predictions.
// The capture pass runs the current kernels but for routing, which its hooks hand to the
// TypeScript reference with a recorder (it reports c, s, v and the logits of every iteration;
// no process-wide state changes), and hooks that call activation() at every point; its class
// capsules are checked against the normal QuantizedModel.forward.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type ImageSource, sourceBatch } from '../models/evaluate.js';
import type { QuantHooks } from '../nn/module.js';
import { bitsToLists, formatOf } from '../quant/config.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import type { RoutingQuant, RoutingRecord } from '../tensor/backend.js';
import { give } from '../tensor/pool.js';
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

interface Recorded {
  info: Omit<GoldenTensorInfo, 'shape' | 'dtype' | 'totalBits'>;
  /** per batch: values and the shape */
  parts: { values: Float32Array; shape: number[] }[];
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
  const m = q.model;
  const records = new Map<string, Recorded>();
  const order: string[] = [];
  const put = (name: string, info: Recorded['info'], values: Float32Array, shape: number[]) => {
    let r = records.get(name);
    if (!r) {
      r = { info, parts: [] };
      records.set(name, r);
      order.push(name);
    }
    r.parts.push({ values: values.slice(), shape });
  };
  const inputData = new Float32Array(n * m.inputWh * m.inputWh * m.inputCh);
  const lengths = new Float32Array(n * m.numClasses);
  const predictions = new Int32Array(n);

  const first: ImageSource = {
    count: n,
    labels: data.labels.subarray(0, n),
    height: data.height,
    width: data.width,
    channels: data.channels,
    writeImage: (i, out, offset) => data.writeImage(i, out, offset),
  };
  const batches = Math.ceil(n / batchSize);
  for (let b = 0; b < batches; b++) {
    const xb = sourceBatch(first, b, batchSize);
    const B = xb.shape[0];
    const reference = q.forward(xb, b);
    // the capture pass
    const inner = q.hooks(b);
    const hooks: QuantHooks = {
      conv: inner.conv,
      activation: (path, point, t) => {
        inner.activation(path, point, t);
        put(
          `${path}/${point}`,
          {
            name: `${path}/${point}`,
            point,
            layer: q.bitsOf(path).name,
            fracBits: inner.activationSpec!(path, point)!.frac,
            iteration: null,
          },
          t.data.subarray(0, t.size),
          [...t.shape],
        );
      },
      // the routing runs in the TypeScript reference, which reports c, s, v and the logits of
      // every iteration
      routing: (path) => {
        const r = inner.routing(path);
        return r && { ...r, record: recorder(path, r) };
      },
    };
    const recorder = (path: string, r: RoutingQuant): RoutingRecord => {
      const bits = q.bitsOf(path);
      // each value's quantizer: the votes', c and v with the activation one, s and the logits
      // with the routing one
      const fracOf = (name: string) =>
        (name === 'votes' ? r.votes : name === 's' || name === 'logits' ? r.routing : r.act)!.frac;
      return (it, name, values) => {
        const key = it < 0 ? `${path}/${name}` : `${path}/iter${it}/${name}`;
        put(
          key,
          {
            name: key,
            point: name,
            layer: bits.name,
            fracBits: fracOf(name),
            iteration: it < 0 ? null : it,
          },
          values,
          [values.length],
        );
      };
    };
    const caps = m.forward(xb, { training: false, quant: hooks });
    const K = m.numClasses;
    const D = caps.size / (caps.shape[0] * K);
    for (let i = 0; i < caps.size; i++)
      if (Math.abs(caps.data[i] - reference.data[i]) > 1e-5)
        throw new Error(
          `exportGoldenVectors: the capture pass's class capsules differ from QuantizedModel.forward at ${i} (${caps.data[i]} vs ${reference.data[i]})`,
        );
    for (let i = 0; i < B; i++) {
      let best = 0;
      let bestRef = 0;
      const img = b * batchSize + i;
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
        lengths[img * K + k] = Math.sqrt(s);
        if (Math.sqrt(s) > lens[best]) best = k;
        if (sr > lensRef[bestRef]) bestRef = k;
        lensRef.push(sr);
      }
      if (best !== bestRef)
        throw new Error(
          `exportGoldenVectors: image ${img}: the capture pass predicts ${best}, QuantizedModel.forward ${bestRef}`,
        );
      predictions[img] = best;
    }
    inputData.set(
      xb.data.subarray(0, B * m.inputWh * m.inputWh * m.inputCh),
      b * batchSize * m.inputWh * m.inputWh * m.inputCh,
    );
    give(caps.data);
    give(reference.data);
    give(xb.data);
  }
  // integers
  mkdirSync(options.outDir, { recursive: true });
  const tensors: GoldenTensorInfo[] = [];
  const raw: [string, RawTensor][] = [];
  raw.push([
    'input',
    { dtype: 'F32', shape: [n, m.inputWh, m.inputWh, m.inputCh], bytes: new Uint8Array(inputData.buffer) },
  ]);
  tensors.push({
    name: 'input',
    point: 'input',
    layer: '',
    shape: [n, m.inputWh, m.inputWh, m.inputCh],
    dtype: 'F32',
    fracBits: null,
    totalBits: null,
    iteration: null,
  });
  for (const name of order) {
    const r = records.get(name)!;
    const total = r.parts.reduce((a, p) => a + p.values.length, 0);
    const frac = r.info.fracBits!;
    const scale = 2 ** frac;
    const ints = new Float64Array(total);
    let o = 0;
    let lo = 0;
    let hi = 0;
    for (const p of r.parts)
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
    const first = r.parts[0].shape;
    const shape =
      first.length > 1 ? [total / (first.reduce((a, d) => a * d, 1) / first[0]), ...first.slice(1)] : [n, total / n];
    const i32 = totalBits <= 32;
    const bytes = i32
      ? new Uint8Array(Int32Array.from(ints).buffer)
      : new Uint8Array(BigInt64Array.from(ints, (v) => BigInt(v)).buffer);
    raw.push([name, { dtype: i32 ? 'I32' : 'I64', shape, bytes }]);
    tensors.push({ ...r.info, shape, dtype: i32 ? 'I32' : 'I64', totalBits });
  }
  raw.push(['lengths', { dtype: 'F32', shape: [n, m.numClasses], bytes: new Uint8Array(lengths.buffer) }]);
  raw.push(['predictions', { dtype: 'I32', shape: [n], bytes: new Uint8Array(predictions.buffer) }]);
  tensors.push({
    name: 'lengths',
    point: 'lengths',
    layer: '',
    shape: [n, m.numClasses],
    dtype: 'F32',
    fracBits: null,
    totalBits: null,
    iteration: null,
  });
  tensors.push({
    name: 'predictions',
    point: 'predictions',
    layer: '',
    shape: [n],
    dtype: 'I32',
    fracBits: null,
    totalBits: null,
    iteration: null,
  });
  const safetensors = join(options.outDir, 'vectors.safetensors');
  const json = join(options.outDir, 'vectors.json');
  writeSafetensorsRaw(safetensors, raw, { format: 'qcapsnets-golden-vectors' });
  const doc = {
    format: 'qcapsnets-golden-vectors',
    value:
      "integer * 2^-frac_bits; shapes in this tool's layout (images NHWC, batch first); routing values flattened per image",
    model: m.constructor.name,
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
