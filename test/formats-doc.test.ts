// docs/formats.md is a specification an outside programmer can write a reader from. This test
// holds such a reader, written from that page alone (it imports nothing of the tool's file code:
// no safetensors reader, no unpacking, no decoder), and checks that it decodes packed files the
// tool wrote, for both models, every encoding and both arithmetics, to the tool's own integers.
// It also fails when the writer emits a metadata key, a layer or tensor-format key, a search or
// evaluation-order key that formats.md has no table row for, and when the page's worked example
// no longer shows the bytes the tool writes.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/load.js';
import { datasetFingerprint, type QuantizedSearchRecord, writeQuantizedModel } from '../src/export/quantized-file.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { buildModel } from '../src/models/factory.js';
import type { RoundingCompat } from '../src/quant/methods.js';
import { type QuantizedModel, quantize } from '../src/quant/quantized-model.js';
import type { QuantMethod } from '../src/tensor/backend.js';
import { bitsFromLists, bitsToLists } from '../src/quant/config.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const formatsMd = readFileSync(join(root, 'docs', 'formats.md'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'qcaps-formats-doc-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// ---- the reader, from docs/formats.md alone

interface DocTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

interface DocFile {
  headerLength: number;
  metadata: Record<string, string>;
  tensors: Map<string, DocTensor>;
}

/** "The container: safetensors": u64 LE header length, the JSON header, the data buffer. */
function readContainer(file: string): DocFile {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const data = b.subarray(8 + n);
  const tensors = new Map<string, DocTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    tensors.set(name, { dtype: e.dtype, shape: e.shape, bytes: data.subarray(e.data_offsets[0], e.data_offsets[1]) });
  }
  return { headerLength: n, metadata, tensors };
}

/** "Bitstream": code i is stream bits [i*b, (i+1)*b), least significant first; stream bit j is
 *  bit j mod 8 of byte floor(j/8). Bit by bit, as plainly as the page says it. */
function unpack(bytes: Uint8Array, n: number, b: number): number[] {
  assert.equal(bytes.length, Math.ceil((n * b) / 8), 'the tensor has exactly ceil(n*b/8) bytes');
  const codes: number[] = [];
  for (let i = 0; i < n; i++) {
    let c = 0;
    for (let k = 0; k < b; k++) {
      const j = i * b + k;
      const bit = (bytes[Math.floor(j / 8)] >> (j % 8)) & 1;
      c += bit * 2 ** k;
    }
    codes.push(c);
  }
  // "the unused high bits of the last byte are 0"
  for (let j = n * b; j < bytes.length * 8; j++) assert.equal((bytes[Math.floor(j / 8)] >> (j % 8)) & 1, 0);
  return codes;
}

interface Format {
  encoding: string;
  shape: number[];
  layer?: string;
  bits?: number;
  frac_bits?: number;
  width?: string;
  exp_min?: number;
  saturation?: string;
}

/** "Codes": a parameter's integers q (value = q * 2^-frac_bits). */
function decodeParameter(f: Format, bytes: Uint8Array, compat: string): number[] {
  const n = f.shape.reduce((a, d) => a * d, 1);
  const b = f.bits!;
  const F = f.frac_bits!;
  const codes = unpack(bytes, n, b);
  if (f.encoding === 'fixed') {
    if (f.width === 'format') assert.equal(b, F + 1, '"format": b = F + 1');
    return codes.map((c) => (c < 2 ** (b - 1) ? c : c - 2 ** b));
  }
  assert.equal(f.encoding, 'log2');
  const m = b - 1;
  assert.equal(f.saturation !== undefined, compat === 'none', 'saturation is there exactly under compat none');
  return codes.map((c) => {
    if (c === 0) return 0;
    const negative = c >= 2 ** m;
    const e = negative ? c - 2 ** m : c;
    assert.ok(e >= 1, 'the sign bit with e = 0 is not a code');
    const exponent = f.exp_min! + e - 1;
    let value = 2 ** exponent;
    if (compat === 'none' && !negative && exponent === 0) value = 1 - 2 ** -F;
    return (negative ? -value : value) * 2 ** F;
  });
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
/** CRC-32 (IEEE 802.3, as zlib's crc32). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of bytes) c = CRC_TABLE[(c ^ x) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** "Fingerprint". */
function fingerprint(pixels: Uint8Array, labels: Int32Array): string {
  const le = Buffer.alloc(labels.length * 4);
  labels.forEach((l, i) => le.writeInt32LE(l, i * 4));
  const hex = (x: number) => x.toString(16).padStart(8, '0');
  return `crc32:${hex(crc32(pixels))}:${hex(crc32(le))}:${labels.length}`;
}

// ---- files the tool writes

const shallow = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 5 });
const deep = buildModel('DeepCaps', [28, 1, 10, 32], { seed: 6 });
const images = loadDataset('mnist', 'test', { limit: 5 });

