// A quantization configuration (the QuantConfig of PyTorch's ao.quantization, in the
// paper's terms): per-layer weight, activation and routing bits, a method, and the
// arithmetic. The model code stays the same; the forward pass receives this.
import type { QuantLayerInfo } from '../models/capsnet.js';
import type { QuantMethod } from '../tensor/backend.js';
import type { RoundingCompat } from './methods.js';

/** A top-level layer as quantization sees it: each model states its own (CapsNet.quantLayers). */
export type { QuantLayerInfo } from '../models/capsnet.js';

/** A layer's number format (docs/quantization.md):
 *  - 'fixed': the DAC 2020 format, one sign bit and N fractional bits, saturating at [-1, 1);
 *    a count is N, the fractional bits (the stored width is N + 1);
 *  - 'dynamic': Ristretto's dynamic fixed point, w bits in all (sign included) with each
 *    tensor's fractional length from its range (weights) or from calibration (activations,
 *    routing values); a count is w, the width. */
export type NumberFormat = 'fixed' | 'dynamic';
export const NUMBER_FORMATS: readonly NumberFormat[] = ['fixed', 'dynamic'];

/** One layer's bits, by the layer's name (SPEC 4), in the layer's number format: the count of
 *  its parameters, of its activations and, where the layer routes, of its routing values (null
 *  where it does not). Under 'fixed' a count is fractional bits, under 'dynamic' a total width
 *  (see NumberFormat). */
export interface LayerBits {
  readonly name: string;
  format: NumberFormat;
  weight: number;
  act: number;
  routing: number | null;
}

/** A configuration: one LayerBits per layer of the model, in the model's layer order. */
export type BitConfig = LayerBits[];

/** The same configuration as three positional lists: the form of the files (the search JSON,
 *  the sweep rows, the evaluation cache, the command line's outputs). Convert at the file
 *  boundary with bitsToLists and bitsFromLists; the lists hold counts of one number format,
 *  which the file states where it is not 'fixed'. */
export interface BitLists {
  /** the count of every layer's parameters */
  weightBits: number[];
  /** the count of every layer's activations */
  actBits: number[];
  /** the count of the routing values, one entry per routing layer, in layer order */
  routingBits: number[];
}

export interface QuantConfig {
  bits: BitConfig;
  method: QuantMethod;
  compat: RoundingCompat;
  seed: number;
}

/** Every layer at `count` bits of `format` (weights, activations and routing). */
export function uniformBits(
  layers: readonly QuantLayerInfo[],
  count: number,
  format: NumberFormat = 'fixed',
): BitConfig {
  return layers.map((l) => ({ name: l.name, format, weight: count, act: count, routing: l.routes ? count : null }));
}

export function bitsToLists(c: readonly LayerBits[]): BitLists {
  return {
    weightBits: c.map((l) => l.weight),
    actBits: c.map((l) => l.act),
    routingBits: c.filter((l) => l.routing !== null).map((l) => l.routing as number),
  };
}

/** The configuration of `layers` whose lists are `lists` (checked: see checkBitLists). */
export function bitsFromLists(
  layers: readonly QuantLayerInfo[],
  lists: BitLists,
  name = 'bits',
  format: NumberFormat = 'fixed',
): BitConfig {
  checkBitLists(layers, lists, name, format);
  let r = 0;
  return layers.map((l, i) => ({
    name: l.name,
    format,
    weight: lists.weightBits[i],
    act: lists.actBits[i],
    routing: l.routes ? lists.routingBits[r++] : null,
  }));
}

/** A key of the configuration's values (equal keys: the same configuration of a model), from
 *  its records or its lists. */
export function configKey(c: readonly LayerBits[] | BitLists): string {
  const { weightBits, actBits, routingBits } = Array.isArray(c) ? bitsToLists(c) : (c as BitLists);
  return `w${weightBits.join(',')}|a${actBits.join(',')}|r${routingBits.join(',')}`;
}

export function cloneBits(c: readonly LayerBits[]): BitConfig {
  return c.map((l) => ({ ...l }));
}

