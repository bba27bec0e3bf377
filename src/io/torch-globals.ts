// The allow-list of Python globals a torch.save'd state_dict (or a checkpoint dict around one)
// may reference, each mapped to a TypeScript stand-in that builds plain data:
//
//   collections.OrderedDict                  -> PyDict
//   torch._utils._rebuild_tensor(_v2)        -> TensorRef (storage + offset + shape + strides)
//   torch._utils._rebuild_parameter(...)     -> the TensorRef it wraps
//   torch.FloatStorage, torch.LongStorage... -> StorageType (element dtype of a storage)
//   torch.Size, torch.device, torch.float32..., builtins.set, _codecs.encode (py2 bytes),
//   numpy scalars (numpy.core.multiarray.scalar + numpy.dtype): small immutable values.
//
// Tensor storages are persistent ids: ('storage', StorageType, key, location, numel[, view])
// and become StorageRef; their bytes are fetched afterwards by the container reader.
// Anything else (os.system, builtins.eval, arbitrary classes) is refused by the pickle VM.

import { decodeElements, type DType } from './dtypes.js';
import { PyCallable, PyDict, PyTuple, describe, type PyObject, type PyValue } from './pickle.js';

export const REFUSAL_REASON = 'only state_dict contents are allowed';

export class StorageType implements PyObject {
  readonly pyClass = 'torch.StorageType';
  constructor(
    readonly qualifiedName: string,
    readonly dtype: DType,
  ) {}
}

export class StorageRef implements PyObject {
  readonly pyClass = 'torch.Storage';
  constructor(
    /** Record name in the archive (zip: `data/<key>`), or the legacy root key. */
    readonly key: string,
    readonly dtype: DType,
    /** Number of elements of `dtype` in the storage. */
    readonly numel: number,
    readonly location: string,
    /** Legacy format only: this storage is a slice of root storage `key`. */
    readonly elementOffset = 0,
  ) {}
}

export class TensorRef implements PyObject {
  readonly pyClass = 'torch.Tensor';
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
  ) {}

  /** Parameter.__setstate__ / legacy tensor state: nothing a plain tensor needs. */
  setState(): void {}
}

class ValueMarker implements PyObject {
  constructor(
    readonly pyClass: string,
    readonly value: string,
  ) {}
}