function bitsFor(model: CapsNet, weight: number[]) {
  return bitsFromLists(model.quantLayers, {
    weightBits: weight,
    actBits: model.quantLayers.map(() => 6),
    routingBits: model.routingLayerNames.map(() => 5),
  });
}

const searchRecord: Required<QuantizedSearchRecord> = {
  kind: 'satisfied',
  dataset: images.name,
  images: images.count,
  correct: 3,
  accuracy: 60,
  batchSize: 2,
  order: 'hardest-first',
  fingerprint: datasetFingerprint(images),
};
const order = Int32Array.of(3, 0, 4, 1, 2);

/** Writes `q` with every optional part the search adds (decoder, search, and for stochastic
 *  rounding the evaluation order). */
function write(q: QuantizedModel, name: string): string {
  const file = join(dir, `${name}.safetensors`);
  writeQuantizedModel(file, q, {
    decoder: { name: 'FCDecoder', args: [16, 784] },
    search: searchRecord,
    evaluationOrder:
      q.method === 'stochastic_rounding' ? { order, batchSize: 2, fingerprint: datasetFingerprint(images) } : undefined,
  });
  return file;
}

const CASES: [QuantMethod, RoundingCompat][] = [
  ['round_to_nearest', 'none'],
  ['truncation', 'dac2020'],
  ['stochastic_rounding', 'none'],
  ['logarithmic', 'none'],
  ['logarithmic', 'dac2020'],
];

// DeepCaps (its BatchNorm buffers) under both arithmetics and both encodings; ShallowCapsNet every case
const DEEP_CASES = new Set(['round_to_nearest none', 'stochastic_rounding none', 'logarithmic dac2020']);
const written: { file: string; q: QuantizedModel; what: string }[] = [];
for (const [model, weight] of [
  [shallow, [6, 4, 3]],
  [deep, [7, 6, 5, 4, 3, 3]],
] as const)
  for (const [method, compat] of CASES) {
    if (model === deep && !DEEP_CASES.has(`${method} ${compat}`)) continue;
    const q = quantize(model, bitsFor(model, [...weight]), { method, compat, seed: 9 });
    const what = `${model.kind} ${method} ${compat}`;
    written.push({ file: write(q, what.replaceAll(' ', '-')), q, what });
  }

