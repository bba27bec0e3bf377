// Writes pickles (protocol 2, the protocol torch.save uses) of a state_dict, opcode for
// opcode the shape torch.save produces:
//
//   OrderedDict() then SETITEMS of
//     name -> _rebuild_tensor_v2(persistent_id(('storage', torch.FloatStorage, '<key>', 'cpu', numel)),
//                                storage_offset, size tuple, stride tuple, requires_grad, OrderedDict())
//
// Only opcodes that torch's weights_only unpickler (torch >= 1.13) accepts are used. Globals
// are memoized (BINPUT once, BINGET afterwards) as Python's pickler does.

import { OP } from './pickle-opcodes.js';

export interface PickledTensor {
  readonly name: string;
  /** Storage class name in module torch, e.g. 'FloatStorage' or 'LongStorage'. */
  readonly storageClass: string;
  /** Storage key: the tensor's bytes live in the archive record `data/<key>`. */
  readonly storageKey: string;
  readonly storageNumel: number;
  readonly shape: readonly number[];
}

/** Python's pickler flushes SETITEMS every 1000 pairs; so do we. */
const BATCH_SIZE = 1000;

/** The data.pkl bytes of torch.save(state_dict) for these tensors (contiguous, offset 0). */
export function pickleStateDict(tensors: readonly PickledTensor[]): Uint8Array {
  const w = new PickleWriter();
  w.op(OP.PROTO, 2);
  w.global('collections', 'OrderedDict');
  w.op(OP.EMPTY_TUPLE, OP.REDUCE);
  for (let start = 0; start < tensors.length; start += BATCH_SIZE) {
    w.op(OP.MARK);
    for (const t of tensors.slice(start, start + BATCH_SIZE)) {
      w.string(t.name);
      writeTensor(w, t);
    }
    w.op(OP.SETITEMS);
  }
  w.op(OP.STOP);
  return w.bytes();
}

function writeTensor(w: PickleWriter, t: PickledTensor): void {
  w.global('torch._utils', '_rebuild_tensor_v2');
  w.op(OP.MARK);
  w.op(OP.MARK);
  w.string('storage');
  w.global('torch', t.storageClass);
  w.string(t.storageKey);
  w.string('cpu');
  w.int(t.storageNumel);
  w.op(OP.TUPLE, OP.BINPERSID);
  w.int(0); // storage offset
  w.intTuple(t.shape);
  w.intTuple(contiguousStrides(t.shape));
  w.op(OP.NEWFALSE); // requires_grad
  w.global('collections', 'OrderedDict'); // backward hooks: an empty OrderedDict
  w.op(OP.EMPTY_TUPLE, OP.REDUCE);
  w.op(OP.TUPLE, OP.REDUCE);
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let step = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = step;
    step *= shape[i];
  }
  return strides;
}

class PickleWriter {
  private chunks: number[] = [];
  private readonly memo = new Map<string, number>();

  op(...codes: number[]): void {
    this.chunks.push(...codes);
  }

  global(module: string, name: string): void {
    const key = `${module}\n${name}`;
    const index = this.memo.get(key);
    if (index !== undefined) {
      this.indexed(OP.BINGET, OP.LONG_BINGET, index);
      return;
    }
    this.op(OP.GLOBAL);
    this.raw(new TextEncoder().encode(`${module}\n${name}\n`));
    this.indexed(OP.BINPUT, OP.LONG_BINPUT, this.memo.size);
    this.memo.set(key, this.memo.size);
  }

  string(text: string): void {
    const bytes = new TextEncoder().encode(text);
    this.op(OP.BINUNICODE);
    this.u32(bytes.length);
    this.raw(bytes);
  }

  int(value: number): void {
    if (!Number.isSafeInteger(value)) throw new Error(`pickle writer: ${value} is not an integer`);
    if (value >= 0 && value < 0x100) this.op(OP.BININT1, value);
    else if (value >= 0 && value < 0x10000) this.op(OP.BININT2, value & 0xff, value >> 8);
    else if (value >= -0x80000000 && value <= 0x7fffffff) {
      this.op(OP.BININT);
      this.u32(value >>> 0);
    } else this.long1(BigInt(value));
  }

  intTuple(values: readonly number[]): void {
    const small = [OP.EMPTY_TUPLE, OP.TUPLE1, OP.TUPLE2, OP.TUPLE3];
    if (values.length < small.length) {
      values.forEach((v) => this.int(v));
      this.op(small[values.length]);
      return;
    }
    this.op(OP.MARK);
    values.forEach((v) => this.int(v));
    this.op(OP.TUPLE);
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }

  private long1(value: bigint): void {
    const bytes: number[] = [];
    let v = value;
    // Minimal two's-complement little-endian encoding, as Python's encode_long.
    do {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
    } while (!(
      (v === 0n && (bytes[bytes.length - 1] & 0x80) === 0) ||
      (v === -1n && (bytes[bytes.length - 1] & 0x80) !== 0)
    ));
    this.op(OP.LONG1, bytes.length, ...bytes);
  }

  private indexed(shortOp: number, longOp: number, index: number): void {
    if (index < 0x100) this.op(shortOp, index);
    else {
      this.op(longOp);
      this.u32(index);
    }
  }

  private u32(value: number): void {
    this.op(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff);
  }

  private raw(bytes: Uint8Array): void {
    for (const b of bytes) this.chunks.push(b);
  }
}
