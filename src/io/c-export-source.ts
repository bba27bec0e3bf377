// The model-specific C of the export: qcaps_model.c (the runtime of c-export-runtime.ts, then
// one function per layer and qcaps_infer), qcaps_model.h, main.c and the Makefile.
// The inference follows the quantized forward pass (SPEC 4) of src/quant/quantized-forward.ts:
// every activation quantized with its layer's activation bits, routing's s and logits with
// its routing bits, convolutions of fixed-point values as exact integer sums.
import { shallowPrimaryGrid, type ShallowCapsNet } from '../models/shallow-capsnet.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import { C_RUNTIME } from './c-export-runtime.js';
import type { CTensor } from './c-export-weights.js';

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
  const H1 = H - 8; // conv: 9x9, no padding
  const G = shallowPrimaryGrid(H);
  const P = G * G;
  const I = m.numPrimaryCaps;
  const K = m.numClasses;
  const D = m.capsDim;
  const [wConv, wPrimary, wDigit] = q.bits.weightBits;
  const [aConv, aPrimary, aDigit] = q.bits.actBits;
  const [rPrimary, rDigit] = q.bits.routingBits;
  const convW = floatCopy(tensorOf(tensors, 'conv.conv.weight'));
  const convB = floatCopy(tensorOf(tensors, 'conv.conv.bias'));
  const primW = tensorOf(tensors, 'primary.conv3d.weight');
  const primB = floatCopy(tensorOf(tensors, 'primary.bias'));
  const digW = tensorOf(tensors, 'digit.weight');
  const digB = floatCopy(tensorOf(tensors, 'digit.bias'));
  void wConv;
  void wDigit;
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
  (void)${rPrimary};
  /* [P][32][8] -> [32 * P][8]: the capsule list in the order (type, y, x) */
  for (p = 0; p < ${P}; p++)
    for (j = 0; j < 32; j++)
      for (d = 0; d < 8; d++) digit_in[((size_t)j * ${P} + p) * 8 + d] = primary_v[((size_t)p * 32 + j) * 8 + d];
  /* digit: votes W_i x_i quantized (${aDigit} bits), ${m.digit.iterations} routing iterations */
  digit_votes(digit_in, ${I}, 8, ${K * D}, ${pow2(digW.fracBits)}, digit_votes_buf);
  quantize_floats(digit_votes_buf, ${I * K * D}, QCAPS_DIGIT_ACT_BITS);
  route(digit_votes_buf, ${digB.name}, ${I}, 1, ${K}, ${D}, ${m.digit.iterations}, 0, QCAPS_DIGIT_ACT_BITS,
        QCAPS_DIGIT_ROUTING_BITS, digit_v, digit_logits, digit_c, digit_s);
  (void)${rDigit};
  return class_lengths_of(digit_v, ${K}, ${D}, class_lengths);
}
`;
}

/** qcaps_model.c */
export function modelSource(q: QuantizedModel, tensors: readonly CTensor[]): string {
  if (q.model.kind !== 'ShallowCapsNet') throw new Error(`C export: ${q.model.kind} is not supported`);
  const body = shallowSource(q, tensors);
  return `/* qcaps_model.c: the quantized inference of a ${q.model.kind} (written by qcapsnets export --format c).
 * Build: ${BUILD_COMMAND}
 * Integer convolutions (int64 sums), votes, squash, softmax and routing in float32 as the
 * tool's native kernels; only static buffers, no malloc (qcaps_infer is not reentrant). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qcaps_model.h"
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

/** main.c: classifies the images of a raw float32 file or an IDX file. */
export function mainSource(): string {
  return `/* main.c: runs qcaps_infer on images from a file (written by qcapsnets export --format c).
 *   qcaps IMAGES [N]
 * IMAGES: an IDX file of unsigned bytes (e.g. t10k-images-idx3-ubyte; pixels / 255) or a raw
 * file of little-endian float32 images [N][H][W][C]. Prints one line per image:
 * the prediction, then the class lengths (%.9g). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcaps_model.h"

static unsigned long be32(const unsigned char *b) {
  return ((unsigned long)b[0] << 24) | ((unsigned long)b[1] << 16) | ((unsigned long)b[2] << 8) | b[3];
}

int main(int argc, char **argv) {
  static float image[QCAPS_IMAGE_SIZE];
  static unsigned char bytes[QCAPS_IMAGE_SIZE];
  float lengths[QCAPS_CLASSES];
  unsigned char head[4];
  unsigned long count, n, i, limit = 0;
  int idx, k;
  FILE *f;
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s IMAGES [N]  (IDX ubyte images or raw float32 [N][H][W][C])\\n", argv[0]);
    return 2;
  }
  if (argc == 3) limit = strtoul(argv[2], NULL, 10);
  f = fopen(argv[1], "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open it\\n", argv[1]);
    return 1;
  }
  idx = fread(head, 1, 4, f) == 4 && head[0] == 0 && head[1] == 0 && head[2] == 0x08;
  if (idx) {
    /* IDX: magic 0 0 8 ndim, then ndim big-endian sizes */
    unsigned char dim[4];
    unsigned long per = 1;
    int ndim = head[3], dd;
    if (fread(dim, 1, 4, f) != 4) return fprintf(stderr, "%s: truncated IDX header\\n", argv[1]), 1;
    count = be32(dim);
    for (dd = 1; dd < ndim; dd++) {
      if (fread(dim, 1, 4, f) != 4) return fprintf(stderr, "%s: truncated IDX header\\n", argv[1]), 1;
      per *= be32(dim);
    }
    if (per != QCAPS_IMAGE_SIZE) {
      fprintf(stderr, "%s: images of %lu values, the model takes %d\\n", argv[1], per, QCAPS_IMAGE_SIZE);
      return 1;
    }
  } else {
    long size;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 0 || size % (long)(sizeof(float) * QCAPS_IMAGE_SIZE) != 0) {
      fprintf(stderr, "%s: not IDX, and its size is not a multiple of %d float32 values\\n", argv[1], QCAPS_IMAGE_SIZE);
      return 1;
    }
    count = (unsigned long)size / (sizeof(float) * QCAPS_IMAGE_SIZE);
  }
  n = limit && limit < count ? limit : count;
  for (i = 0; i < n; i++) {
    int pred;
    if (idx) {
      if (fread(bytes, 1, QCAPS_IMAGE_SIZE, f) != QCAPS_IMAGE_SIZE) break;
      for (k = 0; k < QCAPS_IMAGE_SIZE; k++) image[k] = (float)(bytes[k] / 255.0); /* as the tool */
    } else if (fread(image, sizeof(float), QCAPS_IMAGE_SIZE, f) != QCAPS_IMAGE_SIZE) {
      break;
    }
    pred = qcaps_infer(image, lengths);
    printf("%d", pred);
    for (k = 0; k < QCAPS_CLASSES; k++) printf(" %.9g", lengths[k]);
    printf("\\n");
  }
  fclose(f);
  if (i < n) {
    fprintf(stderr, "%s: truncated after %lu images\\n", argv[1], i);
    return 1;
  }
  return 0;
}
`;
}

export function makefile(): string {
  return `# Build the exported quantized model (written by qcapsnets export --format c):
#   ${BUILD_COMMAND}
# Run: ./qcaps IMAGES [N]   (IDX ubyte images or raw float32 [N][H][W][C])
qcaps: main.c qcaps_model.c qcaps_model.h qcaps_weights.h
\t${BUILD_COMMAND}
`;
}
