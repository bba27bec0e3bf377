// Valid seed files for every reader, built in-process with the project's own writers (ZIP +
// pickle checkpoints, safetensors, packed quantized models, training checkpoints) or by small
// functions that lay out the bytes (IDX, CIFAR-10 binary, MATLAB level 5), plus the small
// committed fixtures under fixtures/io and fixtures/data. Each seed lists the size fields its
// format has, and "parts": an inner layer (a ZIP's data.pkl, a safetensors JSON header, a
// gzip or miCOMPRESSED payload) that is mutated and then wrapped again, so the inner parser is
// reached past checksums and length prefixes.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, gzipSync } from 'node:zlib';
import { pickleStateDict } from '../../src/io/pickle-writer.js';
import { writeQuantizedModel } from '../../src/export/quantized-file.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import type { NamedTensor } from '../../src/io/tensor-data.js';
import { zipBytes, type ZipWriteEntry } from '../../src/io/zip.js';
import { buildModel } from '../../src/models/factory.js';
import { quantize } from '../../src/quant/quantized-model.js';
import { C_FUZZ_IMAGE } from './c-binary.js';
import { pickleFields, type SizeField } from './mutate.js';
import { FUZZ_EVAL_CACHE } from './readers.js';
import { sampleSearch, sampleSensitivity, sampleSweep } from '../../test/report-samples.js';

export type PartKind = 'pickle' | 'json' | 'bytes';

/** An inner layer of a seed: mutate `inner`, then `wrap` rebuilds the whole file around it. */
export interface SeedPart {
  readonly kind: PartKind;
  readonly inner: Uint8Array;
  readonly fields: readonly SizeField[];
  readonly wrap: (inner: Uint8Array) => Uint8Array;
}

export interface Seed {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly fields: readonly SizeField[];
  readonly parts: readonly SeedPart[];
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const concat = (...chunks: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(chunks));
const repoFile = (rel: string): Uint8Array =>
  new Uint8Array(readFileSync(fileURLToPath(new URL(`../../../${rel}`, import.meta.url))));

// ---- ZIP + pickle (torch.save) -----------------------------------------------------------

/** The size, length and offset fields of every ZIP record found by its signature. */
export function zipFields(bytes: Uint8Array): SizeField[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: SizeField[] = [];
  const f = (offset: number, width: 2 | 4 | 8) => {
    if (offset + width <= bytes.length) out.push({ offset, width, littleEndian: true });
  };
  for (let p = 0; p + 4 <= bytes.length; p++) {
    if (bytes[p] !== 0x50 || bytes[p + 1] !== 0x4b) continue;
    const sig = dv.getUint32(p, true);
    // [field offsets of 4 bytes], [of 2 bytes] in the local header, central entry, end record
    const layout: Record<number, [number[], number[]]> = {
      0x04034b50: [
        [18, 22],
        [26, 28],
      ],
      0x02014b50: [
        [20, 24, 42],
        [28, 30, 32],
      ],
      0x06054b50: [
        [12, 16],
        [8, 10, 20],
      ],
    };
    const [wide, narrow] = layout[sig] ?? [[], []];
    for (const o of wide) f(p + o, 4);
    for (const o of narrow) f(p + o, 2);
    if (sig === 0x06064b50) [24, 32, 40, 48].forEach((o) => f(p + o, 8));
    if (sig === 0x07064b50) f(p + 8, 8);
  }
  return out;
}

function float32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

function int64Bytes(values: number[]): Uint8Array {
  return new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);
}

