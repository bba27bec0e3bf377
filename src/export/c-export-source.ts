// The C of the export: qcaps_model.c (the runtime of c-export-runtime.ts, then the model's
// layers, each written by the C lowering of its kind (c-lowerings.ts) in the order of the
// model's description, and qcaps_infer), qcaps_model.h, main.c and the Makefile.
// The inference follows the quantized forward pass (SPEC 4) of src/quant/quantized-forward.ts:
// every activation and routing value quantized with the model's own quantizers, convolutions
// of fixed-point values as exact integer sums.
import type { QuantizedModel } from '../quant/quantized-model.js';
import { C_MAIN } from './c-export-main.js';
import { cRuntime } from './c-export-runtime.js';
import type { CFloatBuffer, CTensor } from './c-export-weights.js';
import { lowerC } from './c-lowerings.js';
import { CProgram, type CValue } from './c-program.js';

export const BUILD_COMMAND = 'cc -std=c99 -O2 -o qcaps main.c qcaps_model.c -lm';

/** qcaps_model.c */
export function modelSource(q: QuantizedModel, tensors: readonly CTensor[], floats: readonly CFloatBuffer[]): string {
  const p = modelProgram(q, tensors, floats);
  return `/* qcaps_model.c: the quantized inference of a ${q.model.kind} (written by qcapsnets export --format c).
 * Build: ${BUILD_COMMAND}
 * Integer convolutions (int64 sums), votes, squash, softmax and routing in float32 as the
 * tool's native kernels; only static buffers, no malloc (qcaps_infer is not reentrant). */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

${p.defines()}#include "qcaps_model.h"
#include "qcaps_weights.h"
${cRuntime(p.parts)}${p.text()}`;
}

/** Every layer of the model's description, in order, each on its input (the image or earlier
 *  layers' outputs); qcaps_infer returns the prediction from the last one's class capsules. */
function modelProgram(q: QuantizedModel, tensors: readonly CTensor[], floats: readonly CFloatBuffer[]): CProgram {
  const m = q.model;
  const layers = m.description.layers;
  const p = new CProgram(q, tensors, floats);
  const outputs = new Map<string, CValue>([['image', { form: 'image', side: m.inputWh, channels: m.inputCh }]]);
  let out: CValue | null = null;
  layers.forEach((layer, i) => {
    const sources = layer.input.from.map((name) => {
      const value = outputs.get(name);
      if (!value) throw new Error(`C export: layer '${layer.name}' reads '${name}', which no earlier layer gives`);
      return { name, value };
    });
    out = lowerC(p, layer, { sources, flatten: layer.input.flatten, last: i === layers.length - 1 });
    outputs.set(layer.name, out);
  });
  const caps = out as CValue | null;
  if (caps?.form !== 'capsules' || caps.count !== m.numClasses || caps.dim !== m.capsDim)
    throw new Error(
      `C export: the last layer of ${m.kind} does not give its class capsules [${m.numClasses}, ${m.capsDim}]`,
    );
  p.line(`  return class_lengths_of(${caps.float}, ${caps.count}, ${caps.dim}, class_lengths);`);
  return p;
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
