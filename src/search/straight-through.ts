// Quantization-aware training's forward and backward (fine-tuning, finetune.ts): every step runs
// the quantized forward of SPEC 4 (QuantizedModel's), and its backward is the clipped
// straight-through estimator: each quantizer q(x) is taken as the identity, except where it
// saturates, where its output is constant and the gradient is 0:
//   dL/dx = dL/dq(x)  where lo <= x <= hi,   0 elsewhere,
// with [lo, hi] the bounds of the QuantSpec the quantizer runs (weights under 'fixed': [-1, 1 -
// 2^-N]; activations and routing values there have no bounds, so their gradients pass whole).
// The bounds are read from the QuantSpecs that src/quant produces, never from bit counts, so a
// number format with other bounds is clipped by its own.
//   - Weights: before a step the float values are kept aside and the parameters hold their
//     quantized values (parameterQuantizers: the quantizers quantize() applies); the backward's
//     gradients (with respect to the quantized weights) are zeroed where the float value lies
//     outside its quantizer's [lo, hi], and the float values are put back for the optimizer.
//   - Activations: the hooks below record where each activation lay within its quantizer's
//     bounds as they quantize it; the layers' backward applies it (QuantHooks.clipGradient), and
//     the routing layers clip their output's gradient (RoutingOptions.clip).
// Stochastic rounding draws from streams of a seed derived from (seed, step): the draws differ
// from step to step and repeat exactly for a seed.
import type { CapsNet } from '../models/capsnet.js';
import { forEachBatch, type ImageSource } from '../models/evaluate.js';
import { countCorrect, marginLossValue } from '../models/metrics.js';
import type { QuantHooks } from '../nn/module.js';
import { type BitConfig, checkBitConfig, cloneBits } from '../quant/config.js';
import { parameterQuantizers, quantHooks, type Rounding, streamOf } from '../quant/quantized-forward.js';
import type { QuantSpec } from '../tensor/backend.js';
import { kernels } from '../tensor/kernels.js';
import { take } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';

/** A quantizer that can saturate: one of its bounds is finite. */
export function saturates(q: QuantSpec | null): q is QuantSpec {
  return q !== null && (q.lo > -Infinity || q.hi < Infinity);
}

/** The rounding of optimizer step `step` (0-based): `r` with a seed drawn from (r.seed, step). */
export function stepRounding(r: Rounding, step: number): Rounding {
  return { ...r, seed: streamOf(`finetune|${r.seed}|${step}`) };
}

/** `base` (quantHooks' hooks of one forward) with the clipped straight-through estimator of its
 *  activations: a point whose quantizer can saturate is quantized by activation() rather than
 *  inside the convolution, after recording where its values lie within the bounds, and
 *  clipGradient zeroes the gradient elsewhere. Points that cannot saturate run as in `base`.
 *  `masks` keeps the records' buffers from one step to the next (by point; a step's record of
 *  ShallowCapsNet's first layer is 10 MB, and fresh memory is slow). */
export function clippedHooks(base: QuantHooks, masks: Map<string, Uint8Array> = new Map()): QuantHooks {
  /** the points recorded in this forward whose gradient has not been clipped yet: their sizes */
  const recorded = new Map<string, number>();
  const specOf = (layer: string, point: string) => base.activationSpec?.(layer, point) ?? null;
  return {
    conv: base.conv,
    routing: (layer) => base.routing(layer),
    activationSpec: (layer, point) => {
      const q = specOf(layer, point);
      return saturates(q) ? null : q;
    },
    activation: (layer, point, t) => {
      const q = specOf(layer, point);
      if (saturates(q)) {
        const key = `${layer}|${point}`;
        let mask = masks.get(key);
        if (!mask || mask.length < t.size) masks.set(key, (mask = new Uint8Array(t.size)));
        // q is what base.activation applies (QuantHooks.activationSpec), in the same pass
        kernels().quantizeMasked(t.data, t.data, t.size, q, mask);
        recorded.set(key, t.size);
      } else base.activation(layer, point, t);
    },
    clipGradient: (layer, point, dy) => {
      const key = `${layer}|${point}`;
      const size = recorded.get(key);
      if (size === undefined) return null;
      recorded.delete(key);
      if (size !== dy.size)
        throw new Error(`internal: the gradient at ${key} has ${dy.size} values, its forward had ${size}`);
      const g = take(dy.size);
      kernels().maskGradient(dy.data, masks.get(key)!, dy.size, g);
      return new Tensor(g, dy.shape);
    },
  };
}