/** A torch.save(state_dict) archive as pt.ts writes it, with data.pkl as a mutable part. */
function torchZipSeed(name: string, forceZip64: boolean): Seed {
  const tensors = [
    { name: 'conv.weight', storageClass: 'FloatStorage', data: float32Bytes([1, 2, 3, 4, 5, 6]), shape: [2, 3] },
    { name: 'conv.bias', storageClass: 'FloatStorage', data: float32Bytes([0.5, -0.5]), shape: [2] },
    { name: 'bn.num_batches_tracked', storageClass: 'LongStorage', data: int64Bytes([7]), shape: [] },
  ];
  const pickled = tensors.map((t, k) => ({
    name: t.name,
    storageClass: t.storageClass,
    storageKey: String(k),
    storageNumel: t.data.length / (t.storageClass === 'LongStorage' ? 8 : 4),
    shape: t.shape,
  }));
  const records: ZipWriteEntry[] = tensors.map((t, k) => ({ name: `archive/data/${k}`, data: t.data }));
  const build = (pickle: Uint8Array, storage: Uint8Array = records[0].data): Uint8Array =>
    zipBytes(
      [
        { name: 'archive/data.pkl', data: pickle },
        { name: 'archive/byteorder', data: utf8('little') },
        { ...records[0], data: storage },
        ...records.slice(1),
        { name: 'archive/version', data: utf8('3\n') },
      ],
      { forceZip64 },
    );
  const pickle = pickleStateDict(pickled);
  const bytes = build(pickle);
  return {
    name,
    bytes,
    fields: zipFields(bytes),
    parts: [
      { kind: 'pickle', inner: pickle, fields: pickleFields(pickle), wrap: (p) => build(p) },
      { kind: 'bytes', inner: records[0].data, fields: [], wrap: (s) => build(pickle, s) },
    ],
  };
}

function rawSeed(name: string, bytes: Uint8Array, fields: SizeField[]): Seed {
  return { name, bytes, fields, parts: [] };
}

// ---- safetensors (plain, quantized, training checkpoint) --------------------------------

/** A safetensors file's header text and data, and how to put a changed header back. */
function safetensorsParts(bytes: Uint8Array): SeedPart[] {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = bytes.subarray(8, 8 + length);
  const data = bytes.subarray(8 + length);
  const withHeader = (h: Uint8Array, d: Uint8Array = data): Uint8Array => {
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(h.length), true);
    return concat(prefix, h, d);
  };
  return [
    { kind: 'json', inner: header, fields: [], wrap: (h) => withHeader(h) },
    { kind: 'bytes', inner: data, fields: [], wrap: (d) => withHeader(header, d) },
  ];
}

function safetensorsSeed(name: string, bytes: Uint8Array, extra: SeedPart[] = []): Seed {
  return {
    name,
    bytes,
    fields: [{ offset: 0, width: 8, littleEndian: true }],
    parts: [...safetensorsParts(bytes), ...extra],
  };
}

