// MATLAB level-5 MAT-files (what MATLAB writes with save -v6 / -v7, and what the SVHN
// cropped-digits files are). Reads numeric arrays only; other classes (cell, struct,
// char, sparse, objects) are listed but not decoded.
// Layout (MathWorks, "MAT-File Format", level 5):
//   128-byte header: 116 bytes of text, 8 bytes subsystem offset, version 0x0100, and the
//   endian indicator 'IM' (little-endian) or 'MI' (big-endian) in bytes 126..127.
//   Then data elements: an 8-byte tag (uint32 type, uint32 byte count) and the data padded
//   to 8 bytes, or the "small data element" form where the tag's upper 16 bits hold the
//   byte count (1..4) and the data sits in the tag's second 4 bytes.
//   miMATRIX (14) holds sub-elements: array flags (class in the low byte, complex 0x800),
//   dimensions (int32), name (int8), real part, [imaginary part]. Column-major order.
//   miCOMPRESSED (15) holds a zlib stream that inflates to further data elements.

import { readFileSync } from 'node:fs';
import { constants as zlibConstants, inflateSync } from 'node:zlib';
import { fileError } from '../io/byte-source.js';

export type MatClass =
  'double' | 'single' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64';

export type MatNumeric =
  | Float64Array
  | Float32Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

export interface MatVariable {
  name: string;
  /** MATLAB class, e.g. 'uint8' or 'double'; 'cell', 'struct', 'char', ... when not decoded. */
  className: MatClass | string;
  /** Dimensions as MATLAB reports them (column-major storage: first index fastest). */
  dims: number[];
  /** The real part converted to the class's type; undefined for classes not decoded. */
  data?: MatNumeric;
  complex: boolean;
}

// Data types (miXXX) -> element size.
const MI_INT8 = 1;
const MI_UINT8 = 2;
const MI_INT16 = 3;
const MI_UINT16 = 4;
const MI_INT32 = 5;
const MI_UINT32 = 6;
const MI_SINGLE = 7;
const MI_DOUBLE = 9;
const MI_INT64 = 12;
const MI_MATRIX = 14;
const MI_COMPRESSED = 15;
const MI_UTF8 = 16;

const miNames: Record<number, string> = {
  1: 'miINT8',
  2: 'miUINT8',
  3: 'miINT16',
  4: 'miUINT16',
  5: 'miINT32',
  6: 'miUINT32',
  7: 'miSINGLE',
  9: 'miDOUBLE',
  12: 'miINT64',
  13: 'miUINT64',
  14: 'miMATRIX',
  15: 'miCOMPRESSED',
  16: 'miUTF8',
  17: 'miUTF16',
  18: 'miUTF32',
};
const miSize: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1 };

// Array classes (mxXXX_CLASS).
const classNames: Record<number, string> = {
  1: 'cell',
  2: 'struct',
  3: 'object',
  4: 'char',
  5: 'sparse',
  6: 'double',
  7: 'single',
  8: 'int8',
  9: 'uint8',
  10: 'int16',
  11: 'uint16',
  12: 'int32',
  13: 'uint32',
  14: 'int64',
  15: 'uint64',
};

interface Element {
  type: number;
  /** Offset of the element's data within `bytes`. */
  dataStart: number;
  byteCount: number;
  /** Offset just past the element (padding included). */
  next: number;
}

/** Reads data elements from one buffer, with the file's byte order. */
class ElementReader {
  readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly littleEndian: boolean,
    readonly fileName: string,
    readonly where: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** The element whose tag starts at `offset`; throws if it runs past `end`. */
  element(offset: number, end: number, context: string): Element {
    if (offset + 8 > end) {
      throw fileError(
        this.fileName,
        `truncated MAT-file: ${context} needs an 8-byte data element tag at ${this.where} byte ${offset}, ` +
          `but only ${Math.max(0, end - offset)} bytes remain`,
      );
    }
    const first = this.view.getUint32(offset, this.littleEndian);
    if (first >>> 16 !== 0) {
      // Small data element: [byte count (16 bits) | type (16 bits)], then 4 data bytes.
      const byteCount = first >>> 16;
      const type = first & 0xffff;
      if (byteCount > 4) {
        throw fileError(
          this.fileName,
          `corrupt MAT-file: small data element at ${this.where} byte ${offset} claims ${byteCount} bytes; expected 1..4`,
        );
      }
      return { type, dataStart: offset + 4, byteCount, next: offset + 8 };
    }
    const type = first;
    const byteCount = this.view.getUint32(offset + 4, this.littleEndian);
    const dataStart = offset + 8;
    if (dataStart + byteCount > end) {
      throw fileError(
        this.fileName,
        `truncated MAT-file: ${context} (${miNames[type] ?? `type ${type}`}) at ${this.where} byte ${offset} ` +
          `claims ${byteCount} bytes but only ${end - dataStart} remain`,
      );
    }
    // miCOMPRESSED elements are not padded; everything else is padded to 8 bytes.
    const padded = type === MI_COMPRESSED ? byteCount : Math.ceil(byteCount / 8) * 8;
    return { type, dataStart, byteCount, next: Math.min(dataStart + padded, end) };
  }
}

