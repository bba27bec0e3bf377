// Writing a QuantizedModel as a packed safetensors file (the layout at the top of
// quantized-file.ts).
import { statSync } from 'node:fs';
import { pointKey } from '../quant/calibration.js';
import { formatOf } from '../quant/config.js';
import { configMemoryBits } from '../quant/memory.js';
import { QuantizedModel } from '../quant/quantized-model.js';
import { fileError } from '../io/byte-source.js';
import { type RawTensor, writeSafetensorsRaw } from '../io/safetensors.js';
import { encodeForWriting } from '../io/tensor-data.js';
import {
  BIT_ORDER,
  EVAL_ORDER_TENSOR,
  MAX_CODE_BITS,
  QUANTIZED_FORMAT,
  QUANTIZED_FORMAT_VERSION,
  QWEIGHT,
  QuantizedFileSummary,
  TensorFormat,
  WriteQuantizedInfo,
} from './packed-format.js';
import { packBits } from './packed-bits.js';
import { encodeFixed, encodeLog, integersOf } from './packed-codecs.js';
/** Writes `q` as a packed safetensors file (see the top of this file), atomically. */
export function writeQuantizedModel(
  file: string,
  q: QuantizedModel,
  info: WriteQuantizedInfo = {},
): QuantizedFileSummary {
  if (!(q instanceof QuantizedModel)) throw new Error('writeQuantizedModel: q must be a QuantizedModel');
  const model = q.model;
  const saturated = q.compat !== 'dac2020';
  const numberFormat = formatOf(q.bits);
  if (numberFormat === 'dynamic' && q.bits.some((b) => b.format !== 'dynamic'))
    throw new Error(
      "writeQuantizedModel: the layers' bits mix the 'fixed' and 'dynamic' number formats; a packed file holds one",
    );
  const params = q.integers;
  const paramNames = new Set(params.map((p) => p.name));
  const formats: Record<string, TensorFormat> = {};
  const tensors: [string, RawTensor][] = [];
  let weightBytes = 0;
  const byName = new Map(params.map((p) => [p.name, p]));
  for (const [name, t] of model.stateDict()) {
    const p = byName.get(name);
    if (!p) {
      // a buffer, unquantized
      const { dtype, bytes } = encodeForWriting(file, name, t);
      if (dtype === 'float64') throw fileError(file, `buffer '${name}' is float64`);
      formats[name] = { encoding: dtype, shape: [...t.shape] };
      tensors.push([name, { dtype: dtype === 'int64' ? 'I64' : 'F32', shape: [...t.shape], bytes }]);
      continue;
    }
    const ints = integersOf(p);
    let bytes: Uint8Array;
    if (q.method === 'logarithmic') {
      const e = encodeLog(p, ints, saturated, numberFormat);
      bytes = e.bytes;
      formats[name] = e.format;
    } else {
      if (p.totalBits > MAX_CODE_BITS)
        throw fileError(file, `tensor '${name}' needs ${p.totalBits} bits, more than ${MAX_CODE_BITS}`);
      bytes = encodeFixed(ints, p.totalBits);
      formats[name] = {
        encoding: 'fixed',
        shape: p.shape,
        layer: p.layer,
        bits: p.totalBits,
        frac_bits: p.fracBits,
        width: p.width,
      };
    }
    if (paramNames.has(name + QWEIGHT)) throw fileError(file, `tensor name '${name}${QWEIGHT}' is taken`);
    tensors.push([name + QWEIGHT, { dtype: 'U8', shape: [bytes.length], bytes }]);
    weightBytes += bytes.length;
  }
  const bits = q.bits;
  const memoryBits = configMemoryBits(q.layers, bits);
  const metadata: Record<string, string> = {
    format: QUANTIZED_FORMAT,
    format_version: QUANTIZED_FORMAT_VERSION,
    model: model.kind,
    model_args: JSON.stringify(model.args),
    method: q.method,
    compat: q.compat,
    seed: String(q.seed),
    layers: JSON.stringify(
      q.layers.map((l, i) => ({
        name: l.name,
        param_count: l.paramCount,
        weight_bits: bits[i].weight,
        act_bits: bits[i].act,
        routing_bits: bits[i].routing,
      })),
    ),
    tensors: JSON.stringify(formats),
    bit_order: BIT_ORDER,
    memory_bits: String(memoryBits),
    packed_bytes: String(weightBytes),
  };
  if (numberFormat === 'dynamic') Object.assign(metadata, dynamicMetadata(q));
  // (absent under the default 'max', so those files are as before the rule)
  if (q.weightRange === 'mse') metadata.weight_range = 'mse';
  if (info.decoder) {
    metadata.decoder = info.decoder.name;
    metadata.decoder_args = JSON.stringify([...info.decoder.args]);
  }
  if (info.search) metadata.search = JSON.stringify(info.search);
  let packedBytes = weightBytes;
  for (const [, t] of tensors) if (t.dtype !== 'U8') packedBytes += t.bytes.length;
  const ev = info.evaluationOrder;
  if (ev) {
    const n = ev.order.length;
    const orderBits = Math.max(1, Math.ceil(Math.log2(n)));
    const bytes = packBits(ev.order, orderBits);
    metadata.eval_order = JSON.stringify({
      batch_size: ev.batchSize,
      images: n,
      bits: orderBits,
      fingerprint: ev.fingerprint,
    });
    tensors.push([EVAL_ORDER_TENSOR, { dtype: 'U8', shape: [bytes.length], bytes }]);
    packedBytes += bytes.length;
  }
  writeSafetensorsRaw(file, tensors, metadata);
  return { file, packedBytes, weightBytes, memoryBytes: memoryBits / 8, fileBytes: statSync(file).size };
}

/** The 'dynamic' keys: the format, the calibration, and every activation and routing point's
 *  fractional length (as the model's quantizers have them). */
export function dynamicMetadata(q: QuantizedModel): Record<string, string> {
  const d = q.model.description;
  const act: Record<string, number> = {};
  const routing: Record<string, { act: number | null; routing: number | null }> = {};
  for (const p of d.quantPoints().flat()) act[pointKey(p.path, p.point)] = q.activationSpec(p.path, p.point)!.frac;
  for (const path of d.routingPaths().flat()) {
    const r = q.routingSpecs(path)!;
    routing[path] = { act: r.act!.frac, routing: r.routing!.frac };
  }
  return {
    number_format: 'dynamic',
    calibration: JSON.stringify(q.calibration),
    activation_frac_bits: JSON.stringify(act),
    routing_frac_bits: JSON.stringify(routing),
  };
}