/** 'w=[8,7,6] a=[6,6,6] r=[5,5]': a configuration in the search's log lines. */
export function bitsText(c: readonly LayerBits[]): string {
  const { weightBits, actBits, routingBits } = bitsToLists(c);
  return `w=[${weightBits}] a=[${actBits}] r=[${routingBits}]`;
}

/** Layer `name`'s bits in `c`. */
export function bitsOf(c: readonly LayerBits[], name: string): LayerBits {
  const l = c.find((b) => b.name === name);
  if (!l) throw new Error(`bits: no layer named '${name}' (the configuration has ${c.map((b) => b.name).join(', ')})`);
  return l;
}

/** A bit count that means 'not quantized': the quantized forward leaves that layer's
 *  weights, activations or routing values at float32 (the sensitivity analysis varies one
 *  quantity with every other one at full precision). checkBitConfig refuses it, so no search
 *  configuration can hold it. */
export const FULL_PRECISION = Number.POSITIVE_INFINITY;

/** The most fractional bits a configuration may ask for (step 1 starts from 32). */
export const MAX_FRACTIONAL_BITS = 32;

/** The counts a format allows: 'fixed' fractional bits in [0, 32], 'dynamic' widths (sign
 *  included) in [1, 32]. */
export function countRange(format: NumberFormat): { min: number; max: number; what: string } {
  return format === 'dynamic'
    ? { min: 1, max: 32, what: "an integer width (sign included) under 'dynamic'" }
    : { min: 0, max: MAX_FRACTIONAL_BITS, what: 'an integer number of fractional bits' };
}

const countProblem = (b: unknown, format: NumberFormat) => {
  const { min, max, what } = countRange(format);
  return Number.isInteger(b) && (b as number) >= min && (b as number) <= max
    ? null
    : `expected ${what} in [${min}, ${max}], got ${b}`;
};

/** Checks a bit configuration against a model's layers: one record per layer, named as the
 *  layer and in its order, each with a number format and counts valid for it (countRange), a
 *  routing count exactly where the layer routes. */
export function checkBitConfig(layers: readonly QuantLayerInfo[], bits: readonly LayerBits[], name = 'bits'): void {
  const names = layers.map((l) => l.name);
  if (!Array.isArray(bits) || bits.length !== layers.length)
    throw new Error(
      `${name}: expected one record per layer (${names.join(', ')}), got ${Array.isArray(bits) ? bits.length : typeof bits}`,
    );
  layers.forEach((l, i) => {
    const b = bits[i];
    if (b?.name !== l.name) throw new Error(`${name}[${i}]: expected layer '${l.name}', got '${b?.name}'`);
    if (!(NUMBER_FORMATS as readonly unknown[]).includes(b.format))
      throw new Error(
        `${name}[${i}] (${l.name}).format: expected one of ${NUMBER_FORMATS.join(', ')}, got ${b.format}`,
      );
    for (const key of ['weight', 'act'] as const) {
      const problem = countProblem(b[key], b.format);
      if (problem) throw new Error(`${name}[${i}] (${l.name}).${key}: ${problem}`);
    }
    if (!l.routes && b.routing !== null)
      throw new Error(`${name}[${i}] (${l.name}).routing: the layer does not route, expected null, got ${b.routing}`);
    const problem = l.routes ? countProblem(b.routing, b.format) : null;
    if (problem) throw new Error(`${name}[${i}] (${l.name}).routing: ${problem}`);
  });
}

/** The one number format of a configuration: 'dynamic' when any layer is (a search's
 *  configurations have one format throughout), else 'fixed'. */
export function formatOf(c: readonly LayerBits[]): NumberFormat {
  return c.some((l) => l.format === 'dynamic') ? 'dynamic' : 'fixed';
}

/** Checks positional lists against a model's layers: one weight and one activation count per
 *  layer, one routing count per routing layer, each valid for `format` (countRange). */
export function checkBitLists(
  layers: readonly QuantLayerInfo[],
  bits: BitLists,
  name = 'bits',
  format: NumberFormat = 'fixed',
): void {
  const routing = layers.filter((l) => l.routes).map((l) => l.name);
  const want: [keyof BitLists, readonly string[]][] = [
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
      const problem = countProblem(b, format);
      if (problem) throw new Error(`${name}.${key}[${i}] (${names[i]}): ${problem}`);
    });
  }
}
