// From unpickled torch stand-ins to plain TypeScript values: storages named by persistent
// ids are collected while unpickling, then each TensorRef (storage + element offset + shape +
// strides) is gathered into a dense row-major Float32Array, honouring non-contiguous strides
// (e.g. a transposed view saved as-is), storage offsets and storages shared between tensors.

import { fileError } from './byte-source.js';
import {
  decodeElements,
  elementSize,
  float32Bytes,
  float64Bytes,
  int64Bytes,
  isIntegerDType,
  type DecodedValues,
} from './dtypes.js';
import { PyDict, PyTuple, describe, type PyValue } from './pickle.js';
import { StorageRef, StorageType, TensorRef } from './torch-globals.js';

/** A tensor read from (or to be written to) a checkpoint: dense, row-major. */
export interface NamedTensor {
  shape: number[];
  /** Values converted to float32 (integer and bool tensors too, for convenience). */
  data: Float32Array;
  /** torch dtype name: 'float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'uint8', 'bool', ... */
  dtype: string;
  /** Exact values of integer and bool tensors (e.g. BatchNorm's int64 num_batches_tracked). */
  integers?: BigInt64Array;
}

/** Parameter and buffer names to tensors, in file order. */
export type StateDict = Map<string, NamedTensor>;

/** Everything a checkpoint may hold. Tuples and sets become arrays; dict keys become strings. */
export type CheckpointValue =
  NamedTensor | null | boolean | number | bigint | string | Uint8Array | CheckpointValue[] | CheckpointDict;
export type CheckpointDict = Map<string, CheckpointValue>;

export function isNamedTensor(value: CheckpointValue | undefined): value is NamedTensor {
  return typeof value === 'object' && value !== null && 'data' in value && value.data instanceof Float32Array;
}

/**
 * Persistent-id handler for torch pickles: ('storage', StorageType, key, location, numel[, view]).
 * Keeps one StorageRef per key so shared storages are decoded once.
 */
export class StorageRegistry {
  readonly roots = new Map<string, StorageRef>();

  constructor(private readonly source: string) {}

  load(pid: PyValue): PyValue {
    const items = pid instanceof PyTuple ? pid.items : [];
    const [kind, type, key, location, numel, view] = items;
    const tag = kind instanceof Uint8Array ? new TextDecoder().decode(kind) : kind;
    if (tag !== 'storage' || !(type instanceof StorageType) || typeof key !== 'string' || typeof numel !== 'number') {
      throw fileError(
        this.source,
        `unsupported persistent id ${describe(pid)} (expected ('storage', type, key, location, numel))`,
      );
    }
    if (!Number.isSafeInteger(numel) || numel < 0) {
      throw fileError(this.source, `storage '${key}' declares an invalid element count ${numel}`);
    }
    const root = this.root(key, type, numel, String(location));
    if (view === undefined || view === null) return root;
    // Legacy format only: (view_key, element_offset, view_numel) into the root storage.
    const [, offset, size] = view instanceof PyTuple ? view.items : [];
    if (
      typeof offset !== 'number' ||
      typeof size !== 'number' ||
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(size) ||
      offset < 0 ||
      size < 0 ||
      offset + size > root.numel
    ) {
      throw fileError(this.source, `invalid storage view metadata for storage '${key}'`);
    }
    return new StorageRef(key, type.dtype, size, root.location, offset);
  }

  private root(key: string, type: StorageType, numel: number, location: string): StorageRef {
    const existing = this.roots.get(key);
    if (existing) {
      if (existing.dtype !== type.dtype) {
        throw fileError(this.source, `storage '${key}' is used as both ${existing.dtype} and ${type.dtype}`);
      }
      return existing;
    }
    const ref = new StorageRef(key, type.dtype, numel, location);
    this.roots.set(key, ref);
    return ref;
  }
}

/**
 * Converts an unpickled value to a CheckpointValue, turning TensorRefs into NamedTensors.
 * `storageBytes(key)` returns the raw bytes of root storage `key`.
 */
