// Mutations of a valid seed file, all driven by one deterministic Rng so that (seed, reader,
// input index) names an input exactly. Generic byte-level mutations (bit flips, bytes set to
// 0x00/0xff, truncation, inserted / deleted / duplicated ranges), size and length fields set
// to extremes (at offsets the seed's format knows: ZIP sizes and offsets, pickle length
// operands, header lengths, IDX dims, MAT tag sizes), and deep nesting (pickle MARK /
// EMPTY_LIST chains, JSON arrays).
import type { Rng } from '../../src/data/rng.js';

/** A size or length field of a seed: `width` bytes at `offset`. */
export interface SizeField {
  readonly offset: number;
  readonly width: 2 | 4 | 8;
  readonly littleEndian: boolean;
}

/** How deep the nesting mutations go (the 100,000-deep pickles). */
export const DEEP = 100_000;

/** The values a size field is set to: 0, 2^31-1, 2^32-1, -1 (all ones), 2^31, the file
 *  length and the file length +-1 (the classic off-by-one and overflow probes). */
function extremeValues(fileLength: number, width: number): bigint[] {
  const all = (1n << BigInt(8 * width)) - 1n;
  const values = [0n, 1n, 0x7fffffffn, 0x80000000n, 0xffffffffn, all, all >> 1n, BigInt(fileLength)];
  values.push(BigInt(Math.max(0, fileLength - 1)), BigInt(fileLength + 1));
  return values.map((v) => v & all);
}

function writeUint(bytes: Uint8Array, f: SizeField, value: bigint): void {
  for (let k = 0; k < f.width; k++) {
    const byte = Number((value >> BigInt(8 * k)) & 0xffn);
    const at = f.littleEndian ? f.offset + k : f.offset + f.width - 1 - k;
    if (at < bytes.length) bytes[at] = byte;
  }
}

const pick = <T>(rng: Rng, items: readonly T[]): T => items[rng.int(items.length)];

/** A random range [from, to) of `bytes`, at most `max` long. */
function range(rng: Rng, length: number, max = 64): [number, number] {
  const from = rng.int(length + 1);
  const to = Math.min(length, from + rng.int(max + 1));
  return [from, to];
}

function splice(bytes: Uint8Array, from: number, to: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length - (to - from) + insert.length);
  out.set(bytes.subarray(0, from), 0);
  out.set(insert, from);
  out.set(bytes.subarray(to), from + insert.length);
  return out;
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(256);
  return out;
}

/** One byte-level mutation; `fields` are the format's known size fields (may be empty). */
export function mutateBytes(input: Uint8Array, rng: Rng, fields: readonly SizeField[]): Uint8Array {
  const bytes = Uint8Array.from(input);
  const n = bytes.length;
  const at = () => rng.int(Math.max(1, n));
  switch (rng.int(n === 0 ? 1 : 10)) {
    case 0: {
      const [from, to] = range(rng, n, 32);
      return splice(bytes, from, from, rng.int(2) ? randomBytes(rng, to - from + 1) : input.subarray(from, to));
    }
    case 1: // bit flips
      for (let k = 1 + rng.int(4); k > 0; k--) bytes[at()] ^= 1 << rng.int(8);
      return bytes;
    case 2: // bytes set to 0x00 / 0xff / random
      for (let k = 1 + rng.int(4); k > 0; k--) bytes[at()] = pick(rng, [0x00, 0xff, rng.int(256)]);
      return bytes;
    case 3: // truncation (often near the end, where trailers and last records live)
      return bytes.subarray(0, rng.int(2) ? rng.int(n) : Math.max(0, n - 1 - rng.int(Math.min(n, 64))));
    case 4: {
      const [from, to] = range(rng, n, rng.int(4) ? 64 : n);
      return splice(bytes, from, to, new Uint8Array(0));
    }
    case 5: {
      // duplication: a range copied to another place
      const [from, to] = range(rng, n, 256);
      const p = at();
      return splice(bytes, p, p, input.subarray(from, to));
    }
    case 6:
    case 7:
    case 8: {
      // a size field set to an extreme value (a known one if the format gave any)
      const f: SizeField =
        fields.length > 0 && rng.int(4) !== 0
          ? pick(rng, fields)
          : { offset: at(), width: pick(rng, [2, 4, 8] as const), littleEndian: rng.int(2) === 0 };
      writeUint(bytes, f, pick(rng, extremeValues(n, f.width)));
      return bytes;
    }
    default: {
      // a run of one byte value inserted (long runs of one opcode / digit / bracket)
      const run = new Uint8Array(1 + rng.int(rng.int(8) ? 64 : 4096)).fill(n > 0 ? bytes[at()] : rng.int(256));
      const p = at();
      return splice(bytes, p, p, run);
    }
  }
}

/** 1 to 4 byte-level mutations in a row. */
export function mutateMany(input: Uint8Array, rng: Rng, fields: readonly SizeField[]): Uint8Array {
  let out = input;
  for (let k = 1 + (rng.int(3) === 0 ? rng.int(4) : 0); k > 0; k--) out = mutateBytes(out, rng, fields);
  return out;
}

// ---- pickle ----------------------------------------------------------------------------

