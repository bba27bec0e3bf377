// C export of DeepCaps (src/export/c-export-source.ts): conv1 + BatchNorm, the Conv2DCaps blocks
// with their skips, block4's Conv3DCaps with 3-D routing and the class capsules, briefly trained
// on Fashion-MNIST, quantized with round to nearest (default arithmetic) and with logarithmic
// rounding (DAC 2020 arithmetic), exported through the command line, compiled and compared with
// QuantizedModel.forward on 1,000 test images (same predictions, the same class lengths bit for
// bit: both compute every float in one order).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeQuantizedModel } from '../src/export/quantized-file.js';
import { bitsFromLists, quantize } from '../src/quant/index.js';
import { compare, exportAndBuild } from './export-c-helpers.js';
import { requireNative } from './helpers.js';
import { trainSmallDeepCaps } from './small-trained-model.js';
import { FASHION_MNIST, skipUnless } from './requirements.js';

const skip = skipUnless(FASHION_MNIST);
const dir = mkdtempSync(join(tmpdir(), 'qcaps-cexport-deepcaps-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test(
  'DeepCaps on Fashion-MNIST: the C export predicts as the quantized forward on 1,000 images, in both arithmetics',
  { skip },
  async (t) => {
    if (!requireNative(t)) return;
    const m = await trainSmallDeepCaps(dir);
    const bits = { weightBits: [8, 7, 7, 7, 7, 6], actBits: [6, 6, 5, 6, 6, 6], routingBits: [5, 6] };
    const runs = [
      { method: 'round_to_nearest', compat: 'none', stem: 'deepcaps_quantized_accuracy' },
      { method: 'logarithmic', compat: 'dac2020', stem: 'deepcaps_quantized_log' },
    ] as const;
    for (const { method, compat, stem } of runs) {
      const q = quantize(m, bitsFromLists(m.quantLayers, bits), { method, compat });
      const file = join(dir, `${stem}.safetensors`);
      writeQuantizedModel(file, q);
      const { cDir, binary } = exportAndBuild(file, join(dir, 'out'));
      const header = readFileSync(join(cDir, 'qcaps_weights.h'), 'utf8');
      assert.match(header, /static const float qcaps_conv1_batchnorm_running_var\[128\]/);
      assert.match(header, /#define QCAPS_BLOCK4_ROUTING_BITS 5/);
      const { maxDiff, pred } = compare(q, binary, 1000, `DeepCaps ${method} (${compat})`, dir);
      assert.ok(new Set(pred).size >= 3, `predictions use ${new Set(pred).size} classes`);
      t.diagnostic(`${method} (${compat}): max |class length difference| over 1,000 images: ${maxDiff}`);
    }
  },
);
