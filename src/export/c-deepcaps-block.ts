// The C lowering of a DeepCapsBlock (c-lowerings.ts): x1 = l1(x); out = l3(l2(x1)) + l_skip(x1),
// its Conv2DCaps as exact convolutions of the integers (QCAPS_CONV_FIXED), quantized, squashed
// in double, quantized; a Conv3DCaps skip as one float convolution per input capsule type (as
// the native direct kernel), votes quantized, 3-D routing (softmax over positions and types).
import type { LayerDescription } from '../models/description.js';
import { Conv2DCaps, Conv3DCaps } from '../nn/conv-caps.js';
import { DeepCapsBlock } from '../nn/deepcaps-block.js';
import { convOutputSide } from '../tensor/conv-geometry.js';
import { cName } from './c-export-weights.js';
import {
  type CLayerInput,
  type CMap,
  type CProgram,
  type CValue,
  pow2,
  quantizedMapOf,
  singleInput,
} from './c-program.js';
import { moduleAs } from './lowering.js';

/** One block's C: its buffers are named `<stem>_<buffer>`, its convolutions `<stem>_<child>_conv`. */
class BlockWriter {
  readonly name: string;
  /** the block's output side, capsule types, dimension and values per map */
  readonly side: number;
  readonly types: number;
  readonly dim: number;
  readonly n: number;

  constructor(
    private readonly p: CProgram,
    private readonly layer: LayerDescription,
    readonly block: DeepCapsBlock,
    readonly x: CMap & { ints: string },
  ) {
    this.name = p.stem(layer.name);
    const c = block.l1.cfg;
    this.side = convOutputSide(x.side, c);
    this.types = c.co;
    this.dim = c.no;
    this.n = this.side * this.side * c.co * c.no;
  }

  /** The block's buffers: the conv outputs (reused), x1, x2, x3, the skip and the output, with
   *  the integers of those the next convolution reads. */
  declareBuffers(): void {
    const { p, name, n, side } = this;
    p.declare('float', `${name}_s`, n, `${name}: conv outputs s [${side}][${side}][${this.types}][${this.dim}]`);
    p.declare('float', `${name}_x1`, n, 'l1');
    p.declare('int32_t', `${name}_x1_int`, n, 'l1 as integers');
    p.declare('float', `${name}_x2`, n, 'l2');
    p.declare('int32_t', `${name}_x2_int`, n, 'l2 as integers');
    p.declare('float', `${name}_x3`, n, 'l3');
    p.declare('float', `${name}_skip`, n, 'l_skip');
    p.declare('float', `${name}_out`, n, `${name}: l3 + l_skip`);
    p.declare('int32_t', `${name}_out_int`, n, `${name}: as integers`);
  }

  /** A Conv2DCaps of the integers `x` (at xFrac, xSide x xSide x xC) into `out`: conv,
   *  quantized, squash in double, quantized. Returns its output quantizer's frac. */
  conv2dCaps(l: Conv2DCaps, x: string, xSide: number, xC: number, xFrac: number, out: string): number {
    const { p, name, n } = this;
    const c = l.cfg;
    const w = p.tensor(`${l.conv.path}.weight`);
    const fn = `${name}_${cName(l.path.slice(this.block.path.length + 1))}_conv`;
    p.macro(`QCAPS_CONV_FIXED(${fn}, ${w.array}, ${w.macro}_ROW_L1)`);
    const qc = p.quant.activation(l.path, 'conv');
    const qs = p.quant.activation(l.path, 'squash');
    const bias = p.copy(`${l.conv.path}.bias`);
    const scale = pow2(xFrac + w.fracBits);
    p.line(
      `  ${fn}(${x}, ${xSide}, ${xSide}, ${xC}, ${c.co * c.no}, ${c.kernel}, ${c.stride}, ${c.pad}, ${bias}, ${scale}, 0, ${name}_s, x16);`,
      ...p.quantize(`${name}_s`, n, qc, p.fracArg(l.path, qc.frac, 'ACT')),
      `  squash_rows_double(${name}_s, ${out}, ${n / c.no}, ${c.no});`,
      ...p.quantize(out, n, qs, p.fracArg(l.path, qs.frac, 'ACT')),
    );
    return qs.frac;
  }

  /** `<buffer>_int`: the integers of a block buffer at frac bits. */
  toIntegers(buffer: string, frac: number): void {
    this.p.line(`  to_integers(${this.name}_${buffer}, ${this.name}_${buffer}_int, ${this.n}, ${this.fracArg(frac)});`);
  }

  fracArg(frac: number): string {
    return this.p.fracArg(this.block.path, frac, 'ACT');
  }

