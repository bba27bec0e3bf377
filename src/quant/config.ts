// A quantization configuration (the QuantConfig of PyTorch's ao.quantization, in the
// paper's terms): per-layer weight, activation and routing bits, a method, and the
// arithmetic. The model code stays the same; the forward pass receives this.
import type { QuantLayerInfo } from '../models/capsnet.js';
import type { QuantMethod } from '../tensor/backend.js';
import type { RoundingCompat } from './methods.js';

/** A top-level layer as quantization sees it: each model states its own (CapsNet.quantLayers). */
export type { QuantLayerInfo } from '../models/capsnet.js';

export interface BitConfig {
  /** fractional bits of every layer's parameters */
  weightBits: number[];
  /** fractional bits of every layer's activations */
  actBits: number[];
  /** fractional bits of the routing values, one entry per routing layer, in layer order */
  routingBits: number[];
}

export interface QuantConfig extends BitConfig {
  method: QuantMethod;
  compat: RoundingCompat;
  seed: number;
}

export function uniformBits(layers: readonly QuantLayerInfo[], bits: number): BitConfig {
  return {
    weightBits: layers.map(() => bits),
    actBits: layers.map(() => bits),
    routingBits: layers.filter((l) => l.routes).map(() => bits),
  };
}

export function configKey(c: BitConfig): string {
  return `w${c.weightBits.join(',')}|a${c.actBits.join(',')}|r${c.routingBits.join(',')}`;
}

export function cloneBits(c: BitConfig): BitConfig {
  return { weightBits: [...c.weightBits], actBits: [...c.actBits], routingBits: [...c.routingBits] };
}

/** A bit count that means 'not quantized': the quantized forward leaves that layer's
 *  weights, activations or routing values at float32 (the sensitivity analysis varies one
 *  quantity with every other one at full precision). checkBitConfig refuses it, so no search
 *  configuration can hold it. */
export const FULL_PRECISION = Number.POSITIVE_INFINITY;

/** The most fractional bits a configuration may ask for (step 1 starts from 32). */
export const MAX_FRACTIONAL_BITS = 32;

/** Checks a bit configuration against a model's layers: one weight and one activation count per
 *  layer, one routing count per routing layer, each an integer in [0, MAX_FRACTIONAL_BITS]. */
export function checkBitConfig(layers: readonly QuantLayerInfo[], bits: BitConfig, name = 'bits'): void {
  const routing = layers.filter((l) => l.routes).map((l) => l.name);
  const want: [keyof BitConfig, readonly string[]][] = [
    ['weightBits', layers.map((l) => l.name)],
    ['actBits', layers.map((l) => l.name)],
    ['routingBits', routing],
  ];
  for (const [key, names] of want) {
    const v = bits?.[key];
    if (!Array.isArray(v) || v.length !== names.length)
      throw new Error(
        `${name}.${key}: expected ${names.length} bit counts (${names.join(', ')}), got ${Array.isArray(v) ? v.length : typeof v}`,
      );
    v.forEach((b, i) => {
      if (!(Number.isInteger(b) && b >= 0 && b <= MAX_FRACTIONAL_BITS))
        throw new Error(
          `${name}.${key}[${i}] (${names[i]}): expected an integer number of fractional bits in [0, ${MAX_FRACTIONAL_BITS}], got ${b}`,
        );
    });
  }
}
