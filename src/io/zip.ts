// Minimal ZIP archive reader and writer (PKWARE APPNOTE), enough for PyTorch checkpoints.
//
// Layout: [local header + data]* [central directory header]* [ZIP64 end record + locator]?
// [end of central directory record]. The reader trusts the central directory (it has the
// sizes even when the local header defers them to a data descriptor), supports stored (0) and
// deflate (8) entries and ZIP64 sizes/offsets, and checks each entry's CRC-32 when it is read.
// The writer stores entries uncompressed and, like torch.save, pads each local header's
// "extra" field so every record's data starts at a multiple of 64 bytes (torch memory-maps
// tensor data in place); it switches to ZIP64 fields only where a size or offset needs them.

import { constants as bufferConstants } from 'node:buffer';
import * as zlib from 'node:zlib';
import { bufferSource, fileError, type ByteSource } from './byte-source.js';
import { crc32 } from './crc32.js';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;
const SIG_ZIP64_END = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EXTRA_ZIP64 = 0x0001;
const EXTRA_PADDING = 0x4246; // "FB", the id torch.save uses for its alignment padding
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;
const FLAG_ENCRYPTED = 0x0001;
const FLAG_UTF8 = 0x0800;
const DOS_DATE_1980_01_01 = 0x0021;

export interface ZipEntryInfo {
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

export class ZipReader {
  private readonly byName = new Map<string, ZipEntryInfo>();

  private constructor(
    private readonly source: ByteSource,
    readonly entries: readonly ZipEntryInfo[],
  ) {
    for (const entry of entries) {
      if (this.byName.has(entry.name))
        throw fileError(source.name, `ZIP archive has two entries named '${entry.name}'`);
      this.byName.set(entry.name, entry);
    }
  }

  /** Parses the central directory of `source`; entry data is read later, on demand. */
  static open(source: ByteSource): ZipReader {
    return new ZipReader(source, readCentralDirectory(source));
  }

  static fromBytes(bytes: Uint8Array, sourceName: string): ZipReader {
    return ZipReader.open(bufferSource(bytes, sourceName));
  }

  get sourceName(): string {
    return this.source.name;
  }

