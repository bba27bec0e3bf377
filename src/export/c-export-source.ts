// The model-specific C of the export: qcaps_model.c (the runtime of c-export-runtime.ts, then
// one function per layer and qcaps_infer), qcaps_model.h, main.c and the Makefile.
// The inference follows the quantized forward pass (SPEC 4) of src/quant/quantized-forward.ts:
// every activation quantized with its layer's activation bits, routing's s and logits with
// its routing bits, convolutions of fixed-point values as exact integer sums.
import { convOutputSide } from '../tensor/conv-geometry.js';
import type { DeepCaps } from '../models/deepcaps.js';
import { shallowPrimaryGrid, type ShallowCapsNet } from '../models/shallow-capsnet.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import { C_MAIN } from './c-export-main.js';
import { C_RUNTIME } from './c-export-runtime.js';
import type { CFloatBuffer, CTensor } from './c-export-weights.js';

export const BUILD_COMMAND = 'cc -std=c99 -O2 -o qcaps main.c qcaps_model.c -lm';

function tensorOf(tensors: readonly CTensor[], name: string): CTensor {
  const t = tensors.find((x) => x.name === name);
  if (!t) throw new Error(`C export: the quantized model has no parameter '${name}'`);
  return t;
}

/** 2^-n as a C float literal (exact). */
const pow2 = (n: number) => `0x1p${-n}f`;

/** A static float copy of an integer tensor, filled once by load_floats. */
function floatCopy(t: CTensor): { decl: string; load: string; name: string } {
  const name = `${t.array}_f`;
  return {
    name,
    decl: `static float ${name}[${t.macro}_SIZE];`,
    load: `  for (i = 0; i < ${t.macro}_SIZE; i++) ${name}[i] = (float)${t.array}[i] * ${pow2(t.fracBits)};`,
  };
}

