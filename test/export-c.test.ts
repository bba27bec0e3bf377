// C export (qcapsnets export --format c, src/io/c-export.ts): a ShallowCapsNet briefly trained
// on real Fashion-MNIST, quantized at a mixed configuration into a packed file, exported
// through the command line, compiled with cc -std=c99 -O2 (and no warning under -Wall -Wextra
// -pedantic), run on 1,000 test images: the same predictions as QuantizedModel.forward and
// class lengths within 1e-4. Truncation and logarithmic (dac2020) on a few images; the bad
// inputs (not a quantized file, an output folder that cannot be written) leave nothing behind.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { loadDataset } from '../src/data/load.js';
import { writeQuantizedModel } from '../src/io/quantized-file.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/index.js';
import { predictedClass } from '../src/models/metrics.js';
import { quantize } from '../src/quant/index.js';
import type { QuantizedModel } from '../src/quant/quantized-model.js';
import { trainModel } from '../src/train/index.js';
import { requireNative } from './helpers.js';

const fashionDir = '/usr/share/datasets/fashion-mnist';
const skip = existsSync(fashionDir) ? false : `${fashionDir} is absent (apt install dataset-fashion-mnist)`;
const dir = mkdtempSync(join(tmpdir(), 'qcaps-cexport-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const cli = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

/** Exports `file` through the command line, compiles it (warnings are errors), returns the binary. */
function exportAndBuild(file: string, outDir: string): { cDir: string; binary: string } {
  const r = run(['export', '--format', 'c', '--trained-weights-path', file, '--output-dir', outDir]);
  assert.equal(r.status, 0, r.stderr);
  const stem = file.replace(/^.*\//, '').replace(/\.safetensors$/, '');
  const cDir = join(outDir, `${stem}_c`);
  const cc = spawnSync(
    'cc',
    ['-std=c99', '-O2', '-Wall', '-Wextra', '-pedantic', '-Werror', '-o', 'qcaps', 'main.c', 'qcaps_model.c', '-lm'],
    { cwd: cDir, encoding: 'utf8' },
  );
  assert.equal(cc.status, 0, cc.stderr);
  assert.equal(cc.stderr, '', 'no warnings');
  return { cDir, binary: join(cDir, 'qcaps') };
}

/** Predictions and class lengths of the C binary on the first n images of a raw float32 file. */
function runC(binary: string, images: string, n: number): { pred: number[]; lengths: number[][] } {
  const r = spawnSync(binary, [images, String(n)], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, n);
  const rows = lines.map((l) => l.split(' ').map(Number));
  return { pred: rows.map((r) => r[0]), lengths: rows.map((r) => r.slice(1)) };
}

/** Compares the C binary with QuantizedModel.forward (batches of 100); returns max |diff|. */
function compare(q: QuantizedModel, binary: string, n: number, tag: string): number {
  const data = loadDataset('fashion-mnist', 'test', { limit: n });
  const x = sourceBatch(data, 0, n);
  const images = join(dir, `images-${n}.f32`);
  writeFileSync(images, new Uint8Array(x.data.buffer, x.data.byteOffset, x.size * 4));
  const c = runC(binary, images, n);
  let maxDiff = 0;
  for (let b = 0; b * 100 < n; b++) {
    const caps = q.forward(sourceBatch(data, b, 100), b);
    const [B, K, D] = caps.shape;
    for (let i = 0; i < B; i++) {
      const img = b * 100 + i;
      assert.equal(c.pred[img], predictedClass(caps, i), `${tag}: prediction of image ${img}`);
      for (let k = 0; k < K; k++) {
        let n2 = 0;
        for (let d = 0; d < D; d++) n2 += caps.data[(i * K + k) * D + d] ** 2;
        maxDiff = Math.max(maxDiff, Math.abs(Math.sqrt(n2) - c.lengths[img][k]));
      }
    }
  }
  assert.ok(maxDiff <= 1e-4, `${tag}: class lengths differ by ${maxDiff}`);
  return maxDiff;
}

let trained: ReturnType<typeof buildModel> | null = null;
async function trainedShallow() {
  if (trained) return trained;
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  await trainModel({
    model,
    decoder: { name: 'FCDecoder', args: [16, 784] },
    train: loadDataset('fashion-mnist', 'train', { limit: 480 }),
    test: loadDataset('fashion-mnist', 'test', { limit: 20 }),
    epochs: 1,
    batchSize: 16,
    testBatchSize: 20,
    fullPrecisionFilename: join(dir, 'model.pt'),
    progress: 'none',
    log: () => undefined,
  });
  trained = model;
  return model;
}

test(
  'ShallowCapsNet on Fashion-MNIST: the C export predicts as the quantized forward on 1,000 images',
  { skip },
  async (t) => {
    if (!requireNative(t)) return;
    const m = await trainedShallow();
    const q = quantize(
      m,
      { weightBits: [8, 7, 6], actBits: [6, 6, 6], routingBits: [5, 5] },
      { method: 'round_to_nearest' },
    );
    const file = join(dir, 'fashion_quantized_rtn.safetensors');
    writeQuantizedModel(file, q);
    const { cDir, binary } = exportAndBuild(file, join(dir, 'out'));
    const header = readFileSync(join(cDir, 'qcaps_weights.h'), 'utf8');
    // conv has 8 + 1 bits: int16_t; primary 7 + 1 and digit 6 + 1: int8_t
    assert.match(header, /static const int16_t qcaps_conv_conv_weight\[\d+\]/);
    assert.match(header, /static const int8_t qcaps_primary_conv3d_weight\[\d+\]/);
    assert.match(header, /static const int8_t qcaps_digit_weight\[\d+\]/);
    assert.match(header, /#define QCAPS_DIGIT_WEIGHT_FRAC_BITS 6\n#define QCAPS_DIGIT_WEIGHT_TOTAL_BITS 7/);
    assert.match(header, /#define QCAPS_PRIMARY_ROUTING_BITS 5/);
    const maxDiff = compare(q, binary, 1000, 'round_to_nearest');
    t.diagnostic(`max |class length difference| over 1000 images: ${maxDiff}`);
    // the predictions are not trivial: the model learned something
    const preds = runC(binary, join(dir, 'images-1000.f32'), 1000).pred;
    assert.ok(new Set(preds).size >= 5, `predictions use ${new Set(preds).size} classes`);
    // main.c reads the IDX file itself the same way
    const idxFile = join(dir, 't10k-images-idx3-ubyte');
    writeFileSync(idxFile, gunzipSync(readFileSync(join(fashionDir, 't10k-images-idx3-ubyte.gz'))));
    const idx = runC(binary, idxFile, 20);
    assert.deepEqual(idx.pred, preds.slice(0, 20));
  },
);

test('truncation and logarithmic (dac2020) exports match the quantized forward', { skip }, async (t) => {
  if (!requireNative(t)) return;
  const m = await trainedShallow();
  for (const [method, compat] of [
    ['truncation', 'none'],
    ['logarithmic', 'dac2020'],
  ] as const) {
    const q = quantize(m, { weightBits: [7, 6, 6], actBits: [5, 6, 5], routingBits: [4, 6] }, { method, compat });
    const file = join(dir, `fashion_quantized_${method}.safetensors`);
    writeQuantizedModel(file, q);
    const { binary } = exportAndBuild(file, join(dir, 'out'));
    compare(q, binary, 100, method);
  }
});

test('bad input: not a quantized file, an unwritable output folder, stochastic rounding; nothing left behind', (t) => {
  if (!requireNative(t)) return;
  const m = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const plain = join(dir, 'plain.safetensors');
  writeSafetensors(plain, m.stateDict());
  const out = join(dir, 'bad-out');
  mkdirSync(out);
  const r1 = run(['export', '--format', 'c', '--trained-weights-path', plain, '--output-dir', out]);
  assert.equal(r1.status, 2);
  assert.match(r1.stderr, /plain\.safetensors: not a qcapsnets quantized model/);
  const q = quantize(
    m,
    { weightBits: [6, 6, 6], actBits: [6, 6, 6], routingBits: [6, 6] },
    { method: 'round_to_nearest' },
  );
  const file = join(dir, 'm_quantized_x.safetensors');
  writeQuantizedModel(file, q);
  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o500);
    const r2 = run(['export', '--format', 'c', '--trained-weights-path', file, '--output-dir', locked]);
    assert.equal(r2.status, 2);
    assert.match(r2.stderr, /--output-dir .*locked.*not writable/);
    assert.deepEqual(readdirSync(locked), []);
  }
  const asFile = join(dir, 'a-file');
  writeFileSync(asFile, 'x');
  const r3 = run(['export', '--format', 'c', '--trained-weights-path', file, '--output-dir', join(asFile, 'sub')]);
  assert.equal(r3.status, 2);
  assert.match(r3.stderr, /a-file is a file, not a folder/);
  const sr = quantize(
    m,
    { weightBits: [6, 6, 6], actBits: [6, 6, 6], routingBits: [6, 6] },
    { method: 'stochastic_rounding' },
  );
  const srFile = join(dir, 'm_quantized_sr.safetensors');
  writeQuantizedModel(srFile, sr);
  const r4 = run(['export', '--format', 'c', '--trained-weights-path', srFile, '--output-dir', out]);
  assert.equal(r4.status, 2);
  assert.match(r4.stderr, /stochastic rounding.*export a truncation, round_to_nearest or logarithmic configuration/);
  assert.deepEqual(readdirSync(out), [], 'no partial export');
});
