// The layers of the quantized forward (src/quant/quantized-forward.ts) as ONNX ops on NCHW
// maps and capsule tensors, in the same order of float32 operations as our kernels:
//   conv       sum (Conv without bias), + bias, ReLU               (src/tensor/ops/conv2d.ts)
//   batchnorm  h = float((x - mean) * invStd) in double, gamma h + beta   (native/elementwise.cc)
//   squash     n2 = sum s^2, v = s * (sqrt(n2) / (1 + n2)): float32 in routing (native/routing.cc),
//              float64 rounded to float32 in Conv2DCaps (native/elementwise.cc)
//   softmax    e = exp(l - max), c = e * float(1 / sum e), the sum in double
//   routing    unrolled: c, s = bias + sum_i c u, v = squash(s), logits += <u, v>, each quantized
// Convolutions of fixed-point values are exact sums (convOp), as ours are, so the order of ORT's
// sums does not matter there; the capsule votes' sums of fixed-point products are exact in
// float32 as long as they stay within 24 bits of their grid.
import { convOutputSide } from '../tensor/conv-geometry.js';
import type { RoutingGeom } from '../tensor/backend.js';
import { quantizeTs } from '../tensor/ts/quantize.js';
import type { RoutingQuantizers } from './export-quantizers.js';
import { DT, type OnnxGraph } from './onnx-graph.js';
import { quantizeOp } from './onnx-quantizers.js';

export interface ConvGeom {
  inChannels: number;
  /** input height = width */
  inSide: number;
  outChannels: number;
  kernel: number;
  stride: number;
  pad: number;
  relu: boolean;
}

/** The output side of a convolution over an n x n input. */
export const convSide = convOutputSide;

/** Conv + bias (+ ReLU) on NCHW; w is OIHW. A float input (the images) goes through ORT's Conv,
 *  as ours goes through a float convolution. A fixed-point input (`exact`: a quantizer's output,
 *  with fixed-point weights) is summed exactly, as our integer convolution does
 *  (native/fixedconv.cc), then rounded once to float32: its patches are gathered exactly by a
 *  depthwise Conv with one-hot kernels (x * 1 plus zeros), and multiplied by the weights in a
 *  float64 MatMul, where every product and partial sum is an integer multiple of the grid well
 *  inside 53 bits, so the order of the sums does not matter. ORT has no float64 Conv. */
export function convOp(g: OnnxGraph, x: string, w: string, bias: string | null, o: ConvGeom, exact: boolean): string {
  const p = o.pad;
  const attrs = { kernel_shape: [o.kernel, o.kernel], strides: [o.stride, o.stride], pads: [p, p, p, p] };
  let y: string;
  if (!exact) y = g.op('Conv', [x, w], attrs);
  else {
    const C = o.inChannels;
    const KK = o.kernel * o.kernel;
    // patches [B, C*KK, OH, OW]: output channel c*KK + t copies input channel c at tap t; the
    // one-hot kernels [C*KK, 1, k, k] are built in the graph (an identity of zeros tiled C times)
    const eye = g.op('EyeLike', [g.op('ConstantOfShape', [g.int64s([KK, KK])])]);
    const pick = g.reshape(g.op('Tile', [g.reshape(eye, [1, KK, o.kernel, o.kernel]), g.int64s([C, 1, 1, 1])]), [
      C * KK,
      1,
      o.kernel,
      o.kernel,
    ]);
    const patches = g.op('Conv', [x, pick], { ...attrs, group: C });
    const cols = g.op('Cast', [g.reshape(patches, [0, C * KK, -1])], { to: DT.double }); // [B, C*KK, P]
    const wd = g.op('Cast', [g.reshape(w, [o.outChannels, C * KK])], { to: DT.double });
    const sums = g.op('Cast', [g.op('MatMul', [wd, cols])], { to: DT.float }); // [B, O, P]
    const OH = convSide(o.inSide, o);
    y = g.reshape(sums, [-1, o.outChannels, OH, OH]);
  }
  if (bias) y = g.op('Add', [y, g.reshape(bias, [1, o.outChannels, 1, 1])]);
  return o.relu ? g.op('Relu', [y]) : y;
}

/** Eval-mode BatchNorm2d on NCHW as our kernel: double (x - mean) * invStd rounded to float,
 *  then gamma h + beta in float32. */
export function batchNormOp(
  g: OnnxGraph,
  x: string,
  p: { mean: Float32Array; invStd: Float32Array; gamma: string; beta: string },
): string {
  const C = p.mean.length;
  const xd = g.op('Cast', [x], { to: DT.double });
  const centered = g.op('Sub', [xd, g.doubles(p.mean, [1, C, 1, 1], 'bn_mean')]);
  const h = g.op('Cast', [g.op('Mul', [centered, g.doubles(p.invStd, [1, C, 1, 1], 'bn_inv_std')])], {
    to: DT.float,
  });
  const scaled = g.op('Mul', [h, g.reshape(p.gamma, [1, C, 1, 1])]);
  return g.op('Add', [scaled, g.reshape(p.beta, [1, C, 1, 1])]);
}

