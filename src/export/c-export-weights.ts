// The weight header of the C export (qcaps_weights.h): every parameter of a quantized model as
// the integers q with value = q * 2^-frac (frac = the layer's weight bits), in the smallest of
// int8_t / int16_t / int32_t that holds its two's-complement width, in this tool's layout
// (conv weights [O, KH, KW, C], capsule weights [I, Din, J*D], capsule biases [J, D]), with
// macros for its size, fractional bits and total bits, and for every layer's bits.
import { formatOf } from '../quant/config.js';
import { integerContainer } from '../quant/integer-container.js';
import type { QuantizedModel } from '../quant/quantized-model.js';

/** One parameter as the C code sees it. */
export interface CTensor {
  /** state_dict name ('primary.conv3d.weight') */
  name: string;
  /** C array name ('qcaps_primary_conv3d_weight') */
  array: string;
  /** macro prefix ('QCAPS_PRIMARY_CONV3D_WEIGHT') */
  macro: string;
  ctype: 'int8_t' | 'int16_t' | 'int32_t';
  /** shape in this tool's layout */
  shape: number[];
  fracBits: number;
  totalBits: number;
  /** the integers, in this tool's layout */
  values: Int32Array;
  /** conv weights: the largest sum of |q| over one kernel row (kx, c) of one output channel,
   *  which bounds the C code's int32 partial sums */
  rowL1: number | null;
}

/** A name as a C identifier's part: every other character as '_'. */
export const cName = (name: string): string => name.replace(/[^A-Za-z0-9]/g, '_');

/** The parameters of `q` in this tool's layout, as integers (see CTensor). */
export function cTensors(q: QuantizedModel): CTensor[] {
  const layouts = new Map(q.model.parameters().map((p) => [p.name, p]));
  return q.integers.map((p) => {
    const param = layouts.get(p.name);
    if (!param) throw new Error(`C export: parameter '${p.name}' is not in the model`);
    if (p.totalBits > 32) throw new Error(`C export: ${p.name} needs ${p.totalBits} bits, more than int32_t holds`);
    const torch = Int32Array.from(p.values as ArrayLike<number>, Number);
    let values = torch;
    let rowL1: number | null = null;
    if (param.layout === 'ohwi') {
      // PyTorch [O, C, KH, KW] (Conv3DCaps [O, 1, C, KH, KW]) -> ours [O, KH, KW, C]
      const [O, KH, KW, C] = param.param.shape;
      values = new Int32Array(torch.length);
      rowL1 = 0;
      for (let o = 0; o < O; o++)
        for (let ky = 0; ky < KH; ky++) {
          let l1 = 0;
          for (let kx = 0; kx < KW; kx++)
            for (let c = 0; c < C; c++) {
              const v = torch[((o * C + c) * KH + ky) * KW + kx];
              values[((o * KH + ky) * KW + kx) * C + c] = v;
              l1 += Math.abs(v);
            }
          rowL1 = Math.max(rowL1, l1);
        }
    } else if (param.layout !== 'plain') {
      throw new Error(`C export: parameter '${p.name}' has layout '${param.layout}', which the C code does not read`);
    }
    const container = integerContainer(p.totalBits);
    if (container === 64) throw new Error(`C export: parameter '${p.name}' needs ${p.totalBits} bits, more than 32`);
    const ctype = `int${container}_t` as const;
    return {
      name: p.name,
      array: `qcaps_${cName(p.name)}`,
      macro: `QCAPS_${cName(p.name).toUpperCase()}`,
      ctype,
      shape: [...param.param.shape],
      fracBits: p.fracBits,
      totalBits: p.totalBits,
      values,
      rowL1,
    };
  });
}

/** A float buffer of the model (BatchNorm's running statistics), not quantized. */
export interface CFloatBuffer {
  name: string;
  array: string;
  macro: string;
  values: Float32Array;
}

/** The model's float buffers that inference reads (BatchNorm running_mean and running_var). */
export function cFloatBuffers(q: QuantizedModel): CFloatBuffer[] {
  return q.model
    .buffers()
    .filter((b) => b.value.dtype === 'float32')
    .map((b) => ({
      name: b.name,
      array: `qcaps_${cName(b.name)}`,
      macro: `QCAPS_${cName(b.name).toUpperCase()}`,
      values: b.value.data,
    }));
}

/** A float32 value as a C float literal that reads back exactly. */
export function floatLiteral(v: number): string {
  const s = String(Math.fround(v));
  if (!Number.isFinite(v)) throw new Error(`C export: ${v} is not a finite float`);
  return /[.e]/.test(s) ? `${s}f` : `${s}.0f`;
}

