// IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed (detected by the
// gzip magic bytes 1f 8b). Layout: two zero bytes, a type byte, a dimension count, then
// that many big-endian uint32 sizes, then the values big-endian, row-major.
// http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS FOR THE MNIST DATABASE").

import { readFileSync } from 'node:fs';
import { constants as zlibConstants, gunzipSync } from 'node:zlib';
import { fileError } from '../io/byte-source.js';

export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  /** The type byte's name: 'uint8', 'int8', 'int16', 'int32', 'float32' or 'float64'. */
  type: IdxType;
  dims: number[];
  data: IdxData;
}

export type IdxType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

const typeByCode: Record<number, { type: IdxType; bytes: number }> = {
  0x08: { type: 'uint8', bytes: 1 },
  0x09: { type: 'int8', bytes: 1 },
  0x0b: { type: 'int16', bytes: 2 },
  0x0c: { type: 'int32', bytes: 4 },
  0x0d: { type: 'float32', bytes: 4 },
  0x0e: { type: 'float64', bytes: 8 },
};

/** True when the bytes start with the gzip magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Deflate's densest output: 1032 bytes out per byte in (zlib's technical notes). */
const DEFLATE_MAX_RATIO = 1032;
/** The longest IDX header: magic and 255 dimensions. */
const MAX_IDX_HEADER = 4 + 4 * 255;

/** Gunzips when the bytes are gzip, naming `fileName` if the stream is truncated or corrupt.
 *  `declaredSize` reads the size the decompressed data says it has from its first bytes (at
 *  most MAX_IDX_HEADER): the stream is inflated no further than that (a gzip bomb stops
 *  there), and a size beyond deflate's 1032:1 ratio is refused before inflating. */
export function maybeGunzip(
  bytes: Uint8Array,
  fileName: string,
  expected: string,
  declaredSize?: (head: Uint8Array) => number | null,
): Uint8Array {
  if (!isGzip(bytes)) return bytes;
  const corrupt = (err: unknown) =>
    fileError(
      fileName,
      `gzip data is truncated or corrupt (${(err as Error).message}); expected a complete gzip stream holding ${expected}`,
      { cause: err },
    );
  let limit: number | undefined;
  if (declaredSize) {
    let head: Uint8Array;
    try {
      // the first compressed bytes only (at most 4 MiB out), flushed instead of ended
      head = gunzipSync(bytes.subarray(0, Math.min(bytes.length, 4096)), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch (err) {
      throw corrupt(err);
    }
    const size = declaredSize(head.subarray(0, MAX_IDX_HEADER));
    if (size !== null) {
      if (size > DEFLATE_MAX_RATIO * bytes.length)
        throw fileError(
          fileName,
          `gzip data of ${bytes.length} bytes cannot hold the ${size} bytes its header declares (deflate packs at most ${DEFLATE_MAX_RATIO}:1)`,
        );
      limit = size;
    }
  }
  try {
    return gunzipSync(bytes, limit === undefined ? {} : { maxOutputLength: Math.max(1, limit) });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' && limit !== undefined)
      throw fileError(fileName, `gzip data inflates to more than the ${limit} bytes its header declares`);
    throw corrupt(err);
  }
}

/** The byte size an IDX header declares (header and values), or null if `head` is no header. */
function idxDeclaredSize(head: Uint8Array): number | null {
  const typeInfo = typeByCode[head[2]];
  if (head.length < 4 || head[0] !== 0 || head[1] !== 0 || typeInfo === undefined || head[3] === 0) return null;
  const headerBytes = 4 + 4 * head[3];
  if (head.length < headerBytes) return null;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let count = 1;
  for (let d = 0; d < head[3]; d++) count *= view.getUint32(4 + 4 * d, false);
  return headerBytes + count * typeInfo.bytes;
}

/** Parses IDX bytes (gzip or raw). `fileName` is used in error messages only. */
export function parseIdx(bytes: Uint8Array, fileName = '<idx bytes>'): IdxArray {
  const raw = maybeGunzip(bytes, fileName, 'an IDX file', idxDeclaredSize);
  if (raw.length < 4) {
    throw fileError(
      fileName,
      `${raw.length} bytes is too short for an IDX file; expected at least a 4-byte magic number`,
    );
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const typeInfo = typeByCode[raw[2]];
  if (raw[0] !== 0 || raw[1] !== 0 || typeInfo === undefined || raw[3] === 0) {
    const magic = Array.from(raw.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw fileError(
      fileName,
      `bad IDX magic number ${magic}; expected 00 00 <type 08|09|0b|0c|0d|0e> <number of dimensions >= 1>`,
    );
  }
  const rank = raw[3];
  const headerBytes = 4 + 4 * rank;
  if (raw.length < headerBytes) {
    throw fileError(
      fileName,
      `truncated IDX header: ${raw.length} bytes, expected ${headerBytes} for ${rank} dimensions`,
    );
  }
  const dims: number[] = [];
  for (let d = 0; d < rank; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const expectedBytes = headerBytes + count * typeInfo.bytes;
  if (raw.length !== expectedBytes) {
    const what = raw.length < expectedBytes ? 'truncated' : 'has trailing bytes';
    throw fileError(
      fileName,
      `IDX file ${what}: ${raw.length} bytes, expected ${expectedBytes} ` +
        `(header ${headerBytes} + ${count} ${typeInfo.type} values for dims [${dims.join(', ')}])`,
    );
  }
  return { type: typeInfo.type, dims, data: readValues(raw, view, headerBytes, count, typeInfo.type) };
}

function readValues(raw: Uint8Array, view: DataView, offset: number, count: number, type: IdxType): IdxData {
  switch (type) {
    case 'uint8':
      return raw.slice(offset, offset + count);
    case 'int8':
      return new Int8Array(raw.slice(offset, offset + count).buffer);
    case 'int16': {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(offset + 2 * i, false);
      return out;
    }
    case 'int32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(offset + 4 * i, false);
      return out;
    }
    case 'float32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, false);
      return out;
    }
    case 'float64': {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(offset + 8 * i, false);
      return out;
    }
  }
}

/** Reads and parses an IDX file; errors name the file. */
export function readIdxFile(path: string): IdxArray {
  return parseIdx(readFileSync(path), path);
}

/** Reads an IDX image file: uint8 values with dims [N, H, W]. */
export function readIdxImages(path: string): { count: number; height: number; width: number; pixels: Uint8Array } {
  const idx = readIdxFile(path);
  if (idx.type !== 'uint8' || idx.dims.length !== 3) {
    throw fileError(
      path,
      `expected an IDX image file (uint8, 3 dimensions [N, H, W], magic 00 00 08 03); ` +
        `got ${idx.type} with dims [${idx.dims.join(', ')}]`,
    );
  }
  const [count, height, width] = idx.dims;
  return { count, height, width, pixels: idx.data as Uint8Array };
}

/** Reads an IDX label file: uint8 values with dims [N], each below `numClasses`. */
export function readIdxLabels(path: string, numClasses = 10): Int32Array {
  const idx = readIdxFile(path);
  if (idx.type !== 'uint8' || idx.dims.length !== 1) {
    throw fileError(
      path,
      `expected an IDX label file (uint8, 1 dimension [N], magic 00 00 08 01); ` +
        `got ${idx.type} with dims [${idx.dims.join(', ')}]`,
    );
  }
  const labels = Int32Array.from(idx.data);
  const bad = labels.findIndex((l) => l >= numClasses);
  if (bad >= 0) {
    throw fileError(path, `label ${labels[bad]} at index ${bad}; expected labels 0..${numClasses - 1}`);
  }
  return labels;
}
