// The quantized forward pass of SPEC 4, built on the model's unchanged code: the layers call
// QuantHooks at each quantization point, and the parameters of each top-level layer are
// replaced in place by their quantized values (the full-precision values are kept aside).
// Stochastic rounding draws from streams named by (batch, layer, point), so a configuration
// gives the same numbers every time it is evaluated, in any order, for a given --seed.
// A layer whose bits are 'dynamic' (src/quant/dynamic.ts) quantizes each parameter tensor at
// the fractional length of its own float values (by the weight range rule: 'max' or 'mse'), and
// each activation and routing point at the
// fractional length of its calibrated range (src/quant/calibration.ts), saturating to the width.
import type { CapsNet } from '../models/capsnet.js';
import type { Parameter, QuantHooks } from '../nn/module.js';
import type { QuantMethod, QuantSpec, RoutingQuant } from '../tensor/backend.js';
import { kernels } from '../tensor/kernels.js';
import type { Tensor } from '../tensor/tensor.js';
import { pointKey, type Calibration } from './calibration.js';
import { FULL_PRECISION, type LayerBits, type QuantLayerInfo } from './config.js';
import { dynamicFracBits, dynamicQuant, type WeightRange, tensorFracBits } from './dynamic.js';
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
  private readonly fp: {
    layer: number;
    name: string;
    param: Tensor;
    values: Float32Array;
    /** 'dynamic': the fractional length of each width asked for so far (the rule reads every
     *  value, and a search asks for the same widths again and again) */
    fracs: Map<number, number>;
  }[];
  /** per layer: the format and weight count its parameters hold now, or null (float values) */
  private readonly applied: (string | null)[];
  /** Convolutions may use the DFT and Winograd algorithms (the hooks' conv mode). Under dac2020
   *  arithmetic they do not: im2col + GEMM sums match the reference's closely enough that its
   *  rounding decisions are reproduced. The native kernels run neither in a quantized forward:
   *  exact integer sums, or the float convolution in one fixed order (native/smallconv.cc). */
  fastConv: boolean;

  /** `calibration`: the ranges of the activation and routing points, for configurations in
   *  the 'dynamic' number format (null: 'fixed' configurations only); `weightRange`: how
   *  'dynamic' weight tensors take their fractional lengths (default 'max'). */
  constructor(
    readonly model: CapsNet,
    readonly method: QuantMethod,
    readonly compat: RoundingCompat,
    readonly seed: number,
    readonly calibration: Calibration | null = null,
    readonly weightRange: WeightRange = 'max',
  ) {
    this.layers = quantLayers(model);
    const d = model.description;
    this.fp = model.parameters().map((p) => ({
      layer: d.index(d.layerOf(p.name).name),
      name: p.name,
      param: p.param,
      values: p.param.data.slice(),
      fracs: new Map<number, number>(),
    }));
    this.applied = model.layerNames.map(() => null);
    this.fastConv = compat !== 'dac2020';
  }

  /** Writes every layer's parameters quantized with its weight bits (only layers that changed);
   *  FULL_PRECISION puts that layer's float32 values back. */
  applyWeights(bits: readonly LayerBits[]): void {
    const byLayer = layerOrder(this.model, bits);
    const k = kernels();
    for (const p of this.fp) {
      const b = byLayer[p.layer];
      if (this.applied[p.layer] === appliedKey(b)) continue;
      if (b.weight === FULL_PRECISION) {
        p.param.data.set(p.values);
        continue;
      }
      const values = p.values;
      const frac = () => getOrSet(p.fracs, b.weight, () => tensorFracBits(this.weightRange, b.weight, values));
      k.quantize(values, p.param.data, values.length, parameterQuant(this, p.name, b, frac).spec);
    }
    byLayer.forEach((b, l) => (this.applied[l] = appliedKey(b)));
  }

  /** Puts the full-precision parameters back. */
  restore(): void {
    for (const p of this.fp) p.param.data.set(p.values);
    this.applied.fill(null);
  }

  /** The quantized parameters of the layers as currently applied (for saving a model). */
  get appliedBits(): readonly (number | null)[] {
    return this.applied.map((a) => (a === null ? null : Number(a.slice(a.indexOf(':') + 1))));
  }

  /** Hooks for one batch (quantHooks). */
  hooks(bits: readonly LayerBits[], batch: number): QuantHooks {
    return quantHooks(this.model, this, bits, batch, this.fastConv);
  }
}

const appliedKey = (b: LayerBits) => `${b.format}:${b.weight}`;

/** A quantization's method, arithmetic and seed, and for the 'dynamic' format the calibration of
 *  the activation and routing points, the weight range rule and, where the float values are
 *  gone (a packed file's model), the parameters' fractional lengths. */
export interface Rounding {
  method: QuantMethod;
  compat: RoundingCompat;
  seed: number;
  calibration?: Calibration | null;
  /** 'dynamic' parameters: how their fractional lengths follow from their values (absent:
   *  'max'; src/quant/dynamic.ts WeightRange) */
  weightRange?: WeightRange;
  /** 'dynamic' parameters: their fractional lengths as stored, by state_dict name (absent: from
   *  their values) */
  weightFracBits?: ReadonlyMap<string, number> | null;
}

