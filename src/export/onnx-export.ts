// ONNX export of a quantized model (README "ONNX export"): the quantized forward of
// ShallowCapsNet or DeepCaps as one opset-21 graph. Images [batch, H, W, C] (our layout) ->
// class lengths [batch, K] and class capsules [batch, K, D]. Weights are integer initializers
// (int8 / int16 / int32 by the width they need) behind DequantizeLinear with scale 2^-frac;
// every activation and routing quantizer is explicit ops; routing iterations are unrolled.
import { bitsToLists, formatOf } from '../quant/config.js';
import { integerContainer } from '../quant/integer-container.js';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CapsNet } from '../models/capsnet.js';
import { DeepCaps } from '../models/deepcaps.js';
import { ShallowCapsNet } from '../models/shallow-capsnet.js';
import type { Capsules } from '../nn/capsules.js';
import { Conv2DCaps, Conv3DCaps, type CapsConvConfig } from '../nn/conv-caps.js';
import type { DeepCapsBlock } from '../nn/deepcaps-block.js';
import { activationQuant } from '../quant/methods.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { bytesOf, DT, OnnxGraph, OPSET } from './onnx-graph.js';
import {
  batchNormOp,
  capsuleVotesOp,
  convOp,
  convSide,
  flattenCapsulesOp,
  routingOps,
  type RoutingQuantizers,
  squashOp,
} from './onnx-layers.js';
import { type GraphQuantizer, quantizeOp } from './onnx-quantizers.js';

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
  // (the graph's quantizers are made from the bit counts, which are widths under 'dynamic')
  if (formatOf(q.bits) === 'dynamic')
    throw new Error("ONNX export: the 'dynamic' number format is not exported yet; export a 'fixed' model");
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
  const g = new OnnxGraph();
  const weightTypes = weightInitializers(g, q);
  const m = q.model;
  const quantizerOf = (bits: number): GraphQuantizer => {
    const spec = activationQuant(graphMethod, bits, q.compat, 0, 0);
    return { method: graphMethod, frac: spec.frac, compat: spec.compat };
  };
  const act = (layer: string) => quantizerOf(q.bitsOf(layer).act);
  const routing = (layer: string): RoutingQuantizers => ({
    act: act(layer),
    routing: quantizerOf(q.bitsOf(layer).routing!),
  });
  const ctx: Lowering = { g, m, act, routing };
  const x = g.transpose('images', [0, 3, 1, 2]); // NHWC -> NCHW
  let caps: string;
  if (m instanceof ShallowCapsNet) caps = shallowCapsNet(ctx, m, x);
  else if (m instanceof DeepCaps) caps = deepCaps(ctx, m, x);
  else throw new Error(`ONNX export: model ${(m as CapsNet).kind} has no ONNX lowering`);
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
      `${graphMethod !== q.method ? ` exported with ${graphMethod}` : ''}; bits ${JSON.stringify(bitsToLists(q.bits))}`,
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

