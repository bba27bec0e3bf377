// ONNX export of a quantized model (docs/exports.md): its quantized forward as one opset-21
// graph, lowered layer by layer from the model's description by the handler of each layer's
// kind (onnx-lowerings.ts). Images [batch, H, W, C] (our layout) -> class lengths [batch, K]
// and class capsules [batch, K, D]. Weights are integer initializers (int8 / int16 / int32 by
// the width they need) behind DequantizeLinear with scale 2^-frac (QuantizedModel.integers);
// every activation and routing quantizer (the model's own QuantSpecs) is explicit ops; routing
// iterations are unrolled.
import { bitsToLists, formatOf } from '../quant/config.js';
import { integerContainer } from '../quant/integer-container.js';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LayerDescription } from '../models/description.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { ExportQuantizers } from './export-quantizers.js';
import { bytesOf, DT, OnnxGraph, OPSET } from './onnx-graph.js';
import { flattenCapsulesOp } from './onnx-layers.js';
import { noLowering } from './lowering.js';
import {
  lowerOnnx,
  ONNX_LOWERINGS,
  type OnnxCapsules,
  type OnnxLoweringContext,
  type OnnxValue,
} from './onnx-lowerings.js';
import type { GraphQuantizer } from './onnx-quantizers.js';

export const ONNX_ROUNDINGS = ['round_to_nearest'] as const;

export interface OnnxExportOptions {
  /** folder of the .onnx file (created when missing) */
  outDir: string;
  /** file name; default `<kind>_quantized_<method>.onnx` */
  fileName?: string;
  /** stochastic rounding has no deterministic graph: 'round_to_nearest' exports its activations
   *  and routing with round-to-nearest instead (the weights stay the stored integers) */
  rounding?: (typeof ONNX_ROUNDINGS)[number] | null;
  /** how errors name the rounding option (the CLI passes its flag) */
  roundingLabel?: string;
}

export interface OnnxExportResult {
  file: string;
  bytes: number;
  opset: number;
  nodes: number;
  /** the rounding of the graph's activations and routing */
  rounding: GraphQuantizer['method'];
  /** initializer name -> ONNX data type of every weight, e.g. int8 */
  weightTypes: Record<string, 'int8' | 'int16' | 'int32' | 'float'>;
}

/** Writes the graph of `q` (atomically) and returns where and what. */
export function exportOnnx(q: QuantizedModel, options: OnnxExportOptions): OnnxExportResult {
  const label = options.roundingLabel ?? 'options.rounding';
  let method = q.method;
  if (method === 'stochastic_rounding') {
    if (options.rounding !== 'round_to_nearest')
      throw new Error(
        `ONNX export: stochastic rounding has no deterministic graph; pass ${label} round_to_nearest to export its activations and routing with round-to-nearest (weights keep their stored integers)`,
      );
    method = 'round_to_nearest';
  } else if (options.rounding != null && options.rounding !== 'round_to_nearest') {
    throw new Error(`ONNX export: ${label} ${String(options.rounding)}: expected round_to_nearest`);
  }
  const graphMethod = method as GraphQuantizer['method'];
  const m = q.model;
  for (const layer of m.description.layers)
    if (!ONNX_LOWERINGS.has(layer.kind)) throw new Error(noLowering('ONNX export', layer.module, ONNX_LOWERINGS));
  const g = new OnnxGraph();
  const weightTypes = weightInitializers(g, q);
  const ctx: OnnxLoweringContext = { g, quant: new ExportQuantizers(q, 'ONNX export', graphMethod) };
  const image: OnnxValue = {
    form: 'map',
    name: g.transpose('images', [0, 3, 1, 2]), // NHWC -> NCHW
    types: 1,
    dim: m.inputCh,
    side: m.inputWh,
    quantized: false,
  };
  const caps = lowerLayers(ctx, m.description.layers, image, [m.numClasses, m.capsDim]);
  g.op('Identity', [caps], {}, 'capsules');
  g.op('Sqrt', [g.reduce('ReduceSum', g.op('Mul', [caps, caps]), [-1], false)], {}, 'lengths');
  const bytes = g.encode(
    `${m.kind}_quantized`,
    [{ name: 'images', dims: ['batch', m.inputWh, m.inputWh, m.inputCh] }],
    [
      { name: 'lengths', dims: ['batch', m.numClasses] },
      { name: 'capsules', dims: ['batch', m.numClasses, m.capsDim] },
    ],
    `qcapsnets ${m.kind} (${m.args.join(' ')}), ${q.method}${q.compat === 'dac2020' ? ' (dac2020)' : ''}` +
      `${graphMethod !== q.method ? ` exported with ${graphMethod}` : ''}` +
      `${formatOf(q.bits) === 'dynamic' ? ", number format 'dynamic' (bits are widths)" : ''}; bits ${JSON.stringify(bitsToLists(q.bits))}`,
  );
  const dir = resolve(options.outDir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new Error(`ONNX export: output folder ${options.outDir}: cannot create it (${(err as Error).message})`, {
      cause: err,
    });
  }
  const file = join(dir, options.fileName ?? `${m.kind}_quantized_${q.method}.onnx`);
  writeFileAtomic(file, () => [bytes]);
  return { file, bytes: bytes.length, opset: OPSET, nodes: g.nodes.length, rounding: graphMethod, weightTypes };
}

