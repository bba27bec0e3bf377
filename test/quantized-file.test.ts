// Packed quantized models (<stem>_quantized_<kind>.safetensors, src/export/quantized-file.ts): the
// round trip for every method under both arithmetics on ShallowCapsNet and DeepCaps (the same
// class capsules and correct counts), the byte count against the weight-memory formula, the
// bit packing, real Fashion-MNIST images, every bad input, and search -> evaluate on the
// command line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/load.js';
import type { Dataset } from '../src/data/dataset.js';
import * as lib from '../src/index.js';
import { writeStateDict } from '../src/io/pt.js';
import {
  datasetFingerprint,
  packBits,
  readQuantizedModel,
  unpackBits,
  writeQuantizedModel,
} from '../src/export/quantized-file.js';
import { readSafetensorsRaw, writeSafetensors, writeSafetensorsRaw } from '../src/io/safetensors.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { type BitConfig, bitsFromLists } from '../src/quant/config.js';
import { type QuantizedModel, quantize } from '../src/quant/quantized-model.js';
import type { QuantMethod } from '../src/tensor/backend.js';
import type { RoundingCompat } from '../src/quant/methods.js';
import { FASHION_MNIST, requirePackages, skipUnless } from './requirements.js';

const dir = mkdtempSync(join(tmpdir(), 'qcaps-qfile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const METHODS: QuantMethod[] = ['truncation', 'round_to_nearest', 'stochastic_rounding', 'logarithmic'];
const COMPATS: RoundingCompat[] = ['none', 'dac2020'];
const mnist = loadDataset('mnist', 'test', { limit: 4 });

const shallow = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 3 });
const deep = buildModel('DeepCaps', [28, 1, 10, 32], { seed: 4 });
{
  // BatchNorm buffers that are not the initial ones
  const sd = deep.stateDict();
  for (const [k, t] of sd) {
    if (k.endsWith('running_mean')) t.data.forEach((_, i) => (t.data[i] = 0.01 * ((i % 7) - 3)));
    if (k.endsWith('running_var')) t.data.forEach((_, i) => (t.data[i] = 0.5 + 0.01 * (i % 5)));
    if (k.endsWith('num_batches_tracked')) {
      t.data[0] = 1234;
      t.integers = BigInt64Array.of(1234n);
    }
  }
  deep.loadStateDict(sd);
}

function bitsFor(model: CapsNet, w: number[], a: number, r: number): BitConfig {
  return bitsFromLists(model.quantLayers, {
    weightBits: w,
    actBits: model.quantLayers.map(() => a),
    routingBits: model.routingLayerNames.map(() => r),
  });
}

function sameValues(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

function checkRoundTrip(q: QuantizedModel, file: string, images: Dataset): ReturnType<typeof readQuantizedModel> {
  const summary = writeQuantizedModel(file, q);
  const back = readQuantizedModel(file);
  const r = back.quantized;
  const what = `${q.model.kind} ${q.method} ${q.compat}`;
  assert.deepEqual(r.bits, q.bits, what);
  assert.equal(back.info.method, q.method);
  assert.equal(back.info.compat, q.compat);
  assert.equal(back.info.seed, q.seed);
  assert.equal(back.info.model, q.model.kind);
  assert.deepEqual(back.info.modelArgs, [...q.model.args]);
  assert.equal(back.info.packedBytes, summary.packedBytes);
  // every quantized parameter and buffer, exactly
  const a = q.stateDict();
  const b = r.stateDict();
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [k, t] of a) {
    sameValues(b.get(k)!.data, t.data, `${what} ${k}`);
    if (t.integers) assert.deepEqual(b.get(k)!.integers, t.integers, k);
  }
  // class capsules of one batch (stochastic draws of batch stream 2) and the correct counts
  const x = sourceBatch(images, 0, 2);
  sameValues(r.forward(x, 2).data, q.forward(x, 2).data, `${what} capsules`);
  assert.deepEqual(r.evaluate(images, { batchSize: 2 }), q.evaluate(images, { batchSize: 2 }), what);
  return back;
}

