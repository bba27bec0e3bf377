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
    const root = this.root(key, type, numel, String(location));
    if (view === undefined || view === null) return root;
    // Legacy format only: (view_key, element_offset, view_numel) into the root storage.
    const [, offset, size] = view instanceof PyTuple ? view.items : [];
    if (typeof offset !== 'number' || typeof size !== 'number') {
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
  const decodeStorage = (ref: StorageRef): DecodedValues => {
    let values = decoded.get(ref.key);
    if (!values) {
      const bytes = storageBytes(ref);
      values = decodeElements(bytes, ref.dtype, Math.floor(bytes.length / elementSize(ref.dtype)));
      decoded.set(ref.key, values);
    }
    return values;
  };
  const convert = (v: PyValue, where: string): CheckpointValue => {
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
    if (Array.isArray(v)) return v.map((item, i) => convert(item, `${where}[${i}]`));
    if (v instanceof PyTuple) return v.items.map((item, i) => convert(item, `${where}[${i}]`));
    if (v instanceof PyDict) {
      const out: CheckpointDict = new Map();
      for (const [key, item] of v) {
        const name = dictKey(key);
        out.set(name, convert(item, where ? `${where}.${name}` : name));
      }
      return out;
    }
    if (v instanceof TensorRef) return gatherTensor(v, decodeStorage(v.storage), where, source);
    if ('value' in v && typeof v.value === 'string') return v.value; // torch.device / torch.dtype markers
    throw fileError(source, `'${where || 'top level'}' holds a ${v.pyClass}, which is not supported`);
  };
  return convert(value, '');
}

function dictKey(key: PyValue): string {
  if (typeof key === 'string' || typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean') {
    return String(key);
  }
  if (key instanceof PyTuple) return `(${key.items.map(dictKey).join(', ')})`;
  return describe(key);
}

/** Dense row-major copy of the elements a (shape, strides, offset) view selects. */
function gatherTensor(ref: TensorRef, storage: DecodedValues, name: string, source: string): NamedTensor {
  const shape = [...ref.shape];
  const n = shape.reduce((a, b) => a * b, 1);
  const offset = ref.storage.elementOffset + ref.storageOffset;
  if (ref.stride.length !== shape.length) {
    throw fileError(source, `tensor '${name}' has ${shape.length} dims but ${ref.stride.length} strides`);
  }
  if (n > 0) {
    const last = shape.reduce((acc, size, d) => acc + (size - 1) * ref.stride[d], offset);
    if (last >= storage.floats.length) {
      throw fileError(
        source,
        `tensor '${name}' reads storage '${ref.storage.key}' up to element ${last}, ` +
          `but the storage has only ${storage.floats.length} elements (truncated or corrupt file?)`,
      );
    }
  }
  const tensor: NamedTensor = {
    shape,
    dtype: ref.storage.dtype,
    data: gather(storage.floats, offset, shape, ref.stride, n),
  };
  if (storage.integers && isIntegerDType(ref.storage.dtype)) {
    tensor.integers = gather(storage.integers, offset, shape, ref.stride, n);
  }
  return tensor;
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
