// A tiny reader for POSIX ustar / GNU tar archives held in memory (enough for
// cifar-10-binary.tar.gz): 512-byte headers (name 0..100, size 124..136 in octal,
// checksum 148..156, type 156, ustar prefix 345..500), file data padded to 512 bytes,
// two zero blocks at the end. GNU long names ('L') and pax 'path' records ('x') are
// honoured; other entry types are listed with their data but nothing is interpreted.

import { fileError } from '../io/byte-source.js';

export interface TarEntry {
  name: string;
  /** '0' regular file, '5' directory, ... ('\0' is reported as '0'). */
  type: string;
  data: Uint8Array;
}

const BLOCK = 512;

function text(bytes: Uint8Array, from: number, length: number): string {
  let end = from;
  while (end < from + length && bytes[end] !== 0) end++;
  return Buffer.from(bytes.subarray(from, end)).toString('utf8');
}

function octal(bytes: Uint8Array, from: number, length: number, fileName: string, field: string): number {
  if (bytes[from] & 0x80) {
    // GNU base-256 for large values.
    let v = 0;
    for (let i = from + 1; i < from + length; i++) v = v * 256 + bytes[i];
    return v;
  }
  const s = text(bytes, from, length).trim();
  if (!/^[0-7]*$/.test(s)) throw fileError(fileName, `corrupt tar header: ${field} field "${s}" is not octal`);
  return s === '' ? 0 : parseInt(s, 8);
}

/** The entries of an uncompressed tar archive; `fileName` is used in error messages. */
export function readTar(bytes: Uint8Array, fileName = '<tar bytes>'): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  while (offset + BLOCK <= bytes.length) {
    const header = bytes.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) return entries; // end-of-archive marker
    const stored = octal(header, 148, 8, fileName, 'checksum');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
    if (sum !== stored) {
      throw fileError(
        fileName,
        `corrupt tar header at byte ${offset}: checksum ${stored}, computed ${sum}; expected a tar archive`,
      );
    }
    const size = octal(header, 124, 12, fileName, 'size');
    const type = header[156] === 0 ? '0' : String.fromCharCode(header[156]);
    const dataStart = offset + BLOCK;
    if (dataStart + size > bytes.length) {
      throw fileError(
        fileName,
        `tar archive truncated: entry at byte ${offset} needs ${size} bytes, ${bytes.length - dataStart} remain`,
      );
    }
    const data = bytes.subarray(dataStart, dataStart + size);
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') {
      longName = text(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(Buffer.from(data).toString('utf8'));
      if (path) longName = path[1];
      continue;
    }
    const isUstar = text(header, 257, 6) === 'ustar';
    const prefix = isUstar ? text(header, 345, 155) : '';
    const name = longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
    longName = undefined;
    entries.push({ name, type, data });
  }
  if (offset < bytes.length || entries.length === 0) {
    throw fileError(
      fileName,
      `tar archive truncated at byte ${offset} of ${bytes.length}; expected 512-byte blocks ending with zero blocks`,
    );
  }
  return entries;
}