describe('round trip: the reloaded model computes what the quantized one does', () => {
  for (const compat of COMPATS)
    for (const method of METHODS)
      test(`ShallowCapsNet and DeepCaps, ${method}, compat ${compat}`, () => {
        for (const [model, w] of [
          [shallow, [7, 6, 5]],
          [deep, [9, 8, 7, 6, 5, 5]],
        ] as const) {
          const q = quantize(model, bitsFor(model, [...w], 8, 7), { method, compat, seed: 11 });
          const file = join(dir, `rt-${model.kind}-${method}-${compat}.safetensors`);
          const { info } = checkRoundTrip(q, file, mnist);
          const ratio = info.packedBytes / info.memoryBytes;
          if (compat === 'none' && method !== 'logarithmic')
            assert.ok(
              Math.abs(ratio - 1) < 0.02,
              `${model.kind} ${method}: ${info.packedBytes} vs ${info.memoryBytes}`,
            );
          if (method === 'logarithmic') assert.ok(ratio < 1, `log2 codes are smaller: ${ratio}`);
          // the format of every tensor is in the metadata
          for (const p of model.parameters()) {
            const f = info.tensors[p.name];
            assert.equal(f.encoding, method === 'logarithmic' ? 'log2' : 'fixed', p.name);
            if (compat === 'none' && method !== 'logarithmic') {
              assert.equal(f.bits, f.frac_bits! + 1);
              assert.equal(f.width, 'format');
            }
            if (compat === 'dac2020' && method !== 'logarithmic') assert.equal(f.width, 'measured');
          }
        }
      });

  test('stochastic rounding: the same seed reproduces; another seed or batch does not', () => {
    const bits = bitsFor(shallow, [4, 3, 2], 3, 3);
    const q = quantize(shallow, bits, { method: 'stochastic_rounding', seed: 5 });
    const file = join(dir, 'sr.safetensors');
    const r = checkRoundTrip(q, file, mnist).quantized;
    const x = sourceBatch(mnist, 0, 2);
    const other = quantize(shallow, bits, { method: 'stochastic_rounding', seed: 6 }).forward(x, 2).data;
    assert.notDeepEqual(other, r.forward(x, 2).data);
    assert.notDeepEqual(r.forward(x, 1).data, r.forward(x, 2).data);
    // an order (what the search stores) is honoured by evaluate
    const order = Int32Array.from([3, 1, 2, 0]);
    assert.deepEqual(r.evaluate(mnist, { batchSize: 2, order }), q.evaluate(mnist, { batchSize: 2, order }));
  });

  test('extreme widths: 0 and 32 fractional bits (33-bit integers), and dac2020 magnitudes above 1', () => {
    for (const compat of COMPATS) {
      const q = quantize(shallow, bitsFor(shallow, [32, 0, 31], 12, 12), { method: 'round_to_nearest', compat });
      const ints = q.integerParameters();
      if (compat === 'none') assert.ok(ints.find((p) => p.fracBits === 32)!.values instanceof BigInt64Array);
      const { info } = checkRoundTrip(q, join(dir, `wide-${compat}.safetensors`), mnist);
      if (compat === 'none') assert.ok(Math.abs(info.packedBytes / info.memoryBytes - 1) < 0.02);
    }
    // dac2020 does not saturate: a weight of 3.75 needs 2 more integer bits
    const m = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 3 });
    const sd = m.stateDict();
    sd.get('conv.conv.bias')!.data[0] = 3.75;
    sd.get('conv.conv.bias')!.data[1] = -6;
    m.loadStateDict(sd);
    const q = quantize(m, bitsFor(m, [4, 4, 4], 8, 8), { method: 'truncation', compat: 'dac2020' });
    const { info } = checkRoundTrip(q, join(dir, 'dac-big.safetensors'), mnist);
    assert.equal(info.tensors['conv.conv.bias'].bits, 8); // -6 * 2^4 = -96 needs 8 bits
  });

  test('dac2020 logarithmic: magnitudes of 2^-26 and below reload exactly (the quantizer adds 1e-8)', () => {
    const m = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 3 });
    const sd = m.stateDict();
    const bias = sd.get('conv.conv.bias')!.data;
    bias.set([5e-9, -5e-9, 3e-10, -3e-10, 2e-7, 0]);
    m.loadStateDict(sd);
    const q = quantize(m, bitsFor(m, [32, 8, 8], 8, 8), { method: 'logarithmic', compat: 'dac2020' });
    const qb = q.stateDict().get('conv.conv.bias')!.data;
    assert.deepEqual([...qb.subarray(0, 4)], [2 ** -26, -(2 ** -26), 2 ** -27, -(2 ** -27)]);
    // re-quantizing 2^-26 itself gives 2^-25: not idempotent, which the reader handles
    const m2 = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 3 });
    m2.loadStateDict(q.stateDict());
    const again = quantize(m2, q.bits, { method: 'logarithmic', compat: 'dac2020' }).stateDict();
    assert.equal(again.get('conv.conv.bias')!.data[0], 2 ** -25);
    checkRoundTrip(q, join(dir, 'dac-log-tiny.safetensors'), mnist);
  });
});