  names(): string[] {
    return this.entries.map((e) => e.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The uncompressed bytes of entry `name`, CRC-checked. */
  read(name: string): Uint8Array {
    const entry = this.entry(name);
    const compressed = this.source.read(this.dataOffset(name), entry.compressedSize);
    const data = entry.method === METHOD_STORED ? compressed : this.inflate(entry, compressed);
    if (data.length !== entry.size) {
      throw fileError(
        this.source.name,
        `ZIP entry '${name}' has ${data.length} bytes, the directory says ${entry.size}`,
      );
    }
    const actual = crc32(data);
    if (actual !== entry.crc32) {
      throw fileError(
        this.source.name,
        `ZIP entry '${name}' is corrupted: CRC-32 is ${hex(actual)} but the directory says ${hex(entry.crc32)}`,
      );
    }
    return data;
  }

  /** Byte offset in the archive where entry `name`'s (possibly compressed) data starts. */
  dataOffset(name: string): number {
    const entry = this.entry(name);
    const header = view(this.source.read(entry.localHeaderOffset, 30));
    if (header.getUint32(0, true) !== SIG_LOCAL) {
      throw fileError(this.source.name, `ZIP entry '${name}': no local header at offset ${entry.localHeaderOffset}`);
    }
    return entry.localHeaderOffset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
  }

  close(): void {
    this.source.close();
  }

  private entry(name: string): ZipEntryInfo {
    const entry = this.byName.get(name);
    if (!entry) throw fileError(this.source.name, `ZIP archive has no entry '${name}'`);
    return entry;
  }

  private inflate(entry: ZipEntryInfo, compressed: Uint8Array): Uint8Array {
    // Deflate cannot expand data by more than about 1032:1, so a larger declared size is a lie;
    // refuse it before allocating, and never inflate past the declared size (a "zip bomb").
    const limit = compressed.length * MAX_DEFLATE_RATIO + 1024;
    if (entry.size > limit) {
      throw fileError(
        this.source.name,
        `ZIP entry '${entry.name}' declares ${entry.size} bytes from only ${compressed.length} compressed bytes, ` +
          `more than deflate can produce`,
      );
    }
    let inflated: Buffer;
    try {
      inflated = zlib.inflateRawSync(compressed, { maxOutputLength: Math.min(entry.size + 1, MAX_BUFFER) });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw fileError(
          this.source.name,
          `ZIP entry '${entry.name}' inflates to more than the ${entry.size} bytes its directory declares`,
        );
      }
      throw fileError(
        this.source.name,
        `ZIP entry '${entry.name}' has corrupt deflate data (${(err as Error).message})`,
      );
    }
    if (inflated.length > entry.size) {
      throw fileError(
        this.source.name,
        `ZIP entry '${entry.name}' inflates to more than the ${entry.size} bytes its directory declares`,
      );
    }
    return new Uint8Array(inflated.buffer, inflated.byteOffset, inflated.byteLength);
  }
}

const MAX_BUFFER = bufferConstants.MAX_LENGTH;
/** Deflate's largest possible expansion ratio (about 1032:1), rounded up. */
const MAX_DEFLATE_RATIO = 1040;

function readCentralDirectory(source: ByteSource): ZipEntryInfo[] {
  const end = findEndRecord(source);
  const directory = source.read(end.directoryOffset, end.directorySize);
  const dv = view(directory);
  const entries: ZipEntryInfo[] = [];
  let pos = 0;
  for (let i = 0; i < end.entryCount; i++) {
    if (pos + 46 > directory.length || dv.getUint32(pos, true) !== SIG_CENTRAL) {
      throw fileError(
        source.name,
        `ZIP central directory is corrupted at entry ${i} (offset ${end.directoryOffset + pos})`,
      );
    }
    const flags = dv.getUint16(pos + 8, true);
    const method = dv.getUint16(pos + 10, true);
    const nameLength = dv.getUint16(pos + 28, true);
    const extraLength = dv.getUint16(pos + 30, true);
    const commentLength = dv.getUint16(pos + 32, true);
    const next = pos + 46 + nameLength + extraLength + commentLength;
    if (next > directory.length) throw fileError(source.name, `ZIP central directory entry ${i} runs past its end`);
    const name = new TextDecoder().decode(directory.subarray(pos + 46, pos + 46 + nameLength));
    const extra = directory.subarray(pos + 46 + nameLength, pos + 46 + nameLength + extraLength);
    const wide = applyZip64Extra(source.name, name, extra, {
      size: dv.getUint32(pos + 24, true),
      compressedSize: dv.getUint32(pos + 20, true),
      localHeaderOffset: dv.getUint32(pos + 42, true),
    });
    if (flags & FLAG_ENCRYPTED) throw fileError(source.name, `ZIP entry '${name}' is encrypted (not supported)`);
    if (method !== METHOD_STORED && method !== METHOD_DEFLATE) {
      throw fileError(
        source.name,
        `ZIP entry '${name}' uses compression method ${method}; only stored (0) and deflate (8) are supported`,
      );
    }
    if (method === METHOD_STORED && wide.size !== wide.compressedSize) {
      throw fileError(
        source.name,
        `ZIP entry '${name}' is stored but its sizes differ (${wide.compressedSize} vs ${wide.size})`,
      );
    }
    entries.push({ name, method, crc32: dv.getUint32(pos + 16, true), ...wide });
    pos = next;
  }
  return entries;
}

interface EndRecord {
  entryCount: number;
  directorySize: number;
  directoryOffset: number;
}

function findEndRecord(source: ByteSource): EndRecord {
  if (source.size === 0) throw fileError(source.name, 'file is empty (expected a ZIP archive)');
  const tailLength = Math.min(source.size, 22 + U16_MAX);
  const tailStart = source.size - tailLength;
  const tail = source.read(tailStart, tailLength);
  const dv = view(tail);
  let at = -1;
  for (let p = tail.length - 22; p >= 0; p--) {
    if (dv.getUint32(p, true) === SIG_END && p + 22 + dv.getUint16(p + 20, true) <= tail.length) {
      at = p;
      break;
    }
  }
  if (at < 0) {
    throw fileError(source.name, 'truncated or not a ZIP archive: end-of-central-directory record not found');
  }
  let record: EndRecord = {
    entryCount: dv.getUint16(at + 10, true),
    directorySize: dv.getUint32(at + 12, true),
    directoryOffset: dv.getUint32(at + 16, true),
  };
  const locatorAt = at - 20;
  if (locatorAt >= 0 && dv.getUint32(locatorAt, true) === SIG_ZIP64_LOCATOR) {
    const zip64EndOffset = readU64(source.name, dv, locatorAt + 8);
    const z = view(source.read(zip64EndOffset, 56));
    if (z.getUint32(0, true) !== SIG_ZIP64_END) {
      throw fileError(source.name, `ZIP64 end-of-central-directory record missing at offset ${zip64EndOffset}`);
    }
    record = {
      entryCount: readU64(source.name, z, 32),
      directorySize: readU64(source.name, z, 40),
      directoryOffset: readU64(source.name, z, 48),
    };
  }
  if (record.directoryOffset + record.directorySize > source.size) {
    throw fileError(
      source.name,
      `truncated: central directory spans bytes ${record.directoryOffset}..${record.directoryOffset + record.directorySize} ` +
        `but the file has ${source.size} bytes`,
    );
  }
  return record;
}

interface WideFields {
  size: number;
  compressedSize: number;
  localHeaderOffset: number;
}

/** Replaces 0xFFFFFFFF placeholders with the 64-bit values from the ZIP64 extra field. */
function applyZip64Extra(sourceName: string, entryName: string, extra: Uint8Array, fields: WideFields): WideFields {
  const needed = (['size', 'compressedSize', 'localHeaderOffset'] as const).filter((k) => fields[k] === U32_MAX);
  if (needed.length === 0) return fields;
  const dv = view(extra);
  for (let p = 0; p + 4 <= extra.length; p += 4 + dv.getUint16(p + 2, true)) {
    if (dv.getUint16(p, true) !== EXTRA_ZIP64) continue;
    const length = dv.getUint16(p + 2, true);
    if (length < needed.length * 8 || p + 4 + length > extra.length) break;
    const out = { ...fields };
    needed.forEach((key, i) => (out[key] = readU64(sourceName, dv, p + 4 + i * 8)));
    return out;
  }
  throw fileError(sourceName, `ZIP entry '${entryName}' needs a ZIP64 extra field but has none (or a short one)`);
}

function readU64(sourceName: string, dv: DataView, offset: number): number {
  const value = dv.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw fileError(sourceName, `ZIP field value ${value} is too large`);
  return Number(value);
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface ZipWriteEntry {
  readonly name: string;
  readonly data: Uint8Array;
}

export interface ZipWriteOptions {
  /** Each entry's data starts at a multiple of this many bytes (default 64, as torch.save). 1 disables. */
  readonly alignment?: number;
  /** Write ZIP64 fields even where 32 bits would do (for testing the ZIP64 path). */
  readonly forceZip64?: boolean;
}

/**
 * The archive as a list of chunks to be written in order (entry data is referenced, not
 * copied, so a large checkpoint is never concatenated into one buffer).
 */
export function zipChunks(entries: readonly ZipWriteEntry[], options: ZipWriteOptions = {}): Uint8Array[] {
  const alignment = options.alignment ?? 64;
  const force = options.forceZip64 ?? false;
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = new TextEncoder().encode(entry.name);
    const size = entry.data.length;
    const crc = crc32(entry.data);
    const local = localHeader(name, size, crc, offset, alignment, force);
    central.push(centralHeader(name, size, crc, offset, force));
    chunks.push(local, entry.data);
    offset += local.length + size;
  }
  const directoryOffset = offset;
  const directorySize = central.reduce((n, c) => n + c.length, 0);
  chunks.push(...central, ...endRecords(entries.length, directoryOffset, directorySize, force));
  return chunks;
}

/** The whole archive in one buffer (convenient for small archives and tests). */
export function zipBytes(entries: readonly ZipWriteEntry[], options: ZipWriteOptions = {}): Uint8Array {
  const bytes = Buffer.concat(zipChunks(entries, options));
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function localHeader(
  name: Uint8Array,
  size: number,
  crc: number,
  offset: number,
  alignment: number,
  force: boolean,
): Uint8Array {
  const zip64 = force || size >= U32_MAX;
  const zip64Length = zip64 ? 4 + 16 : 0;
  const unpadded = offset + 30 + name.length + zip64Length;
  let padding = alignment > 1 ? (alignment - (unpadded % alignment)) % alignment : 0;
  if (padding > 0 && padding < 4) padding += alignment; // a padding field needs at least its 4-byte header
  const out = new Uint8Array(30 + name.length + zip64Length + padding);
  const dv = view(out);
  dv.setUint32(0, SIG_LOCAL, true);
  dv.setUint16(4, zip64 ? 45 : 20, true);
  dv.setUint16(6, FLAG_UTF8, true);
  dv.setUint16(8, METHOD_STORED, true);
  dv.setUint16(12, DOS_DATE_1980_01_01, true);
  dv.setUint32(14, crc, true);
  dv.setUint32(18, zip64 ? U32_MAX : size, true);
  dv.setUint32(22, zip64 ? U32_MAX : size, true);
  dv.setUint16(26, name.length, true);
  dv.setUint16(28, zip64Length + padding, true);
  out.set(name, 30);
  let p = 30 + name.length;
  if (zip64) {
    dv.setUint16(p, EXTRA_ZIP64, true);
    dv.setUint16(p + 2, 16, true);
    dv.setBigUint64(p + 4, BigInt(size), true);
    dv.setBigUint64(p + 12, BigInt(size), true);
    p += 20;
  }
  if (padding > 0) {
    dv.setUint16(p, EXTRA_PADDING, true);
    dv.setUint16(p + 2, padding - 4, true);
    out.fill(0x5a, p + 4, p + padding); // 'Z', as torch.save fills it
  }
  return out;
}

function centralHeader(name: Uint8Array, size: number, crc: number, offset: number, force: boolean): Uint8Array {
  const wideSize = force || size >= U32_MAX;
  const wideOffset = force || offset >= U32_MAX;
  const wideValues = [...(wideSize ? [size, size] : []), ...(wideOffset ? [offset] : [])];
  const extraLength = wideValues.length > 0 ? 4 + 8 * wideValues.length : 0;
  const out = new Uint8Array(46 + name.length + extraLength);
  const dv = view(out);
  const version = extraLength > 0 ? 45 : 20;
  dv.setUint32(0, SIG_CENTRAL, true);
  dv.setUint16(4, version, true);
  dv.setUint16(6, version, true);
  dv.setUint16(8, FLAG_UTF8, true);
  dv.setUint16(10, METHOD_STORED, true);
  dv.setUint16(14, DOS_DATE_1980_01_01, true);
  dv.setUint32(16, crc, true);
  dv.setUint32(20, wideSize ? U32_MAX : size, true);
  dv.setUint32(24, wideSize ? U32_MAX : size, true);
  dv.setUint16(28, name.length, true);
  dv.setUint16(30, extraLength, true);
  dv.setUint32(42, wideOffset ? U32_MAX : offset, true);
  out.set(name, 46);
  if (extraLength > 0) {
    const p = 46 + name.length;
    dv.setUint16(p, EXTRA_ZIP64, true);
    dv.setUint16(p + 2, 8 * wideValues.length, true);
    wideValues.forEach((v, i) => dv.setBigUint64(p + 4 + 8 * i, BigInt(v), true));
  }
  return out;
}

function endRecords(count: number, directoryOffset: number, directorySize: number, force: boolean): Uint8Array[] {
  const zip64 = force || count >= U16_MAX || directoryOffset >= U32_MAX || directorySize >= U32_MAX;
  const out: Uint8Array[] = [];
  if (zip64) {
    const record = new Uint8Array(56);
    const r = view(record);
    r.setUint32(0, SIG_ZIP64_END, true);
    r.setBigUint64(4, 44n, true); // size of the rest of this record
    r.setUint16(12, 45, true);
    r.setUint16(14, 45, true);
    r.setBigUint64(24, BigInt(count), true);
    r.setBigUint64(32, BigInt(count), true);
    r.setBigUint64(40, BigInt(directorySize), true);
    r.setBigUint64(48, BigInt(directoryOffset), true);
    const locator = new Uint8Array(20);
    const l = view(locator);
    l.setUint32(0, SIG_ZIP64_LOCATOR, true);
    l.setBigUint64(8, BigInt(directoryOffset + directorySize), true);
    l.setUint32(16, 1, true); // total number of disks
    out.push(record, locator);
  }
  const end = new Uint8Array(22);
  const e = view(end);
  e.setUint32(0, SIG_END, true);
  e.setUint16(8, zip64 ? U16_MAX : count, true);
  e.setUint16(10, zip64 ? U16_MAX : count, true);
  e.setUint32(12, zip64 ? U32_MAX : directorySize, true);
  e.setUint32(16, zip64 ? U32_MAX : directoryOffset, true);
  out.push(end);
  return out;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}
