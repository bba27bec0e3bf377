// ZIP reader/writer and CRC-32: round trips, torch.save-style 64-byte alignment, ZIP64 fields,
// deflate entries from Python's zipfile, and errors for truncated or corrupted archives.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { fileSource } from '../src/io/byte-source.js';
import { crc32, crc32Portable } from '../src/io/crc32.js';
import { ZipReader, zipBytes } from '../src/io/zip.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../../fixtures/io/${name}`, import.meta.url));
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const entries = [
  { name: 'archive/data.pkl', data: text('pickle bytes') },
  { name: 'archive/data/0', data: Uint8Array.from({ length: 100 }, (_, i) => i) },
  { name: 'archive/data/1', data: new Uint8Array(0) },
  { name: 'archive/version', data: text('3\n') },
];

test('crc32 matches the standard check value and the portable implementation', () => {
  assert.equal(crc32(text('123456789')), 0xcbf43926);
  assert.equal(crc32Portable(text('123456789')), 0xcbf43926);
  const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff);
  assert.equal(crc32Portable(data), crc32(data));
  assert.equal(crc32(data.subarray(500), crc32(data.subarray(0, 500))), crc32(data));
});

test('written archives read back, with every record 64-byte aligned as torch.save does', () => {
  const zip = ZipReader.fromBytes(zipBytes(entries), 'mem.zip');
  assert.deepEqual(
    zip.names(),
    entries.map((e) => e.name),
  );
  for (const entry of entries) {
    assert.deepEqual(zip.read(entry.name), entry.data);
    assert.equal(zip.dataOffset(entry.name) % 64, 0, `${entry.name} is aligned`);
  }
});

test('alignment 1 writes no padding', () => {
  const bytes = zipBytes([{ name: 'a', data: text('x') }], { alignment: 1 });
  assert.equal(bytes.length, 30 + 1 + 1 + 46 + 1 + 22);
  assert.deepEqual(ZipReader.fromBytes(bytes, 'mem.zip').read('a'), text('x'));
});

test('ZIP64 fields (forced) read back', () => {
  const bytes = zipBytes(entries, { forceZip64: true });
  const zip = ZipReader.fromBytes(bytes, 'zip64.zip');
  for (const entry of entries) assert.deepEqual(zip.read(entry.name), entry.data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.equal(view.getUint32(bytes.length - 22 - 20 - 56, true), 0x06064b50, 'ZIP64 end record present');
});

test('reads deflated and stored entries written by Python zipfile', () => {
  const zip = ZipReader.open(fileSource(fixture('deflated.zip')));
  assert.equal(new TextDecoder().decode(zip.read('hello.txt')), 'hello, zip\n'.repeat(50));
  assert.equal(zip.read('empty.txt').length, 0);
  assert.deepEqual(
    zip.read('raw.bin'),
    Uint8Array.from({ length: 256 }, (_, i) => i),
  );
  assert.equal(zip.entries.find((e) => e.name === 'hello.txt')?.method, 8);
  zip.close();
});

test('a truncated archive is an error naming the file', () => {
  const bytes = zipBytes(entries);
  for (const cut of [bytes.length - 10, 100, 3]) {
    assert.throws(() => ZipReader.fromBytes(bytes.subarray(0, cut), 'cut.zip'), /^Error: cut\.zip: truncated/);
  }
  assert.throws(() => ZipReader.fromBytes(new Uint8Array(0), 'empty.zip'), /empty\.zip: file is empty/);
});

test('a corrupted record fails its CRC check', () => {
  const bytes = zipBytes(entries).slice();
  const zip = ZipReader.fromBytes(bytes, 'bad.zip');
  bytes[zip.dataOffset('archive/data/0') + 5] ^= 0xff;
  assert.throws(() => zip.read('archive/data/0'), /bad\.zip: ZIP entry 'archive\/data\/0' is corrupted: CRC-32/);
  assert.deepEqual(zip.read('archive/version'), text('3\n'));
});

test('asking for a missing entry names it', () => {
  const zip = ZipReader.fromBytes(zipBytes(entries), 'mem.zip');
  assert.equal(zip.has('nope'), false);
  assert.throws(() => zip.read('nope'), /mem\.zip: ZIP archive has no entry 'nope'/);
});