/** Every parameter as an integer initializer `<name>.int` and its DequantizeLinear output
 *  `<name>` (PyTorch's layout and name). An integer of more than 32 bits (dac2020 weights do
 *  not saturate) fits no DequantizeLinear input type: that parameter is a float initializer. */
function weightInitializers(g: OnnxGraph, q: QuantizedModel): OnnxExportResult['weightTypes'] {
  const types: OnnxExportResult['weightTypes'] = {};
  for (const p of q.integers) {
    const scale = g.scalar(2 ** -p.fracBits);
    if (p.values instanceof BigInt64Array) {
      const f = Float32Array.from(p.values, (v) => Number(v) * 2 ** -p.fracBits);
      g.tensor(p.name, DT.float, p.shape, bytesOf(f));
      types[p.name] = 'float';
      continue;
    }
    const container = integerContainer(p.totalBits);
    const [type, dt, raw] =
      container === 8
        ? (['int8', DT.int8, bytesOf(Int8Array.from(p.values))] as const)
        : container === 16
          ? (['int16', DT.int16, bytesOf(Int16Array.from(p.values))] as const)
          : (['int32', DT.int32, bytesOf(p.values)] as const);
    g.tensor(`${p.name}.int`, dt, p.shape, raw);
    g.op('DequantizeLinear', [`${p.name}.int`, scale], {}, p.name);
    types[`${p.name}.int`] = type;
  }
  return types;
}

/** Every layer in order, each on its input (the image, an earlier layer's output, or earlier
 *  capsule maps flattened and concatenated); returns the last layer's output, which must be
 *  the class capsules [B, K, D]. */
function lowerLayers(
  ctx: OnnxLoweringContext,
  layers: readonly LayerDescription[],
  image: OnnxValue,
  [K, D]: [number, number],
): string {
  const outputs = new Map<string, OnnxValue>([['image', image]]);
  let out = image;
  for (const layer of layers) {
    out = lowerOnnx(ctx, layer.module, layerInput(ctx, layer, outputs));
    outputs.set(layer.name, out);
  }
  if (out.form !== 'capsules' || out.count !== K || out.dim !== D)
    throw new Error(
      `ONNX export: the last layer gives ${out.form === 'capsules' ? `[${out.count}, ${out.dim}]` : 'a map'}, not the class capsules [${K}, ${D}]`,
    );
  return out.name;
}

/** What `layer` reads (its description's input). */
function layerInput(
  ctx: OnnxLoweringContext,
  layer: LayerDescription,
  outputs: ReadonlyMap<string, OnnxValue>,
): OnnxValue {
  const sources = layer.input.from.map((name) => {
    const v = outputs.get(name);
    if (!v) throw new Error(`ONNX export: layer '${layer.name}' reads '${name}', which no earlier layer gives`);
    return v;
  });
  if (!layer.input.flatten) {
    if (sources.length !== 1)
      throw new Error(`ONNX export: layer '${layer.name}' reads ${sources.length} values without flattening them`);
    return sources[0];
  }
  const lists = sources.map((v, i) => flattenOnnx(ctx, layer, layer.input.from[i], v));
  if (lists.length === 1) return lists[0];
  const dim = lists[0].dim;
  if (lists.some((l) => l.dim !== dim))
    throw new Error(
      `ONNX export: layer '${layer.name}' concatenates capsules of dimensions ${lists.map((l) => l.dim).join(', ')}`,
    );
  const name = ctx.g.op(
    'Concat',
    lists.map((l) => l.name),
    { axis: 1 },
  );
  return { form: 'capsules', name, count: lists.reduce((n, l) => n + l.count, 0), dim };
}

/** A capsule map as the list of its capsules in the order (type, y, x). */
function flattenOnnx(ctx: OnnxLoweringContext, layer: LayerDescription, from: string, v: OnnxValue): OnnxCapsules {
  if (v.form !== 'map')
    throw new Error(`ONNX export: layer '${layer.name}' flattens '${from}', which is not a capsule map`);
  const name = flattenCapsulesOp(ctx.g, v.name, v.types, v.dim, v.side, v.side);
  return { form: 'capsules', name, count: v.types * v.side * v.side, dim: v.dim };
}
