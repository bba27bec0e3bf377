// Element types found in checkpoints, named as torch names them ('float32', 'int64', ...), and
// conversion of their little-endian bytes to float32 (plus exact BigInt64 values for integer
// types, so counters such as BatchNorm's num_batches_tracked survive unchanged).

export type DType =
  'float64' | 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const ELEMENT_SIZE: Record<DType, number> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function isDType(name: string): name is DType {
  return Object.hasOwn(ELEMENT_SIZE, name);
}

export function elementSize(dtype: DType): number {
  return ELEMENT_SIZE[dtype];
}

export function isIntegerDType(dtype: DType): boolean {
  return !dtype.startsWith('float') && dtype !== 'bfloat16';
}

export interface DecodedValues {
  floats: Float32Array;
  /** Exact values, present for integer and bool types. */
  integers?: BigInt64Array;
}

/** Decodes `count` little-endian elements of `dtype` starting at `bytes[0]`. */
export function decodeElements(bytes: Uint8Array, dtype: DType, count: number): DecodedValues {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const floats = new Float32Array(count);
  switch (dtype) {
    case 'float32':
      if (littleEndian && bytes.byteOffset % 4 === 0) {
        return { floats: new Float32Array(bytes.buffer, bytes.byteOffset, count).slice() };
      }
      for (let i = 0; i < count; i++) floats[i] = dv.getFloat32(4 * i, true);
      return { floats };
    case 'float64':
      for (let i = 0; i < count; i++) floats[i] = dv.getFloat64(8 * i, true);
      return { floats };
    case 'float16':
      for (let i = 0; i < count; i++) floats[i] = halfToFloat(dv.getUint16(2 * i, true));
      return { floats };
    case 'bfloat16':
      for (let i = 0; i < count; i++) floats[i] = bfloat16ToFloat(dv.getUint16(2 * i, true));
      return { floats };
    default: {
      const integers = new BigInt64Array(count);
      const size = ELEMENT_SIZE[dtype];
      for (let i = 0; i < count; i++) {
        const value = readInteger(dv, dtype, size * i);
        integers[i] = value;
        floats[i] = Number(value);
      }
      return { floats, integers };
    }
  }
}

function readInteger(dv: DataView, dtype: DType, offset: number): bigint {
  switch (dtype) {
    case 'int64':
      return dv.getBigInt64(offset, true);
    case 'int32':
      return BigInt(dv.getInt32(offset, true));
    case 'int16':
      return BigInt(dv.getInt16(offset, true));
    case 'int8':
      return BigInt(dv.getInt8(offset));
    case 'uint8':
      return BigInt(dv.getUint8(offset));
    case 'bool':
      return dv.getUint8(offset) !== 0 ? 1n : 0n;
    default:
      throw new Error(`readInteger: ${dtype} is not an integer type`);
  }
}

export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

const scratch = new DataView(new ArrayBuffer(4));

export function bfloat16ToFloat(bits: number): number {
  scratch.setUint32(0, bits << 16);
  return scratch.getFloat32(0);
}

/** Little-endian bytes of float32 values (a view when the platform is little-endian). */
export function float32Bytes(values: Float32Array): Uint8Array {
  if (littleEndian) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setFloat32(4 * i, v, true));
  return out;
}

export function float64Bytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat64(8 * i, values[i], true);
  return out;
}

export function int64Bytes(values: ArrayLike<bigint>): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setBigInt64(8 * i, values[i], true);
  return out;
}