/** The quantizer of parameter `name` of a layer with bits `b` (its stochastic stream is named by
 *  the parameter), and its fractional bits: under 'fixed' the count, under 'dynamic' as
 *  r.weightFracBits gives it, else `dynamicFrac()` (the tensor's, by r.weightRange's rule). */
function parameterQuant(
  r: Rounding,
  name: string,
  b: LayerBits,
  dynamicFrac: () => number,
): { spec: QuantSpec; frac: number } {
  const stream = streamOf(`w|${name}`);
  if (b.format !== 'dynamic')
    return { spec: weightQuant(r.method, b.weight, r.compat, r.seed, stream), frac: b.weight };
  const frac = r.weightFracBits?.get(name) ?? dynamicFrac();
  return { spec: dynamicQuant(r.method, b.weight, frac, r.seed, stream), frac };
}

function getOrSet<K, V>(m: Map<K, V>, key: K, make: () => V): V {
  let v = m.get(key);
  if (v === undefined) m.set(key, (v = make()));
  return v;
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
 *  is): a QuantizedModel's own network, quantized once. Returns each quantized parameter's
 *  fractional bits, by state_dict name. */
export function quantizeWeightsInPlace(
  model: CapsNet,
  r: Rounding,
  layerBits: readonly LayerBits[],
): Map<string, number> {
  const k = kernels();
  const fracs = new Map<string, number>();
  for (const { param: p, spec, frac } of parameterQuantizers(model, r, layerBits)) {
    if (!spec) continue;
    k.quantize(p.param.data, p.param.data, p.param.data.length, spec);
    fracs.set(p.name, frac as number);
  }
  return fracs;
}

/** Every parameter of `model` (state_dict order) with the quantizer that its layer's weight bits
 *  give it, for its current values, and its fractional bits: what quantizeWeightsInPlace applies
 *  (null: FULL_PRECISION, left as it is). Fine-tuning quantizes by these and clips the gradients
 *  at their [lo, hi]. */
export function parameterQuantizers(
  model: CapsNet,
  r: Rounding,
  layerBits: readonly LayerBits[],
): { param: Parameter; spec: QuantSpec | null; frac: number | null }[] {
  const d = model.description;
  const byLayer = layerOrder(model, layerBits);
  return model.parameters().map((p) => {
    const b = byLayer[d.index(d.layerOf(p.name).name)];
    if (b.weight === FULL_PRECISION) return { param: p, spec: null, frac: null };
    const { spec, frac } = parameterQuant(r, p.name, b, () =>
      tensorFracBits(r.weightRange ?? 'max', b.weight, p.param.data),
    );
    return { param: p, spec, frac };
  });
}

/** The quantizers of one point under 'dynamic': `width` bits at the fractional length of the
 *  calibrated range `maxAbs`. */
function dynamicPointQuant(r: Rounding, width: number, maxAbs: number | undefined, what: string, stream: number) {
  if (maxAbs === undefined)
    throw new Error(
      `quantized forward: no calibrated range for ${what} ('dynamic' needs the calibration of every point)`,
    );
  return dynamicQuant(r.method, width, dynamicFracBits(width, maxAbs), r.seed, stream);
}

/** Hooks for one batch of a forward of `model`: activations with the layer's activation bits,
 *  routing values with its routing bits (SPEC 4); a FULL_PRECISION count leaves those values as
 *  they are. Under 'dynamic' each point's fractional length comes from r.calibration. `fastConv`:
 *  the convolutions' algorithms (ModelQuantizer.fastConv; by default the DFT and Winograd may run
 *  except under dac2020). */
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
  const cal = r.calibration ?? null;
  const spec = (b: number, stream: number) =>
    b === FULL_PRECISION ? null : activationQuant(r.method, b, r.compat, r.seed, stream);
  const activationSpec = (path: string, point: string) => {
    const b = top(path);
    const stream = streamOf(`a|${batch}|${path}|${point}`);
    if (b.format !== 'dynamic' || b.act === FULL_PRECISION) return spec(b.act, stream);
    const key = pointKey(path, point);
    return dynamicPointQuant(r, b.act, cal?.activations[key], `the activation point ${key}`, stream);
  };
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
      const routingStream = (stream + 0x5bd1e995) >>> 0;
      if (b.format !== 'dynamic')
        return {
          act: spec(b.act, stream),
          routing: spec(b.routing, routingStream),
          votes: activationSpec(path, 'votes'), // what activation(path, 'votes', .) applies
        };
      const range = cal?.routing[path];
      return {
        act:
          b.act === FULL_PRECISION
            ? null
            : dynamicPointQuant(r, b.act, range?.act, `the routing of ${path} (c and v)`, stream),
        routing:
          b.routing === FULL_PRECISION
            ? null
            : dynamicPointQuant(
                r,
                b.routing,
                range?.routing,
                `the routing of ${path} (s and the logits)`,
                routingStream,
              ),
        votes: activationSpec(path, 'votes'),
      };
    },
  };
}
