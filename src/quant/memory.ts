// Weight memory of a quantized model (SPEC 4): under the 'fixed' number format, sum over
// layers of (parameter count) * (w_l + 1) bits, one integer/sign bit plus w_l fractional bits;
// under 'dynamic', (parameter count) * w_l bits (w_l is the width) plus EXPONENT_BITS for the
// stored exponent (fractional length) of each parameter tensor. 1 MB = 8,000,000 bits.
import type { QuantLayerInfo } from '../models/capsnet.js';
import type { LayerBits, NumberFormat } from './config.js';

export const BITS_PER_MB = 8_000_000;

export function weightMemoryBits(paramCounts: readonly number[], weightBits: readonly number[]): number {
  if (paramCounts.length !== weightBits.length) {
    throw new Error(`memory: ${weightBits.length} weight bit counts for ${paramCounts.length} layers`);
  }
  let bits = 0;
  for (let l = 0; l < paramCounts.length; l++) bits += paramCounts[l] * (weightBits[l] + 1);
  return bits;
}

export function weightMemoryMB(paramCounts: readonly number[], weightBits: readonly number[]): number {
  return weightMemoryBits(paramCounts, weightBits) / BITS_PER_MB;
}

/** The 32-bit weight memory (31 fractional bits + the sign everywhere): what reductions and
 *  --budget-divisors are measured against. */
export function fullPrecisionMemoryMB(paramCounts: readonly number[]): number {
  return weightMemoryMB(
    paramCounts,
    paramCounts.map(() => 31),
  );
}

/** The smallest budget any configuration can meet: one bit per parameter (0 fractional bits). */
export function minimumBudgetMB(paramCounts: readonly number[]): number {
  return paramCounts.reduce((a, b) => a + b, 0) / BITS_PER_MB;
}

/** The one check that a weight memory budget can be met: it must allow 1 bit per parameter (0
 *  fractional bits everywhere). `what` names the budget and its value as the caller knows it
 *  (the library's option, the CLI's flag). */
export function checkMemoryBudget(
  paramCounts: readonly number[],
  budgetMB: number,
  what = `memoryBudgetMB ${budgetMB}`,
): void {
  const minimum = minimumBudgetMB(paramCounts);
  if (!(budgetMB >= minimum))
    throw new Error(
      `${what} cannot be met: even 1 bit per parameter needs ${minimum} MB; use a budget of at least ${minimum} MB`,
    );
}

/** Activation memory of a configuration per image (the 2022 follow-up's "activation
 *  reduction"): sum over the activation quantization points of element count x (a_l + 1)
 *  bits ('fixed'; a_l bits under 'dynamic', whose points' fractional lengths are constants of
 *  the model, not stored per image), with `counts[l]` the elements per image at layer l's
 *  points (activationCounts). */
export function activationMemoryBits(
  counts: readonly number[],
  actBits: readonly number[],
  format: NumberFormat = 'fixed',
): number {
  if (counts.length !== actBits.length) {
    throw new Error(`memory: ${actBits.length} activation bit counts for ${counts.length} layers`);
  }
  const sign = format === 'dynamic' ? 0 : 1;
  let bits = 0;
  for (let l = 0; l < counts.length; l++) bits += counts[l] * (actBits[l] + sign);
  return bits;
}

/** Bits of each parameter tensor's stored exponent (its fractional length, a signed integer in
 *  [DYNAMIC_MIN_FRAC, DYNAMIC_MAX_FRAC] = [-64, 64]) under the 'dynamic' number format. */
export const EXPONENT_BITS = 8;

/** What a layer's weight memory depends on (a LayerDescription has it). */
export type MemoryLayer = Pick<QuantLayerInfo, 'name' | 'paramCount' | 'tensorCount'>;

/** The parameter tensors of a layer, for a 'dynamic' count (an error where they are unknown). */
function tensorsOf(l: MemoryLayer): number {
  if (!(Number.isInteger(l.tensorCount) && (l.tensorCount as number) >= 0))
    throw new Error(`memory: layer ${l.name}: its parameter tensor count is needed for a 'dynamic' weight memory`);
  return l.tensorCount as number;
}

/** Weight memory in bits of a configuration (one record per layer, in `layers`' order), each
 *  layer in its own number format: 'fixed' parameters x (w + 1); 'dynamic' parameters x w +
 *  EXPONENT_BITS per parameter tensor. */
export function configMemoryBits(
  layers: readonly MemoryLayer[],
  bits: readonly Pick<LayerBits, 'format' | 'weight'>[],
): number {
  if (layers.length !== bits.length) throw new Error(`memory: ${bits.length} bit records for ${layers.length} layers`);
  let total = 0;
  for (let l = 0; l < layers.length; l++) {
    const { format, weight } = bits[l];
    total +=
      format === 'dynamic'
        ? layers[l].paramCount * weight + EXPONENT_BITS * tensorsOf(layers[l])
        : layers[l].paramCount * (weight + 1);
  }
  return total;
}

export function configMemoryMB(
  layers: readonly MemoryLayer[],
  bits: readonly Pick<LayerBits, 'format' | 'weight'>[],
): number {
  return configMemoryBits(layers, bits) / BITS_PER_MB;
}

/** Weight memory in bits of `weightBits` counts, every layer in `format`. */
export function formatMemoryBits(
  layers: readonly MemoryLayer[],
  weightBits: readonly number[],
  format: NumberFormat,
): number {
  if (layers.length !== weightBits.length)
    throw new Error(`memory: ${weightBits.length} weight bit counts for ${layers.length} layers`);
  return configMemoryBits(
    layers,
    weightBits.map((weight) => ({ format, weight })),
  );
}

/** The smallest weight memory of `format` in bits: one bit per parameter (0 fractional bits
 *  under 'fixed', a width of 1 under 'dynamic', plus its exponents). */
export function minimumMemoryBits(layers: readonly MemoryLayer[], format: NumberFormat): number {
  return formatMemoryBits(
    layers,
    layers.map(() => (format === 'dynamic' ? 1 : 0)),
    format,
  );
}

/** checkMemoryBudget for a format: the budget must allow the smallest configuration of
 *  `format` (minimumMemoryBits). */
export function checkFormatMemoryBudget(
  layers: readonly MemoryLayer[],
  format: NumberFormat,
  budgetMB: number,
  what = `memoryBudgetMB ${budgetMB}`,
): void {
  if (format === 'fixed')
    return checkMemoryBudget(
      layers.map((l) => l.paramCount),
      budgetMB,
      what,
    );
  const minimum = minimumMemoryBits(layers, format) / BITS_PER_MB;
  if (!(budgetMB >= minimum))
    throw new Error(
      `${what} cannot be met: even 1 bit per parameter and the ${EXPONENT_BITS}-bit exponents of 'dynamic' need ${minimum} MB; use a budget of at least ${minimum} MB`,
    );
}
