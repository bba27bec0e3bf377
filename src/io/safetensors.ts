// safetensors files (huggingface/safetensors):
//
//   8 bytes   N, little-endian unsigned 64-bit: length of the header
//   N bytes   UTF-8 JSON object (may be padded with trailing spaces):
//               { "<name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ...,
//                 "__metadata__": { "<key>": "<string value>" } }   (metadata optional)
//   rest      the data buffer; offsets are relative to its start, tensors are dense row-major
//             little-endian.
//
// Reading converts F32/F64/F16/BF16 and integer/bool tensors to float32 (integers also kept
// exactly). Writing stores F32 (F64 for dtype 'float64', I64 for integer and bool dtypes),
// pads the header to 8 bytes as the reference implementation does, and is atomic.
// readSafetensorsRaw / writeSafetensorsRaw give and take each tensor's bytes as they are in the
// file, with its safetensors dtype code ('U8', 'I32', ...): for packed integer data (see
// src/export/quantized-file.ts), which must not be widened to float32.

import { writeFileAtomic } from './atomic-write.js';
import { fileError, fileSource } from './byte-source.js';
import { decodeElements, elementSize, type DType } from './dtypes.js';
import { encodeForWriting, type NamedTensor, type StateDict } from './tensor-data.js';

export interface SafetensorsContents {
  tensors: StateDict;
  metadata: Record<string, string>;
}

const FROM_SAFETENSORS: Record<string, DType> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

const TO_SAFETENSORS = { float32: 'F32', float64: 'F64', int64: 'I64' } as const;

const MAX_HEADER_BYTES = 100_000_000;

/** One tensor as stored: its safetensors dtype code, shape and little-endian bytes. */
export interface RawTensor {
  /** 'F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8' or 'BOOL' */
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

export interface RawSafetensorsContents {
  tensors: Map<string, RawTensor>;
  metadata: Record<string, string>;
  /** bytes of the data buffer (all tensors), and of the whole file */
  dataBytes: number;
  fileBytes: number;
}

/** Reads a safetensors file keeping every tensor's bytes undecoded (checked as readSafetensors
 *  checks them: dtype, shape against byte length, offsets within the file). */
export function readSafetensorsRaw(file: string): RawSafetensorsContents {
  const tensors = new Map<string, RawTensor>();
  const { metadata, dataBytes, fileBytes } = readEntries(file, (name, code, _dtype, shape, bytes) =>
    tensors.set(name, { dtype: code, shape, bytes }),
  );
  return { tensors, metadata, dataBytes, fileBytes };
}

export function readSafetensors(file: string): SafetensorsContents {
  const tensors: StateDict = new Map();
  const { metadata } = readEntries(file, (name, _code, dtype, shape, bytes) => {
    const numel = shape.reduce((a, b) => a * b, 1);
    const decoded = decodeElements(bytes, dtype, numel);
    const tensor: NamedTensor = { shape, dtype, data: decoded.floats };
    if (decoded.integers) tensor.integers = decoded.integers;
    tensors.set(name, tensor);
  });
  return { tensors, metadata };
}

function readEntries(
  file: string,
  onTensor: (name: string, code: string, dtype: DType, shape: number[], bytes: Uint8Array) => void,
): { metadata: Record<string, string>; dataBytes: number; fileBytes: number } {
  const source = fileSource(file);
  try {
    if (source.size < 8)
      throw fileError(file, `truncated: ${source.size} bytes, a safetensors file starts with an 8-byte header length`);
    const headerLength = new DataView(source.read(0, 8).buffer).getBigUint64(0, true);
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      throw fileError(file, `safetensors header length ${headerLength} is implausible (not a safetensors file?)`);
    }
    const dataStart = 8 + Number(headerLength);
    if (dataStart > source.size) {
      throw fileError(
        file,
        `truncated: header says ${headerLength} bytes of JSON but the file has ${source.size - 8} after the length`,
      );
    }
    const header = parseHeader(file, source.read(8, Number(headerLength)));
    const dataLength = source.size - dataStart;
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = parseMetadata(file, entry);
        continue;
      }
      const { code, dtype, shape, begin, end } = parseEntry(file, name, entry);
      if (end > dataLength) {
        throw fileError(
          file,
          `truncated: tensor '${name}' needs data bytes ${begin}..${end} but only ${dataLength} are present`,
        );
      }
      onTensor(name, code, dtype, shape, source.read(dataStart + begin, end - begin));
    }
    return { metadata, dataBytes: dataLength, fileBytes: source.size };
  } finally {
    source.close();
  }
}