/** Writes with one of the project's file writers into a temporary folder and returns the bytes. */
function written(write: (file: string) => void): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-fuzz-seed-'));
  try {
    const file = join(dir, 'seed.safetensors');
    write(file);
    return new Uint8Array(readFileSync(file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function plainSafetensorsSeed(): Seed {
  const bytes = written((file) =>
    writeSafetensors(
      file,
      <[string, NamedTensor][]>[
        ['w', { shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6), dtype: 'float32' }],
        ['d', { shape: [2], data: Float32Array.of(0.25, 8), dtype: 'float64' }],
        ['n', { shape: [], data: Float32Array.of(3), dtype: 'int64', integers: BigInt64Array.of(3n) }],
      ],
      { note: 'fuzz seed' },
    ),
  );
  return safetensorsSeed('safetensors', bytes);
}

/** A training state that readTrainingCheckpoint accepts (src/train/checkpoint.ts). */
const TRAINING_STATE = {
  model: { kind: 'ShallowCapsNet', args: [28, 1, 10, 16] },
  decoder: { kind: 'FCDecoder', args: [16, 784] },
  dataset: { name: 'mnist' },
  settings: { lr: 0.001, batchSize: 100 },
  epoch: 2,
  batch: 0,
  globalStep: 1200,
  adam: { step: 1200, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
  bestAccuracy: 0.91,
  history: [{ epoch: 1, accuracy: 0.9 }],
  partial: null,
};

function trainingCheckpointSeed(): Seed {
  const tensor: NamedTensor = { shape: [2], data: Float32Array.of(0.5, -1), dtype: 'float32' };
  const withState = (state: string) =>
    written((file) =>
      writeSafetensors(
        file,
        <[string, NamedTensor][]>[
          ['model.w', tensor],
          ['adam.m.model.w', tensor],
          ['adam.v.model.w', tensor],
        ],
        { format: 'qcapsnets-training-checkpoint', version: '1', state },
      ),
    );
  const state = JSON.stringify(TRAINING_STATE);
  const stateText = utf8(state);
  return safetensorsSeed('run', withState(state), [
    { kind: 'json', inner: stateText, fields: [], wrap: (s) => withState(new TextDecoder().decode(s)) },
  ]);
}

/** The smallest packed quantized model: ShallowCapsNet [18, 1, 2, 2] at 2-bit weights. */
function quantizedSeed(): Seed {
  const model = buildModel('ShallowCapsNet', [18, 1, 2, 2], { seed: 3 });
  const bits = model.quantLayers.map((l) => ({
    name: l.name,
    format: 'fixed' as const,
    weight: 2,
    act: 4,
    routing: l.routes ? 4 : null,
  }));
  const q = quantize(model, bits, { method: 'round_to_nearest', seed: 1 });
  return safetensorsSeed(
    'quantized',
    written((file) => writeQuantizedModel(file, q)),
  );
}

// ---- IDX, CIFAR-10, MATLAB ---------------------------------------------------------------

function idxBytes(typeCode: number, dims: number[], valueBytes: number): Uint8Array {
  const count = dims.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(4 + 4 * dims.length + count * valueBytes);
  const dv = new DataView(out.buffer);
  out[2] = typeCode;
  out[3] = dims.length;
  dims.forEach((d, i) => dv.setUint32(4 + 4 * i, d, false));
  for (let i = 4 + 4 * dims.length; i < out.length; i++) out[i] = (i * 37) & 0xff;
  return out;
}

const idxDims = (dims: number[]): SizeField[] =>
  dims.map((_, i) => ({ offset: 4 + 4 * i, width: 4, littleEndian: false }));

const IDX_SHAPES: [string, number, number[], number][] = [
  ['images', 0x08, [3, 28, 28], 1],
  ['labels', 0x08, [12], 1],
  ['float32', 0x0d, [2, 3, 4], 4],
  ['int16', 0x0b, [5, 2], 2],
  ['float64', 0x0e, [3], 8],
];

function idxSeeds(gzip: boolean): Seed[] {
  return IDX_SHAPES.map(([name, code, dims, size]) => {
    const raw = idxBytes(code, dims, size);
    if (!gzip) return rawSeed(`idx-${name}`, raw, idxDims(dims));
    const packed = new Uint8Array(gzipSync(raw));
    return {
      name: `idx-gzip-${name}`,
      bytes: packed,
      fields: [],
      parts: [{ kind: 'bytes', inner: raw, fields: idxDims(dims), wrap: (r) => new Uint8Array(gzipSync(r)) }],
    };
  });
}

/** Images for the C export's command (bench/fuzz/c-binary.ts): IDX ubyte [2][18][18] and
 *  [1][18][18][1], and raw float32 images in [0, 1] (mutated bytes make NaN, infinities and
 *  values far outside). */
function cBinarySeeds(raw: boolean): Seed[] {
  const { height: h, width: w, channels: c } = C_FUZZ_IMAGE;
  if (!raw)
    return [
      rawSeed('c-idx-3d', idxBytes(0x08, [2, h, w], 1), idxDims([2, h, w])),
      rawSeed('c-idx-4d', idxBytes(0x08, [1, h, w, c], 1), idxDims([1, h, w, c])),
    ];
  const images = (n: number) => float32Bytes(Array.from({ length: n * h * w * c }, (_, i) => ((i * 37) % 256) / 255));
  return [rawSeed('c-raw-1', images(1), []), rawSeed('c-raw-2', images(2), [])];
}

function cifarSeed(records: number): Seed {
  const bytes = new Uint8Array(records * 3073);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % 3073 === 0 ? (i / 3073) % 10 : (i * 13) & 0xff;
  return rawSeed(`cifar-${records}`, bytes, []);
}

const MI = { INT8: 1, UINT8: 2, INT32: 5, UINT32: 6, DOUBLE: 9, MATRIX: 14, COMPRESSED: 15 };

/** A MAT data element: 8-byte tag and its data padded to 8 bytes. */
function element(type: number, data: Uint8Array): Uint8Array {
  const tag = new Uint8Array(8);
  const dv = new DataView(tag.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(4, data.length, true);
  return concat(tag, data, new Uint8Array((8 - (data.length % 8)) % 8));
}

function matMatrix(name: string, mxClass: number, dims: number[], realType: number, real: Uint8Array): Uint8Array {
  const flags = new Uint8Array(8);
  flags[0] = mxClass;
  const dimBytes = new Uint8Array(Int32Array.from(dims).buffer);
  return element(
    MI.MATRIX,
    concat(
      element(MI.UINT32, flags),
      element(MI.INT32, dimBytes),
      element(MI.INT8, utf8(name)),
      element(realType, real),
    ),
  );
}

function matHeader(): Uint8Array {
  const header = new Uint8Array(128).fill(0x20);
  header.set(utf8('MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024'), 0);
  header.fill(0, 116, 124);
  header[124] = 0x00;
  header[125] = 0x01;
  header[126] = 0x49; // 'I'
  header[127] = 0x4d; // 'M'
  return header;
}

/** The tag size fields (and dims values) of a MAT-file's uncompressed elements, found by
 *  walking its tags from `start`. */
export function matFields(bytes: Uint8Array, start = 128): SizeField[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: SizeField[] = [];
  const walk = (from: number, end: number, inMatrix: boolean) => {
    let o = from;
    let child = 0;
    while (o + 8 <= end) {
      const first = dv.getUint32(o, true);
      if (first >>> 16 !== 0) {
        out.push({ offset: o, width: 2, littleEndian: true }); // a small element's byte count
        o += 8;
      } else {
        const size = dv.getUint32(o + 4, true);
        out.push({ offset: o + 4, width: 4, littleEndian: true });
        if (first === MI.MATRIX) walk(o + 8, Math.min(end, o + 8 + size), true);
        if (inMatrix && child === 1)
          for (let d = 0; d + 4 <= size; d += 4) out.push({ offset: o + 8 + d, width: 4, littleEndian: true });
        o += 8 + size + (first === MI.COMPRESSED ? 0 : (8 - (size % 8)) % 8);
      }
      child++;
    }
  };
  walk(start, bytes.length, false);
  return out;
}

/** SVHN's layout: X uint8 [32, 32, 3, N] and y double [N, 1], optionally each in miCOMPRESSED. */
function svhnSeed(n: number, compressed: boolean): Seed {
  const x = new Uint8Array(32 * 32 * 3 * n).map((_, i) => (i * 7) & 0xff);
  const y = new Uint8Array(new Float64Array(n).map((_, i) => (i % 10) + 1).buffer);
  const xMatrix = matMatrix('X', 9, [32, 32, 3, n], MI.UINT8, x);
  const yMatrix = matMatrix('y', 6, [n, 1], MI.DOUBLE, y);
  if (!compressed) {
    const bytes = concat(matHeader(), xMatrix, yMatrix);
    return rawSeed(`svhn-${n}`, bytes, matFields(bytes));
  }
  const squeeze = (m: Uint8Array): Uint8Array => {
    const z = new Uint8Array(deflateSync(m));
    const tag = new Uint8Array(8);
    new DataView(tag.buffer).setUint32(0, MI.COMPRESSED, true);
    new DataView(tag.buffer).setUint32(4, z.length, true);
    return concat(tag, z);
  };
  const build = (xm: Uint8Array, ym: Uint8Array = yMatrix) => concat(matHeader(), squeeze(xm), squeeze(ym));
  const bytes = build(xMatrix);
  return {
    name: `svhn-${n}-compressed`,
    bytes,
    fields: matFields(bytes),
    parts: [
      { kind: 'bytes', inner: xMatrix, fields: matFields(xMatrix, 0), wrap: (xm) => build(xm) },
      { kind: 'bytes', inner: yMatrix, fields: matFields(yMatrix, 0), wrap: (ym) => build(xMatrix, ym) },
    ],
  };
}

// ---- evaluation cache and run JSON ------------------------------------------------------

/** Lines of text as one file, each line a JSON part mutated on its own (the others kept). */
function linesSeed(name: string, lines: string[], end = '\n'): Seed {
  const build = (k: number, line: Uint8Array) =>
    utf8(lines.map((l, i) => (i === k ? new TextDecoder().decode(line) : l)).join('\n') + end);
  return {
    name,
    bytes: build(-1, new Uint8Array()),
    fields: [],
    parts: lines.map((l, k) => ({ kind: 'json', inner: utf8(l), fields: [], wrap: (inner) => build(k, inner) })),
  };
}

/** A cache for FUZZ_EVAL_CACHE: an exact, an early-stopped, a resumed and a fast-convolution
 *  evaluation, as the search writes them; and the same with a torn last line. */
function evalCacheSeeds(): Seed[] {
  const evaluation = (bits: number, correct: number, batchCorrect: number[], extra: object = {}) => {
    const seen = Math.min(100, batchCorrect.length * 25);
    const lower = (correct * 100.0) / 100;
    return JSON.stringify({
      method: 'round_to_nearest',
      w: [bits, bits, bits],
      a: [bits, bits, bits],
      r: [bits, bits],
      accuracy: lower,
      lower,
      upper: ((correct + 100 - seen) * 100.0) / 100,
      exact: seen === 100,
      seen,
      total: 100,
      correct,
      batchCorrect,
      ...extra,
    });
  };
  const lines = [
    JSON.stringify(FUZZ_EVAL_CACHE.header),
    evaluation(8, 80, [20, 20, 20, 20]),
    evaluation(4, 30, [15, 15]),
    evaluation(5, 50, [12, 13, 25], { resumedAfter: 50 }),
    JSON.stringify({
      ...JSON.parse(evaluation(3, 40, [20, 20])),
      lower: 39,
      upper: 91,
      correct: 39,
      approximate: true,
    }),
  ];
  return [linesSeed('eval-cache', lines), linesSeed('eval-cache-torn', [...lines, '{"method":"trunc'], '')];
}

function runJsonSeed(name: string, run: unknown): Seed {
  const text = JSON.stringify(run, null, 1);
  return {
    name,
    bytes: utf8(text),
    fields: [],
    parts: [{ kind: 'json', inner: utf8(text), fields: [], wrap: (t) => t }],
  };
}

// ---- all readers' seeds ------------------------------------------------------------------

const SEEDS: Record<string, () => Seed[]> = {
  pt: () => [
    torchZipSeed('pt', false),
    torchZipSeed('pt-zip64', true),
    rawSeed('tiny.pt', repoFile('fixtures/io/tiny.pt'), zipFields(repoFile('fixtures/io/tiny.pt'))),
    rawSeed('checkpoint.pt', repoFile('fixtures/io/checkpoint.pt'), zipFields(repoFile('fixtures/io/checkpoint.pt'))),
  ],
  'pt-legacy': () => {
    const bytes = repoFile('fixtures/io/tiny-legacy.pt');
    return [rawSeed('tiny-legacy.pt', bytes, pickleFields(bytes))];
  },
  safetensors: () => [
    plainSafetensorsSeed(),
    safetensorsSeed('tiny.safetensors', repoFile('fixtures/io/tiny.safetensors')),
  ],
  idx: () => idxSeeds(false),
  'idx-gzip': () => idxSeeds(true),
  cifar: () => [cifarSeed(1), cifarSeed(3)],
  svhn: () => [svhnSeed(2, false), svhnSeed(3, true)],
  mat: () => {
    const scipy = repoFile('fixtures/data/scipy-v5.mat');
    const zlib = repoFile('fixtures/data/scipy-v5-zlib.mat');
    return [rawSeed('scipy-v5.mat', scipy, matFields(scipy)), rawSeed('scipy-v5-zlib.mat', zlib, matFields(zlib))];
  },
  run: () => [trainingCheckpointSeed()],
  quantized: () => [quantizedSeed()],
  'eval-cache': evalCacheSeeds,
  'run-json': () => [
    runJsonSeed('search', sampleSearch()),
    runJsonSeed('sweep', sampleSweep()),
    runJsonSeed('sensitivity', sampleSensitivity()),
  ],
  'c-idx': () => cBinarySeeds(false),
  'c-raw': () => cBinarySeeds(true),
};

/** The seeds of one reader (see readers.ts for the names). */
export function seedsFor(reader: string): Seed[] {
  const make = SEEDS[reader];
  if (!make) throw new Error(`fuzz: no seeds for reader '${reader}'`);
  return make();
}
