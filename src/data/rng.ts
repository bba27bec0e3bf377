// A small seeded random number generator: xoshiro128** (Blackman & Vigna), 128 bits of
// state in four uint32 words, seeded through splitmix32. state()/setState() capture and
// restore it exactly, so a resumed run draws the same numbers as an uninterrupted one.
// Rng.derive(seed, ...keys) gives an independent stream per (seed, keys), e.g. one per
// (epoch, batch), which is how the data loader stays reproducible under prefetch.

/** The four uint32 words of an Rng's state. */
export type RngState = readonly [number, number, number, number];

const TWO_POW_32 = 4294967296;

/** splitmix32 step: a good 32-bit mixer, used to expand seeds into state words. */
function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Splits a seed (any finite number; integers up to 2^53 keep all their bits) into two words. */
function seedWords(seed: number): [number, number] {
  if (!Number.isFinite(seed)) throw new Error(`Rng: seed must be a finite number, got ${seed}`);
  const whole = Math.floor(Math.abs(seed));
  const low = (whole % TWO_POW_32) >>> 0;
  const high = (Math.floor(whole / TWO_POW_32) ^ (seed < 0 ? 0x80000000 : 0)) >>> 0;
  return [low, high];
}

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** A generator seeded from `seed` and optional stream keys (non-negative integers). */
  constructor(seed: number, ...keys: number[]) {
    let h = 0x6a09e667;
    for (const word of [...seedWords(seed), ...keys.flatMap(seedWords)]) h = splitmix32(h ^ word);
    this.s0 = h = splitmix32(h);
    this.s1 = h = splitmix32(h);
    this.s2 = h = splitmix32(h);
    this.s3 = splitmix32(h);
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is a fixed point
  }

  /** An independent stream for (seed, ...keys); same inputs, same stream. */
  static derive(seed: number, ...keys: number[]): Rng {
    return new Rng(seed, ...keys);
  }

  /** The next uint32 in [0, 2^32). */
  next(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A float in [0, 1) with 32 random bits. */
  uniform(): number {
    return this.next() / TWO_POW_32;
  }

  /** A float in [low, high). */
  uniformIn(low: number, high: number): number {
    return low + (high - low) * this.uniform();
  }

  /** An integer in [0, n), without modulo bias; n in [1, 2^32]. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new Error(`Rng.int: n must be an integer in [1, 2^32], got ${n}`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n); // accept r < limit: an exact multiple of n
    for (;;) {
      const r = this.next();
      if (r < limit) return r % n;
    }
  }

  /** Fisher-Yates shuffle in place; returns the same array. */
  shuffle<T extends { length: number; [i: number]: unknown }>(array: T): T {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** The current state; pass it to setState() to continue from exactly here. */
  state(): RngState {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  setState(state: RngState): void {
    if (state.length !== 4 || state.some((w) => !Number.isInteger(w) || w < 0 || w >= TWO_POW_32)) {
      throw new Error(`Rng.setState: expected four uint32 words, got [${state.join(', ')}]`);
    }
    if (state.every((w) => w === 0)) throw new Error('Rng.setState: the all-zero state is not valid for xoshiro128**');
    [this.s0, this.s1, this.s2, this.s3] = state;
  }
}