describe('a reader written from docs/formats.md decodes what the tool wrote', () => {
  for (const { file, q, what } of written)
    test(what, () => {
      const f = readContainer(file);
      const md = f.metadata;
      for (const [k, v] of Object.entries(md)) assert.equal(typeof v, 'string', `metadata ${k} is a string`);
      assert.equal(md.format, 'qcapsnets-quantized');
      assert.equal(md.format_version, '1');
      assert.equal(md.model, q.model.kind);
      assert.deepEqual(JSON.parse(md.model_args), [...q.model.args]);
      assert.equal(md.method, q.method);
      assert.equal(md.compat, q.compat);
      assert.equal(Number(md.seed), q.seed);
      const layers = JSON.parse(md.layers) as {
        name: string;
        param_count: number;
        weight_bits: number;
        routing_bits: number | null;
      }[];
      assert.deepEqual(
        layers.map((l) => l.weight_bits),
        bitsToLists(q.bits).weightBits,
      );
      const formats = JSON.parse(md.tensors) as Record<string, Format>;

      // every parameter to the tool's own integers, in the layer the page says
      const ints = new Map(q.integerParameters().map((p) => [p.name, p]));
      let qweightBytes = 0;
      let memoryBits = 0;
      for (const l of layers) memoryBits += l.param_count * (l.weight_bits + 1);
      for (const [name, fmt] of Object.entries(formats)) {
        if (fmt.encoding === 'float32' || fmt.encoding === 'int64') {
          const t = f.tensors.get(name)!;
          assert.equal(t.dtype, fmt.encoding === 'float32' ? 'F32' : 'I64', name);
          const sd = q.stateDict().get(name)!;
          const decoded =
            t.dtype === 'F32'
              ? Array.from(new Float32Array(new Uint8Array(t.bytes).buffer))
              : Array.from(new BigInt64Array(new Uint8Array(t.bytes).buffer), Number);
          assert.deepEqual(decoded, Array.from(sd.data), name);
          continue;
        }
        const p = ints.get(name);
        assert.ok(p, `${name} is a parameter`);
        const layer = name.slice(0, name.indexOf('.'));
        assert.equal(fmt.layer, layer, `${name}: the part before the first '.' is its layer`);
        const l = layers.find((x) => x.name === layer)!;
        assert.equal(fmt.frac_bits, l.weight_bits, `${name}: frac_bits is its layer's weight_bits`);
        assert.equal(fmt.width, fmt.encoding === 'fixed' ? (q.compat === 'none' ? 'format' : 'measured') : undefined);
        const t = f.tensors.get(`${name}.qweight`)!;
        assert.equal(t.dtype, 'U8');
        qweightBytes += t.bytes.length;
        const decoded = decodeParameter(fmt, t.bytes, md.compat);
        const want = Array.from(p.values, Number);
        for (let i = 0; i < want.length; i++)
          if (decoded[i] !== want[i])
            assert.fail(`${what} ${name}[${i}]: decoded ${decoded[i]}, the tool has ${want[i]}`);
        // -0 is written as 0 and reads back as +0
        const values = q.stateDict().get(name)!.data;
        for (let i = 0; i < values.length; i++)
          if (values[i] === 0) assert.ok(Object.is(decoded[i] * 2 ** -fmt.frac_bits!, 0), `${name}[${i}] reads +0`);
      }
      assert.equal(Number(md.packed_bytes), qweightBytes, 'packed_bytes: the .qweight bytes');
      assert.equal(Number(md.memory_bits), memoryBits, 'memory_bits: sum of param_count x (weight_bits + 1)');

      // the search record and, for stochastic rounding only, the evaluation order
      assert.deepEqual(JSON.parse(md.search), searchRecord);
      assert.equal(searchRecord.fingerprint, fingerprint(images.pixels, images.labels), 'the fingerprint as specified');
      assert.equal(md.eval_order !== undefined, q.method === 'stochastic_rounding');
      assert.equal(f.tensors.has('qcapsnets.eval_order'), md.eval_order !== undefined);
      if (md.eval_order !== undefined) {
        const e = JSON.parse(md.eval_order) as {
          batch_size: number;
          images: number;
          bits: number;
          fingerprint: string;
        };
        assert.equal(e.bits, Math.max(1, Math.ceil(Math.log2(e.images))));
        assert.deepEqual(unpack(f.tensors.get('qcapsnets.eval_order')!.bytes, e.images, e.bits), [...order]);
        assert.equal(e.batch_size, 2);
        assert.equal(e.fingerprint, fingerprint(images.pixels, images.labels));
      }
      // no other tensors
      const expected = new Set(Object.keys(formats).map((k) => (formats[k].layer ? `${k}.qweight` : k)));
      if (md.eval_order !== undefined) expected.add('qcapsnets.eval_order');
      assert.deepEqual([...f.tensors.keys()].sort(), [...expected].sort());
    });
});

// ---- every key the writer emits has a table row

/** The backquoted names in the first cell of every table row of formats.md. */
function documentedKeys(): Set<string> {
  const keys = new Set<string>();
  for (const line of formatsMd.split('\n')) {
    if (!line.startsWith('|')) continue;
    const first = line.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([^`]+)`/g)) keys.add(m[1]);
  }
  return keys;
}

