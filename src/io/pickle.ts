// A Python pickle reader that never executes anything.
//
// A pickle is a program for a small stack machine: opcodes push literals (ints, strings,
// tuples, dicts...), and two kinds of opcode reach outside it: GLOBAL/STACK_GLOBAL look up a
// Python object by module and name, and REDUCE/NEWOBJ call it. Here every global goes through
// a caller-supplied allow-list (`resolveGlobal`), which returns a harmless TypeScript stand-in
// (a PyCallable that builds a plain value, or a marker object) or `undefined` to refuse it,
// and persistent ids (BINPERSID, used by torch.save for tensor storages) go to
// `persistentLoad`. Protocols 0-5 are decoded, minus the text-mode string opcodes and the
// copyreg extension registry (EXT1/2/4), which state dicts never contain.

import { fileError } from './byte-source.js';
import { OP } from './pickle-opcodes.js';

/** A Python tuple (kept distinct from lists, which are plain arrays). */
export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

/** A Python dict or collections.OrderedDict (insertion order is kept either way). */
export class PyDict extends Map<PyValue, PyValue> {
  /** Instance attributes set by BUILD, e.g. the `_metadata` that torch attaches to a state_dict. */
  readonly attributes = new Map<string, PyValue>();
  constructor(readonly ordered = false) {
    super();
  }
}

/** Any other object, produced by an allow-listed global. */
export interface PyObject {
  /** Qualified Python name of the type this stands in for, e.g. 'torch.Tensor'. */
  readonly pyClass: string;
  /** Handles BUILD (`obj.__setstate__(state)`); without it, BUILD on this object is an error. */
  setState?(state: PyValue): void;
}

/** An allow-listed callable global (a class or function); REDUCE/NEWOBJ invoke `call`. */
export class PyCallable implements PyObject {
  readonly pyClass = 'builtins.function';
  constructor(
    readonly qualifiedName: string,
    readonly call: (args: readonly PyValue[]) => PyValue,
  ) {}
}

/** Python values as decoded here. Sets and frozensets become arrays; bytes become Uint8Array. */
export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | PyTuple | PyDict | PyObject;

export interface UnpickleOptions {
  /** Name for error messages, normally the file path. */
  readonly source: string;
  /** Returns the stand-in for `module.name`, or undefined to refuse it. */
  readonly resolveGlobal: (module: string, name: string) => PyValue | undefined;
  /** Why unknown globals are refused, appended to the error message. */
  readonly refusalReason?: string;
  /** Resolves BINPERSID/PERSID ids; without it, persistent ids are an error. */
  readonly persistentLoad?: (pid: PyValue) => PyValue;
  /** Byte offset of the first opcode (several pickles may follow each other). */
  readonly start?: number;
}

export interface UnpickleResult {
  readonly value: PyValue;
  /** Offset just past the STOP opcode. */
  readonly end: number;
}

export function unpickle(bytes: Uint8Array, options: UnpickleOptions): UnpickleResult {
  return new PickleMachine(bytes, options).run();
}

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