  /** The Conv3DCaps skip on x1 (floats): one float conv per input capsule type gives the votes
   *  [ci][P][co][no], quantized, routed jointly over positions and types. Returns the frac of
   *  its output. */
  conv3dCaps(s: Conv3DCaps): number {
    const { p, name, side } = this;
    const { ci, ni, co, no } = s.cfg;
    const OH = convOutputSide(side, s.cfg);
    const P = OH * OH;
    const O = co * no;
    const w = p.copy(`${s.conv.path}.weight`);
    const b = p.copy(`${s.conv.path}.bias`);
    const routingBias = p.copy(`${s.path}.bias`);
    p.declare('float', `${name}_type_in`, side * side * ni, 'one input capsule type [P][no]');
    p.declare('float', `${name}_votes`, ci * P * O, `votes [${ci}][${P}][${co}][${no}]`);
    p.declare('float', `${name}_logits`, ci * P * co, 'routing logits');
    p.declare('float', `${name}_c`, ci * P * co, 'routing couplings');
    p.declare('float', `${name}_rs`, P * O, 'routing s');
    p.use('i', 'p');
    const vq = p.quant.activation(s.path, 'votes');
    const r = p.route(s.path);
    const geom = `${s.cfg.kernel}, ${s.cfg.stride}, ${s.cfg.pad}`;
    p.line(
      `  for (i = 0; i < ${ci}; i++) {`,
      `    for (p = 0; p < ${side * side}; p++) memcpy(${name}_type_in + (size_t)p * ${ni}, ${name}_x1 + ((size_t)p * ${ci} + i) * ${ni}, ${ni} * sizeof(float));`,
      `    conv_float_input(${name}_type_in, ${side}, ${side}, ${ni}, ${w}, ${O}, ${geom}, ${b}, 0, ${name}_votes + (size_t)i * ${P * O});`,
      `  }`,
      ...p.quantize(`${name}_votes`, ci * P * O, vq, p.fracArg(s.path, vq.frac, 'ACT')),
      `  ${r.fn}(${name}_votes, ${routingBias}, ${ci}, ${P}, ${co}, ${no}, ${s.iterations}, 1, ${r.act}, ${r.routing}, ${r.bounds}${name}_skip, ${name}_logits, ${name}_c, ${name}_rs);`,
    );
    return r.quant.act.frac;
  }
}

/** DeepCapsBlock: its buffers, l1, the skip, l2, l3, their sum; the output and its integers. */
export function deepCapsBlockC(p: CProgram, layer: LayerDescription, input: CLayerInput): CValue {
  const b = moduleAs(layer.module, DeepCapsBlock);
  const c1 = b.l1.cfg;
  const x = p.integers(quantizedMapOf(layer, singleInput(layer, input), c1.ci * c1.ni));
  const w = new BlockWriter(p, layer, b, x);
  const { name, n, side } = w;
  const O = w.types * w.dim;
  w.declareBuffers();
  p.feature('SQUASH_DOUBLE');
  p.use('k');
  p.scratch16(Math.max(x.side * x.side * c1.ci * c1.ni, n));
  p.line(`  /* ${layer.name}: x1 = l1(x) (stride ${c1.stride}); out = l3(l2(x1)) + l_skip(x1) */`);
  const f1 = w.conv2dCaps(b.l1, x.ints, x.side, c1.ci * c1.ni, x.frac, `${name}_x1`);
  w.toIntegers('x1', f1);
  const fSkip =
    b.l_skip instanceof Conv2DCaps
      ? w.conv2dCaps(b.l_skip, `${name}_x1_int`, side, O, f1, `${name}_skip`)
      : w.conv3dCaps(moduleAs(b.l_skip, Conv3DCaps));
  const f2 = w.conv2dCaps(b.l2, `${name}_x1_int`, side, O, f1, `${name}_x2`);
  w.toIntegers('x2', f2);
  const f3 = w.conv2dCaps(b.l3, `${name}_x2_int`, side, O, f2, `${name}_x3`);
  // x3 + skip: both on the grid of the finer of their fractional bits
  const frac = Math.max(f3, fSkip);
  p.line(`  for (k = 0; k < ${n}; k++) ${name}_out[k] = ${name}_x3[k] + ${name}_skip[k];`);
  w.toIntegers('out', frac);
  const fracArg = w.fracArg(frac);
  return {
    form: 'map',
    float: `${name}_out`,
    ints: `${name}_out_int`,
    frac,
    fracArg,
    side,
    types: w.types,
    dim: w.dim,
  };
}