function shallowSource(q: QuantizedModel, tensors: readonly CTensor[]): string {
  const m = q.model as ShallowCapsNet;
  const H = m.inputWh;
  const C = m.inputCh;
  const H1 = convOutputSide(H, m.description.layer('conv').conv!);
  const G = shallowPrimaryGrid(H);
  const P = G * G;
  const I = m.numPrimaryCaps;
  const K = m.numClasses;
  const D = m.capsDim;
  const wPrimary = q.bitsOf('primary').weight;
  const [aConv, aPrimary, aDigit] = q.bits.map((b) => b.act);
  const convW = floatCopy(tensorOf(tensors, 'conv.conv.weight'));
  const convB = floatCopy(tensorOf(tensors, 'conv.conv.bias'));
  const primW = tensorOf(tensors, 'primary.conv3d.weight');
  const primB = floatCopy(tensorOf(tensors, 'primary.bias'));
  const digW = tensorOf(tensors, 'digit.weight');
  const digB = floatCopy(tensorOf(tensors, 'digit.bias'));
  return `
QCAPS_CONV_FIXED(primary_conv, ${primW.array}, ${primW.macro}_ROW_L1)
QCAPS_CAPSULE_VOTES(digit_votes, ${digW.array})

/* the parameters read as floats (exact: integers times a power of two) */
${[convW, convB, primB, digB].map((f) => f.decl).join('\n')}

static void load_floats(void) {
  static int loaded = 0;
  size_t i;
  if (loaded) return;
${[convW, convB, primB, digB].map((f) => f.load).join('\n')}
  loaded = 1;
}

/* activations, one image at a time (static: qcaps_infer is not reentrant) */
static float conv_out[${H1 * H1 * 256}];  /* conv: [${H1}][${H1}][256] */
static int32_t conv_int[${H1 * H1 * 256}]; /* ... as integers at ${aConv} fractional bits */
static int16_t conv_int16[${H1 * H1 * 256}];
static float primary_votes[${P * 256}];   /* [${P}][32][8]: P positions of one input type */
static float primary_v[${P * 256}];       /* [${P}][32][8] */
static float primary_logits[${P * 32}], primary_c[${P * 32}], primary_s[${P * 256}];
static float digit_in[${I * 8}];          /* [${I}][8], capsules in the order (type, y, x) */
static float digit_votes_buf[${I * K * D}]; /* [${I}][${K}][${D}] */
static float digit_logits[${I * K}], digit_c[${I * K}], digit_s[${K * D}];
static float digit_v[${K * D}];

int qcaps_infer(const float *image, float *class_lengths) {
  int p, j, d;
  load_floats();
  /* conv: Conv2d(${C} -> 256, 9x9) + ReLU on the float image, quantized (${aConv} bits) */
  conv_float_input(image, ${H}, ${H}, ${C}, ${convW.name}, 256, 9, 1, 0, ${convB.name}, 1, conv_out);
  quantize_floats(conv_out, ${H1 * H1 * 256}, QCAPS_CONV_ACT_BITS);
  to_integers(conv_out, conv_int, ${H1 * H1 * 256}, QCAPS_CONV_ACT_BITS);
  /* primary: votes = Conv2d(256 -> 32*8, 9x9, stride 2) of the integers, quantized (${aPrimary}
   * bits), then one routing iteration over the 32 capsule types at each of the ${P} positions */
  primary_conv(conv_int, ${H1}, ${H1}, 256, 256, 9, 2, 0, (const float *)0,
               ${pow2(aConv + wPrimary)}, 0, primary_votes, conv_int16);
  quantize_floats(primary_votes, ${P * 256}, QCAPS_PRIMARY_ACT_BITS);
  route(primary_votes, ${primB.name}, 1, ${P}, 32, 8, ${m.primary.iterations}, 0, QCAPS_PRIMARY_ACT_BITS,
        QCAPS_PRIMARY_ROUTING_BITS, primary_v, primary_logits, primary_c, primary_s);
  /* [P][32][8] -> [32 * P][8]: the capsule list in the order (type, y, x) */
  for (p = 0; p < ${P}; p++)
    for (j = 0; j < 32; j++)
      for (d = 0; d < 8; d++) digit_in[((size_t)j * ${P} + p) * 8 + d] = primary_v[((size_t)p * 32 + j) * 8 + d];
  /* digit: votes W_i x_i quantized (${aDigit} bits), ${m.digit.iterations} routing iterations */
  digit_votes(digit_in, ${I}, 8, ${K * D}, ${pow2(digW.fracBits)}, digit_votes_buf);
  quantize_floats(digit_votes_buf, ${I * K * D}, QCAPS_DIGIT_ACT_BITS);
  route(digit_votes_buf, ${digB.name}, ${I}, 1, ${K}, ${D}, ${m.digit.iterations}, 0, QCAPS_DIGIT_ACT_BITS,
        QCAPS_DIGIT_ROUTING_BITS, digit_v, digit_logits, digit_c, digit_s);
  return class_lengths_of(digit_v, ${K}, ${D}, class_lengths);
}
`;
}

/** Side of a stride-s, pad-1, 3x3 convolution's output. */
const convSide = (n: number, stride: number) => convOutputSide(n, { kernel: 3, stride, pad: 1 });

