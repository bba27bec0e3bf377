// The packed file's bitstream (docs/formats.md, Bitstream): unsigned codes of any width up to 53
// bits, little-endian, least significant bit first.
import { MAX_CODE_BITS } from './packed-format.js';
/** Packs unsigned codes (exact integers in [0, 2^bits)) as a little-endian bitstream. */
export function packBits(codes: ArrayLike<number>, bits: number): Uint8Array {
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= MAX_CODE_BITS))
    throw new Error(`packBits: bits ${bits}: expected 1..${MAX_CODE_BITS}`);
  const n = codes.length;
  const out = new Uint8Array(Math.ceil((n * bits) / 8));
  let o = 0;
  if (bits <= 24) {
    let acc = 0;
    let nacc = 0;
    for (let i = 0; i < n; i++) {
      acc |= codes[i] << nacc;
      nacc += bits;
      while (nacc >= 8) {
        out[o++] = acc & 255;
        acc >>>= 8;
        nacc -= 8;
      }
    }
    if (nacc > 0) out[o] = acc & 255;
    return out;
  }
  let acc = 0; // < 2^(7 + 32), exact in a double
  let nacc = 0;
  const put = (word: number, count: number) => {
    acc += word * 2 ** nacc;
    nacc += count;
    while (nacc >= 8) {
      const byte = acc % 256;
      out[o++] = byte;
      acc = (acc - byte) / 256;
      nacc -= 8;
    }
  };
  for (let i = 0; i < n; i++) {
    const c = codes[i];
    if (bits <= 32) put(c, bits);
    else {
      const lo = c % 2 ** 32;
      put(lo, 32);
      put((c - lo) / 2 ** 32, bits - 32);
    }
  }
  if (nacc > 0) out[o] = acc % 256;
  return out;
}

/** The n unsigned codes of a bitstream written by packBits. */
export function unpackBits(bytes: Uint8Array, n: number, bits: number): Float64Array {
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= MAX_CODE_BITS))
    throw new Error(`unpackBits: bits ${bits}: expected 1..${MAX_CODE_BITS}`);
  if (bytes.length < Math.ceil((n * bits) / 8))
    throw new Error(
      `unpackBits: ${n} codes of ${bits} bits need ${Math.ceil((n * bits) / 8)} bytes, got ${bytes.length}`,
    );
  const out = new Float64Array(n);
  let p = 0;
  if (bits <= 24) {
    const mask = (1 << bits) - 1;
    let acc = 0;
    let nacc = 0;
    for (let i = 0; i < n; i++) {
      while (nacc < bits) {
        acc |= bytes[p++] << nacc;
        nacc += 8;
      }
      out[i] = acc & mask;
      acc >>>= bits;
      nacc -= bits;
    }
    return out;
  }
  let acc = 0;
  let nacc = 0;
  const take = (count: number): number => {
    while (nacc < count) {
      acc += bytes[p++] * 2 ** nacc;
      nacc += 8;
    }
    const word = acc % 2 ** count;
    acc = (acc - word) / 2 ** count;
    nacc -= count;
    return word;
  };
  for (let i = 0; i < n; i++) out[i] = bits <= 32 ? take(bits) : take(32) + take(bits - 32) * 2 ** 32;
  return out;
}
