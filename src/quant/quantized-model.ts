// A trained model at a bit configuration (SPEC 4), as a value: quantize(model, bits, options)
// checks the configuration against the model's layers and copies the model (architecture,
// parameters, buffers) into a network of its own whose parameters it quantizes once. forward,
// evaluate, stateDict and the exports read that network; the float model is never written,
// and training it further does not change a QuantizedModel made before. A configuration in the
// 'dynamic' number format also needs the calibration of the model's activation and routing
// points (src/quant/calibration.ts), which the value keeps; its quantizers (QuantSpecs) are
// public: activationSpec, routingSpecs, weightSpec.
import type { CapsNet } from '../models/capsnet.js';
import type { LayerDescription } from '../models/description.js';
import { copyModel } from '../models/factory.js';
import { checkImagesFit, forEachBatch, type ImageSource } from '../models/evaluate.js';
import { countCorrect } from '../models/metrics.js';
import type { QuantHooks, StateTensor } from '../nn/module.js';
import type { QuantMethod, QuantSpec } from '../tensor/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { type Calibration, checkCalibration } from './calibration.js';
import { type BitConfig, checkBitConfig, cloneBits, FULL_PRECISION, type LayerBits } from './config.js';
import { DYNAMIC_MAX_FRAC, DYNAMIC_MIN_FRAC, dynamicQuant, parseWeightRange, type WeightRange } from './dynamic.js';
import { parseQuantMethod, parseRoundingCompat, type RoundingCompat, weightQuant } from './methods.js';
import { quantHooks, quantizeWeightsInPlace, streamOf } from './quantized-forward.js';
import { integerContainer } from './integer-container.js';
import { configMemoryMB } from './memory.js';
import { DEFAULT_SEED } from '../tensor/seed.js';

export interface QuantizeOptions {
  /** rounding method (SPEC 4) */
  method: QuantMethod;
  /** 'none' (default) or 'dac2020' (the reference code's arithmetic) */
  compat?: RoundingCompat;
  /** seed of stochastic rounding's draws (default DEFAULT_SEED) */
  seed?: number;
  /** the ranges of the activation and routing points (calibrate(model, images, count)): needed
   *  when a layer's bits are 'dynamic', where they give each point's fractional length */
  calibration?: Calibration | null;
  /** how 'dynamic' parameters take their fractional lengths from their values: 'max' (default,
   *  the largest magnitude within the width) or 'mse' (the least round-to-nearest squared
   *  error; src/quant/dynamic.ts). 'mse' needs a 'dynamic' layer */
  weightRange?: WeightRange;
  /** 'dynamic' parameters' fractional lengths, by state_dict name, where the float values that
   *  would give them are gone (a packed file's model, whose values are already on their grid);
   *  absent: from each tensor's largest magnitude */
  weightFracBits?: ReadonlyMap<string, number> | null;
}

export class QuantizedModel {
  readonly bits: BitConfig;
  readonly method: QuantMethod;
  readonly compat: RoundingCompat;
  readonly seed: number;
  /** the calibration of the activation and routing points ('dynamic' layers), or null */
  readonly calibration: Calibration | null;
  /** how the 'dynamic' parameters' fractional lengths were chosen ('max' unless asked) */
  readonly weightRange: WeightRange;
  /** the quantized network: a copy of the float model at quantize() time (in eval mode) whose
   *  parameters hold their quantized values; its buffers (BatchNorm's running statistics) are
   *  the float model's */
  readonly model: CapsNet;
  /** every quantized parameter's fractional bits, by state_dict name */
  private readonly weightFracs: ReadonlyMap<string, number>;