/** Opcodes followed by a length or index operand, and its width (pickle-opcodes.ts). */
const PICKLE_LENGTH_OPS: ReadonlyMap<number, 4 | 8> = new Map([
  [0x58, 4], // BINUNICODE
  [0x42, 4], // BINBYTES
  [0x54, 4], // BINSTRING
  [0x8b, 4], // LONG4
  [0x6a, 4], // LONG_BINGET
  [0x72, 4], // LONG_BINPUT
  [0x4a, 4], // BININT
  [0x95, 8], // FRAME
  [0x8d, 8], // BINUNICODE8
  [0x8e, 8], // BINBYTES8
  [0x96, 8], // BYTEARRAY8
]);

/** Offsets of the length operands in a pickle (a byte scan: a data byte that happens to equal
 *  an opcode yields a field too, which only adds variety). */
export function pickleFields(bytes: Uint8Array, base = 0): SizeField[] {
  const out: SizeField[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const width = PICKLE_LENGTH_OPS.get(bytes[i]);
    if (width && i + 1 + width <= bytes.length) out.push({ offset: base + i + 1, width, littleEndian: true });
  }
  return out;
}

/** A pickle nested `depth` deep: protocol 2, then EMPTY_LIST+MARK pairs or MARKs, closed
 *  (or not) by APPENDS / TUPLE, then STOP. */
export function deepPickle(rng: Rng, depth = DEEP): Uint8Array {
  const kind = rng.int(4);
  const body: number[] = [0x80, 2];
  const open = [[0x5d], [0x28], [0x7d], [0x5d, 0x28]][kind]; // ']' '(' '}' ']('
  const close = [[0x61], [0x74], [], [0x65]][kind]; // APPEND, TUPLE, (none: dicts on the stack), APPENDS
  const closed = rng.int(2) === 0;
  const out = new Uint8Array(3 + depth * (open.length + (closed ? close.length : 0)) + 1);
  out.set(body, 0);
  let p = 2;
  for (let i = 0; i < depth; i++) for (const b of open) out[p++] = b;
  if (closed) for (let i = 0; i < depth; i++) for (const b of close) out[p++] = b;
  out[p++] = 0x4e; // NONE, so STOP has a value even when nothing was closed
  out[p++] = 0x2e; // STOP
  return out.subarray(0, p);
}

/** A pickle mutation: byte-level (with its length operands as size fields), or a deep chain
 *  of openers inserted before STOP or replacing the pickle. */
export function mutatePickle(pickle: Uint8Array, rng: Rng): Uint8Array {
  const r = rng.int(20);
  if (r === 0) return deepPickle(rng);
  if (r === 1) {
    const at = Math.max(0, pickle.lastIndexOf(0x2e)); // before the final STOP
    const depth = rng.int(2) ? DEEP : 1 + rng.int(2000);
    const chain = new Uint8Array(depth).fill(pick(rng, [0x5d, 0x28, 0x7d, 0x29]));
    return splice(pickle, at, at, chain);
  }
  return mutateMany(pickle, rng, pickleFields(pickle));
}

// ---- JSON ------------------------------------------------------------------------------

const JSON_EXTREMES = [
  '0',
  '-1',
  '2147483647',
  '4294967295',
  '4294967296',
  '9007199254740993',
  '1e308',
  '-0',
  '1.5',
  'null',
  '"x"',
  '[]',
  '{}',
  'true',
];

/** A JSON-text mutation: a number literal set to an extreme, a value replaced by another
 *  type, nesting DEEP arrays, a string emptied or lengthened, or byte-level. */
export function mutateJson(text: string, rng: Rng): string {
  const numbers = [...text.matchAll(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g)];
  const strings = [...text.matchAll(/"(?:[^"\\]|\\.)*"/g)];
  switch (rng.int(8)) {
    case 0:
    case 1:
    case 2: {
      if (numbers.length === 0) break;
      const m = pick(rng, numbers);
      return text.slice(0, m.index) + pick(rng, JSON_EXTREMES) + text.slice(m.index + m[0].length);
    }
    case 3: {
      if (strings.length === 0) break;
      const m = pick(rng, strings);
      const value = pick(rng, ['""', '"\\u0000"', JSON.stringify('x'.repeat(1 + rng.int(5000))), '1', 'null', '[]']);
      return text.slice(0, m.index) + value + text.slice(m.index + m[0].length);
    }
    case 4: {
      // deep nesting: a value (or the whole text) wrapped in DEEP arrays or objects
      const depth = rng.int(2) ? DEEP : 1 + rng.int(5000);
      const [open, close] = rng.int(2) ? ['[', ']'] : ['{"a":', '}'];
      const m = numbers.length > 0 && rng.int(2) ? pick(rng, numbers) : null;
      const closed = rng.int(4) !== 0 ? close.repeat(depth) : '';
      if (!m) return open.repeat(depth) + text + closed;
      return text.slice(0, m.index) + open.repeat(depth) + m[0] + closed + text.slice(m.index + m[0].length);
    }
    case 5: {
      if (strings.length < 2) break;
      const m = pick(rng, strings); // a key or value duplicated elsewhere
      const at = pick(rng, strings).index;
      return text.slice(0, at) + m[0] + ',' + text.slice(at);
    }
    default:
      break;
  }
  return new TextDecoder().decode(mutateMany(new TextEncoder().encode(text), rng, []));
}