/** Parses a level-5 MAT-file; `fileName` is used in error messages. */
export function parseMat(bytes: Uint8Array, fileName = '<mat bytes>'): Map<string, MatVariable> {
  if (bytes.length < 128) {
    throw fileError(fileName, `${bytes.length} bytes is too short for a MAT-file; expected a 128-byte level-5 header`);
  }
  const text = Buffer.from(bytes.subarray(0, 116)).toString('latin1');
  const indicator = String.fromCharCode(bytes[126], bytes[127]);
  if (text.startsWith('MATLAB 7.3')) {
    throw fileError(
      fileName,
      `MATLAB 7.3 (HDF5) MAT-files are not supported; expected a level-5 MAT-file (save -v7 or -v6)`,
    );
  }
  if (indicator !== 'IM' && indicator !== 'MI') {
    throw fileError(
      fileName,
      `not a MATLAB level-5 MAT-file: endian indicator at bytes 126..127 is ` +
        `${JSON.stringify(indicator)}; expected "IM" or "MI" after a header starting "MATLAB 5.0 MAT-file"`,
    );
  }
  const littleEndian = indicator === 'IM';
  const variables = new Map<string, MatVariable>();
  readTopLevel(new ElementReader(bytes, littleEndian, fileName, 'file'), 128, variables);
  return variables;
}

/** Deflate packs at most 1032:1, so no valid stream inflates further. */
const DEFLATE_MAX_RATIO = 1032;

/** The data elements of a miCOMPRESSED element. MATLAB and SciPy wrap one variable in each:
 *  the stream is inflated no further than the size its first element's tag declares (a zlib
 *  bomb stops there), and a size that deflate could not have packed into the element is
 *  refused before inflating. */
function inflateElement(reader: ElementReader, start: number, byteCount: number, offset: number): Uint8Array {
  const where = `miCOMPRESSED element at ${reader.where} byte ${offset}`;
  const compressed = reader.bytes.subarray(start, start + byteCount);
  const corrupt = (err: unknown) =>
    fileError(
      reader.fileName,
      `${where}: zlib data is truncated or corrupt (${(err as Error).message}); ` +
        `expected ${byteCount} bytes of zlib-compressed data elements`,
      { cause: err },
    );
  let head: Buffer;
  try {
    // the first compressed bytes only, flushed instead of ended: enough for the inner tag
    head = inflateSync(compressed.subarray(0, Math.min(compressed.length, 512)), {
      finishFlush: zlibConstants.Z_SYNC_FLUSH,
    });
  } catch (err) {
    throw corrupt(err);
  }
  let limit: number | undefined;
  if (head.length >= 8) {
    const word = reader.littleEndian ? head.readUInt32LE(0) : head.readUInt32BE(0);
    const small = word >>> 16 !== 0; // small data element: type and size in one word, 4 bytes of data
    const size = small ? 8 : 8 + (reader.littleEndian ? head.readUInt32LE(4) : head.readUInt32BE(4));
    limit = size + ((8 - (size % 8)) % 8); // with its padding to 8 bytes
    if (limit > DEFLATE_MAX_RATIO * Math.max(1, byteCount))
      throw fileError(
        reader.fileName,
        `${where}: ${byteCount} bytes of zlib data cannot hold the ${size}-byte element they declare ` +
          `(deflate packs at most ${DEFLATE_MAX_RATIO}:1)`,
      );
  }
  try {
    return inflateSync(compressed, limit === undefined ? {} : { maxOutputLength: limit });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' && limit !== undefined)
      throw fileError(
        reader.fileName,
        `${where}: zlib data inflates to more than the ${limit} bytes its first element declares`,
      );
    throw corrupt(err);
  }
}

function readTopLevel(reader: ElementReader, start: number, into: Map<string, MatVariable>): void {
  let offset = start;
  const end = reader.bytes.length;
  while (offset < end) {
    const el = reader.element(offset, end, 'a top-level variable');
    if (el.type === MI_COMPRESSED) {
      const inflated = inflateElement(reader, el.dataStart, el.byteCount, offset);
      const where = `${reader.where} byte ${offset} (inflated) `;
      readTopLevel(new ElementReader(inflated, reader.littleEndian, reader.fileName, where.trim()), 0, into);
    } else if (el.type === MI_MATRIX) {
      if (el.byteCount > 0) {
        const variable = readMatrix(reader, el, offset);
        into.set(variable.name, variable);
      }
    } else {
      throw fileError(
        reader.fileName,
        `unexpected top-level data element ${miNames[el.type] ?? `type ${el.type}`} at ${reader.where} byte ${offset}; ` +
          'expected miMATRIX (14) or miCOMPRESSED (15)',
      );
    }
    offset = el.next;
  }
}

