// The C lowering of each layer kind, as Brevitas' export handlers: one handler per module kind,
// looked up for every layer of a model's description, whatever the model. A handler writes its
// layer's part of qcaps_model.c into the CProgram (c-program.ts), named after the layer, from
// its module's configuration, its parameters' integers (QuantizedModel.integers) and its
// quantizers (the QuantizedModel's hooks), and returns the value it computes. This file: the
// table and the convolutional layers; c-deepcaps-block.ts and c-capsules.ts the others.
import type { LayerDescription } from '../models/description.js';
import { Conv2dBnRelu } from '../nn/conv-bn-relu.js';
import { ConvPixelToCapsules } from '../nn/conv-caps.js';
import { type Conv2d, Conv2dRelu } from '../nn/conv2d.js';
import type { Module } from '../nn/module.js';
import { convOutputSide } from '../tensor/conv-geometry.js';
import { capsulesC } from './c-capsules.js';
import { deepCapsBlockC } from './c-deepcaps-block.js';
import {
  type CImage,
  type CLayerInput,
  type CLowering,
  type CMap,
  type CProgram,
  type CValue,
  mapOf,
  quantizedMapOf,
  pow2,
  singleInput,
} from './c-program.js';
import { moduleAs, noLowering } from './lowering.js';

/** ", stride s" and ", pad p" where they are not 1 and 0 (the comments' geometry). */
const geometryText = (c: { stride: number; pad: number }) =>
  `${c.stride !== 1 ? `, stride ${c.stride}` : ''}${c.pad !== 0 ? `, pad ${c.pad}` : ''}`;

/** Conv2d c (+ bias, ReLU) of `x` into `out`: on the float image in the one float order, on a
 *  map as the exact sums of its integers. Returns the output side. */
function convOnInput(p: CProgram, stem: string, c: Conv2d, x: CMap | CImage, out: string): number {
  const { inChannels: C, outChannels: O, kernel: k } = c.cfg;
  const geom = `${k}, ${c.stride}, ${c.pad}`;
  if (x.form === 'image') {
    const w = p.copy(`${c.path}.weight`);
    const b = c.bias ? p.copy(`${c.path}.bias`) : '(const float *)0';
    p.line(`  conv_float_input(image, ${x.side}, ${x.side}, ${C}, ${w}, ${O}, ${geom}, ${b}, 1, ${out});`);
  } else {
    const m = p.integers(x);
    const w = p.tensor(`${c.path}.weight`);
    p.macro(`QCAPS_CONV_FIXED(${stem}_conv, ${w.array}, ${w.macro}_ROW_L1)`);
    const x16 = p.int16Copy(m.ints, m.side * m.side * C);
    const b = c.bias ? p.copy(`${c.path}.bias`) : '(const float *)0';
    const scale = pow2(m.frac + w.fracBits);
    p.line(`  ${stem}_conv(${m.ints}, ${m.side}, ${m.side}, ${C}, ${O}, ${geom}, ${b}, ${scale}, 1, ${out}, ${x16});`);
  }
  return convOutputSide(x.side, { kernel: k, stride: c.stride, pad: c.pad });
}

/** Conv2d_ReLU: conv + bias + ReLU, quantized. */
function conv2dRelu(p: CProgram, layer: LayerDescription, input: CLayerInput): CValue {
  const c = moduleAs(layer.module, Conv2dRelu).conv;
  const x = mapOf(layer, singleInput(layer, input), c.cfg.inChannels);
  const s = p.stem(layer.name);
  const q = p.quant.activation(c.path, 'out');
  const arg = p.fracArg(c.path, q.frac, 'ACT');
  const { inChannels: C, outChannels: O, kernel: k } = c.cfg;
  const side = convOutputSide(x.side, { kernel: k, stride: c.stride, pad: c.pad });
  const n = side * side * O;
  p.static(`static float ${s}_out[${n}];  /* ${layer.name}: [${side}][${side}][${O}] */`);
  p.static(`static int32_t ${s}_int[${n}]; /* ... as integers at ${q.frac} fractional bits */`);
  const on = x.form === 'image' ? 'on the float image' : 'of the integers';
  p.line(
    `  /* ${layer.name}: Conv2d(${C} -> ${O}, ${k}x${k}${geometryText(c)}) + ReLU ${on}, quantized (${q.frac} bits) */`,
  );
  convOnInput(p, s, c, x, `${s}_out`);
  p.line(...p.quantize(`${s}_out`, n, q, arg), `  to_integers(${s}_out, ${s}_int, ${n}, ${arg});`);
  return { form: 'map', float: `${s}_out`, ints: `${s}_int`, frac: q.frac, fracArg: arg, side, types: 1, dim: O };
}