export function toCheckpointValue(
  value: PyValue,
  storageBytes: (ref: StorageRef) => Uint8Array,
  source: string,
): CheckpointValue {
  const decoded = new Map<string, DecodedValues>();
  let storageElements = 0;
  let materialised = 0;
  const decodeStorage = (ref: StorageRef): DecodedValues => {
    let values = decoded.get(ref.key);
    if (!values) {
      const bytes = storageBytes(ref);
      values = decodeElements(bytes, ref.dtype, Math.floor(bytes.length / elementSize(ref.dtype)));
      decoded.set(ref.key, values);
      storageElements += values.floats.length;
    }
    return values;
  };
  // Containers reached twice through the pickle memo are converted once and shared (as in
  // Python), so a small pickle of lists holding the previous list twice stays small. A
  // container that contains itself is refused, and so is nesting deeper than MAX_DEPTH.
  const done = new Map<object, CheckpointValue>();
  const active = new Set<object>();
  const convert = (v: PyValue, where: string, depth: number): CheckpointValue => {
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
    const cached = done.get(v);
    if (cached !== undefined) return cached;
    if (active.has(v)) throw fileError(source, `'${where || 'top level'}' contains itself (a cyclic container)`);
    if (depth > MAX_DEPTH) {
      throw fileError(source, `containers are nested deeper than ${MAX_DEPTH} levels (at '${truncated(where)}')`);
    }
    if (Array.isArray(v) || v instanceof PyTuple || v instanceof PyDict) {
      active.add(v);
      let out: CheckpointValue;
      if (v instanceof PyDict) {
        const dict: CheckpointDict = new Map();
        for (const [key, item] of v) {
          const name = dictKey(key, source);
          dict.set(name, convert(item, where ? `${where}.${name}` : name, depth + 1));
        }
        out = dict;
      } else {
        const items = Array.isArray(v) ? v : v.items;
        const list: CheckpointValue[] = new Array<CheckpointValue>(items.length);
        for (let i = 0; i < items.length; i++) list[i] = convert(items[i], `${where}[${i}]`, depth + 1);
        out = list;
      }
      active.delete(v);
      done.set(v, out);
      return out;
    }
    if (v instanceof TensorRef) {
      const storage = decodeStorage(v.storage);
      const numel = checkedNumel(v, storage, where, source);
      materialised += numel;
      const budget = Math.max(MIN_TOTAL_LIMIT, STORAGE_MULTIPLE * storageElements);
      if (materialised > budget) {
        throw fileError(
          source,
          `tensor '${where}': the tensors so far need ${materialised} elements in all, more than ${budget} ` +
            `(${STORAGE_MULTIPLE} times the ${storageElements} elements of their storages); the file is corrupt or hostile`,
        );
      }
      return gatherTensor(v, storage, numel, where, source);
    }
    if ('value' in v && typeof v.value === 'string') return v.value; // torch.device / torch.dtype markers
    throw fileError(source, `'${where || 'top level'}' holds a ${v.pyClass}, which is not supported`);
  };
  return convert(value, '', 0);
}

/** Deepest container nesting accepted (real checkpoints nest a few levels). */
export const MAX_DEPTH = 1000;
/** Most elements one tensor may have once materialised. */
const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;
/** Materialised tensors may exceed their storages (stride-0 or overlapping views) by this factor... */
const STORAGE_MULTIPLE = 64;
/** ...or reach this many elements each, whichever is more... */
const MIN_ELEMENT_LIMIT = 2 ** 24;
/** ...and this many for all the tensors of a file together. */
const MIN_TOTAL_LIMIT = 2 ** 25;

