// C export (qcapsnets export --format c, src/export/c-export.ts): a ShallowCapsNet briefly trained
// on real Fashion-MNIST, quantized at a mixed configuration into a packed file, exported
// through the command line, compiled with cc -std=c99 -O2 (and no warning under -Wall -Wextra
// -pedantic), run on 1,000 test images: the same predictions as QuantizedModel.forward and
// the same class lengths bit for bit. Truncation and logarithmic (dac2020) on a few images; the bad
// inputs (not a quantized file, an output folder that cannot be written) leave nothing behind.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { loadDataset } from '../src/data/load.js';
import { writeQuantizedModel } from '../src/export/quantized-file.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { buildModel } from '../src/models/index.js';
import { bitsFromLists, quantize } from '../src/quant/index.js';
import { trainModel } from '../src/train/index.js';
import { requireNative } from './helpers.js';
import { compare, exportAndBuild, runC, runCli } from './export-c-helpers.js';
import { FASHION_MNIST, skipUnless } from './requirements.js';

const fashionDir = '/usr/share/datasets/fashion-mnist';
const skip = skipUnless(FASHION_MNIST);
const dir = mkdtempSync(join(tmpdir(), 'qcaps-cexport-'));
after(() => rmSync(dir, { recursive: true, force: true }));
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
      bitsFromLists(m.quantLayers, { weightBits: [8, 7, 6], actBits: [6, 6, 6], routingBits: [5, 5] }),
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
    const { maxDiff, pred: preds } = compare(q, binary, 1000, 'round_to_nearest', dir);
    t.diagnostic(`max |class length difference| over 1000 images: ${maxDiff}`);
    // the predictions are not trivial: the model learned something
    assert.ok(new Set(preds).size >= 5, `predictions use ${new Set(preds).size} classes`);
    // main.c reads the IDX file itself the same way
    const idxFile = join(dir, 't10k-images-idx3-ubyte');
    writeFileSync(idxFile, gunzipSync(readFileSync(join(fashionDir, 't10k-images-idx3-ubyte.gz'))));
    const idx = runC(binary, idxFile, 20);
    assert.deepEqual(idx.pred, preds.slice(0, 20));
  },
);

test('truncation: the C export matches the quantized forward', { skip }, async (t) => {
  if (!requireNative(t)) return;
  const m = await trainedShallow();
  const q = quantize(
    m,
    bitsFromLists(m.quantLayers, { weightBits: [7, 6, 6], actBits: [5, 6, 5], routingBits: [4, 6] }),
    { method: 'truncation' },
  );
  const file = join(dir, 'fashion_quantized_truncation.safetensors');
  writeQuantizedModel(file, q);
  const { binary } = exportAndBuild(file, join(dir, 'out'));
  compare(q, binary, 100, 'truncation', dir);
});

test('bad input: not a quantized file, an unwritable output folder, stochastic rounding; nothing left behind', (t) => {
  if (!requireNative(t)) return;
  const m = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const plain = join(dir, 'plain.safetensors');
  writeSafetensors(plain, m.stateDict());
  const out = join(dir, 'bad-out');
  mkdirSync(out);
  const r1 = runCli(['export', '--format', 'c', '--trained-weights-path', plain, '--output-dir', out]);
  assert.equal(r1.status, 2);
  assert.match(r1.stderr, /plain\.safetensors: not a qcapsnets quantized model/);
  const q = quantize(
    m,
    bitsFromLists(m.quantLayers, { weightBits: [6, 6, 6], actBits: [6, 6, 6], routingBits: [6, 6] }),
    { method: 'round_to_nearest' },
  );
  const file = join(dir, 'm_quantized_x.safetensors');
  writeQuantizedModel(file, q);
  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o500);
    const r2 = runCli(['export', '--format', 'c', '--trained-weights-path', file, '--output-dir', locked]);
    assert.equal(r2.status, 2);
    assert.match(r2.stderr, /--output-dir .*locked.*not writable/);
    assert.deepEqual(readdirSync(locked), []);
  }
  const asFile = join(dir, 'a-file');
  writeFileSync(asFile, 'x');
  const r3 = runCli(['export', '--format', 'c', '--trained-weights-path', file, '--output-dir', join(asFile, 'sub')]);
  assert.equal(r3.status, 2);
  assert.match(r3.stderr, /a-file is a file, not a folder/);
  const sr = quantize(
    m,
    bitsFromLists(m.quantLayers, { weightBits: [6, 6, 6], actBits: [6, 6, 6], routingBits: [6, 6] }),
    { method: 'stochastic_rounding' },
  );
  const srFile = join(dir, 'm_quantized_sr.safetensors');
  writeQuantizedModel(srFile, sr);
  const r4 = runCli(['export', '--format', 'c', '--trained-weights-path', srFile, '--output-dir', out]);
  assert.equal(r4.status, 2);
  assert.match(r4.stderr, /stochastic rounding.*export a truncation, round_to_nearest or logarithmic configuration/);
  assert.deepEqual(readdirSync(out), [], 'no partial export');
});