/** Conv2d_BN_ReLU: conv + bias + ReLU, BatchNorm with the running statistics, quantized. */
function conv2dBnRelu(p: CProgram, layer: LayerDescription, input: CLayerInput): CValue {
  const m = moduleAs(layer.module, Conv2dBnRelu);
  const c = m.conv;
  const x = mapOf(layer, singleInput(layer, input), c.cfg.inChannels);
  const s = p.stem(layer.name);
  const q = p.quant.activation(m.path, 'out');
  const arg = p.fracArg(m.path, q.frac, 'ACT');
  const { inChannels: C, outChannels: O, kernel: k } = c.cfg;
  const side = convOutputSide(x.side, { kernel: k, stride: c.stride, pad: c.pad });
  const n = side * side * O;
  p.feature('BATCHNORM');
  p.declare('float', `${s}_out`, n, `${layer.name}: [${side}][${side}][${O}]`);
  p.declare('int32_t', `${s}_int`, n, `... as integers at ${q.frac} fractional bits`);
  const bn = m.batchnorm;
  p.line(
    `  /* ${layer.name}: Conv2d(${C} -> ${O}, ${k}x${k}${geometryText(c)}), ReLU, BatchNorm (running statistics), quantized */`,
  );
  convOnInput(p, s, c, x, `${s}_out`);
  const [mean, variance] = ['running_mean', 'running_var'].map((b) => p.buffer(`${bn.path}.${b}`).array);
  const [gamma, beta] = ['weight', 'bias'].map((b) => p.copy(`${bn.path}.${b}`));
  p.line(
    `  batchnorm_eval(${s}_out, ${side * side}, ${O}, ${mean}, ${variance}, ${bn.state.eps}, ${gamma}, ${beta});`,
    ...p.quantize(`${s}_out`, n, q, arg),
    `  to_integers(${s}_out, ${s}_int, ${n}, ${arg});`,
  );
  return { form: 'map', float: `${s}_out`, ints: `${s}_int`, frac: q.frac, fracArg: arg, side, types: 1, dim: O };
}

/** ConvPixelToCapsules of one input capsule type: votes = the conv of the integers, quantized,
 *  routed at every position over the output capsule types. */
function convPixelToCapsules(p: CProgram, layer: LayerDescription, input: CLayerInput): CValue {
  const m = moduleAs(layer.module, ConvPixelToCapsules);
  const { ci, ni, co, no, kernel: k, stride, pad } = m.cfg;
  if (ci !== 1)
    throw new Error(
      `C export: layer '${layer.name}' (ConvPixelToCapsules) has ${ci} input capsule types; its C reads one`,
    );
  const x = p.integers(quantizedMapOf(layer, singleInput(layer, input), ni));
  const s = p.stem(layer.name);
  const OH = convOutputSide(x.side, m.cfg);
  const P = OH * OH;
  const O = co * no;
  const w = p.tensor(`${m.conv.path}.weight`);
  p.macro(`QCAPS_CONV_FIXED(${s}_conv, ${w.array}, ${w.macro}_ROW_L1)`);
  const x16 = p.int16Copy(x.ints, x.side * x.side * ni);
  const vq = p.quant.activation(m.path, 'votes');
  const r = p.route(m.path);
  p.static(`static float ${s}_votes[${P * O}];   /* [${P}][${co}][${no}]: P positions of one input type */`);
  p.static(`static float ${s}_v[${P * O}];       /* [${P}][${co}][${no}] */`);
  p.static(`static float ${s}_logits[${P * co}], ${s}_c[${P * co}], ${s}_s[${P * O}];`);
  const iterations = m.iterations === 1 ? 'one routing iteration' : `${m.iterations} routing iterations`;
  const bias = m.conv.bias ? p.copy(`${m.conv.path}.bias`) : '(const float *)0';
  p.line(
    `  /* ${layer.name}: votes = Conv2d(${ni} -> ${co}*${no}, ${k}x${k}${geometryText(m.cfg)}) of the integers, quantized (${vq.frac}`,
    `   * bits), then ${iterations} over the ${co} capsule types at each of the ${P} positions */`,
    `  ${s}_conv(${x.ints}, ${x.side}, ${x.side}, ${ni}, ${O}, ${k}, ${stride}, ${pad}, ${bias},`,
    `               ${pow2(x.frac + w.fracBits)}, 0, ${s}_votes, ${x16});`,
    ...p.quantize(`${s}_votes`, P * O, vq, p.fracArg(m.path, vq.frac, 'ACT')),
    `  ${r.fn}(${s}_votes, ${p.copy(`${m.path}.bias`)}, 1, ${P}, ${co}, ${no}, ${m.iterations}, 0, ${r.act},`,
    `        ${r.routing}, ${r.bounds}${s}_v, ${s}_logits, ${s}_c, ${s}_s);`,
  );
  return {
    form: 'map',
    float: `${s}_v`,
    ints: null,
    frac: r.quant.act.frac,
    fracArg: r.act,
    side: OH,
    types: co,
    dim: no,
  };
}

/** The handler of each module kind. */
export const C_LOWERINGS: ReadonlyMap<string, CLowering> = new Map<string, CLowering>([
  ['Conv2d_ReLU', conv2dRelu],
  ['Conv2d_BN_ReLU', conv2dBnRelu],
  ['ConvPixelToCapsules', convPixelToCapsules],
  ['DeepCapsBlock', deepCapsBlockC],
  ['Capsules', capsulesC],
]);

/** Checks, before any work, that every layer's kind has a C lowering. */
export function checkCLowerings(layers: readonly { module: Module; kind: string }[]): void {
  for (const l of layers) if (!C_LOWERINGS.has(l.kind)) throw new Error(noLowering('C export', l.module, C_LOWERINGS));
}

/** `layer` on its input, by the handler of its kind. */
export function lowerC(p: CProgram, layer: LayerDescription, input: CLayerInput): CValue {
  const handler = C_LOWERINGS.get(layer.kind);
  if (!handler) throw new Error(noLowering('C export', layer.module, C_LOWERINGS));
  return handler(p, layer, input);
}
