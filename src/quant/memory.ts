// Weight memory of a quantized model (SPEC 4): sum over layers of
// (parameter count) * (w_l + 1) bits, one integer/sign bit plus w_l fractional bits.
// 1 MB = 8,000,000 bits.

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
 *  bits, with `counts[l]` the elements per image at layer l's points (activationCounts). */
export function activationMemoryBits(counts: readonly number[], actBits: readonly number[]): number {
  if (counts.length !== actBits.length) {
    throw new Error(`memory: ${actBits.length} activation bit counts for ${counts.length} layers`);
  }
  let bits = 0;
  for (let l = 0; l < counts.length; l++) bits += counts[l] * (actBits[l] + 1);
  return bits;
}