function readMatrix(reader: ElementReader, matrix: Element, tagOffset: number): MatVariable {
  const end = matrix.dataStart + matrix.byteCount;
  const what = `miMATRIX at ${reader.where} byte ${tagOffset}`;
  const flags = reader.element(matrix.dataStart, end, `array flags of ${what}`);
  if (flags.type !== MI_UINT32 || flags.byteCount !== 8) {
    throw fileError(
      reader.fileName,
      `corrupt ${what}: array flags are ${miNames[flags.type] ?? flags.type} of ${flags.byteCount} bytes; expected miUINT32 of 8 bytes`,
    );
  }
  const flagWord = reader.view.getUint32(flags.dataStart, reader.littleEndian);
  const classCode = flagWord & 0xff;
  const complex = (flagWord & 0x800) !== 0;
  const dimsEl = reader.element(flags.next, end, `dimensions of ${what}`);
  if (dimsEl.type !== MI_INT32 || dimsEl.byteCount % 4 !== 0 || dimsEl.byteCount < 8) {
    throw fileError(
      reader.fileName,
      `corrupt ${what}: dimensions are ${miNames[dimsEl.type] ?? dimsEl.type} of ${dimsEl.byteCount} bytes; expected miINT32 with at least 2 values`,
    );
  }
  const dims: number[] = [];
  for (let i = 0; i < dimsEl.byteCount / 4; i++)
    dims.push(reader.view.getInt32(dimsEl.dataStart + 4 * i, reader.littleEndian));
  const nameEl = reader.element(dimsEl.next, end, `array name of ${what}`);
  if (nameEl.type !== MI_INT8 && nameEl.type !== MI_UINT8 && nameEl.type !== MI_UTF8) {
    throw fileError(
      reader.fileName,
      `corrupt ${what}: array name is ${miNames[nameEl.type] ?? nameEl.type}; expected miINT8`,
    );
  }
  const name = Buffer.from(reader.bytes.subarray(nameEl.dataStart, nameEl.dataStart + nameEl.byteCount)).toString(
    'latin1',
  );
  const className = classNames[classCode] ?? `class ${classCode}`;
  if (classCode < 6 || classCode > 15) return { name, className, dims, complex };

  const count = dims.reduce((a, b) => a * b, 1);
  const real = reader.element(nameEl.next, end, `real part of variable "${name}"`);
  const data = convertNumeric(reader, real, className as MatClass, name);
  if (data.length !== count) {
    throw fileError(
      reader.fileName,
      `variable "${name}": real part has ${data.length} values, dims [${dims.join(', ')}] need ${count}`,
    );
  }
  return { name, className, dims, data, complex };
}

/** Converts an element's values (stored type) to the array class's typed array. */
function convertNumeric(reader: ElementReader, el: Element, className: MatClass, name: string): MatNumeric {
  const size = miSize[el.type];
  if (size === undefined || el.type === MI_UTF8) {
    throw fileError(
      reader.fileName,
      `variable "${name}": real part is ${miNames[el.type] ?? `type ${el.type}`}; expected a numeric data type`,
    );
  }
  if (el.byteCount % size !== 0) {
    throw fileError(
      reader.fileName,
      `variable "${name}": real part has ${el.byteCount} bytes, not a multiple of ${size} (${miNames[el.type]})`,
    );
  }
  const n = el.byteCount / size;
  // Fast path: bytes stored as the class's own byte type need no conversion.
  if (
    size === 1 &&
    ((className === 'uint8' && el.type === MI_UINT8) || (className === 'int8' && el.type === MI_INT8))
  ) {
    const bytes = reader.bytes.subarray(el.dataStart, el.dataStart + n); // a view: no copy of large images
    return className === 'uint8' ? bytes : new Int8Array(bytes.buffer, bytes.byteOffset, n);
  }
  const out = allocate(className, n);
  const { view, littleEndian: le } = reader;
  const at = el.dataStart;
  const get = (i: number): number | bigint => {
    switch (el.type) {
      case MI_INT8:
        return view.getInt8(at + i);
      case MI_UINT8:
        return view.getUint8(at + i);
      case MI_INT16:
        return view.getInt16(at + 2 * i, le);
      case MI_UINT16:
        return view.getUint16(at + 2 * i, le);
      case MI_INT32:
        return view.getInt32(at + 4 * i, le);
      case MI_UINT32:
        return view.getUint32(at + 4 * i, le);
      case MI_SINGLE:
        return view.getFloat32(at + 4 * i, le);
      case MI_DOUBLE:
        return view.getFloat64(at + 8 * i, le);
      case MI_INT64:
        return view.getBigInt64(at + 8 * i, le);
      default:
        return view.getBigUint64(at + 8 * i, le); // MI_UINT64
    }
  };
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) {
      const v = get(i);
      out[i] = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = Number(get(i));
  }
  return out;
}

function allocate(className: MatClass, n: number): MatNumeric {
  switch (className) {
    case 'double':
      return new Float64Array(n);
    case 'single':
      return new Float32Array(n);
    case 'int8':
      return new Int8Array(n);
    case 'uint8':
      return new Uint8Array(n);
    case 'int16':
      return new Int16Array(n);
    case 'uint16':
      return new Uint16Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'uint32':
      return new Uint32Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'uint64':
      return new BigUint64Array(n);
  }
}

export function readMatFile(path: string): Map<string, MatVariable> {
  return parseMat(readFileSync(path), path);
}
