// C export of DeepCaps (src/io/c-export-source.ts): conv1 + BatchNorm, the Conv2DCaps blocks
// with their skips, block4's Conv3DCaps with 3-D routing and the class capsules, briefly trained
// on Fashion-MNIST, quantized with logarithmic rounding in the DAC 2020 arithmetic, exported
// through the command line, compiled and compared with QuantizedModel.forward on 100 test
// images (same predictions, class lengths within 1e-4).
// Under the default arithmetic the tool's forward runs DeepCaps' stride-1 3x3 convolutions
// with float Winograd (README "C export"), whose sums are not the exact ones the C code (and
// the dac2020 forward) computes, so the comparison uses dac2020.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadDataset } from '../src/data/load.js';
import { writeQuantizedModel } from '../src/io/quantized-file.js';
import { buildModel } from '../src/models/index.js';
import { quantize } from '../src/quant/index.js';
import { trainModel } from '../src/train/index.js';
import { compare, exportAndBuild } from './export-c-helpers.js';
import { requireNative } from './helpers.js';

const fashionDir = '/usr/share/datasets/fashion-mnist';
const skip = existsSync(fashionDir) ? false : `${fashionDir} is absent (apt install dataset-fashion-mnist)`;
const dir = mkdtempSync(join(tmpdir(), 'qcaps-cexport-deepcaps-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test(
  'DeepCaps on Fashion-MNIST: the C export (logarithmic, dac2020) predicts as the quantized forward',
  { skip },
  async (t) => {
    if (!requireNative(t)) return;
    const m = buildModel('DeepCaps', [28, 1, 10, 32]);
    await trainModel({
      model: m,
      decoder: { name: 'ConvDecoder28', args: [32, 1] },
      train: loadDataset('fashion-mnist', 'train', { limit: 96 }),
      test: loadDataset('fashion-mnist', 'test', { limit: 8 }),
      epochs: 1,
      batchSize: 8,
      testBatchSize: 8,
      fullPrecisionFilename: join(dir, 'model.pt'),
      progress: 'none',
      log: () => undefined,
    });
    const q = quantize(
      m,
      { weightBits: [8, 7, 7, 7, 7, 6], actBits: [6, 6, 5, 6, 6, 6], routingBits: [5, 6] },
      { method: 'logarithmic', compat: 'dac2020' },
    );
    const file = join(dir, 'deepcaps_quantized_log.safetensors');
    writeQuantizedModel(file, q);
    const { cDir, binary } = exportAndBuild(file, join(dir, 'out'));
    const header = readFileSync(join(cDir, 'qcaps_weights.h'), 'utf8');
    assert.match(header, /static const float qcaps_conv1_batchnorm_running_var\[128\]/);
    assert.match(header, /#define QCAPS_BLOCK4_ROUTING_BITS 5/);
    const { maxDiff, pred } = compare(q, binary, 100, 'DeepCaps logarithmic', dir);
    assert.ok(new Set(pred).size >= 3, `predictions use ${new Set(pred).size} classes`);
    t.diagnostic(`max |class length difference| over 100 images: ${maxDiff}`);
  },
);