test('bit packing: little-endian bitstream, every width 1..53', () => {
  assert.deepEqual([...packBits([1, 0, 3, 2], 2)], [0b10110001]);
  assert.deepEqual([...packBits([0x1ff, 1], 9)], [0xff, 0x03, 0x00]);
  let s = 12345;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 0) / 2 ** 32;
  for (let bits = 1; bits <= 53; bits++) {
    const n = 37;
    const codes = Float64Array.from({ length: n }, () => Math.floor(rnd() * 2 ** bits));
    codes[0] = 2 ** bits - 1;
    const packed = packBits(codes, bits);
    assert.equal(packed.length, Math.ceil((n * bits) / 8));
    assert.deepEqual(unpackBits(packed, n, bits), codes, `${bits} bits`);
  }
});

test('the library exports readQuantizedModel and writeQuantizedModel', () => {
  assert.equal(lib.readQuantizedModel, readQuantizedModel);
  assert.equal(lib.writeQuantizedModel, writeQuantizedModel);
  assert.equal(lib.exporters.readQuantizedModel, readQuantizedModel);
});

test(
  'real Fashion-MNIST test images: ShallowCapsNet, reloaded counts equal',
  { skip: skipUnless(FASHION_MNIST) },
  () => {
    requirePackages(FASHION_MNIST);
    const images = loadDataset('fashion-mnist', 'test', { limit: 200 });
    for (const method of ['round_to_nearest', 'stochastic_rounding'] as const) {
      const q = quantize(shallow, bitsFor(shallow, [6, 5, 4], 6, 6), { method, seed: 42 });
      const file = join(dir, `fashion-${method}.safetensors`);
      writeQuantizedModel(file, q);
      const r = readQuantizedModel(file).quantized;
      const a = q.evaluate(images, { batchSize: 100 });
      assert.deepEqual(r.evaluate(images, { batchSize: 100 }), a);
      assert.equal(a.total, 200);
    }
  },
);