  constructor(model: CapsNet, bits: BitConfig, options: QuantizeOptions) {
    const { compat, seed } = checkQuantizeOptions('quantize', options);
    const weightRange = parseWeightRange(options.weightRange, 'quantize: options.weightRange');
    checkBitConfig(model.quantLayers, bits, 'quantize: bits');
    const dynamic = bits.filter((b) => b.format === 'dynamic');
    if (dynamic.length && compat === 'dac2020')
      throw new Error(
        `quantize: options.compat 'dac2020' applies to the 'fixed' number format only; layer ${dynamic[0].name}'s bits are 'dynamic'`,
      );
    if (weightRange === 'mse' && !dynamic.length)
      throw new Error(
        "quantize: options.weightRange 'mse' chooses 'dynamic' weight tensors' fractional lengths; every layer's bits are 'fixed' (use the default 'max', or 'dynamic' bits)",
      );
    // the points whose fractional lengths the calibration gives: 'dynamic' layers' quantized ones
    const calibrated = new Set(
      dynamic
        .filter((b) => b.act !== FULL_PRECISION || (b.routing ?? FULL_PRECISION) !== FULL_PRECISION)
        .map((b) => b.name),
    );
    if (calibrated.size && !options.calibration)
      throw new Error(
        `quantize: layer ${[...calibrated][0]}'s bits are 'dynamic', whose activation and routing fractional lengths come from calibration: pass options.calibration (calibrate(model, images, count))`,
      );
    this.calibration = options.calibration
      ? checkCalibration(model, options.calibration, 'quantize: options.calibration', calibrated)
      : null;
    const stored = options.weightFracBits ?? null;
    if (stored)
      for (const [name, f] of stored)
        if (!(Number.isInteger(f) && f >= DYNAMIC_MIN_FRAC && f <= DYNAMIC_MAX_FRAC))
          throw new Error(
            `quantize: options.weightFracBits ${name}: ${f}: expected an integer in [${DYNAMIC_MIN_FRAC}, ${DYNAMIC_MAX_FRAC}]`,
          );
    this.bits = cloneBits(bits);
    this.method = options.method;
    this.compat = compat;
    this.seed = seed;
    this.weightRange = weightRange;
    this.model = copyModel(model);
    this.model.eval();
    this.weightFracs = quantizeWeightsInPlace(
      this.model,
      { method: this.method, compat, seed, calibration: this.calibration, weightRange, weightFracBits: stored },
      this.bits,
    );
  }

  get layers(): readonly LayerDescription[] {
    return this.model.quantLayers;
  }

  /** The bits of the layer that a layer name, a module path or a state_dict name belongs to
   *  ('block4.l_skip.conv.bias' -> block4's). */
  bitsOf(path: string): LayerBits {
    const d = this.model.description;
    return this.bits[d.index(d.layerOf(path).name)];
  }

  /** Weight memory in MB (SPEC 4: parameters x (w_l + 1) bits per 'fixed' layer; parameters x
   *  w_l bits + 8 bits per parameter tensor's exponent per 'dynamic' layer; quant/memory.ts). */
  get weightMemoryMB(): number {
    return configMemoryMB(this.layers, this.bits);
  }

  /** The activation and routing quantizers of batch `batch` (its stochastic streams), as
   *  hooks of a forward of `model` (what forward passes; the golden-vector capture wraps them). */
  hooks(batch = 0): QuantHooks {
    return quantHooks(this.model, this, this.bits, batch);
  }

  /** The quantizer of activation point `point` of module `path` ('conv.conv', 'out'; the
   *  points are model.description.quantPoints()) in batch `batch` (its stochastic stream), as
   *  the forward applies it: fractional bits, saturation range, method. null: not quantized
   *  (a FULL_PRECISION count). Under 'dynamic' the fractional length is the calibrated one. */
  activationSpec(path: string, point: string, batch = 0): QuantSpec | null {
    return this.hooks(batch).activationSpec!(path, point);
  }

