// Seeded random numbers and PyTorch's initialisation schemes (torch.nn.init), computed from
// PyTorch's fan-in / fan-out of a parameter's PyTorch shape. The values are i.i.d., so the
// layout a tensor is held in (OHWI, ...) does not change their distribution.
//   Rng: xoshiro128** (Blackman & Vigna), seeded through a 32-bit mixing hash.
//   hashUniform: a counter-based uniform (value i of stream `seed` without state), easy to
//   restate exactly in numpy; tools/make-model-fixtures.py fills fixture weights with it.

/** Chris Wellons' "lowbias32" integer hash: a bijection on uint32 with good avalanche. */
export function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** FNV-1a of a string (UTF-16 code units below 256 assumed: parameter names are ASCII). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ (s.charCodeAt(i) & 0xff), 0x01000193) >>> 0;
  return h;
}

/** Value i of the counter-based stream `seed`, uniform in [0, 1) on a 2^-24 grid:
 *  h = hash32(hash32((i * 0x9E3779B1 + seed) mod 2^32) ^ seed); u = (h >>> 8) * 2^-24. */
export function hashUniform(seed: number, i: number): number {
  const h = hash32((hash32((Math.imul(i >>> 0, 0x9e3779b1) + seed) >>> 0) ^ seed) >>> 0);
  return (h >>> 8) * 2 ** -24;
}

/** data[i] = offset + scale * (2 u_i - 1), u_i = hashUniform(seed, i) (rounded to float32). */
export function hashUniformFill(data: Float32Array, seed: number, scale: number, offset = 0): void {
  for (let i = 0; i < data.length; i++) data[i] = offset + scale * (2 * hashUniform(seed, i) - 1);
}

export class Rng {
  private readonly s = new Uint32Array(4);

  constructor(seed: number) {
    let x = seed >>> 0;
    for (let k = 0; k < 4; k++) {
      x = (x + 0x9e3779b9) >>> 0;
      this.s[k] = hash32(x);
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** A generator for a named sub-stream (e.g. one per parameter), independent of draw order. */
  static forName(seed: number, name: string): Rng {
    return new Rng(hash32((seed >>> 0) ^ hashString(name)));
  }

  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform in [0, 1) on a 2^-24 grid. */
  uniform(): number {
    return (this.nextU32() >>> 8) * 2 ** -24;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** torch.nn.init._calculate_fan_in_and_fan_out on a PyTorch shape: dim 1 is the input
 *  feature maps, dim 0 the output ones, dims 2.. the receptive field. */
export function fans(torchShape: readonly number[]): { fanIn: number; fanOut: number } {
  if (torchShape.length < 2)
    throw new Error(`init: fan in/out needs a tensor of rank >= 2, got [${torchShape.join(', ')}]`);
  let receptive = 1;
  for (let k = 2; k < torchShape.length; k++) receptive *= torchShape[k];
  return { fanIn: torchShape[1] * receptive, fanOut: torchShape[0] * receptive };
}

/** U(-bound, bound). */
export function uniformFill(data: Float32Array, rng: Rng, bound: number): void {
  for (let i = 0; i < data.length; i++) data[i] = bound * (2 * rng.uniform() - 1);
}

/** kaiming_uniform_(w, a) with mode fan_in and leaky_relu gain sqrt(2 / (1 + a^2)):
 *  bound = gain * sqrt(3 / fan_in). a = 0 is torch's default; a = sqrt(5) is what
 *  nn.Conv2d / nn.Linear / nn.ConvTranspose2d use in reset_parameters. */
export function kaimingUniformBound(torchShape: readonly number[], a = 0): number {
  const gain = Math.sqrt(2 / (1 + a * a));
  return gain * Math.sqrt(3 / fans(torchShape).fanIn);
}

/** xavier_uniform_(w) with gain 1: bound = sqrt(6 / (fan_in + fan_out)). */
export function xavierUniformBound(torchShape: readonly number[]): number {
  const { fanIn, fanOut } = fans(torchShape);
  return Math.sqrt(6 / (fanIn + fanOut));
}

/** PyTorch's reset_parameters of nn.Conv2d, nn.Linear and nn.ConvTranspose2d: the weight from
 *  kaiming_uniform_(a = sqrt(5)), the bias (if any) from U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 *  each drawn from the stream named by its state_dict name. */
export function torchDefaultInit(
  seed: number,
  weight: { name: string; data: Float32Array },
  bias: { name: string; data: Float32Array } | null,
  weightTorchShape: readonly number[],
): void {
  uniformFill(weight.data, Rng.forName(seed, weight.name), kaimingUniformBound(weightTorchShape, Math.sqrt(5)));
  if (bias) uniformFill(bias.data, Rng.forName(seed, bias.name), defaultBiasBound(weightTorchShape));
}

/** PyTorch's default bias init for conv / linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 *  with fan_in of the weight's PyTorch shape. */
export function defaultBiasBound(weightTorchShape: readonly number[]): number {
  const { fanIn } = fans(weightTorchShape);
  return fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
}
