// The ONNX lowering of each layer kind, as Brevitas' export handlers: one handler per module
// kind (the module's `kind`), looked up by the exporter for every layer of a model's
// description, whatever the model. A handler reads its module's configuration, its parameters
// by their state_dict names (the weights' DequantizeLinear outputs) and its quantizers from the
// QuantizedModel's hooks (export-quantizers.ts), and returns the value it computes.
import type { Module } from '../nn/module.js';
import { Capsules } from '../nn/capsules.js';
import { Conv2dBnRelu } from '../nn/conv-bn-relu.js';
import { Conv2DCaps, Conv3DCaps, ConvPixelToCapsules } from '../nn/conv-caps.js';
import { type Conv2d, Conv2dRelu } from '../nn/conv2d.js';
import { DeepCapsBlock } from '../nn/deepcaps-block.js';
import type { ExportQuantizers } from './export-quantizers.js';
import type { OnnxGraph } from './onnx-graph.js';
import { batchNormOp, capsuleVotesOp, type ConvGeom, convOp, convSide, routingOps, squashOp } from './onnx-layers.js';
import { quantizeOp } from './onnx-quantizers.js';
import { moduleAs, noLowering } from './lowering.js';

/** A value of the graph between layers:
 *  - map: NCHW [B, types * dim, side, side], channel t * dim + d (an image: 1 type of C
 *    channels); `quantized`: a quantizer's output (fixed point), which convolutions sum exactly;
 *  - capsules: a capsule list [B, count, dim]. */
export type OnnxValue =
  | { form: 'map'; name: string; types: number; dim: number; side: number; quantized: boolean }
  | { form: 'capsules'; name: string; count: number; dim: number };

export type OnnxMap = Extract<OnnxValue, { form: 'map' }>;
export type OnnxCapsules = Extract<OnnxValue, { form: 'capsules' }>;

export interface OnnxLoweringContext {
  g: OnnxGraph;
  quant: ExportQuantizers;
}

/** Lowers one module (at its path) applied to `input`. */
export type OnnxLowering = (ctx: OnnxLoweringContext, module: Module, input: OnnxValue) => OnnxValue;

/** `v` as a map of `channels` channels, or an error naming the layer. */
export function mapInput(module: Module, v: OnnxValue, channels: number): OnnxMap {
  if (v.form !== 'map' || v.types * v.dim !== channels)
    throw new Error(
      `ONNX export: '${module.path}' (${module.kind}) reads a map of ${channels} channels, got ${v.form === 'map' ? `${v.types * v.dim} channels` : `a capsule list [${v.count}, ${v.dim}]`}`,
    );
  return v;
}

const convGeom = (c: Conv2d, side: number): ConvGeom => ({
  inChannels: c.cfg.inChannels,
  inSide: side,
  outChannels: c.cfg.outChannels,
  kernel: c.cfg.kernel,
  stride: c.stride,
  pad: c.pad,
  relu: c.relu,
});

const biasOf = (c: Conv2d) => (c.bias ? `${c.path}.bias` : null);

/** Conv2d_ReLU: conv + bias + ReLU, quantized. */
function conv2dRelu(ctx: OnnxLoweringContext, module: Module, input: OnnxValue): OnnxValue {
  const c = moduleAs(module, Conv2dRelu).conv;
  const x = mapInput(module, input, c.cfg.inChannels);
  const geom = convGeom(c, x.side);
  const y = convOp(ctx.g, x.name, `${c.path}.weight`, biasOf(c), geom, x.quantized);
  const name = quantizeOp(ctx.g, y, ctx.quant.activation(c.path, 'out'));
  return { form: 'map', name, types: 1, dim: c.cfg.outChannels, side: convSide(x.side, geom), quantized: true };
}

/** Conv2d_BN_ReLU: conv + bias + ReLU, BatchNorm with the running statistics, quantized. */
function conv2dBnRelu(ctx: OnnxLoweringContext, module: Module, input: OnnxValue): OnnxValue {
  const m = moduleAs(module, Conv2dBnRelu);
  const x = mapInput(module, input, m.conv.cfg.inChannels);
  const geom = convGeom(m.conv, x.side);
  const y = convOp(ctx.g, x.name, `${m.conv.path}.weight`, biasOf(m.conv), geom, x.quantized);
  const bn = m.batchnorm.state;
  const invStd = Float32Array.from(bn.runningVar.data, (v) => 1 / Math.sqrt(v + bn.eps));
  const mean = bn.runningMean.data.slice();
  const affine = { gamma: `${m.batchnorm.path}.weight`, beta: `${m.batchnorm.path}.bias` };
  const name = quantizeOp(
    ctx.g,
    batchNormOp(ctx.g, y, { mean, invStd, ...affine }),
    ctx.quant.activation(m.path, 'out'),
  );
  return { form: 'map', name, types: 1, dim: m.conv.cfg.outChannels, side: convSide(x.side, geom), quantized: true };
}

/** ConvPixelToCapsules / Conv3DCaps: one conv per input capsule type gives the votes
 *  [B, ci, P, co, no], quantized, routed at every position -> a map of co capsules of no. */