const STORAGE_DTYPES: Record<string, DType> = {
  DoubleStorage: 'float64',
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

const TORCH_DTYPES: Record<string, DType> = {
  float64: 'float64',
  double: 'float64',
  float32: 'float32',
  float: 'float32',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

/** The pickle VM's `resolveGlobal`: a stand-in for an allowed global, undefined otherwise. */
export function resolveTorchGlobal(module: string, name: string): PyValue | undefined {
  const qualified = `${module}.${name}`;
  if (module === 'torch' || module === 'torch.cuda') {
    if (Object.hasOwn(STORAGE_DTYPES, name)) return new StorageType(qualified, STORAGE_DTYPES[name]);
    if (module === 'torch' && Object.hasOwn(TORCH_DTYPES, name))
      return new ValueMarker('torch.dtype', TORCH_DTYPES[name]);
  }
  if ((module === 'torch' || module === 'torch.storage') && name === 'UntypedStorage') {
    return new StorageType(qualified, 'uint8');
  }
  const make = Object.hasOwn(CALLABLES, qualified) ? CALLABLES[qualified] : undefined;
  return make ? new PyCallable(qualified, make) : undefined;
}

type Call = (args: readonly PyValue[]) => PyValue;

const orderedDict: Call = (args) => {
  const dict = new PyDict(true);
  const init = args[0];
  if (init === undefined || init === null) return dict;
  if (init instanceof PyDict) {
    for (const [k, v] of init) dict.set(k, v);
    return dict;
  }
  if (!Array.isArray(init)) throw new Error(`expected a list of pairs, got ${describe(init)}`);
  for (const pair of init) {
    const items = pair instanceof PyTuple ? pair.items : Array.isArray(pair) ? pair : [];
    if (items.length !== 2) throw new Error('expected (key, value) pairs');
    dict.set(items[0], items[1]);
  }
  return dict;
};

const rebuildTensor: Call = (args) => {
  const [storage, offset, size, stride, requiresGrad] = args;
  if (!(storage instanceof StorageRef)) throw new Error(`expected a storage, got ${describe(storage)}`);
  return new TensorRef(
    storage,
    int(offset, 'storage offset'),
    ints(size, 'size'),
    ints(stride, 'stride'),
    requiresGrad === true,
  );
};

const rebuildParameter: Call = (args) => {
  const data = args[0];
  if (!(data instanceof TensorRef)) throw new Error(`expected a tensor, got ${describe(data)}`);
  return new TensorRef(data.storage, data.storageOffset, data.shape, data.stride, args[1] === true);
};

const sequenceOf = (args: readonly PyValue[]): PyValue[] => {
  const items = args[0];
  if (items === undefined) return [];
  if (items instanceof PyTuple) return [...items.items];
  if (Array.isArray(items)) return [...items];
  throw new Error(`expected a sequence, got ${describe(items)}`);
};

const CALLABLES: Record<string, Call> = {
  'collections.OrderedDict': orderedDict,
  'torch._utils._rebuild_tensor': rebuildTensor,
  'torch._utils._rebuild_tensor_v2': rebuildTensor,
  'torch._utils._rebuild_parameter': rebuildParameter,
  'torch._utils._rebuild_parameter_with_state': rebuildParameter,
  'torch.nn.parameter.Parameter': (args) => (args.length === 0 ? null : rebuildParameter([args[0], args[1] ?? true])),
  'torch.Size': (args) => new PyTuple(sequenceOf(args)),
  'torch.device': (args) => new ValueMarker('torch.device', args.map(String).join(':')),
  'builtins.set': sequenceOf,
  'builtins.frozenset': sequenceOf,
  '__builtin__.set': sequenceOf,
  '__builtin__.frozenset': sequenceOf,
  '_codecs.encode': latin1Encode,
  'numpy.dtype': numpyDType,
  'numpy.core.multiarray.scalar': numpyScalar,
  'numpy._core.multiarray.scalar': numpyScalar,
};

/** Protocol 2 writes Python 3 bytes as _codecs.encode(text, 'latin1'). */
function latin1Encode(args: readonly PyValue[]): PyValue {
  const [text, encoding] = args;
  if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
    throw new Error('only _codecs.encode(str, "latin1") is allowed');
  }
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

class NumpyDType implements PyObject {
  readonly pyClass = 'numpy.dtype';
  bigEndian = false;
  constructor(readonly code: string) {}
  setState(state: PyValue): void {
    if (state instanceof PyTuple && state.items[1] === '>') this.bigEndian = true;
  }
}

function numpyDType(args: readonly PyValue[]): PyValue {
  if (typeof args[0] !== 'string') throw new Error('expected a dtype code string');
  return new NumpyDType(args[0]);
}

const NUMPY_CODES: Record<string, DType> = {
  f8: 'float64',
  f4: 'float32',
  f2: 'float16',
  i8: 'int64',
  i4: 'int32',
  i2: 'int16',
  i1: 'int8',
  u1: 'uint8',
  b1: 'bool',
};

/** numpy.core.multiarray.scalar(dtype, raw bytes) -> the number it holds. */
function numpyScalar(args: readonly PyValue[]): PyValue {
  const [dtype, raw] = args;
  if (!(dtype instanceof NumpyDType) || !(raw instanceof Uint8Array)) throw new Error('expected (numpy.dtype, bytes)');
  const code = Object.hasOwn(NUMPY_CODES, dtype.code) ? NUMPY_CODES[dtype.code] : undefined;
  if (!code) throw new Error(`numpy scalar of dtype '${dtype.code}' is not supported`);
  const bytes = dtype.bigEndian ? raw.slice().reverse() : raw;
  const decoded = decodeElements(bytes, code, 1);
  if (decoded.integers) {
    const value = decoded.integers[0];
    return code === 'bool' ? value !== 0n : Number.isSafeInteger(Number(value)) ? Number(value) : value;
  }
  return code === 'float64' ? new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0, true) : decoded.floats[0];
}

function int(value: PyValue | undefined, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${what} must be a non-negative integer, got ${describe(value ?? null)}`);
  }
  return value;
}

function ints(value: PyValue | undefined, what: string): number[] {
  const items = value instanceof PyTuple ? value.items : Array.isArray(value) ? value : undefined;
  if (!items) throw new Error(`${what} must be a tuple, got ${describe(value ?? null)}`);
  return items.map((v) => int(v, what));
}