function truncated(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

/** The element count of `ref`, after checking its shape and strides against its storage. */
function checkedNumel(ref: TensorRef, storage: DecodedValues, name: string, source: string): number {
  const shape = ref.shape;
  const offset = ref.storage.elementOffset + ref.storageOffset;
  if (ref.stride.length !== shape.length) {
    throw fileError(source, `tensor '${name}' has ${shape.length} dims but ${ref.stride.length} strides`);
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw fileError(source, `tensor '${name}' has an invalid storage offset ${offset}`);
  }
  let n = 1;
  for (const size of shape) n *= size;
  const shapeText = `[${shape.join(', ')}]`;
  if (n > MAX_TENSOR_ELEMENTS) {
    throw fileError(
      source,
      `tensor '${name}' has shape ${shapeText}, ${n} elements (more than ${MAX_TENSOR_ELEMENTS})`,
    );
  }
  if (n === 0) return 0;
  // Strides are non-negative, so the furthest element read is at offset + sum((size - 1) * stride).
  let last = offset;
  for (let d = 0; d < shape.length; d++) last += (shape[d] - 1) * ref.stride[d];
  if (!(last < storage.floats.length)) {
    throw fileError(
      source,
      `tensor '${name}' reads storage '${ref.storage.key}' up to element ${last}, ` +
        `but the storage has only ${storage.floats.length} elements (truncated or corrupt file?)`,
    );
  }
  const limit = Math.max(MIN_ELEMENT_LIMIT, STORAGE_MULTIPLE * storage.floats.length);
  if (n > limit) {
    throw fileError(
      source,
      `tensor '${name}' has shape ${shapeText}, ${n} elements, over a storage '${ref.storage.key}' of only ` +
        `${storage.floats.length} elements (more than ${limit} is refused; corrupt or hostile file?)`,
    );
  }
  return n;
}

function dictKey(key: PyValue, source: string, depth = 0): string {
  if (typeof key === 'string' || typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean') {
    return String(key);
  }
  if (key instanceof PyTuple) {
    // A hostile key may nest deeply or share sub-tuples: bound the depth and the length.
    if (depth > MAX_DEPTH) throw fileError(source, `a dict key nests tuples deeper than ${MAX_DEPTH} levels`);
    let text = '(';
    for (const [i, item] of key.items.entries()) {
      text += (i > 0 ? ', ' : '') + dictKey(item, source, depth + 1);
      if (text.length > MAX_KEY_LENGTH)
        throw fileError(source, `a dict key is longer than ${MAX_KEY_LENGTH} characters`);
    }
    return text + ')';
  }
  return describe(key);
}

const MAX_KEY_LENGTH = 4096;

/** Dense row-major copy of the elements a (shape, strides, offset) view selects. */
function gatherTensor(ref: TensorRef, storage: DecodedValues, n: number, name: string, source: string): NamedTensor {
  const shape = [...ref.shape];
  const offset = ref.storage.elementOffset + ref.storageOffset;
  try {
    const tensor: NamedTensor = {
      shape,
      dtype: ref.storage.dtype,
      data: gather(storage.floats, offset, shape, ref.stride, n),
    };
    if (storage.integers && isIntegerDType(ref.storage.dtype)) {
      tensor.integers = gather(storage.integers, offset, shape, ref.stride, n);
    }
    return tensor;
  } catch (err) {
    if (err instanceof RangeError) throw fileError(source, `tensor '${name}' is too large to load (${err.message})`);
    throw err;
  }
}

function gather<T extends Float32Array | BigInt64Array>(
  src: T,
  offset: number,
  shape: number[],
  stride: readonly number[],
  n: number,
): T {
  if (n === 0) return src.slice(0, 0) as T;
  if (isContiguous(shape, stride)) return src.slice(offset, offset + n) as T;
  const out = (src instanceof Float32Array ? new Float32Array(n) : new BigInt64Array(n)) as T;
  const index = new Array<number>(shape.length).fill(0);
  let p = offset;
  for (let i = 0; i < n; i++) {
    out[i] = src[p];
    for (let d = shape.length - 1; d >= 0; d--) {
      index[d]++;
      p += stride[d];
      if (index[d] < shape[d]) break;
      p -= stride[d] * shape[d];
      index[d] = 0;
    }
  }
  return out;
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

/** How writers store a tensor: float64 stays float64, integer and bool types become int64, the rest float32. */
export function encodeForWriting(
  file: string,
  name: string,
  tensor: NamedTensor,
): { dtype: 'float32' | 'float64' | 'int64'; bytes: Uint8Array } {
  const { shape, data, dtype, integers } = tensor;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw fileError(file, `tensor '${name}' has an invalid shape [${String(shape)}]`);
  }
  const numel = shape.reduce((a, b) => a * b, 1);
  if (!(data instanceof Float32Array) || data.length !== numel) {
    throw fileError(
      file,
      `tensor '${name}': shape [${shape.join(', ')}] needs ${numel} values, data has ${data?.length}`,
    );
  }
  if (dtype === 'float64') return { dtype, bytes: float64Bytes(data) };
  if (!INTEGER_DTYPES.includes(dtype)) return { dtype: 'float32', bytes: float32Bytes(data) };
  if (integers && integers.length !== numel) {
    throw fileError(file, `tensor '${name}': integers has ${integers.length} values, expected ${numel}`);
  }
  if (!integers && !data.every(Number.isFinite)) {
    throw fileError(file, `tensor '${name}' (${dtype}) has non-finite values, which an integer tensor cannot hold`);
  }
  return { dtype: 'int64', bytes: int64Bytes(integers ?? BigInt64Array.from(data, (v) => BigInt(Math.round(v)))) };
}

const INTEGER_DTYPES = ['int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];
