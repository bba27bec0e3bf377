// `npm run check:c-export`: the C export against the quantized forward under every way the
// forward's kernels can run (issue 20: "the C export agrees with the forward on every path").
// For ShallowCapsNet and DeepCaps (trained files: --shallow FILE, --deepcaps FILE; else the
// benchmark's cached models in .bench-cache/ when present, else seeded ones) and three
// quantizations (round to nearest in the default arithmetic, logarithmic in dac2020's, and
// round to nearest in the 'dynamic' number format), it writes the packed file, exports C
// through the command line, compiles it with -Werror and runs it on the first --images N
// (default 1,000) Fashion-MNIST test images, once. Then, under every instruction-set level this
// CPU runs, at 1 and 2 threads, with the build's CBLAS and the built-in GEMM, it runs the
// forward on the same images and compares: the same predictions and class lengths within 1e-6
// (the C prints %.9g; both compute every float in one order, so the figure printed is 0).
// --packed FILE[,FILE...] checks those packed quantized files (a fine-tuned model, a search's
// pick) instead of the three quantizations.
//   npm run check:c-export [-- --images N] [--shallow FILE] [--deepcaps FILE] [--packed FILES] [--json]
// Exit status 1 when any path differs.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../src/data/load.js';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import { readStateDict } from '../src/io/pt.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { type ImageSource, sourceBatch } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { predictedClass } from '../src/models/metrics.js';
import { calibrate } from '../src/quant/calibration.js';
import { type BitLists, bitsFromLists, quantize, type QuantizedModel } from '../src/quant/index.js';
import { kernels } from '../src/tensor/kernels.js';
import { arg } from './common.js';
import { exportAndBuild, runC } from '../test/export-c-helpers.js';
import { classLengths, kernelPaths, pathName, runnableLevels, withPath } from '../test/isa-runs.js';

const TOLERANCE = 1e-6;

interface ModelCase {
  name: 'ShallowCapsNet' | 'DeepCaps';
  args: number[];
  flag: string;
  cache: string;
  bits: BitLists;
  dynamicBits: BitLists;
}

const MODELS: ModelCase[] = [
  {
    name: 'ShallowCapsNet',
    args: [28, 1, 10, 16],
    flag: 'shallow',
    cache: '.bench-cache/shallow-fashion-1epoch.pt',
    bits: { weightBits: [8, 7, 6], actBits: [7, 6, 6], routingBits: [6, 5] },
    dynamicBits: { weightBits: [6, 5, 4], actBits: [8, 8, 8], routingBits: [8, 8] },
  },
  {
    name: 'DeepCaps',
    args: [28, 1, 10, 32],
    flag: 'deepcaps',
    cache: '.bench-cache/deepcaps-fashion-1epoch-20k.pt',
    bits: { weightBits: [10, 9, 9, 8, 8, 7], actBits: [9, 8, 8, 8, 8, 7], routingBits: [6, 6] },
    dynamicBits: { weightBits: [8, 7, 7, 6, 6, 6], actBits: [10, 10, 10, 10, 10, 10], routingBits: [10, 10] },
  },
];

function loadModel(m: ModelCase): { model: CapsNet; source: string } {
  const model = buildModel(m.name, m.args);
  const file = arg(m.flag, '') || (existsSync(m.cache) ? m.cache : '');
  if (!file) return { model, source: 'seeded' };
  if (!existsSync(file)) throw new Error(`--${m.flag} ${file}: no such file`);
  model.loadStateDict(readStateDict(file), file);
  return { model, source: file };
}

/** The forward's predictions and class lengths (classLengths: as the C's class_lengths_of) on
 *  the n images, in batches of 100. */
function forwardLengths(q: QuantizedModel, data: ImageSource, n: number): { pred: number[]; lengths: Float32Array } {
  const pred: number[] = [];
  const lengths = new Float32Array(n * 10);
  for (let b = 0; b * 100 < n; b++) {
    const caps = q.forward(sourceBatch(data, b, 100), b);
    for (let i = 0; i < caps.shape[0]; i++) pred.push(predictedClass(caps, i));
    lengths.set(classLengths(caps), b * 1000);
  }
  return { pred, lengths };
}