interface Lowering {
  g: OnnxGraph;
  m: CapsNet;
  act: (layer: string) => GraphQuantizer;
  routing: (layer: string) => RoutingQuantizers;
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

function shallowCapsNet(ctx: Lowering, m: ShallowCapsNet, x: string): string {
  const { g } = ctx;
  const convCfg = {
    inChannels: m.inputCh,
    inSide: m.inputWh,
    outChannels: 256,
    kernel: 9,
    stride: 1,
    pad: 0,
    relu: true,
  };
  const h = quantizeOp(g, convOp(g, x, 'conv.conv.weight', 'conv.conv.bias', convCfg, false), ctx.act('conv'));
  const H = convSide(m.inputWh, convCfg);
  const pc = m.primary.cfg;
  const v = convCapsRouting(ctx, 'primary', h, H, pc, 'primary.conv3d', null, m.primary.iterations, 'j');
  const flat = flattenCapsulesOp(g, v.map, pc.co, pc.no, v.side, v.side);
  return capsules(ctx, 'digit', m.digit, flat);
}

function deepCaps(ctx: Lowering, m: DeepCaps, x: string): string {
  const { g } = ctx;
  const cfg = { inChannels: m.inputCh, inSide: m.inputWh, outChannels: 128, kernel: 3, stride: 1, pad: 1, relu: true };
  const y = convOp(g, x, 'conv1.conv.weight', 'conv1.conv.bias', cfg, false);
  const bn = m.conv1.batchnorm.state;
  const invStd = Float32Array.from(bn.runningVar.data, (v) => 1 / Math.sqrt(v + bn.eps));
  const mean = bn.runningMean.data.slice();
  const c = quantizeOp(
    g,
    batchNormOp(g, y, { mean, invStd, gamma: 'conv1.batchnorm.weight', beta: 'conv1.batchnorm.bias' }),
    ctx.act('conv1'),
  );
  let map = { map: c, side: m.inputWh };
  const outs: { map: string; side: number }[] = [];
  for (const name of ['block1', 'block2', 'block3', 'block4'] as const) {
    map = block(ctx, name, m[name], map.map, map.side);
    outs.push(map);
  }
  const [, , b3, b4] = outs;
  const flat = g.op(
    'Concat',
    [flattenCapsulesOp(g, b3.map, 32, 8, b3.side, b3.side), flattenCapsulesOp(g, b4.map, 32, 8, b4.side, b4.side)],
    { axis: 1 },
  );
  return capsules(ctx, 'capsLayer', m.capsLayer, flat);
}

/** DeepCapsBlock: x1 = l1(x); out = l3(l2(x1)) + l_skip(x1). */
function block(ctx: Lowering, name: string, b: DeepCapsBlock, x: string, H: number): { map: string; side: number } {
  const x1 = conv2dCaps(ctx, name, `${name}.l1`, b.l1, x, H);
  let skip: { map: string; side: number };
  if (b.l_skip instanceof Conv3DCaps) {
    const s = b.l_skip;
    skip = convCapsRouting(
      ctx,
      name,
      x1.map,
      x1.side,
      s.cfg,
      `${name}.l_skip.conv`,
      `${name}.l_skip.conv.bias`,
      s.iterations,
      'pj',
    );
  } else skip = conv2dCaps(ctx, name, `${name}.l_skip`, b.l_skip, x1.map, x1.side);
  const x2 = conv2dCaps(ctx, name, `${name}.l2`, b.l2, x1.map, x1.side);
  const x3 = conv2dCaps(ctx, name, `${name}.l3`, b.l3, x2.map, x2.side);
  return { map: ctx.g.op('Add', [x3.map, skip.map]), side: x3.side };
}

/** Conv2DCaps on NCHW [B, ci*ni, H, W]: conv, quantized, squash over no, quantized. */
function conv2dCaps(
  ctx: Lowering,
  layer: string,
  path: string,
  l: Conv2DCaps,
  x: string,
  H: number,
): { map: string; side: number } {
  const { g } = ctx;
  const c = l.cfg;
  const OH = convSide(H, c);
  const geom = { ...c, inChannels: c.ci * c.ni, inSide: H, outChannels: c.co * c.no, relu: false };
  const s = convOp(g, x, `${path}.conv.weight`, `${path}.conv.bias`, geom, true);
  const sq = quantizeOp(g, s, ctx.act(layer));
  const v = squashOp(g, g.reshape(sq, [-1, c.co, c.no, OH, OH]), 2, 'double');
  const vq = quantizeOp(g, v, ctx.act(layer));
  return { map: g.reshape(vq, [-1, c.co * c.no, OH, OH]), side: OH };
}

/** ConvPixelToCapsules / Conv3DCaps: one conv per input capsule type gives the votes
 *  [B, ci, P, co, no], quantized, routed at every position -> NCHW [B, co*no, OH, OW]. */
function convCapsRouting(
  ctx: Lowering,
  layer: string,
  x: string,
  H: number,
  c: CapsConvConfig,
  conv: string,
  convBias: string | null,
  iterations: number,
  softmax: 'j' | 'pj',
): { map: string; side: number } {
  const { g } = ctx;
  const OH = convSide(H, c);
  const P = OH * OH;
  const xi = g.reshape(x, [-1, c.ni, H, H]); // [B*ci, ni, H, W]
  // Conv3DCaps' weight is [co*no, 1, ni, k, k] in PyTorch: the same elements as OIHW
  const w = g.reshape(`${conv}.weight`, [c.co * c.no, c.ni, c.kernel, c.kernel]);
  const u = convOp(
    g,
    xi,
    w,
    convBias,
    { ...c, inChannels: c.ni, inSide: H, outChannels: c.co * c.no, relu: false },
    true,
  );
  const votes = g.transpose(g.reshape(u, [-1, c.ci, c.co, c.no, P]), [0, 1, 4, 2, 3]);
  const uq = quantizeOp(g, votes, ctx.act(layer));
  const bias = g.reshape(`${layer === 'primary' ? 'primary' : `${layer}.l_skip`}.bias`, [c.co, c.no]);
  const v = routingOps(g, uq, bias, { I: c.ci, P, J: c.co, D: c.no, iterations, softmax }, ctx.routing(layer));
  const map = g.reshape(g.transpose(v, [0, 2, 3, 1]), [-1, c.co * c.no, OH, OH]);
  return { map, side: OH };
}

/** A fully connected capsule layer: votes, quantized, routed over J -> [B, J, D]. */
function capsules(ctx: Lowering, layer: string, l: Capsules, x: string): string {
  const { g } = ctx;
  const u = quantizeOp(g, capsuleVotesOp(g, x, `${layer}.weight`, l.I, l.J, l.D), ctx.act(layer));
  const v = routingOps(
    g,
    u,
    `${layer}.bias`,
    { I: l.I, P: 1, J: l.J, D: l.D, iterations: l.iterations, softmax: 'j' },
    ctx.routing(layer),
  );
  return g.reshape(v, [-1, l.J, l.D]);
}