/** The quantized forward and clipped straight-through backward of a model's training steps at
 *  one bit configuration (see the top of this file). */
export class StraightThroughSteps {
  readonly bits: BitConfig;
  /** each parameter's float values during a step */
  private readonly kept: Float32Array[];
  /** the activations' in-range records (clippedHooks), reused from step to step */
  private readonly masks = new Map<string, Uint8Array>();
  /** each parameter's in-range record, likewise */
  private readonly weightMasks: (Uint8Array | undefined)[] = [];

  constructor(
    readonly model: CapsNet,
    bits: BitConfig,
    readonly rounding: Rounding,
  ) {
    checkBitConfig(model.quantLayers, bits, 'bits');
    this.bits = cloneBits(bits);
    this.kept = model.parameters().map((p) => new Float32Array(p.param.size));
  }

  /** Runs `step` (a forward through the hooks it is given and the backward) with every
   *  parameter quantized as quantize() does, with optimizer step `globalStep`'s draws; then
   *  zeroes each parameter's gradient where its float value lies outside its quantizer's
   *  bounds and puts the float values back (also when `step` throws). */
  run<T>(globalStep: number, step: (quant: QuantHooks) => T): T {
    const r = stepRounding(this.rounding, globalStep);
    return this.quantized(
      r,
      (quantizers) => {
        const out = step(clippedHooks(quantHooks(this.model, r, this.bits, 0), this.masks));
        // the gradient is 0 where the float value lay outside [lo, hi] (recorded by quantized)
        quantizers.forEach(({ param, spec }, i) => {
          if (saturates(spec))
            kernels().maskGradient(param.grad.data, this.weightMasks[i]!, param.grad.size, param.grad.data);
        });
        return out;
      },
      true,
    );
  }

  /** The test pass of the model as quantize() would make it now (its rounding, batch b drawing
   *  from stream b, as QuantizedModel.evaluate), on the model itself: correct count, and the
   *  margin loss with the normal margins averaged per batch, then over the batches. */
  evaluate(
    data: ImageSource,
    batchSize: number,
    onBatch?: (done: number, total: number) => void,
  ): { accuracy: number; correct: number; total: number; loss: number } {
    const r = this.rounding;
    return this.quantized(r, () => {
      let correct = 0;
      let lossSum = 0;
      let batches = 0;
      forEachBatch(
        'the quantized test pass',
        this.model,
        data,
        { batchSize, onBatch },
        (b) => ({ training: false, quant: quantHooks(this.model, r, this.bits, b) }),
        (caps, labels) => {
          correct += countCorrect(caps, labels);
          lossSum += marginLossValue(caps, labels);
          batches++;
        },
      );
      return { accuracy: (correct * 100) / data.count, correct, total: data.count, loss: lossSum / batches };
    });
  }

  /** Runs `fn` with every parameter quantized by rounding `r` (the float values kept aside,
   *  and put back after, also when `fn` throws). With `recordRanges`, each parameter whose
   *  quantizer can saturate also gets its in-range record in weightMasks, in the same pass. */
  private quantized<T>(
    r: Rounding,
    fn: (quantizers: ReturnType<typeof parameterQuantizers>) => T,
    recordRanges = false,
  ): T {
    const quantizers = parameterQuantizers(this.model, r, this.bits);
    const k = kernels();
    quantizers.forEach(({ param, spec }, i) => {
      const w = param.param.data;
      this.kept[i].set(w);
      if (recordRanges && saturates(spec))
        k.quantizeMasked(this.kept[i], w, w.length, spec, (this.weightMasks[i] ??= new Uint8Array(w.length)));
      else if (spec) k.quantize(this.kept[i], w, w.length, spec);
    });
    try {
      return fn(quantizers);
    } finally {
      quantizers.forEach(({ param }, i) => param.param.data.set(this.kept[i]));
    }
  }
}