function convCapsRouting(ctx: OnnxLoweringContext, module: Module, input: OnnxValue): OnnxValue {
  const m = module instanceof ConvPixelToCapsules ? module : moduleAs(module, Conv3DCaps);
  const { g } = ctx;
  const c = m.cfg;
  const x = mapInput(module, input, c.ci * c.ni);
  const H = x.side;
  const OH = convSide(H, c);
  const P = OH * OH;
  const xi = g.reshape(x.name, [-1, c.ni, H, H]); // [B*ci, ni, H, W]
  // Conv3DCaps' weight is [co*no, 1, ni, k, k] in PyTorch: the same elements as OIHW
  const w = g.reshape(`${m.conv.path}.weight`, [c.co * c.no, c.ni, c.kernel, c.kernel]);
  const geom = { ...c, inChannels: c.ni, inSide: H, outChannels: c.co * c.no, relu: false };
  const u = convOp(g, xi, w, biasOf(m.conv), geom, x.quantized);
  const votes = g.transpose(g.reshape(u, [-1, c.ci, c.co, c.no, P]), [0, 1, 4, 2, 3]);
  const uq = quantizeOp(g, votes, ctx.quant.activation(m.path, 'votes'));
  const bias = g.reshape(`${m.path}.bias`, [c.co, c.no]);
  const routing = { I: c.ci, P, J: c.co, D: c.no, iterations: m.iterations, softmax: m.softmax };
  const v = routingOps(g, uq, bias, routing, ctx.quant.routing(m.path));
  const name = g.reshape(g.transpose(v, [0, 2, 3, 1]), [-1, c.co * c.no, OH, OH]);
  return { form: 'map', name, types: c.co, dim: c.no, side: OH, quantized: true };
}

/** Conv2DCaps: conv, quantized, squash over no (in double), quantized. */
function conv2dCaps(ctx: OnnxLoweringContext, module: Module, input: OnnxValue): OnnxValue {
  const l = moduleAs(module, Conv2DCaps);
  const { g } = ctx;
  const c = l.cfg;
  const x = mapInput(module, input, c.ci * c.ni);
  const OH = convSide(x.side, c);
  const geom = { ...c, inChannels: c.ci * c.ni, inSide: x.side, outChannels: c.co * c.no, relu: false };
  const s = convOp(g, x.name, `${l.conv.path}.weight`, biasOf(l.conv), geom, x.quantized);
  const sq = quantizeOp(g, s, ctx.quant.activation(l.path, 'conv'));
  const v = squashOp(g, g.reshape(sq, [-1, c.co, c.no, OH, OH]), 2, 'double');
  const vq = quantizeOp(g, v, ctx.quant.activation(l.path, 'squash'));
  return {
    form: 'map',
    name: g.reshape(vq, [-1, c.co * c.no, OH, OH]),
    types: c.co,
    dim: c.no,
    side: OH,
    quantized: true,
  };
}

/** DeepCapsBlock: x1 = l1(x); out = l3(l2(x1)) + l_skip(x1), each child by its own kind. */
function deepCapsBlock(ctx: OnnxLoweringContext, module: Module, input: OnnxValue): OnnxValue {
  const b = moduleAs(module, DeepCapsBlock);
  const child = (m: Module, x: OnnxValue) => lowerOnnx(ctx, m, x) as OnnxMap;
  const x1 = child(b.l1, input);
  const skip = child(b.l_skip, x1);
  const x3 = child(b.l3, child(b.l2, x1));
  return { ...x3, name: ctx.g.op('Add', [x3.name, skip.name]) };
}

/** Capsules: votes of a capsule list, quantized, routed over the output capsules -> [B, J, D]. */
function capsules(ctx: OnnxLoweringContext, module: Module, input: OnnxValue): OnnxValue {
  const l = moduleAs(module, Capsules);
  const { g } = ctx;
  if (input.form !== 'capsules' || input.count !== l.I || input.dim !== l.Din)
    throw new Error(
      `ONNX export: '${l.path}' (Capsules) reads a capsule list [${l.I}, ${l.Din}], got ${input.form === 'capsules' ? `[${input.count}, ${input.dim}]` : 'a map'}`,
    );
  const votes = capsuleVotesOp(g, input.name, `${l.path}.weight`, l.I, l.J, l.D);
  const u = quantizeOp(g, votes, ctx.quant.activation(l.path, 'votes'));
  const routing = { I: l.I, P: 1, J: l.J, D: l.D, iterations: l.iterations, softmax: 'j' as const };
  const v = routingOps(g, u, `${l.path}.bias`, routing, ctx.quant.routing(l.path));
  return { form: 'capsules', name: g.reshape(v, [-1, l.J, l.D]), count: l.J, dim: l.D };
}

/** The handler of each module kind. */
export const ONNX_LOWERINGS: ReadonlyMap<string, OnnxLowering> = new Map<string, OnnxLowering>([
  ['Conv2d_ReLU', conv2dRelu],
  ['Conv2d_BN_ReLU', conv2dBnRelu],
  ['ConvPixelToCapsules', convCapsRouting],
  ['Conv3DCaps', convCapsRouting],
  ['Conv2DCaps', conv2dCaps],
  ['DeepCapsBlock', deepCapsBlock],
  ['Capsules', capsules],
]);

/** `module` applied to `input`, by the handler of its kind. */
export function lowerOnnx(ctx: OnnxLoweringContext, module: Module, input: OnnxValue): OnnxValue {
  const handler = ONNX_LOWERINGS.get(module.kind);
  if (!handler) throw new Error(noLowering('ONNX export', module, ONNX_LOWERINGS));
  return handler(ctx, module, input);
}