function main(): number {
  const json = process.argv.includes('--json');
  const n = Number(arg('images', '1000'));
  if (!Number.isInteger(n) || n < 1 || n > 10000)
    throw new Error(`--images ${arg('images', '')}: expected an integer in [1, 10000]`);
  if (kernels().name !== 'native') throw new Error('the native kernels are not loaded: there are no paths to compare');
  const { levels, skipped } = runnableLevels();
  for (const [level, why] of skipped) console.log(`isa ${level}: skipped (${why})`);
  const paths = kernelPaths(levels);

  const dir = mkdtempSync(join(tmpdir(), 'qcaps-check-c-'));
  const data = loadDataset('fashion-mnist', 'test', { limit: n });
  const x = sourceBatch(data, 0, n);
  const images = join(dir, 'images.f32');
  writeFileSync(images, new Uint8Array(x.data.buffer, x.data.byteOffset, x.size * 4));
  const rows: {
    model: string;
    source: string;
    quantization: string;
    path: string;
    mismatches: number;
    maxDiff: number;
  }[] = [];
  try {
    const checked: { name: string; source: string; tag: string; file: string; q: QuantizedModel }[] = [];
    const packed = arg('packed', '');
    if (packed)
      for (const file of packed.split(',')) {
        if (!existsSync(file)) throw new Error(`--packed ${file}: no such file`);
        const { quantized: q } = readQuantizedModel(file);
        checked.push({ name: q.model.kind, source: file, tag: 'as packed', file, q });
      }
    else
      for (const m of MODELS) {
        const { model, source } = loadModel(m);
        const train = loadDataset('fashion-mnist', 'train', { limit: 200 });
        const quantizations: [string, () => QuantizedModel][] = [
          [
            'round_to_nearest',
            () => quantize(model, bitsFromLists(model.quantLayers, m.bits), { method: 'round_to_nearest' }),
          ],
          [
            'logarithmic, dac2020',
            () =>
              quantize(model, bitsFromLists(model.quantLayers, m.bits), { method: 'logarithmic', compat: 'dac2020' }),
          ],
          [
            'round_to_nearest, dynamic',
            () =>
              quantize(model, bitsFromLists(model.quantLayers, m.dynamicBits, 'bits', 'dynamic'), {
                method: 'round_to_nearest',
                calibration: calibrate(model, train, 200),
              }),
          ],
        ];
        for (const [i, [tag, make]] of quantizations.entries()) {
          const q = make();
          const file = join(dir, `${m.flag}_${i}.safetensors`);
          writeQuantizedModel(file, q);
          checked.push({ name: m.name, source, tag, file, q });
        }
      }
    for (const [i, { name, source, tag, file, q }] of checked.entries()) {
      const t0 = performance.now();
      const { binary } = exportAndBuild(file, join(dir, `c${i}`));
      const c = runC(binary, images, n);
      console.log(
        `${name} (${source}), ${tag}: C built and run on ${n} images (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
      for (const p of paths) {
        const f = withPath(p, () => forwardLengths(q, data, n));
        let mismatches = 0;
        let maxDiff = 0;
        for (let img = 0; img < n; img++) {
          if (f.pred[img] !== c.pred[img]) mismatches++;
          for (let k = 0; k < 10; k++)
            maxDiff = Math.max(maxDiff, Math.abs(f.lengths[img * 10 + k] - Math.fround(c.lengths[img][k])));
        }
        rows.push({ model: name, source, quantization: tag, path: pathName(p), mismatches, maxDiff });
        console.log(
          `  ${pathName(p)}: ${mismatches} predictions differ, class lengths within ${maxDiff}${mismatches === 0 && maxDiff <= TOLERANCE ? '' : '  DIFFERENT'}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const bad = rows.filter((r) => r.mismatches > 0 || r.maxDiff > TOLERANCE);
  const largest = rows.reduce((a, r) => Math.max(a, r.maxDiff), 0);
  console.log(
    `${rows.length} comparisons of the C export with the forward on ${n} images: ${bad.length === 0 ? `all agree (largest class length difference ${largest})` : `${bad.length} differ`}`,
  );
  if (json)
    console.log(
      JSON.stringify({
        images: n,
        levels,
        skipped: skipped.map(([l]) => l),
        comparisons: rows.length,
        agree: bad.length === 0,
        max_length_difference: largest,
        rows,
      }),
    );
  return bad.length === 0 ? 0 : 1;
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(`check:c-export: ${(err as Error).message}`);
  process.exitCode = 2;
}