  /** The two quantizers of the routing inside module `path` (model.description.routingPaths()):
   *  `act` for the coupling coefficients c and the outputs v, `routing` for s and the updated
   *  logits (streams of batch `batch`; each iteration's values advance them, see RoutingQuant);
   *  null where the layer does not route. */
  routingSpecs(path: string, batch = 0): { act: QuantSpec | null; routing: QuantSpec | null } | null {
    const r = this.hooks(batch).routing(path);
    return r && { act: r.act, routing: r.routing };
  }

  /** The quantizer parameter `name` (a state_dict name) was quantized with: its fractional
   *  bits (under 'dynamic' the tensor's own, from its float values at quantize() time by the
   *  weight range rule) and
   *  saturation range; null for a buffer or a FULL_PRECISION layer's parameter. */
  weightSpec(name: string): QuantSpec | null {
    const frac = this.weightFracs.get(name);
    if (frac === undefined) return null;
    const b = this.bitsOf(name);
    const stream = streamOf(`w|${name}`);
    return b.format === 'dynamic'
      ? dynamicQuant(this.method, b.weight, frac, this.seed, stream)
      : weightQuant(this.method, b.weight, this.compat, this.seed, stream);
  }

  /** Class capsules [B, K, D] of images x [B, H, W, C]; `batch` names the stochastic draws'
   *  stream (the search's batch index), so batch b of an evaluation repeats exactly. */
  forward(x: Tensor, batch = 0): Tensor {
    return this.model.forward(x, { training: false, quant: this.hooks(batch) });
  }

  /** Test accuracy over `data` in its own order (or in `order`: position -> image index, a
   *  permutation of the images, e.g. the search's hardest-first order), batch b drawing from
   *  stream b. */
  evaluate(
    data: ImageSource,
    options: {
      batchSize?: number;
      order?: Int32Array | null;
      onBatch?: (done: number, total: number) => void;
    } = {},
  ): { accuracy: number; correct: number; total: number } {
    const order = options.order ?? null;
    if (order !== null && data?.count >= 1) checkOrder(order, data.count);
    const m = this.model;
    if (data?.count >= 1) checkImagesFit(m, data, 'QuantizedModel.evaluate: the images');
    let correct = 0;
    forEachBatch(
      'QuantizedModel.evaluate',
      m,
      data,
      { batchSize: options.batchSize ?? 100, order, onBatch: options.onBatch },
      (b) => ({ training: false, quant: this.hooks(b) }),
      (caps, labels) => (correct += countCorrect(caps, labels)),
    );
    return { accuracy: (correct * 100.0) / data.count, correct, total: data.count };
  }

  /** The model's state_dict with the quantized parameters (float32 values on the fixed-point
   *  grid; buffers unchanged): what `<stem>_quantized_<kind>.pt` holds. */
  stateDict(): Map<string, StateTensor> {
    return this.model.stateDict();
  }

  /** Every parameter at its bit width, in state_dict order and PyTorch's layout: the integers
   *  q such that the quantized value is q * 2^-fracBits (fracBits = the layer's weight bits
   *  under 'fixed', the tensor's own fractional length under 'dynamic'), as Int32Array when
   *  every one fits in 32 bits, else BigInt64Array; totalBits is the two's-complement width
   *  including the sign: under the default arithmetic the format's (width 'format': fracBits + 1
   *  under 'fixed', whose weights saturate to [-1, 1 - 2^-fracBits]; the layer's width under
   *  'dynamic'), under dac2020 (nothing saturates) the width these values need (width
   *  'measured'). Buffers are not included.
   *  Computed once: the packed file, ONNX, C and golden vectors all read this one record. */
  get integers(): readonly IntegerParameter[] {
    this.integerRecord ??= Object.freeze(this.computeIntegers());
    return this.integerRecord;
  }

  /** The integers (see `integers`), as an array of the caller's. */
  integerParameters(): IntegerParameter[] {
    return [...this.integers];
  }

  private integerRecord: readonly IntegerParameter[] | null = null;