describe('bad input: clear errors that name the file and the tensor', () => {
  const q = quantize(shallow, bitsFor(shallow, [5, 4, 3], 6, 6), { method: 'truncation' });
  const good = join(dir, 'good.safetensors');
  writeQuantizedModel(good, q);

  /** A copy of the good file with its tensors and metadata edited. */
  function edited(name: string, edit: (t: Map<string, lib.io.RawTensor>, md: Record<string, string>) => void): string {
    const raw = readSafetensorsRaw(good);
    edit(raw.tensors, raw.metadata);
    const file = join(dir, name);
    writeSafetensorsRaw(file, raw.tensors, raw.metadata);
    return file;
  }
  const tensorsMeta = (md: Record<string, string>, fn: (f: Record<string, Record<string, unknown>>) => void) => {
    const f = JSON.parse(md.tensors);
    fn(f);
    md.tensors = JSON.stringify(f);
  };

  test('a training checkpoint or a plain safetensors file is not a quantized model', () => {
    const ckpt = join(dir, 'model.ckpt.safetensors');
    writeSafetensors(ckpt, shallow.stateDict(), { format: 'qcapsnets-training-checkpoint', version: '1' });
    assert.throws(
      () => readQuantizedModel(ckpt),
      /model\.ckpt\.safetensors: not a qcapsnets quantized model: its __metadata__ format is 'qcapsnets-training-checkpoint'.*training checkpoint/,
    );
    const plain = join(dir, 'plain.safetensors');
    writeSafetensors(plain, shallow.stateDict());
    assert.throws(
      () => readQuantizedModel(plain),
      /plain\.safetensors: not a qcapsnets quantized model: its __metadata__ has no format tag/,
    );
  });

  const cases: [string, (t: Map<string, lib.io.RawTensor>, md: Record<string, string>) => void, RegExp][] = [
    [
      'bits against byte length',
      (_t, md) => tensorsMeta(md, (f) => (f['digit.weight'].bits = 5)),
      /tensor 'digit\.weight': 1474560 values of 5 bits need 921600 bytes, 'digit\.weight\.qweight' has 737280 \(bits disagree with the data\)/,
    ],
    [
      'bits that fit the bytes but not the format',
      (t, md) => {
        tensorsMeta(md, (f) => (f['digit.bias'].bits = 8));
        t.set('digit.bias.qweight', { dtype: 'U8', shape: [160], bytes: new Uint8Array(160) });
      },
      /tensor 'digit\.bias': bits 8: the default arithmetic's format of 3 fractional bits has 4/,
    ],
    [
      'bytes cut short',
      (t) => {
        const e = t.get('digit.weight.qweight')!;
        t.set('digit.weight.qweight', { ...e, shape: [e.shape[0] - 1], bytes: e.bytes.subarray(1) });
      },
      /tensor 'digit\.weight': 1474560 values of 4 bits need 737280 bytes, 'digit\.weight\.qweight' has 737279/,
    ],
    [
      'a missing tensor',
      (t) => t.delete('digit.bias.qweight'),
      /tensor 'digit\.bias': the file has no 'digit\.bias\.qweight'/,
    ],
    [
      'a tensor too many',
      (t) => t.set('extra', { dtype: 'F32', shape: [1], bytes: new Uint8Array(4) }),
      /tensors 'extra' are not part of ShallowCapsNet/,
    ],
    [
      'a model that is not one',
      (_t, md) => (md.model = 'ResNet'),
      /__metadata__ model 'ResNet' is not a model: expected ShallowCapsNet or DeepCaps/,
    ],
    [
      'args that do not build',
      (_t, md) => {
        md.model = 'DeepCaps';
        md.model_args = '[32,1,10,32]';
      },
      /__metadata__ model DeepCaps model_args \[32, 1, 10, 32\] do not build: .*28 or 64/,
    ],
    [
      'args that do not fit the tensors',
      (_t, md) => (md.model_args = '[28,1,10,8]'),
      /layers\[2\] \(digit\) has 1474720 parameters, but ShallowCapsNet \[28 1 10 8\] has 737360 \(model_args that do not fit the tensors\?\)/,
    ],
    [
      'args that are not numbers',
      (_t, md) => (md.model_args = '"28 1 10 16"'),
      /model_args "28 1 10 16": expected an array of integers/,
    ],
    ['no layers', (_t, md) => delete md.layers, /__metadata__ has no 'layers'/],
    [
      'bits out of range',
      (_t, md) => (md.layers = md.layers.replace('"weight_bits":5', '"weight_bits":40')),
      /__metadata__ layers: bits\.weightBits\[0\] \(conv\): expected an integer number of fractional bits in \[0, 32\], got 40/,
    ],
    [
      'an unknown method',
      (_t, md) => (md.method = 'rounding'),
      /__metadata__ method: unknown quantization method 'rounding'; expected one of/,
    ],
    [
      'a newer version',
      (_t, md) => (md.format_version = '2'),
      /quantized model format version '2', this qcapsnets reads version 1/,
    ],
    ['metadata that is not JSON', (_t, md) => (md.tensors = '{'), /__metadata__ 'tensors' is not valid JSON/],
    [
      'values off the quantizer',
      (_t, md) => {
        // fixed-point codes read as log2 codes: powers of two beyond the saturation range
        md.method = 'logarithmic';
        tensorsMeta(md, (f) => {
          for (const v of Object.values(f)) Object.assign(v, { encoding: 'log2', exp_min: 0 });
        });
      },
      /tensor '.*' element \d+: the file holds .*, which logarithmic \(none\) at \d+ bits quantizes to .*: not a value of this quantizer/,
    ],
  ];
  for (const [what, edit, pattern] of cases)
    test(what, () => {
      const file = edited(`bad-${what.replace(/\W+/g, '-')}.safetensors`, edit);
      assert.throws(
        () => readQuantizedModel(file),
        (err: Error) => {
          assert.ok(!(err instanceof TypeError), `TypeError: ${err.message}`);
          assert.ok(err.message.startsWith(file + ': '), err.message);
          assert.match(err.message, pattern);
          return true;
        },
      );
    });

  test('writes are atomic: a failed write leaves nothing behind', () => {
    const sub = join(dir, 'atomic');
    mkdirSync(join(sub, 'target.safetensors', 'occupied'), { recursive: true });
    assert.throws(() => writeQuantizedModel(join(sub, 'target.safetensors'), q));
    assert.deepEqual(readdirSync(sub), ['target.safetensors']); // no temporary file
    const before = readFileSync(good);
    assert.throws(() => writeQuantizedModel(good, {} as QuantizedModel), /q must be a QuantizedModel/);
    assert.deepEqual(readFileSync(good), before);
  });
});

