// The quantized forward pass of SPEC 4, built on the model's unchanged code: the layers call
// QuantHooks at each quantization point, and the parameters of each top-level layer are
// replaced in place by their quantized values (the full-precision values are kept aside).
// Stochastic rounding draws from streams named by (batch, layer, point), so a configuration
// gives the same numbers every time it is evaluated, in any order, for a given --seed.
import type { CapsNet } from '../models/capsnet.js';
import type { Parameter, QuantHooks } from '../nn/module.js';
import type { QuantMethod, QuantSpec, RoutingQuant } from '../tensor/backend.js';
import { kernels } from '../tensor/kernels.js';
import type { Tensor } from '../tensor/tensor.js';
import { FULL_PRECISION, type LayerBits, type QuantLayerInfo } from './config.js';
import { activationQuant, type RoundingCompat, weightQuant } from './methods.js';

/** FNV-1a hash of a string: the stream number of a quantization point. */
export function streamOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The top-level layers of a model as the search sees them (SPEC 4 "layer"), as the model
 *  describes them. */
export function quantLayers(model: CapsNet): QuantLayerInfo[] {
  return model.quantLayers.map((l) => ({ ...l }));
}

export class ModelQuantizer {
  readonly layers: QuantLayerInfo[];
  private readonly fp: { layer: number; name: string; param: Tensor; values: Float32Array }[];
  private readonly applied: (number | null)[];
  /** Convolutions may use the DFT and Winograd algorithms (the hooks' conv mode). Under dac2020
   *  arithmetic they do not: im2col + GEMM sums match the reference's closely enough that its
   *  rounding decisions are reproduced. The native kernels run neither in a quantized forward:
   *  exact integer sums, or the float convolution in one fixed order (native/smallconv.cc). */
  fastConv: boolean;

  constructor(
    readonly model: CapsNet,
    readonly method: QuantMethod,
    readonly compat: RoundingCompat,
    readonly seed: number,
  ) {
    this.layers = quantLayers(model);
    const d = model.description;
    this.fp = model.parameters().map((p) => ({
      layer: d.index(d.layerOf(p.name).name),
      name: p.name,
      param: p.param,
      values: p.param.data.slice(),
    }));
    this.applied = model.layerNames.map(() => null);
    this.fastConv = compat !== 'dac2020';
  }

  /** Writes every layer's parameters quantized with its weight bits (only layers that changed);
   *  FULL_PRECISION puts that layer's float32 values back. */
  applyWeights(bits: readonly LayerBits[]): void {
    const weightBits = layerOrder(this.model, bits).map((b) => b.weight);
    const k = kernels();
    for (const p of this.fp) {
      const bits = weightBits[p.layer];
      if (this.applied[p.layer] === bits) continue;
      if (bits === FULL_PRECISION) {
        p.param.data.set(p.values);
        continue;
      }
      k.quantize(p.values, p.param.data, p.values.length, parameterQuant(this, p.name, bits));
    }
    weightBits.forEach((b, l) => (this.applied[l] = b));
  }

  /** Puts the full-precision parameters back. */
  restore(): void {
    for (const p of this.fp) p.param.data.set(p.values);
    this.applied.fill(null);
  }

  /** The quantized parameters of the layers as currently applied (for saving a model). */
  get appliedBits(): readonly (number | null)[] {
    return this.applied;
  }

  /** Hooks for one batch (quantHooks). */
  hooks(bits: readonly LayerBits[], batch: number): QuantHooks {
    return quantHooks(this.model, this, bits, batch, this.fastConv);
  }
}

/** A quantization's method, arithmetic and seed. */
export interface Rounding {
  method: QuantMethod;
  compat: RoundingCompat;
  seed: number;
}

/** The quantizer of parameter `name` at `bits` fractional bits (its stochastic stream is named
 *  by the parameter). */
function parameterQuant(r: Rounding, name: string, bits: number) {
  return weightQuant(r.method, bits, r.compat, r.seed, streamOf(`w|${name}`));
}

/** `bits` as one record per layer of `model`, in its order (checked by name). */
function layerOrder(model: CapsNet, bits: readonly LayerBits[]): readonly LayerBits[] {
  const names = model.description.names;
  if (bits.length !== names.length || bits.some((b, i) => b.name !== names[i]))
    throw new Error(
      `quantized forward: bits for layers ${bits.map((b) => b.name).join(', ')}; ${model.kind} has ${names.join(', ')}`,
    );
  return bits;
}

/** Quantizes every parameter of `model` in place with its layer's weight bits, as
 *  ModelQuantizer.applyWeights does from kept float values (FULL_PRECISION leaves a layer as it
 *  is): a QuantizedModel's own network, quantized once. */
export function quantizeWeightsInPlace(model: CapsNet, r: Rounding, layerBits: readonly LayerBits[]): void {
  const k = kernels();
  for (const { param: p, spec } of parameterQuantizers(model, r, layerBits))
    if (spec) k.quantize(p.param.data, p.param.data, p.param.data.length, spec);
}

/** Every parameter of `model` (state_dict order) with the quantizer that its layer's weight bits
 *  give it, for its current values: what quantizeWeightsInPlace applies (null: FULL_PRECISION,
 *  left as it is). Fine-tuning quantizes by these and clips the gradients at their [lo, hi]. */
export function parameterQuantizers(
  model: CapsNet,
  r: Rounding,
  layerBits: readonly LayerBits[],
): { param: Parameter; spec: QuantSpec | null }[] {
  const d = model.description;
  const byLayer = layerOrder(model, layerBits);
  return model.parameters().map((p) => {
    const bits = byLayer[d.index(d.layerOf(p.name).name)].weight;
    return { param: p, spec: bits === FULL_PRECISION ? null : parameterQuant(r, p.name, bits) };
  });
}

/** Hooks for one batch of a forward of `model`: activations with the layer's activation bits,
 *  routing values with its routing bits (SPEC 4); a FULL_PRECISION count leaves those values as
 *  they are. `fastConv`: the convolutions' algorithms (ModelQuantizer.fastConv; by default the
 *  DFT and Winograd may run except under dac2020). */
export function quantHooks(
  model: CapsNet,
  r: Rounding,
  bits: readonly LayerBits[],
  batch: number,
  fastConv = r.compat !== 'dac2020',
): QuantHooks {
  const d = model.description;
  const byLayer = layerOrder(model, bits);
  const top = (path: string) => byLayer[d.index(d.layerOf(path).name)];
  const k = kernels();
  const spec = (b: number, stream: number) =>
    b === FULL_PRECISION ? null : activationQuant(r.method, b, r.compat, r.seed, stream);
  const activationSpec = (path: string, point: string) => spec(top(path).act, streamOf(`a|${batch}|${path}|${point}`));
  return {
    // where inputs and weights are fixed point (up to 15 bits), convolutions are exact integer
    // sums (native/fixedconv.cc): faster than either float algorithm, and order-free; the
    // others (the first layer's image) run in one fixed order (native/smallconv.cc)
    conv: { fastAlgorithms: fastConv, fixedPoint: true },
    activation: (path, point, t) => {
      const q = activationSpec(path, point);
      if (q) k.quantize(t.data, t.data, t.size, q);
    },
    activationSpec,
    routing: (path): RoutingQuant | null => {
      const b = top(path);
      if (b.routing === null) return null;
      const stream = streamOf(`r|${batch}|${path}`);
      return {
        act: spec(b.act, stream),
        routing: spec(b.routing, (stream + 0x5bd1e995) >>> 0),
        votes: activationSpec(path, 'votes'), // what activation(path, 'votes', .) applies
      };
    },
  };
}
