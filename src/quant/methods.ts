// The four rounding methods of Q-CapsNets (SPEC 4) as QuantSpecs for the kernels, in the
// correct arithmetic (default) or the DAC 2020 code's arithmetic (RoundingCompat 'dac2020').
import type { QuantMethod, QuantSpec } from '../tensor/backend.js';

export const QUANT_METHODS: readonly QuantMethod[] = [
  'truncation',
  'round_to_nearest',
  'stochastic_rounding',
  'logarithmic',
];
export type RoundingCompat = 'none' | 'dac2020';
export const ROUNDING_COMPATS: readonly RoundingCompat[] = ['none', 'dac2020'];

/** A quantization method by name; errors start with `label`, naming where the name came from
 *  (the CLI's flag, the library's option, a file's field). The one check of a method's name. */
export function parseQuantMethod(name: unknown, label = 'parseQuantMethod'): QuantMethod {
  if ((QUANT_METHODS as readonly unknown[]).includes(name)) return name as QuantMethod;
  throw new Error(`${label}: unknown quantization method '${name}'; expected one of ${QUANT_METHODS.join(', ')}`);
}

/** A rounding compat mode by name; errors start with `label`, as parseQuantMethod's. The one
 *  check of a compat mode's name. */
export function parseRoundingCompat(name: unknown, label = 'parseRoundingCompat'): RoundingCompat {
  if ((ROUNDING_COMPATS as readonly unknown[]).includes(name)) return name as RoundingCompat;
  throw new Error(`${label}: unknown rounding compat mode '${name}'; expected one of ${ROUNDING_COMPATS.join(', ')}`);
}

/** Quantizer of a layer's parameters with `bits` fractional bits.
 *  Correct arithmetic: the method itself, saturated to the range of the (bits + 1)-bit
 *  fixed-point format the memory count assumes (one integer/sign bit): [-1, 1 - 2^-bits].
 *  dac2020: the reference code's in-place weight quantizers: its "round to nearest" floors
 *  (= truncation), stochastic rounding starts from the offset value, nothing saturates. */
export function weightQuant(
  method: QuantMethod,
  bits: number,
  compat: RoundingCompat,
  seed: number,
  stream: number,
): QuantSpec {
  if (compat === 'dac2020') {
    return {
      method: method === 'round_to_nearest' ? 'truncation' : method,
      frac: bits,
      compat: true,
      lo: -Infinity,
      hi: Infinity,
      seed,
      stream,
    };
  }
  return { method, frac: bits, compat: false, lo: -1, hi: 1 - 2 ** -bits, seed, stream };
}

/** Quantizer of activations and routing values with `bits` fractional bits. Their integer
 *  part is not bounded (the memory count covers weights only), so nothing saturates. */
export function activationQuant(
  method: QuantMethod,
  bits: number,
  compat: RoundingCompat,
  seed: number,
  stream: number,
): QuantSpec {
  return { method, frac: bits, compat: compat === 'dac2020', lo: -Infinity, hi: Infinity, seed, stream };
}
