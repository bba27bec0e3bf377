// Format readers on small files the test writes itself in the real formats: IDX (raw and
// gzip), CIFAR-10 binary batches, SVHN MAT-files (level 5, plain and miCOMPRESSED), the
// bilinear resize (Pillow's semantics) they go through, plus truncated/corrupt files and the
// "dataset missing" messages.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { deflateSync, gzipSync } from 'node:zlib';
import {
  bilinearTaps,
  loadDataset,
  parseCifarBatch,
  parseIdx,
  parseMat,
  parseSvhnMat,
  readIdxImages,
  resizeBilinear,
} from '../src/data/index.js';

const root = mkdtempSync(join(tmpdir(), 'qcaps-data-formats-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(): string {
  const dir = join(root, `d${dirCount++}`);
  mkdirSync(dir);
  return dir;
}

// ---- IDX ----------------------------------------------------------------------------

function idxBytes(typeCode: number, dims: number[], payload: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = typeCode;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, payload]);
}

/** N images of 28x28 where pixel (n, y, x) = (n * 31 + y * 3 + x) mod 256, labels n mod 10. */
function writeIdxSet(dir: string, split: 'train' | 'test', n: number, gz: boolean): void {
  const prefix = split === 'train' ? 'train' : 't10k';
  const pixels = new Uint8Array(n * 784);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < 784; p++) pixels[i * 784 + p] = (i * 31 + Math.floor(p / 28) * 3 + (p % 28)) % 256;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  const ext = gz ? '.gz' : '';
  const pack = (b: Buffer): Buffer => (gz ? gzipSync(b) : b);
  writeFileSync(join(dir, `${prefix}-images-idx3-ubyte${ext}`), pack(idxBytes(0x08, [n, 28, 28], pixels)));
  writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte${ext}`), pack(idxBytes(0x08, [n], labels)));
}

describe('IDX reader', () => {
  test('parses raw and gzip uint8 files identically', () => {
    const payload = Uint8Array.from({ length: 24 }, (_, i) => i * 10);
    const raw = idxBytes(0x08, [2, 3, 4], payload);
    for (const bytes of [raw, gzipSync(raw)]) {
      const idx = parseIdx(bytes, 'x.idx');
      assert.equal(idx.type, 'uint8');
      assert.deepEqual(idx.dims, [2, 3, 4]);
      assert.deepEqual(Array.from(idx.data), Array.from(payload));
    }
  });

  test('reads big-endian int32 and float32 values', () => {
    const ints = Buffer.alloc(8);
    ints.writeInt32BE(-5, 0);
    ints.writeInt32BE(70000, 4);
    assert.deepEqual(Array.from(parseIdx(idxBytes(0x0c, [2], ints)).data), [-5, 70000]);
    const floats = Buffer.alloc(4);
    floats.writeFloatBE(1.5, 0);
    assert.deepEqual(Array.from(parseIdx(idxBytes(0x0d, [1], floats)).data), [1.5]);
  });

  test('a truncated raw file names the file and the expected size', () => {
    const dir = freshDir();
    const path = join(dir, 'train-images-idx3-ubyte');
    writeFileSync(path, idxBytes(0x08, [3, 28, 28], new Uint8Array(3 * 784)).subarray(0, 1000));
    assert.throws(
      () => readIdxImages(path),
      (err: Error) => {
        assert.match(err.message, /train-images-idx3-ubyte/);
        assert.match(err.message, /truncated: 1000 bytes, expected 2368/);
        return true;
      },
    );
  });

  test('a truncated gzip file names the file and says gzip', () => {
    const dir = freshDir();
    const path = join(dir, 'train-images-idx3-ubyte.gz');
    const gz = gzipSync(
      idxBytes(
        0x08,
        [3, 28, 28],
        Uint8Array.from({ length: 3 * 784 }, (_, i) => i % 251),
      ),
    );
    writeFileSync(path, gz.subarray(0, gz.length - 20));
    assert.throws(
      () => readIdxImages(path),
      /train-images-idx3-ubyte\.gz: gzip data is truncated or corrupt.*expected a complete gzip stream/,
    );
  });

  test('bad magic and wrong kind of file are reported', () => {
    assert.throws(
      () => parseIdx(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), 'junk.bin'),
      /junk\.bin: bad IDX magic number 01 02 03 04; expected 00 00/,
    );
    const dir = freshDir();
    const path = join(dir, 'labels-as-images');
    writeFileSync(path, idxBytes(0x08, [4], new Uint8Array(4)));
    assert.throws(() => readIdxImages(path), /expected an IDX image file \(uint8, 3 dimensions/);
  });

  test('mnist and fashion-mnist load from a dataDir of gz or raw IDX files', () => {
    for (const gz of [true, false]) {
      const dir = freshDir();
      writeIdxSet(dir, 'train', 12, gz);
      writeIdxSet(dir, 'test', 5, gz);
      for (const name of ['mnist', 'fashion-mnist'] as const) {
        const train = loadDataset(name, 'train', { dataDir: dir });
        const test = loadDataset(name, 'test', { dataDir: dir });
        assert.deepEqual(train.shape, [12, 28, 28, 1]);
        assert.deepEqual(test.shape, [5, 28, 28, 1]);
        assert.deepEqual(Array.from(train.labels.subarray(0, 12)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
        // image 2, row 4, column 5 -> (62 + 12 + 5) mod 256 = 79
        assert.equal(train.pixels[2 * 784 + 4 * 28 + 5], 79);
        const images = train.images;
        assert.deepEqual(images.shape, [12, 28, 28, 1]);
        assert.equal(images.data[2 * 784 + 4 * 28 + 5], Math.fround(79 / 255));
      }
    }
  });

  test('a label count that differs from the image count is an error', () => {
    const dir = freshDir();
    writeIdxSet(dir, 'train', 4, false);
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idxBytes(0x08, [3], new Uint8Array(3)));
    assert.throws(
      () => loadDataset('fashion-mnist', 'train', { dataDir: dir }),
      /holds 4 images but .* holds 3 labels/,
    );
  });
});

// ---- resize -------------------------------------------------------------------------

describe('bilinear resize (Pillow semantics)', () => {
  test('upscaling 2 -> 4 weights 1, 3/4 1/4, 1/4 3/4, 1 with edge taps dropped', () => {
    const taps = bilinearTaps(2, 4);
    assert.deepEqual(Array.from(taps.first), [0, 0, 0, 1]);
    assert.deepEqual(Array.from(taps.count), [1, 2, 2, 1]);
    const row = new Uint8Array(4);
    resizeBilinear(Uint8Array.from([0, 100]), 0, 1, 2, 1, row, 0, 1, 4);
    assert.deepEqual(Array.from(row), [0, 25, 75, 100]);
    // Pillow rounds halves up in fixed point: 0.5 -> 1, 1.5 -> 2.
    resizeBilinear(Uint8Array.from([0, 2]), 0, 1, 2, 1, row, 0, 1, 4);
    assert.deepEqual(Array.from(row), [0, 1, 2, 2]);
  });

  test('2-D upscaling is separable, channels independent, and keeps constants', () => {
    // 2x2 RGB: channel 0 varies along x, channel 1 along y, channel 2 constant.
    const src = Uint8Array.from([0, 0, 7, 200, 0, 7, 0, 100, 7, 200, 100, 7]);
    const out = new Uint8Array(4 * 4 * 3);
    resizeBilinear(src, 0, 2, 2, 3, out, 0, 4, 4);
    const at = (y: number, x: number, c: number): number => out[(y * 4 + x) * 3 + c];
    assert.deepEqual(
      [0, 1, 2, 3].map((x) => at(1, x, 0)),
      [0, 50, 150, 200],
    );
    assert.deepEqual(
      [0, 1, 2, 3].map((y) => at(y, 2, 1)),
      [0, 25, 75, 100],
    );
    assert.ok(out.every((v, i) => i % 3 !== 2 || v === 7));
  });
});

// ---- CIFAR-10 binary ----------------------------------------------------------------

/** Record i: label i mod 10; pixel (y, x) of channel c = (i + 3y + 5x + 60c) mod 256. */
function cifarRecords(count: number, first = 0): Buffer {
  const bytes = Buffer.alloc(count * 3073);
  for (let r = 0; r < count; r++) {
    const i = first + r;
    bytes[r * 3073] = i % 10;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) {
          bytes[r * 3073 + 1 + c * 1024 + y * 32 + x] = (i + 3 * y + 5 * x + 60 * c) % 256;
        }
  }
  return bytes;
}

describe('CIFAR-10 binary reader', () => {
  test('records decode to channels-last 32x32x3 with their labels', () => {
    const set = parseCifarBatch(cifarRecords(3), 'data_batch_1.bin');
    assert.equal(set.count, 3);
    assert.deepEqual(Array.from(set.labels), [0, 1, 2]);
    const img = new Uint8Array(32 * 32 * 3);
    set.copyImage(2, img, 0);
    // image 2, y 4, x 6, channel 1 (green) -> 2 + 12 + 30 + 60 = 104
    assert.equal(img[(4 * 32 + 6) * 3 + 1], 104);
    assert.equal(img[(4 * 32 + 6) * 3 + 2], 164);
  });

  test('cifar10 dataset: 5 train batches + test batch, resized to 64x64 like Pillow', () => {
    const dir = join(freshDir(), 'cifar-10-batches-bin'); // the tarball's folder, found inside dataDir
    mkdirSync(dir);
    for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), cifarRecords(2, 2 * (b - 1)));
    writeFileSync(join(dir, 'test_batch.bin'), cifarRecords(3, 100));
    const train = loadDataset('cifar10', 'train', { dataDir: join(dir, '..') });
    assert.deepEqual(train.shape, [10, 64, 64, 3]);
    assert.deepEqual(Array.from(train.labels), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const original = new Uint8Array(32 * 32 * 3);
    parseCifarBatch(cifarRecords(1, 7)).copyImage(0, original, 0);
    const expected = new Uint8Array(64 * 64 * 3);
    resizeBilinear(original, 0, 32, 32, 3, expected, 0, 64, 64);
    assert.deepEqual(train.pixels.subarray(7 * 12288, 8 * 12288), expected);
    const test = loadDataset('cifar10', 'test', { dataDir: dir });
    assert.deepEqual(test.shape, [3, 64, 64, 3]);
    assert.deepEqual(Array.from(test.labels), [0, 1, 2]);
  });

  test('a truncated batch names the file and the record size', () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'test_batch.bin'), cifarRecords(2).subarray(0, 5000));
    assert.throws(
      () => loadDataset('cifar10', 'test', { dataDir: dir }),
      (err: Error) => {
        assert.match(err.message, /test_batch\.bin: 5000 bytes is not a whole number of CIFAR-10 records/);
        assert.match(err.message, /expected a multiple of 3073/);
        return true;
      },
    );
  });
});

// ---- MATLAB level 5 / SVHN ----------------------------------------------------------

const MI = { INT8: 1, UINT8: 2, INT32: 5, UINT32: 6, DOUBLE: 9, MATRIX: 14, COMPRESSED: 15 };
const MX = { DOUBLE: 6, UINT8: 9 };

/** A data element: 8-byte tag + data padded to 8, or the small form for <= 4 bytes. */
function element(type: number, data: Buffer, allowSmall = true): Buffer {
  if (allowSmall && data.length > 0 && data.length <= 4) {
    const el = Buffer.alloc(8);
    el.writeUInt32LE(((data.length << 16) | type) >>> 0, 0);
    data.copy(el, 4);
    return el;
  }
  const tag = Buffer.alloc(8);
  tag.writeUInt32LE(type, 0);
  tag.writeUInt32LE(data.length, 4);
  return Buffer.concat([tag, data, Buffer.alloc((8 - (data.length % 8)) % 8)]);
}

function int32s(values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeInt32LE(v, 4 * i));
  return b;
}

function matrix(name: string, mxClass: number, dims: number[], realType: number, real: Buffer): Buffer {
  const flags = Buffer.alloc(8);
  flags.writeUInt32LE(mxClass, 0);
  const body = Buffer.concat([
    element(MI.UINT32, flags, false),
    element(MI.INT32, int32s(dims), false),
    element(MI.INT8, Buffer.from(name, 'latin1')),
    element(realType, real),
  ]);
  return element(MI.MATRIX, body, false);
}

function matHeader(): Buffer {
  const header = Buffer.alloc(128, 0x20);
  header.write('MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024', 0, 'latin1');
  header.fill(0, 116, 124);
  header.writeUInt16LE(0x0100, 124);
  header.write('IM', 126, 'latin1');
  return header;
}

/** X(h, w, c, n) = (h + 2w + 50c + 7n) mod 256; y(n) = n mod 10 + 1 (so 10 appears). */
function svhnMat(n: number, compressed: boolean): Buffer {
  const x = Buffer.alloc(32 * 32 * 3 * n);
  for (let s = 0; s < n; s++)
    for (let c = 0; c < 3; c++)
      for (let w = 0; w < 32; w++)
        for (let h = 0; h < 32; h++) {
          x[h + 32 * w + 1024 * c + 3072 * s] = (h + 2 * w + 50 * c + 7 * s) % 256;
        }
  const yValues = Array.from({ length: n }, (_, s) => (s % 10) + 1);
  const xMatrix = matrix('X', MX.UINT8, [32, 32, 3, n], MI.UINT8, x);
  if (!compressed) {
    const y = Buffer.alloc(8 * n);
    yValues.forEach((v, i) => y.writeDoubleLE(v, 8 * i));
    return Buffer.concat([matHeader(), xMatrix, matrix('y', MX.DOUBLE, [n, 1], MI.DOUBLE, y)]);
  }
  // MATLAB stores small whole doubles as uint8 and wraps each variable in miCOMPRESSED.
  const yMatrix = matrix('y', MX.DOUBLE, [n, 1], MI.UINT8, Buffer.from(yValues));
  const wrap = (m: Buffer): Buffer => {
    const z = deflateSync(m);
    const tag = Buffer.alloc(8);
    tag.writeUInt32LE(MI.COMPRESSED, 0);
    tag.writeUInt32LE(z.length, 4);
    return Buffer.concat([tag, z]); // compressed elements are not padded
  };
  return Buffer.concat([matHeader(), wrap(xMatrix), wrap(yMatrix)]);
}

describe('MATLAB level-5 reader and SVHN', () => {
  for (const compressed of [false, true]) {
    test(`SVHN .mat (${compressed ? 'miCOMPRESSED' : 'uncompressed'}): column-major X, labels with 10 -> 0`, () => {
      const bytes = svhnMat(12, compressed);
      const vars = parseMat(bytes, 'train_32x32.mat');
      assert.deepEqual(vars.get('X')?.dims, [32, 32, 3, 12]);
      assert.equal(vars.get('y')?.className, 'double');
      const set = parseSvhnMat(bytes, 'train_32x32.mat');
      assert.equal(set.count, 12);
      assert.deepEqual(Array.from(set.labels), [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]);
      const img = new Uint8Array(3072);
      set.copyImage(3, img, 0);
      // row 5, column 9, channel 2 of sample 3: 5 + 18 + 100 + 21 = 144
      assert.equal(img[(5 * 32 + 9) * 3 + 2], 144);
      assert.equal(img[(9 * 32 + 5) * 3 + 0], 9 + 10 + 21);

      const dir = freshDir();
      writeFileSync(join(dir, 'test_32x32.mat'), bytes);
      const test = loadDataset('svhn', 'test', { dataDir: dir });
      assert.deepEqual(test.shape, [12, 64, 64, 3]);
      const expected = new Uint8Array(64 * 64 * 3);
      resizeBilinear(img, 0, 32, 32, 3, expected, 0, 64, 64);
      assert.deepEqual(test.pixels.subarray(3 * 12288, 4 * 12288), expected);
    });
  }

  test('a truncated .mat names the file and the element that ran short', () => {
    const dir = freshDir();
    const path = join(dir, 'train_32x32.mat');
    const bytes = svhnMat(2, false);
    writeFileSync(path, bytes.subarray(0, 3000));
    assert.throws(
      () => loadDataset('svhn', 'train', { dataDir: dir }),
      /train_32x32\.mat: truncated MAT-file: .*miMATRIX.* claims \d+ bytes but only \d+ remain/,
    );
    const zipped = svhnMat(2, true);
    writeFileSync(path, Buffer.concat([zipped.subarray(0, 140), Buffer.alloc(zipped.length - 140, 0x55)]));
    assert.throws(
      () => loadDataset('svhn', 'train', { dataDir: dir }),
      /train_32x32\.mat: miCOMPRESSED element at file byte 128: zlib data is truncated or corrupt/,
    );
  });

  test('a miCOMPRESSED zlib bomb stops at the size its element declares', () => {
    const wrap = (inner: Buffer): Buffer => {
      const z = deflateSync(inner);
      const tag = Buffer.alloc(8);
      tag.writeUInt32LE(MI.COMPRESSED, 0);
      tag.writeUInt32LE(z.length, 4);
      return Buffer.concat([matHeader(), tag, z]);
    };
    // a 16-byte miMATRIX tag followed by 64 MiB of zeros: 64 KiB of zlib data
    const tag = Buffer.alloc(16);
    tag.writeUInt32LE(MI.MATRIX, 0);
    tag.writeUInt32LE(8, 4);
    const bomb = wrap(Buffer.concat([tag, Buffer.alloc(64 * 2 ** 20)]));
    assert.ok(bomb.length < 100_000);
    assert.throws(
      () => parseMat(bomb, 'bomb.mat'),
      /bomb\.mat: miCOMPRESSED element at file byte 128: zlib data inflates to more than the 16 bytes its first element declares/,
    );
    // a tag that declares 4 GB in a few bytes of zlib data: refused before inflating
    const liar = Buffer.alloc(8);
    liar.writeUInt32LE(MI.MATRIX, 0);
    liar.writeUInt32LE(0xfffffff0, 4);
    assert.throws(
      () => parseMat(wrap(liar), 'liar.mat'),
      /liar\.mat: miCOMPRESSED element at file byte 128: \d+ bytes of zlib data cannot hold the 4294967288-byte element/,
    );
  });

  test('not a level-5 file, or missing variables, is reported', () => {
    assert.throws(() => parseMat(Buffer.alloc(200), 'a.mat'), /a\.mat: not a MATLAB level-5 MAT-file/);
    const onlyX = Buffer.concat([matHeader(), matrix('X', MX.UINT8, [32, 32, 3, 1], MI.UINT8, Buffer.alloc(3072))]);
    assert.throws(
      () => parseSvhnMat(onlyX, 'b.mat'),
      /b\.mat: expected variables X .* and y .*; found X \(uint8 \[32, 32, 3, 1\]\)/,
    );
  });
});

// ---- missing datasets ---------------------------------------------------------------

describe('missing dataset errors say what to get and where', () => {
  test('idx sets list the files and the folder searched', () => {
    const dir = freshDir();
    for (const name of ['fashion-mnist', 'mnist'] as const) {
      assert.throws(
        () => loadDataset(name, 'train', { dataDir: dir, packageFallback: false }),
        (err: Error) => {
          assert.ok(err.message.includes(dir), err.message);
          assert.match(
            err.message,
            /train-images-idx3-ubyte\.gz \(or train-images-idx3-ubyte\) and train-labels-idx1-ubyte\.gz/,
          );
          assert.match(err.message, /downloadDataset/);
          return true;
        },
      );
    }
  });

  test('cifar10 and svhn name their files, the archive or URL, and the folder', () => {
    const dir = freshDir();
    assert.throws(
      () => loadDataset('cifar10', 'train', { dataDir: dir }),
      (err: Error) => {
        assert.ok(err.message.includes(dir) && err.message.includes(join(dir, 'cifar-10-batches-bin')), err.message);
        assert.match(err.message, /data_batch_1\.bin, .*data_batch_5\.bin/);
        assert.match(err.message, /cifar-10-binary\.tar\.gz/);
        return true;
      },
    );
    assert.throws(
      () => loadDataset('svhn', 'test', { dataDir: dir }),
      (err: Error) => {
        assert.ok(err.message.includes(dir), err.message);
        assert.match(err.message, /test_32x32\.mat/);
        assert.match(err.message, /ufldl\.stanford\.edu/);
        return true;
      },
    );
  });

  test('a partial IDX folder is not silently replaced by the mnist package', () => {
    const dir = freshDir();
    writeIdxSet(dir, 'test', 3, true);
    assert.throws(
      () => loadDataset('mnist', 'train', { dataDir: dir }),
      /mnist train set not found: missing train-images/,
    );
    assert.equal(loadDataset('mnist', 'test', { dataDir: dir }).count, 3);
    assert.ok(readFileSync(join(dir, 't10k-images-idx3-ubyte.gz')).length > 0);
  });
});