describe('command line: search writes packed files, evaluate reloads them', () => {
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const work = join(dir, 'cli');
  mkdirSync(work);
  const modelFile = join(work, 'M.pt');
  writeStateDict(modelFile, shallow.stateDict());
  const out = join(work, 'D');

  test('search --quantization-method truncation, then evaluate each packed file: the same counts', () => {
    const s = run([
      'search',
      '--trained-weights-path',
      modelFile,
      '--dataset',
      'mnist',
      '--test-limit',
      '200',
      '--memory-budget',
      '3',
      '--quantization-method',
      'truncation',
      '--output-dir',
      out,
    ]);
    assert.equal(s.status, 0, s.stderr);
    const report = JSON.parse(readFileSync(join(out, 'M_qcapsnets.json'), 'utf8'));
    assert.ok(report.models.length >= 1);
    for (const m of report.models) {
      assert.equal(m.packedFile, join(out, `M_quantized_${m.kind}.safetensors`));
      assert.ok(existsSync(m.file) && existsSync(m.packedFile));
      assert.ok(Math.abs(m.packedBytes / m.memoryBytes - 1) < 0.02, `${m.packedBytes} vs ${m.memoryBytes}`);
      const printed = new RegExp(`model-${m.kind} stored in .*: accuracy [\\d.]+% \\((\\d+)/200\\)`).exec(s.stdout);
      assert.ok(printed, s.stdout);
      assert.equal(Number(printed[1]), m.correct);
      const e = run([
        'evaluate',
        '--trained-weights-path',
        m.packedFile,
        '--dataset',
        'mnist',
        '--test-limit',
        '200',
        '--json',
      ]);
      assert.equal(e.status, 0, e.stderr);
      const j = JSON.parse(e.stdout.trim().split('\n').at(-1)!);
      // the instruction-set level that ran (every level gives these counts)
      assert.deepEqual(j, { accuracy: m.accuracy, correct: m.correct, total: 200, isa: j.isa });
      assert.match(String(j.isa), /^(avx512vnni|avx512|avx2|portable)$/);
      assert.match(e.stdout, /the search counted \d+\/200 on these images \(the same\)/);
    }
  });

  test('evaluate: conflicting flags and files that are not packed models are one clear error', () => {
    const packed = join(
      out,
      readdirSync(out).find((f) => f.endsWith('.safetensors'))!,
    );
    const bad = run([
      'evaluate',
      '--trained-weights-path',
      packed,
      '--model',
      'DeepCaps',
      '--model-args',
      '28',
      '1',
      '10',
      '32',
    ]);
    assert.equal(bad.status, 2);
    assert.match(
      bad.stderr,
      /--model DeepCaps, --model-args 28 1 10 32: .* holds a quantized ShallowCapsNet --model-args 28 1 10 16, --quantization-method truncation.*leave these flags out/,
    );
    const method = run(['evaluate', '--trained-weights-path', packed, '--quantization-method', 'logarithmic']);
    assert.match(method.stderr, /--quantization-method logarithmic: .* leave the flag out/);
    const ckpt = join(work, 'M.ckpt.safetensors');
    writeSafetensors(ckpt, shallow.stateDict(), { format: 'qcapsnets-training-checkpoint', version: '1' });
    const c = run(['evaluate', '--trained-weights-path', ckpt, '--dataset', 'mnist']);
    assert.equal(c.status, 2);
    assert.match(c.stderr, /M\.ckpt\.safetensors: not a qcapsnets quantized model/);
    const junk = join(work, 'junk.safetensors');
    writeFileSync(junk, 'not a safetensors file');
    assert.match(run(['evaluate', '--trained-weights-path', junk]).stderr, /junk\.safetensors: safetensors header/);
  });

  test('stochastic rounding: evaluate repeats the search batches (hardest first) and its count', () => {
    const sOut = join(work, 'S');
    const s = run([
      'search',
      '--trained-weights-path',
      modelFile,
      '--dataset',
      'mnist',
      '--test-limit',
      '100',
      '--memory-budget',
      '3',
      '--quantization-method',
      'stochastic_rounding',
      '--seed',
      '5',
      '--test-batch-size',
      '25',
      '--output-dir',
      sOut,
    ]);
    assert.equal(s.status, 0, s.stderr);
    const report = JSON.parse(readFileSync(join(sOut, 'M_qcapsnets.json'), 'utf8'));
    for (const m of report.models) {
      const e = run([
        'evaluate',
        '--trained-weights-path',
        m.packedFile,
        '--dataset',
        'mnist',
        '--test-limit',
        '100',
        '--json',
      ]);
      assert.equal(e.status, 0, e.stderr);
      assert.match(e.stdout, /batches of 25 in the search's order/);
      assert.equal(JSON.parse(e.stdout.trim().split('\n').at(-1)!).correct, m.correct);
    }
    // the stored order is the one the search used: a permutation, with the test set's fingerprint
    const { info } = readQuantizedModel(report.models[0].packedFile);
    const images = loadDataset('mnist', 'test', { limit: 100 });
    assert.equal(info.evaluationOrder!.fingerprint, datasetFingerprint(images));
    assert.equal(info.evaluationOrder!.order.length, 100);
  });
});
