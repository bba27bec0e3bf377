// A quantization configuration (the QuantConfig of PyTorch's ao.quantization, in the
// paper's terms): per-layer weight, activation and routing bits, a method, and the
// arithmetic. The model code stays the same; the forward pass receives this.
import type { QuantMethod } from '../tensor/backend.js';
import type { RoundingCompat } from './methods.js';

/** What the search needs to know about one top-level layer of a model (SPEC 4). */
export interface QuantLayerInfo {
  name: string;
  /** parameters counted in the weight memory (weights, biases, capsule biases, BN affine) */
  paramCount: number;
  /** the layer routes (has routing bits) */
  routes: boolean;
  /** routing iterations (1 for the primary capsules of ShallowCapsNet) */
  iterations: number;
  /** a capsule layer (DeepCaps blocks, primary and class capsules) */
  capsule: boolean;
}

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