function deepCapsSource(q: QuantizedModel, tensors: readonly CTensor[], floats: readonly CFloatBuffer[]): string {
  const m = q.model as DeepCaps;
  const H = m.inputWh;
  const Cin = m.inputCh;
  const K = m.numClasses;
  const D = m.capsDim;
  const act = (name: string) => q.bitsOf(name).act;
  const wb = (name: string) => q.bitsOf(name).weight;
  const t = (name: string) => tensorOf(tensors, name);
  const buffer = (name: string) => {
    const f = floats.find((x) => x.name === name);
    if (!f) throw new Error(`C export: the model has no buffer '${name}'`);
    return f;
  };
  const copies: ReturnType<typeof floatCopy>[] = [];
  const copy = (name: string) => {
    const f = floatCopy(t(name));
    if (!copies.some((c) => c.name === f.name)) copies.push(f);
    return f.name;
  };
  const macros: string[] = []; // conv kernels
  const statics: string[] = []; // buffers
  const body: string[] = [];
  let x16 = 0;
  const buf = (type: string, name: string, n: number, what: string) => {
    statics.push(`static ${type} ${name}[${n}]; /* ${what} */`);
    return name;
  };
  // conv1: Conv2d(Cin -> 128, 3x3, pad 1) + ReLU on the float image, BatchNorm, quantized
  const c1 = `${H * H * 128}`;
  buf('float', 'conv1_out', H * H * 128, `conv1: [${H}][${H}][128]`);
  buf('int32_t', 'conv1_int', H * H * 128, `... as integers at ${act('conv1')} fractional bits`);
  body.push(
    `  /* conv1: Conv2d(${Cin} -> 128, 3x3, pad 1), ReLU, BatchNorm (running statistics), quantized */`,
    `  conv_float_input(image, ${H}, ${H}, ${Cin}, ${copy('conv1.conv.weight')}, 128, 3, 1, 1, ${copy('conv1.conv.bias')}, 1, conv1_out);`,
    `  batchnorm_eval(conv1_out, ${H * H}, 128, ${buffer('conv1.batchnorm.running_mean').array}, ${buffer('conv1.batchnorm.running_var').array}, ${m.conv1.batchnorm.state.eps}, ${copy('conv1.batchnorm.weight')}, ${copy('conv1.batchnorm.bias')});`,
    `  quantize_floats(conv1_out, ${c1}, QCAPS_CONV1_ACT_BITS);`,
    `  to_integers(conv1_out, conv1_int, ${c1}, QCAPS_CONV1_ACT_BITS);`,
  );
  let side = H;
  let input = 'conv1_int';
  let inFrac = act('conv1');
  let inC = 128;
  const blockOut: { name: string; side: number }[] = [];
  for (const name of ['block1', 'block2', 'block3', 'block4'] as const) {
    const block = m[name];
    const { co, no, stride } = block.l1.cfg;
    const O = co * no;
    const s1 = convSide(side, stride);
    const n = s1 * s1 * O;
    const a = `QCAPS_${name.toUpperCase()}_ACT_BITS`;
    const scaleIn = pow2(inFrac + wb(name));
    const scaleOwn = pow2(act(name) + wb(name));
    // a Conv2DCaps: conv of the integers, quantized, squash (double sums), quantized
    const conv2dCaps = (path: string, x: string, xSide: string, xC: number, st: number, scale: string, out: string) => {
      const w = t(`${path}.conv.weight`);
      const fn = `${path.replace('.', '_')}_conv`;
      macros.push(`QCAPS_CONV_FIXED(${fn}, ${w.array}, ${w.macro}_ROW_L1)`);
      body.push(
        `  ${fn}(${x}, ${xSide}, ${xSide}, ${xC}, ${O}, 3, ${st}, 1, ${copy(`${path}.conv.bias`)}, ${scale}, 0, ${name}_s, x16);`,
        `  quantize_floats(${name}_s, ${n}, ${a});`,
        `  squash_rows_double(${name}_s, ${out}, ${n / no}, ${no});`,
        `  quantize_floats(${out}, ${n}, ${a});`,
      );
    };
    buf('float', `${name}_s`, n, `${name}: conv outputs s [${s1}][${s1}][${co}][${no}]`);
    buf('float', `${name}_x1`, n, 'l1');
    buf('int32_t', `${name}_x1_int`, n, 'l1 as integers');
    buf('float', `${name}_x2`, n, 'l2');
    buf('int32_t', `${name}_x2_int`, n, 'l2 as integers');
    buf('float', `${name}_x3`, n, 'l3');
    buf('float', `${name}_skip`, n, 'l_skip');
    buf('float', `${name}_out`, n, `${name}: l3 + l_skip`);
    buf('int32_t', `${name}_out_int`, n, `${name}: as integers`);
    x16 = Math.max(x16, side * side * inC, n);
    body.push(`  /* ${name}: x1 = l1(x) (stride ${stride}); out = l3(l2(x1)) + l_skip(x1) */`);
    conv2dCaps(`${name}.l1`, input, `${side}`, inC, stride, scaleIn, `${name}_x1`);
    body.push(`  to_integers(${name}_x1, ${name}_x1_int, ${n}, ${a});`);
    if (block.routingIterations === null) {
      conv2dCaps(`${name}.l_skip`, `${name}_x1_int`, `${s1}`, O, 1, scaleOwn, `${name}_skip`);
    } else {
      // Conv3DCaps: one Conv2d(no -> co*no) per input capsule type (float, as the native
      // direct kernel), votes [ci][P][co][no] quantized, routing with the softmax over P*co
      const ci = co;
      const P = s1 * s1;
      const w = copy(`${name}.l_skip.conv.weight`);
      const b = copy(`${name}.l_skip.conv.bias`);
      const routingBias = copy(`${name}.l_skip.bias`);
      buf('float', `${name}_type_in`, P * no, 'one input capsule type [P][no]');
      buf('float', `${name}_votes`, ci * P * O, `votes [${ci}][${P}][${co}][${no}]`);
      buf('float', `${name}_logits`, ci * P * co, 'routing logits');
      buf('float', `${name}_c`, ci * P * co, 'routing couplings');
      buf('float', `${name}_rs`, P * O, 'routing s');
      const upper = name.toUpperCase();
      body.push(
        `  for (i = 0; i < ${ci}; i++) {`,
        `    for (p = 0; p < ${P}; p++) memcpy(${name}_type_in + (size_t)p * ${no}, ${name}_x1 + ((size_t)p * ${ci} + i) * ${no}, ${no} * sizeof(float));`,
        `    conv_float_input(${name}_type_in, ${s1}, ${s1}, ${no}, ${w}, ${O}, 3, 1, 1, ${b}, 0, ${name}_votes + (size_t)i * ${P * O});`,
        `  }`,
        `  quantize_floats(${name}_votes, ${ci * P * O}, ${a});`,
        `  route(${name}_votes, ${routingBias}, ${ci}, ${P}, ${co}, ${no}, ${block.routingIterations}, 1, ${a}, QCAPS_${upper}_ROUTING_BITS, ${name}_skip, ${name}_logits, ${name}_c, ${name}_rs);`,
      );
    }
    conv2dCaps(`${name}.l2`, `${name}_x1_int`, `${s1}`, O, 1, scaleOwn, `${name}_x2`);
    body.push(`  to_integers(${name}_x2, ${name}_x2_int, ${n}, ${a});`);
    conv2dCaps(`${name}.l3`, `${name}_x2_int`, `${s1}`, O, 1, scaleOwn, `${name}_x3`);
    body.push(
      `  for (k = 0; k < ${n}; k++) ${name}_out[k] = ${name}_x3[k] + ${name}_skip[k];`,
      `  to_integers(${name}_out, ${name}_out_int, ${n}, ${a});`,
    );
    blockOut.push({ name, side: s1 });
    side = s1;
    input = `${name}_out_int`;
    inFrac = act(name);
    inC = O;
  }
  // capsLayer: block3's and block4's capsules in the order (type, y, x), block3 first
  const [b3, b4] = blockOut.slice(2);
  const I = m.numFlatCaps;
  const wCaps = t('capsLayer.weight');
  buf('float', 'caps_in', I * 8, `[${I}][8]`);
  buf('float', 'caps_votes', I * K * D, `[${I}][${K}][${D}]`);
  buf('float', 'caps_logits', I * K, 'routing logits');
  buf('float', 'caps_c', I * K, 'routing couplings');
  buf('float', 'caps_s', K * D, 'routing s');
  buf('float', 'caps_v', K * D, 'class capsules');
  macros.push(`QCAPS_CAPSULE_VOTES(caps_layer_votes, ${wCaps.array})`);
  let offset = 0;
  for (const b of [b3, b4]) {
    const P = b.side * b.side;
    body.push(
      `  for (p = 0; p < ${P}; p++)`,
      `    for (j = 0; j < 32; j++)`,
      `      for (d = 0; d < 8; d++) caps_in[(${offset} + (size_t)j * ${P} + p) * 8 + d] = ${b.name}_out[((size_t)p * 32 + j) * 8 + d];`,
    );
    offset += 32 * P;
  }
  body.push(
    `  /* capsLayer: votes quantized, ${m.capsLayer.iterations} routing iterations */`,
    `  caps_layer_votes(caps_in, ${I}, 8, ${K * D}, ${pow2(wCaps.fracBits)}, caps_votes);`,
    `  quantize_floats(caps_votes, ${I * K * D}, QCAPS_CAPSLAYER_ACT_BITS);`,
    `  route(caps_votes, ${copy('capsLayer.bias')}, ${I}, 1, ${K}, ${D}, ${m.capsLayer.iterations}, 0, QCAPS_CAPSLAYER_ACT_BITS, QCAPS_CAPSLAYER_ROUTING_BITS, caps_v, caps_logits, caps_c, caps_s);`,
    `  return class_lengths_of(caps_v, ${K}, ${D}, class_lengths);`,
  );
  statics.push(`static int16_t x16[${x16}]; /* int16 copies of conv inputs */`);
  return `
${macros.join('\n')}

/* the parameters read as floats (exact: integers times a power of two) */
${copies.map((f) => f.decl).join('\n')}

static void load_floats(void) {
  static int loaded = 0;
  size_t i;
  if (loaded) return;
${copies.map((f) => f.load).join('\n')}
  loaded = 1;
}

/* activations, one image at a time (static: qcaps_infer is not reentrant) */
${statics.join('\n')}

int qcaps_infer(const float *image, float *class_lengths) {
  size_t k;
  int i, p, j, d;
  load_floats();
${body.join('\n')}
}
`;
}