const METHOD_CODES: Record<string, number> = { truncation: 0, round_to_nearest: 1, logarithmic: 3 };

/** The text of qcaps_weights.h, in chunks (the arrays are large). */
export function* weightHeader(
  q: QuantizedModel,
  tensors: readonly CTensor[],
  floats: readonly CFloatBuffer[] = [],
): Generator<string> {
  const m = q.model;
  yield `/* qcaps_weights.h: the integer weights of a quantized ${m.kind} (written by qcapsnets export --format c).
 * value = integer * 2^-FRAC_BITS; TOTAL_BITS is the two's-complement width with the sign.
 * Layout: conv weights [O][KH][KW][C] (channels last), capsule weights [I][Din][J*D],
 * capsule biases [J][D]. Defines the arrays: include it from one .c file only. */
#ifndef QCAPS_WEIGHTS_H
#define QCAPS_WEIGHTS_H
#include <stdint.h>

#define QCAPS_MODEL "${m.kind}"
#define QCAPS_INPUT_H ${m.inputWh}
#define QCAPS_INPUT_W ${m.inputWh}
#define QCAPS_INPUT_C ${m.inputCh}
#define QCAPS_NUM_CLASSES ${m.numClasses}
#define QCAPS_CAPS_DIM ${m.capsDim}
/* rounding method of the activations: 0 truncation, 1 round to nearest, 3 logarithmic */
#define QCAPS_METHOD ${METHOD_CODES[q.method]} /* ${q.method} */
/* 1: the DAC 2020 code's arithmetic (rounding offset 2^-(N+1), log2 of |x| + 1e-8) */
#define QCAPS_COMPAT ${q.compat === 'dac2020' ? 1 : 0}

`;
  if (formatOf(q.bits) === 'dynamic') {
    yield* dynamicWidths(q);
  } else {
    for (const b of q.bits) {
      const name = cName(b.name).toUpperCase();
      yield `#define QCAPS_${name}_WEIGHT_BITS ${b.weight}\n`;
      yield `#define QCAPS_${name}_ACT_BITS ${b.act}\n`;
      if (b.routing !== null) yield `#define QCAPS_${name}_ROUTING_BITS ${b.routing}\n`;
    }
  }
  for (const t of tensors) {
    yield `\n/* ${t.name} [${t.shape.join('][')}] */\n`;
    yield `#define ${t.macro}_SIZE ${t.values.length}\n`;
    yield `#define ${t.macro}_FRAC_BITS ${t.fracBits}\n`;
    yield `#define ${t.macro}_TOTAL_BITS ${t.totalBits}\n`;
    if (t.rowL1 !== null) yield `#define ${t.macro}_ROW_L1 ${t.rowL1} /* max over (o, ky) of sum |q| */\n`;
    yield `static const ${t.ctype} ${t.array}[${t.values.length}] = {\n`;
    const perLine = 32;
    for (let i = 0; i < t.values.length; i += perLine) {
      const line = Array.from(t.values.subarray(i, Math.min(t.values.length, i + perLine))).join(',');
      yield `${line},\n`;
    }
    yield '};\n';
  }
  for (const f of floats) {
    yield `\n/* ${f.name} [${f.values.length}] (float32, not quantized) */\n`;
    yield `#define ${f.macro}_SIZE ${f.values.length}\n`;
    yield `static const float ${f.array}[${f.values.length}] = {\n${Array.from(f.values, floatLiteral).join(',')}\n};\n`;
  }
  yield '\n#endif\n';
}

/** The layers' counts under 'dynamic': total widths with the sign, named _WIDTH so that no one
 *  reads them as fractional bits (each tensor's fractional length is its <TENSOR>_FRAC_BITS; the
 *  activation and routing points' are the numbers in qcaps_model.c, from the calibration). */
function* dynamicWidths(q: QuantizedModel): Generator<string> {
  yield `/* number format 'dynamic': each layer's widths in bits, sign included (not fractional bits);
 * a weight tensor's fractional length is its _FRAC_BITS below, an activation or routing point's
 * comes from the calibration and is written where qcaps_model.c quantizes it */
#define QCAPS_NUMBER_FORMAT_DYNAMIC 1
`;
  for (const b of q.bits) {
    const name = cName(b.name).toUpperCase();
    yield `#define QCAPS_${name}_WEIGHT_WIDTH ${b.weight}\n`;
    yield `#define QCAPS_${name}_ACT_WIDTH ${b.act}\n`;
    if (b.routing !== null) yield `#define QCAPS_${name}_ROUTING_WIDTH ${b.routing}\n`;
  }
}