class PickleMachine {
  private pos: number;
  private stack: StackItem[] = [];
  private readonly memo = new Map<number, PyValue>();
  private readonly dv: DataView;
  private opcodeAt = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly options: UnpickleOptions,
  ) {
    this.pos = options.start ?? 0;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  run(): UnpickleResult {
    for (;;) {
      this.opcodeAt = this.pos;
      const op = this.take(1)[0];
      if (op === OP.STOP) return { value: this.pop(), end: this.pos };
      this.step(op);
    }
  }

  private step(op: number): void {
    switch (op) {
      case OP.PROTO: {
        const version = this.take(1)[0];
        if (version > 5) this.fail(`unsupported pickle protocol ${version}`);
        return;
      }
      case OP.FRAME: // an 8-byte frame length, only a buffering hint
        this.take(8);
        return;

      case OP.NONE:
        return this.push(null);
      case OP.NEWTRUE:
        return this.push(true);
      case OP.NEWFALSE:
        return this.push(false);
      case OP.BININT:
        return this.push(this.dv.getInt32(this.skip(4), true));
      case OP.BININT1:
        return this.push(this.take(1)[0]);
      case OP.BININT2:
        return this.push(this.dv.getUint16(this.skip(2), true));
      case OP.LONG1:
        return this.push(decodeLong(this.take(this.take(1)[0])));
      case OP.LONG4: {
        const n = this.length32();
        if (n > MAX_LONG_BYTES) this.fail(`LONG4 integer of ${n} bytes is longer than the ${MAX_LONG_BYTES} allowed`);
        return this.push(decodeLong(this.take(n)));
      }
      case OP.BINFLOAT:
        return this.push(this.dv.getFloat64(this.skip(8), false));
      case OP.INT:
        return this.push(this.parseIntLine());
      case OP.LONG:
        return this.push(decodeDecimal(this.line().replace(/L$/, ''), (m) => this.fail(m)));
      case OP.FLOAT:
        return this.push(Number.parseFloat(this.line()));

      case OP.BINUNICODE:
      case OP.BINSTRING: // Python 2 str, decoded as UTF-8 as torch.load does
        return this.push(utf8(this.take(this.length32())));
      case OP.SHORT_BINUNICODE:
      case OP.SHORT_BINSTRING:
        return this.push(utf8(this.take(this.take(1)[0])));
      case OP.BINUNICODE8:
        return this.push(utf8(this.take(this.length64())));
      case OP.BINBYTES:
        return this.push(this.take(this.length32()).slice());
      case OP.SHORT_BINBYTES:
        return this.push(this.take(this.take(1)[0]).slice());
      case OP.BINBYTES8:
      case OP.BYTEARRAY8:
        return this.push(this.take(this.length64()).slice());

      case OP.MARK:
        this.stack.push(MARK);
        return;
      case OP.EMPTY_TUPLE:
        return this.push(new PyTuple([]));
      case OP.TUPLE:
        return this.push(new PyTuple(this.popMark()));
      case OP.TUPLE1:
        return this.push(new PyTuple(this.popN(1)));
      case OP.TUPLE2:
        return this.push(new PyTuple(this.popN(2)));
      case OP.TUPLE3:
        return this.push(new PyTuple(this.popN(3)));
      case OP.EMPTY_LIST:
      case OP.EMPTY_SET:
        return this.push([]);
      case OP.LIST:
      case OP.FROZENSET:
        return this.push(this.popMark());
      case OP.APPEND: {
        const item = this.pop();
        this.topList('APPEND').push(item);
        return;
      }
      case OP.APPENDS:
      case OP.ADDITEMS: {
        const items = this.popMark();
        const list = this.topList(op === OP.APPENDS ? 'APPENDS' : 'ADDITEMS');
        for (const item of items) list.push(item); // not push(...items): too many arguments overflow the stack
        return;
      }
      case OP.EMPTY_DICT:
        return this.push(new PyDict());
      case OP.DICT:
        return this.push(this.setItems(new PyDict(), this.popMark()));
      case OP.SETITEM: {
        const value = this.pop();
        const key = this.pop();
        this.topDict('SETITEM').set(key, value);
        return;
      }
      case OP.SETITEMS: {
        const items = this.popMark();
        this.setItems(this.topDict('SETITEMS'), items);
        return;
      }

      case OP.POP:
        if (this.stack.length > 0 && this.stack[this.stack.length - 1] !== MARK) this.pop();
        else this.popMark();
        return;
      case OP.POP_MARK:
        this.popMark();
        return;
      case OP.DUP:
        return this.push(this.peek());

      case OP.BINPUT:
        return this.put(this.take(1)[0]);
      case OP.LONG_BINPUT:
        return this.put(this.length32());
      case OP.PUT:
        return this.put(this.parseIndexLine());
      case OP.MEMOIZE:
        return this.put(this.memo.size);
      case OP.BINGET:
        return this.push(this.memoGet(this.take(1)[0]));
      case OP.LONG_BINGET:
        return this.push(this.memoGet(this.length32()));
      case OP.GET:
        return this.push(this.memoGet(this.parseIndexLine()));

      // Globals and calls: only through the allow-list.
      case OP.GLOBAL: {
        const module = this.line();
        const name = this.line();
        return this.push(this.resolve(module, name));
      }
      case OP.STACK_GLOBAL: {
        const name = this.pop();
        const module = this.pop();
        if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings');
        return this.push(this.resolve(module, name));
      }
      case OP.REDUCE:
      case OP.NEWOBJ: {
        const args = this.pop();
        const fn = this.pop();
        return this.push(this.call(fn, args, op === OP.REDUCE ? 'REDUCE' : 'NEWOBJ'));
      }
      case OP.NEWOBJ_EX: {
        const kwargs = this.pop();
        const args = this.pop();
        const cls = this.pop();
        if (!(kwargs instanceof PyDict) || kwargs.size > 0)
          this.fail('NEWOBJ_EX with keyword arguments is not supported');
        return this.push(this.call(cls, args, 'NEWOBJ_EX'));
      }
      case OP.INST: {
        const module = this.line();
        const name = this.line();
        const args = this.popMark();
        return this.push(this.call(this.resolve(module, name), new PyTuple(args), 'INST'));
      }
      case OP.OBJ: {
        const [cls, ...args] = this.popMark();
        return this.push(this.call(cls ?? null, new PyTuple(args), 'OBJ'));
      }
      case OP.BUILD: {
        const state = this.pop();
        this.build(this.peek(), state);
        return;
      }
      case OP.BINPERSID:
        return this.push(this.persistentLoad(this.pop()));
      case OP.PERSID:
        return this.push(this.persistentLoad(this.line()));
      default:
        this.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }

  private resolve(module: string, name: string): PyValue {
    const value = this.options.resolveGlobal(module, name);
    if (value === undefined) {
      const reason = this.options.refusalReason ?? 'it is not on the allow-list';
      throw fileError(this.options.source, `refusing to load global '${module}.${name}' (${reason})`);
    }
    return value;
  }

  private call(fn: PyValue, args: PyValue, opcode: string): PyValue {
    if (!(fn instanceof PyCallable))
      this.fail(`${opcode} on a value that is not an allowed callable (${describe(fn)})`);
    if (!(args instanceof PyTuple)) this.fail(`${opcode} arguments must be a tuple, got ${describe(args)}`);
    try {
      return fn.call(args.items);
    } catch (err) {
      this.fail(`${fn.qualifiedName}: ${(err as Error).message}`);
    }
  }

  private build(target: PyValue, state: PyValue): void {
    if (target instanceof PyDict) {
      const parts = state instanceof PyTuple ? state.items : [state];
      for (const part of parts) {
        if (part === null) continue;
        if (!(part instanceof PyDict)) this.fail(`BUILD of a dict expects a dict of attributes, got ${describe(part)}`);
        for (const [key, value] of part) target.attributes.set(String(key), value);
      }
      return;
    }
    if (isPyObject(target) && target.setState) {
      target.setState(state);
      return;
    }
    this.fail(`BUILD on ${describe(target)} is not supported`);
  }

  private persistentLoad(pid: PyValue): PyValue {
    if (!this.options.persistentLoad) this.fail('unexpected persistent id (BINPERSID) in a plain pickle');
    return this.options.persistentLoad(pid);
  }

  private setItems(dict: PyDict, items: PyValue[]): PyDict {
    if (items.length % 2 !== 0) this.fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
    return dict;
  }

  private topList(opcode: string): PyValue[] {
    const top = this.peek();
    if (!Array.isArray(top)) this.fail(`${opcode} needs a list, got ${describe(top)}`);
    return top;
  }

  private topDict(opcode: string): PyDict {
    const top = this.peek();
    if (!(top instanceof PyDict)) this.fail(`${opcode} needs a dict, got ${describe(top)}`);
    return top;
  }

  private put(index: number): void {
    this.memo.set(index, this.peek());
  }

  private memoGet(index: number): PyValue {
    if (!this.memo.has(index)) this.fail(`memo entry ${index} does not exist`);
    return this.memo.get(index) as PyValue;
  }

  // Stack helpers

  private push(value: PyValue): void {
    this.stack.push(value);
  }

  private pop(): PyValue {
    const item = this.stack.pop();
    if (item === undefined) this.fail('stack underflow');
    if (item === MARK) this.fail('unexpected MARK on the stack');
    return item;
  }

  private peek(): PyValue {
    const item = this.stack[this.stack.length - 1];
    if (item === undefined) this.fail('stack underflow');
    if (item === MARK) this.fail('unexpected MARK on the stack');
    return item;
  }

  private popN(n: number): PyValue[] {
    const items: PyValue[] = [];
    for (let i = 0; i < n; i++) items.unshift(this.pop());
    return items;
  }

  private popMark(): PyValue[] {
    const at = this.stack.lastIndexOf(MARK);
    if (at < 0) this.fail('no MARK on the stack');
    const items = this.stack.splice(at) as StackItem[];
    items.shift();
    return items as PyValue[];
  }

  // Byte reading helpers

  private take(n: number): Uint8Array {
    const start = this.skip(n);
    return this.bytes.subarray(start, start + n);
  }

  /** Advances past `n` bytes and returns where they start. */
  private skip(n: number): number {
    if (this.pos + n > this.bytes.length) {
      this.fail(
        `truncated pickle: needs ${n} more bytes at offset ${this.pos}, only ${this.bytes.length - this.pos} remain`,
      );
    }
    const start = this.pos;
    this.pos += n;
    return start;
  }

  private length32(): number {
    return this.dv.getUint32(this.skip(4), true);
  }

  private length64(): number {
    const n = this.dv.getBigUint64(this.skip(8), true);
    if (n > BigInt(this.bytes.length)) this.fail(`length ${n} exceeds the pickle size`);
    return Number(n);
  }

  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('truncated pickle: missing newline');
    const text = utf8(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return text;
  }

  private parseIntLine(): PyValue {
    const text = this.line();
    if (text === '00') return false;
    if (text === '01') return true;
    return decodeDecimal(text, (m) => this.fail(m));
  }

  private parseIndexLine(): number {
    const value = decodeDecimal(this.line(), (m) => this.fail(m));
    if (typeof value !== 'number') this.fail('memo index too large');
    return value;
  }

  private fail(message: string): never {
    throw fileError(this.options.source, `${message} (pickle opcode at offset ${this.opcodeAt})`);
  }
}

function isPyObject(value: PyValue): value is PyObject {
  return typeof value === 'object' && value !== null && 'pyClass' in value;
}

/** Short description of a value's type for error messages. */
export function describe(value: PyValue): string {
  if (value === null) return 'None';
  if (Array.isArray(value)) return 'list';
  if (value instanceof Uint8Array) return 'bytes';
  if (value instanceof PyTuple) return 'tuple';
  if (value instanceof PyDict) return value.ordered ? 'OrderedDict' : 'dict';
  if (value instanceof PyCallable) return `'${value.qualifiedName}'`;
  if (isPyObject(value)) return value.pyClass;
  return typeof value === 'bigint' ? 'int' : typeof value;
}

/** Longest LONG4 body accepted (1 MiB; torch.save never writes more than a few bytes). */
const MAX_LONG_BYTES = 1 << 20;
/** Longest decimal INT/LONG literal accepted, as Python's default int_max_str_digits. */
const MAX_DECIMAL_DIGITS = 4300;

/** Two's-complement little-endian integer, as a number when it is safe, else a bigint. Linear time. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  const bigEndian = Buffer.from(bytes).reverse();
  let value = BigInt('0x' + bigEndian.toString('hex'));
  if (bytes[bytes.length - 1] & 0x80) value -= 1n << BigInt(8 * bytes.length);
  return narrow(value);
}

function decodeDecimal(text: string, fail: (message: string) => never): number | bigint {
  const trimmed = text.trim();
  if (trimmed.length > MAX_DECIMAL_DIGITS + 1) fail(`integer literal longer than ${MAX_DECIMAL_DIGITS} digits`);
  if (!/^[-+]?\d+$/.test(trimmed))
    fail(`invalid integer literal '${text.length > 40 ? text.slice(0, 40) + '...' : text}'`);
  return narrow(BigInt(trimmed));
}

function narrow(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

const decoder = new TextDecoder('utf-8');

function utf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