  private computeIntegers(): IntegerParameter[] {
    const params = new Set(this.model.parameters().map((p) => p.name));
    const out: IntegerParameter[] = [];
    for (const [name, t] of this.stateDict()) {
      if (!params.has(name)) continue;
      const { name: layer, weight, format } = this.bitsOf(name);
      const frac = this.weightFracs.get(name)!;
      const scale = 2 ** frac;
      const n = t.data.length;
      let lo = 0;
      let hi = 0;
      const ints = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const v = t.data[i] * scale; // exact: a power-of-two scale of a float32
        if (!Number.isInteger(v))
          throw new Error(
            `integerParameters: ${name}[${i}] = ${t.data[i]} is not a multiple of 2^-${frac} (layer ${layer})`,
          );
        ints[i] = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      let totalBits = 1;
      while (lo < -(2 ** (totalBits - 1)) || hi > 2 ** (totalBits - 1) - 1) totalBits++;
      if (totalBits > 64) throw new Error(`integerParameters: ${name} needs ${totalBits} bits, more than 64`);
      const saturated = this.compat !== 'dac2020';
      if (saturated) {
        const width = format === 'dynamic' ? weight : frac + 1;
        if (totalBits > width)
          throw new Error(
            `integerParameters: ${name} has values in [${lo / scale}, ${hi / scale}], outside the saturation range ` +
              (format === 'dynamic' ? `of ${width} bits at 2^-${frac}` : `[-1, 1 - 2^-${frac}]`),
          );
        totalBits = width;
      }
      const values =
        integerContainer(totalBits) <= 32 ? Int32Array.from(ints) : BigInt64Array.from(ints, (v) => BigInt(v));
      out.push({
        name,
        layer,
        shape: [...t.shape],
        values,
        totalBits,
        fracBits: frac,
        width: saturated ? 'format' : 'measured',
      });
    }
    return out;
  }
}

/** One parameter at its bit width (see QuantizedModel.integerParameters). */
export interface IntegerParameter {
  /** PyTorch state_dict name */
  name: string;
  /** its top-level layer */
  layer: string;
  /** PyTorch shape; values are row-major in PyTorch's layout */
  shape: number[];
  /** value = integer * 2^-fracBits */
  values: Int32Array | BigInt64Array;
  /** two's-complement bits including the sign */
  totalBits: number;
  fracBits: number;
  /** 'format': the format's width (default arithmetic: fracBits + 1 under 'fixed', the layer's
   *  width under 'dynamic'); 'measured': what the values need (dac2020) */
  width: 'format' | 'measured';
}

function checkOrder(order: Int32Array, count: number): void {
  if (!(order instanceof Int32Array) || order.length !== count)
    throw new Error(`QuantizedModel.evaluate: options.order must be an Int32Array of ${count} image indices`);
  const seen = new Uint8Array(count);
  for (const i of order) {
    if (!(i >= 0 && i < count) || seen[i])
      throw new Error(`QuantizedModel.evaluate: options.order is not a permutation of 0..${count - 1}`);
    seen[i] = 1;
  }
}

/** A quantization's method, arithmetic and seed, with their defaults ('none', DEFAULT_SEED); errors
 *  start with `fn` and name the option (quantize and searchModel share them). */
export function checkQuantizeOptions(
  fn: string,
  o: QuantizeOptions,
): Required<Pick<QuantizeOptions, 'method' | 'compat' | 'seed'>> {
  const method = parseQuantMethod(o?.method, `${fn}: options.method`);
  const compat = parseRoundingCompat(o.compat ?? 'none', `${fn}: options.compat`);
  const seed = o.seed ?? DEFAULT_SEED;
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new Error(`${fn}: options.seed ${seed}: expected a non-negative integer`);
  return { method, compat, seed };
}

/** The model at a bit configuration (see QuantizedModel). */
export function quantize(model: CapsNet, bits: BitConfig, options: QuantizeOptions): QuantizedModel {
  return new QuantizedModel(model, bits, options);
}