/** qcaps_model.c */
export function modelSource(q: QuantizedModel, tensors: readonly CTensor[], floats: readonly CFloatBuffer[]): string {
  const deep = q.model.kind === 'DeepCaps';
  const body = deep ? deepCapsSource(q, tensors, floats) : shallowSource(q, tensors);
  return `/* qcaps_model.c: the quantized inference of a ${q.model.kind} (written by qcapsnets export --format c).
 * Build: ${BUILD_COMMAND}
 * Integer convolutions (int64 sums), votes, squash, softmax and routing in float32 as the
 * tool's native kernels; only static buffers, no malloc (qcaps_infer is not reentrant). */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

${deep ? '#define QCAPS_USES_BATCHNORM\n#define QCAPS_USES_SQUASH_DOUBLE\n' : ''}#include "qcaps_model.h"
#include "qcaps_weights.h"
${C_RUNTIME}${body}`;
}

/** qcaps_model.h */
export function modelHeader(q: QuantizedModel): string {
  const m = q.model;
  return `/* qcaps_model.h: the quantized ${m.kind} of qcaps_model.c (written by qcapsnets export --format c). */
#ifndef QCAPS_MODEL_H
#define QCAPS_MODEL_H

#define QCAPS_IMAGE_SIZE ${m.inputWh * m.inputWh * m.inputCh} /* floats per image: [${m.inputWh}][${m.inputWh}][${m.inputCh}] */
#define QCAPS_CLASSES ${m.numClasses}

/* Classifies one image: [H][W][C] floats in [0, 1] (channels last, as the tool's forward
 * takes them); writes the ${m.numClasses} class capsules' lengths to class_lengths (may be
 * null) and returns the predicted class (the longest capsule, the first on ties).
 * Uses static buffers: not reentrant, one call at a time. */
int qcaps_infer(const float *image, float *class_lengths);

#endif
`;
}

/** main.c: classifies the images of a raw float32 file or an IDX file (c-export-main.ts). */
export function mainSource(): string {
  return C_MAIN;
}

export function makefile(): string {
  return `# Build the exported quantized model (written by qcapsnets export --format c):
#   ${BUILD_COMMAND}
# Run: ./qcaps IMAGES [N]   (IDX ubyte images or raw float32 [N][H][W][C])
qcaps: main.c qcaps_model.c qcaps_model.h qcaps_weights.h
\t${BUILD_COMMAND}
`;
}