function parseHeader(file: string, bytes: Uint8Array): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw fileError(file, `safetensors header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw fileError(file, 'safetensors header must be a JSON object');
  }
  return header as Record<string, unknown>;
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fileError(file, '__metadata__ must be an object of strings');
  }
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw fileError(file, `__metadata__ value for '${key}' must be a string`);
  }
  return { ...(value as Record<string, string>) };
}

function parseEntry(
  file: string,
  name: string,
  value: unknown,
): { code: string; dtype: DType; shape: number[]; begin: number; end: number } {
  const entry = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const { dtype: code, shape, data_offsets: offsets } = entry;
  const bad = (what: string): Error => fileError(file, `tensor '${name}': ${what}`);
  if (typeof code !== 'string') throw bad('missing "dtype"');
  const dtype = Object.hasOwn(FROM_SAFETENSORS, code) ? FROM_SAFETENSORS[code] : undefined;
  if (!dtype)
    throw bad(`dtype '${code}' is not supported (expected one of ${Object.keys(FROM_SAFETENSORS).join(', ')})`);
  const isCount = (d: unknown): d is number => Number.isSafeInteger(d) && (d as number) >= 0;
  if (!Array.isArray(shape) || !shape.every(isCount)) throw bad('"shape" must be an array of non-negative integers');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw bad('"data_offsets" must be [begin, end] with 0 <= begin <= end');
  }
  const [begin, end] = offsets as [number, number];
  const expected = (shape as number[]).reduce((a, b) => a * b, 1) * elementSize(dtype);
  if (end - begin !== expected) {
    throw bad(`data_offsets span ${end - begin} bytes but shape [${shape.join(', ')}] of ${code} needs ${expected}`);
  }
  return { code, dtype, shape: shape as number[], begin, end };
}

/** Writes `tensors` (and optional string metadata) as a safetensors file, atomically. */
export function writeSafetensors(
  file: string,
  tensors: StateDict | Iterable<readonly [string, NamedTensor]>,
  metadata?: Record<string, string>,
): void {
  for (const [key, value] of Object.entries(metadata ?? {})) {
    if (typeof value !== 'string') throw fileError(file, `metadata value for '${key}' must be a string`);
  }
  const raw: [string, RawTensor][] = [];
  const names = new Set<string>();
  for (const [name, tensor] of tensors) {
    if (name === '__metadata__') throw fileError(file, "a tensor cannot be named '__metadata__'");
    if (names.has(name)) throw fileError(file, `duplicate tensor name '${name}'`);
    names.add(name);
    const { dtype, bytes } = encodeForWriting(file, name, tensor);
    raw.push([name, { dtype: TO_SAFETENSORS[dtype], shape: tensor.shape, bytes }]);
  }
  writeSafetensorsRaw(file, raw, metadata);
}

/** Writes tensors given as their bytes and safetensors dtype codes (see RawTensor), atomically;
 *  each one's byte length must be its shape's element count times the dtype's size. */
export function writeSafetensorsRaw(
  file: string,
  tensors: Iterable<readonly [string, RawTensor]>,
  metadata?: Record<string, string>,
): void {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw fileError(file, `metadata value for '${key}' must be a string`);
    }
    header.__metadata__ = metadata;
  }
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of tensors) {
    if (name === '__metadata__') throw fileError(file, "a tensor cannot be named '__metadata__'");
    if (Object.hasOwn(header, name)) throw fileError(file, `duplicate tensor name '${name}'`);
    const { dtype: code, shape, bytes } = tensor;
    const dtype = Object.hasOwn(FROM_SAFETENSORS, code) ? FROM_SAFETENSORS[code] : undefined;
    if (!dtype) throw fileError(file, `tensor '${name}': dtype '${code}' is not a safetensors dtype`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw fileError(file, `tensor '${name}' has an invalid shape [${String(shape)}]`);
    const expected = shape.reduce((a, b) => a * b, 1) * elementSize(dtype);
    if (!(bytes instanceof Uint8Array) || bytes.length !== expected)
      throw fileError(
        file,
        `tensor '${name}': shape [${shape.join(', ')}] of ${code} needs ${expected} bytes, got ${bytes?.length}`,
      );
    header[name] = { dtype: code, shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  const jsonLength = new TextEncoder().encode(json).length;
  json += ' '.repeat((8 - (jsonLength % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const lengthBytes = new Uint8Array(8);
  new DataView(lengthBytes.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  writeFileAtomic(file, () => [lengthBytes, headerBytes, ...blobs]);
}