/** squash along `axis`: s * (sqrt(|s|^2) / (1 + |s|^2)), in float32 as the routing kernel's
 *  (native/routing.cc), or in float64 rounded once to float32 as DeepCaps' Conv2DCaps squash
 *  (native/elementwise.cc). */
export function squashOp(g: OnnxGraph, s: string, axis: number, precision: 'float' | 'double' = 'float'): string {
  const x = precision === 'double' ? g.op('Cast', [s], { to: DT.double }) : s;
  const n2 = g.reduce('ReduceSum', g.op('Mul', [x, x]), [axis], true);
  const f = g.op('Div', [g.op('Sqrt', [n2]), g.op('Add', [g.scalar(1, precision), n2])]);
  const v = g.op('Mul', [x, f]);
  return precision === 'double' ? g.op('Cast', [v], { to: DT.float }) : v;
}

/** softmax along the last axis as our routing kernel: expf(l - max), the sum of the float32
 *  exps in double, c = e * (float)(1 / sum). exp is taken in double and rounded to float32
 *  (glibc's expf, which ours reproduces, is within 0.502 ulp: the same float but in rare ties). */
export function softmaxOp(g: OnnxGraph, logits: string): string {
  const shifted = g.op('Sub', [logits, g.reduce('ReduceMax', logits, [-1], true)]);
  const e = g.op('Cast', [g.op('Exp', [g.op('Cast', [shifted], { to: DT.double })])], { to: DT.float });
  const sum = g.reduce('ReduceSum', g.op('Cast', [e], { to: DT.double }), [-1], true);
  const inv = g.op('Cast', [g.op('Div', [g.scalar(1, 'double'), sum])], { to: DT.float });
  return g.op('Mul', [e, inv]);
}

/** Dynamic routing unrolled (src/tensor/ts/routing.ts): votes u [B,I,P,J,D], bias [J,D] ->
 *  v [B,P,J,D]. The first iteration's couplings are the constant quantize(1 / group). */
export function routingOps(
  g: OnnxGraph,
  u: string,
  bias: string,
  geom: Omit<RoutingGeom, 'B'>,
  q: RoutingQuantizers,
): string {
  const { I, P, J, D, iterations } = geom;
  const group = geom.softmax === 'j' ? J : P * J;
  const c0 = Float32Array.of(1 / group);
  quantizeTs(c0, c0, 1, { ...q.act, seed: 0, stream: 0 });
  let logits: string | null = null; // [B,I,P,J]
  let v = '';
  for (let t = 0; t < iterations; t++) {
    let c: string; // [B,I,P,J,1]
    if (t === 0) c = g.scalar(c0[0]);
    else {
      const flat = geom.softmax === 'j' ? logits! : g.reshape(logits!, [-1, I, P * J]);
      const soft = quantizeOp(g, softmaxOp(g, flat), q.act);
      c = g.reshape(soft, [-1, I, P, J, 1]);
    }
    const s0 = g.reduce('ReduceSum', g.op('Mul', [c, u]), [1], false); // [B,P,J,D]
    const s = quantizeOp(g, g.op('Add', [s0, bias]), q.routing);
    v = quantizeOp(g, squashOp(g, s, -1), q.act);
    if (t === iterations - 1) break;
    const vb = g.reshape(v, [-1, 1, P, J, D]);
    const dot = g.reduce('ReduceSum', g.op('Mul', [u, vb]), [-1], false); // [B,I,P,J]
    logits = quantizeOp(g, logits === null ? dot : g.op('Add', [logits, dot]), q.routing);
  }
  return v;
}

/** Capsule map NCHW [B, T*D, H, W] (channel t*D + d) -> capsule list [B, T*H*W, D] in the
 *  order (type, y, x). */
export function flattenCapsulesOp(g: OnnxGraph, map: string, T: number, D: number, H: number, W: number): string {
  const t = g.transpose(g.reshape(map, [-1, T, D, H, W]), [0, 1, 3, 4, 2]);
  return g.reshape(t, [-1, T * H * W, D]);
}

/** Votes of a fully connected capsule layer: x [B,I,Din], W [I,Din,J*D] ->
 *  u [B,I,1,J,D] with u[b,i] = x[b,i] W[i] (a batched MatMul over i). */
export function capsuleVotesOp(g: OnnxGraph, x: string, w: string, I: number, J: number, D: number): string {
  const xi = g.transpose(x, [1, 0, 2]); // [I,B,Din]
  const u = g.transpose(g.op('MatMul', [xi, w]), [1, 0, 2]); // [B,I,J*D]
  return g.reshape(u, [-1, I, 1, J, D]);
}