test('docs/formats.md has a table row for every key the writer emits', () => {
  const documented = documentedKeys();
  const emitted = new Map<string, string>(); // key -> where
  const values = new Set<string>();
  for (const { file, what } of written) {
    const md = readContainer(file).metadata;
    for (const k of Object.keys(md)) emitted.set(k, `__metadata__ (${what})`);
    for (const l of JSON.parse(md.layers) as Record<string, unknown>[])
      for (const k of Object.keys(l)) emitted.set(k, `layers[] (${what})`);
    for (const f of Object.values(JSON.parse(md.tensors) as Record<string, Record<string, unknown>>)) {
      for (const k of Object.keys(f)) emitted.set(k, `tensors{} (${what})`);
      values.add(String(f.encoding));
      if (f.width !== undefined) values.add(String(f.width));
    }
    for (const k of Object.keys(JSON.parse(md.search) as object)) emitted.set(k, `search (${what})`);
    if (md.eval_order)
      for (const k of Object.keys(JSON.parse(md.eval_order) as object)) emitted.set(k, `eval_order (${what})`);
    values.add(md.method);
    values.add(md.compat);
  }
  const missing = [...emitted].filter(([k]) => !documented.has(k)).map(([k, where]) => `${k} in ${where}`);
  assert.deepEqual(missing, [], 'keys the writer emits that no table row of docs/formats.md documents');
  for (const v of values) assert.ok(formatsMd.includes(`\`${v}\``), `docs/formats.md does not name the value '${v}'`);
  for (const v of ['fixed', 'log2', 'float32', 'int64', 'format', 'measured']) assert.ok(values.has(v), v);
});

// ---- the worked example shows what the tool writes

test("docs/formats.md's worked example is the bytes the tool writes", () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const bits = { weightBits: [6, 5, 4], actBits: [6, 6, 6], routingBits: [6, 6] };
  const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  const from = (marker: string) => formatsMd.slice(formatsMd.indexOf(marker));

  const fixedFile = join(dir, 'worked-fixed.safetensors');
  writeQuantizedModel(
    fixedFile,
    quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'round_to_nearest' }),
  );
  const raw = readFileSync(fixedFile);
  assert.ok(formatsMd.includes(`The file starts with \`${hex(raw.subarray(0, 8))}\``), 'the header length bytes');
  const f = readContainer(fixedFile);
  assert.ok(
    formatsMd.includes(`a header of 0x${f.headerLength.toString(16)} = ${f.headerLength.toLocaleString('en')}`),
  );
  for (const k of ['memory_bits', 'packed_bytes'])
    assert.ok(formatsMd.includes(`"${k}": "${f.metadata[k]}"`), `the example's ${k}`);
  assert.ok(formatsMd.includes(JSON.stringify(JSON.parse(f.metadata.tensors)['conv.conv.bias'])));
  const bias = f.tensors.get('conv.conv.bias.qweight')!.bytes;
  const section = from('<!-- worked-example-fixed -->');
  assert.match(section, new RegExp(`hex +${hex(bias.subarray(0, 6)).replaceAll(' ', ' +')}\\n`));
  const q = decodeParameter(JSON.parse(f.metadata.tensors)['conv.conv.bias'] as Format, bias, 'none');
  const rows = section
    .split('\n')
    .filter((l) => /^\|\s*\d+\s*\|/.test(l))
    .slice(0, 6);
  assert.equal(rows.length, 6);
  rows.forEach((row, i) => {
    const cells = row.split('|').map((c) => c.trim());
    assert.equal(Number(cells[1]), i);
    assert.equal(Number(cells[4].split('=').pop()), q[i], `element ${i}: q`);
    assert.equal(Number(cells[5]), q[i] / 64, `element ${i}: value`);
  });

  const logFile = join(dir, 'worked-log2.safetensors');
  writeQuantizedModel(logFile, quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'logarithmic' }));
  const g = readContainer(logFile);
  assert.ok(formatsMd.includes(JSON.stringify(JSON.parse(g.metadata.tensors)['conv.conv.bias'])));
  const logBytes = g.tensors.get('conv.conv.bias.qweight')!.bytes;
  assert.ok(formatsMd.includes(`starting \`${hex(logBytes.subarray(0, 3))}\``));
  const logRows = from('<!-- worked-example-log2 -->')
    .split('\n')
    .filter((l) => /^\|\s*`[0-9a-f]{2}`\s*\|/.test(l))
    .slice(0, 3);
  assert.deepEqual(
    logRows.map((r) => r.split('`')[1]),
    hex(logBytes.subarray(0, 3)).split(' '),
  );
});
