// A trained model at a bit configuration (SPEC 4), as a value: quantize(model, bits, options)
// checks the configuration against the model's layers; forward, evaluate and stateDict apply
// the quantized weights for the call and put the full-precision ones back afterwards, so the
// float model is the same before and after.
import type { CapsNet, QuantLayerInfo } from '../models/capsnet.js';
import { type ImageSource, sourceBatch } from '../models/evaluate.js';
import { countCorrect } from '../models/metrics.js';
import type { StateTensor } from '../nn/module.js';
import { give } from '../tensor/pool.js';
import type { QuantMethod } from '../tensor/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { type BitConfig, checkBitConfig, cloneBits } from './config.js';
import { QUANT_METHODS, type RoundingCompat, ROUNDING_COMPATS } from './methods.js';
import { ModelQuantizer } from './quantized-forward.js';
import { weightMemoryMB } from './memory.js';

export interface QuantizeOptions {
  /** rounding method (SPEC 4) */
  method: QuantMethod;
  /** 'none' (default) or 'dac2020' (the reference code's arithmetic) */
  compat?: RoundingCompat;
  /** seed of stochastic rounding's draws (default 42) */
  seed?: number;
}

export class QuantizedModel {
  readonly bits: BitConfig;
  readonly method: QuantMethod;
  readonly compat: RoundingCompat;
  readonly seed: number;
  private readonly quantizer: ModelQuantizer;

  constructor(
    readonly model: CapsNet,
    bits: BitConfig,
    options: QuantizeOptions,
  ) {
    if (!QUANT_METHODS.includes(options?.method))
      throw new Error(`quantize: options.method '${options?.method}': expected one of ${QUANT_METHODS.join(', ')}`);
    const compat = options.compat ?? 'none';
    if (!ROUNDING_COMPATS.includes(compat))
      throw new Error(`quantize: options.compat '${compat}': expected one of ${ROUNDING_COMPATS.join(', ')}`);
    const seed = options.seed ?? 42;
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new Error(`quantize: options.seed ${seed}: expected a non-negative integer`);
    checkBitConfig(model.quantLayers, bits, 'quantize: bits');
    this.bits = cloneBits(bits);
    this.method = options.method;
    this.compat = compat;
    this.seed = seed;
    this.quantizer = new ModelQuantizer(model, this.method, compat, seed);
  }

  get layers(): readonly QuantLayerInfo[] {
    return this.model.quantLayers;
  }

  /** Weight memory in MB (SPEC 4: parameters x (w_l + 1) bits per layer). */
  get weightMemoryMB(): number {
    return weightMemoryMB(
      this.layers.map((l) => l.paramCount),
      this.bits.weightBits,
    );
  }

  private withWeights<T>(fn: () => T): T {
    this.quantizer.capture(); // the float model as it is now
    this.quantizer.applyWeights(this.bits.weightBits);
    try {
      return fn();
    } finally {
      this.quantizer.restore();
    }
  }

  /** Class capsules [B, K, D] of images x [B, H, W, C]; `batch` names the stochastic draws'
   *  stream (the search's batch index), so batch b of an evaluation repeats exactly. */
  forward(x: Tensor, batch = 0): Tensor {
    return this.withWeights(() => {
      const wasTraining = this.model.training;
      this.model.eval();
      try {
        return this.model.forward(x, { training: false, quant: this.quantizer.hooks(this.bits, batch) });
      } finally {
        this.model.train(wasTraining);
      }
    });
  }

  /** Test accuracy over `data` in its own order, batch b drawing from stream b. */
  evaluate(
    data: ImageSource,
    options: { batchSize?: number; onBatch?: (done: number, total: number) => void } = {},
  ): { accuracy: number; correct: number; total: number } {
    const batchSize = options.batchSize ?? 100;
    if (!(Number.isInteger(batchSize) && batchSize >= 1))
      throw new Error(`QuantizedModel.evaluate: options.batchSize ${batchSize}: expected a positive integer`);
    if (!(data?.count >= 1)) throw new Error('QuantizedModel.evaluate: data holds no images');
    const m = this.model;
    if (data.height !== m.inputWh || data.width !== m.inputWh || data.channels !== m.inputCh)
      throw new Error(
        `QuantizedModel.evaluate: data has ${data.height}x${data.width}x${data.channels} images, the model takes ${m.inputWh}x${m.inputWh}x${m.inputCh}`,
      );
    return this.withWeights(() => {
      const wasTraining = m.training;
      m.eval();
      let correct = 0;
      try {
        const batches = Math.ceil(data.count / batchSize);
        for (let b = 0; b < batches; b++) {
          const x = sourceBatch(data, b, batchSize);
          const caps = m.forward(x, { training: false, quant: this.quantizer.hooks(this.bits, b) });
          give(x.data);
          correct += countCorrect(caps, data.labels.subarray(b * batchSize, b * batchSize + x.shape[0]));
          give(caps.data);
          options.onBatch?.(Math.min(data.count, (b + 1) * batchSize), data.count);
        }
      } finally {
        m.train(wasTraining);
      }
      return { accuracy: (correct * 100.0) / data.count, correct, total: data.count };
    });
  }

  /** The model's state_dict with the quantized parameters (float32 values on the fixed-point
   *  grid; buffers unchanged): what `<stem>_quantized_<kind>.pt` holds. */
  stateDict(): Map<string, StateTensor> {
    return this.withWeights(() => this.model.stateDict());
  }
}

/** The model at a bit configuration (see QuantizedModel). */
export function quantize(model: CapsNet, bits: BitConfig, options: QuantizeOptions): QuantizedModel {
  return new QuantizedModel(model, bits, options);
}
