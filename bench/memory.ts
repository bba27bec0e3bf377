// `npm run bench:search -- --model-kind DeepCaps --input-size 64 --memory-only`: the peak RSS of
// the search's evaluator on DeepCaps 64 3 10 32 over 10,000 test images. A full search there
// takes hours on 2 cores, so this runs what sets its peak: the full-precision pass (the margins
// that order the batches) and quantized evaluations, the first of which fills the prefix cache
// (--cache-mb, default 1024) and the second of which reuses it. The images are synthetic (seeded
// bytes) in a real format: a CIFAR-10 binary test_batch.bin, which the loader resizes to 64x64.
// Memory does not depend on the weights, so the model keeps its seeded initialisation.
//   [--test-size 10000] [--cache-mb 1024] [--batch 100] [--evaluations 2] [--compat none|dac2020] [--json]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CIFAR_RECORD_BYTES } from '../src/data/cifar.js';
import { loadDataset } from '../src/data/load.js';
import { writeFileAtomic } from '../src/io/atomic-write.js';
import { buildModel } from '../src/models/factory.js';
import { type BitConfig, bitsToLists, uniformBits } from '../src/quant/config.js';
import { ModelQuantizer } from '../src/quant/quantized-forward.js';
import { parseRoundingCompat } from '../src/quant/methods.js';
import { FastEvaluator } from '../src/search/fast-evaluator.js';
import { kernels } from '../src/tensor/kernels.js';
import { arg, peakRssMb } from './common.js';

const rssMb = (): number => process.memoryUsage().rss / (1 << 20);

/** `count` CIFAR-10 records (label byte, then 3x32x32 planes) of seeded random bytes. */
function writeSyntheticCifar(dir: string, count: number): void {
  const bytes = new Uint8Array(count * CIFAR_RECORD_BYTES);
  let s = 12345;
  for (let i = 0; i < bytes.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    bytes[i] = s >>> 24;
  }
  for (let r = 0; r < count; r++) bytes[r * CIFAR_RECORD_BYTES] = r % 10;
  writeFileAtomic(join(dir, 'test_batch.bin'), () => [bytes]);
}

export async function runMemoryBench(modelKind: string, inputSize: number, json: boolean): Promise<void> {
  if (modelKind !== 'DeepCaps' || inputSize !== 64)
    throw new Error(
      `--memory-only: measures DeepCaps at --input-size 64 (got --model-kind ${modelKind} --input-size ${inputSize})`,
    );
  const testSize = Number(arg('test-size', '10000'));
  const cacheMB = Number(arg('cache-mb', '1024'));
  const batchSize = Number(arg('batch', '100'));
  const evaluations = Number(arg('evaluations', '2'));
  // the command line's default arithmetic (round_to_nearest, --rounding-compat none)
  const compat = parseRoundingCompat(arg('compat', 'none'), '--compat');
  if (!(Number.isInteger(testSize) && testSize >= 1 && testSize <= 10000))
    throw new Error(`--test-size ${testSize}: expected 1 to 10000 (one CIFAR-10 test batch)`);
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-bench-memory-'));
  const t0 = performance.now();
  let test;
  try {
    writeSyntheticCifar(dir, testSize);
    test = loadDataset('cifar10', 'test', { dataDir: dir });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const model = buildModel('DeepCaps', [64, 3, 10, 32]);
  const afterLoad = rssMb();
  console.log(
    `DeepCaps 64 3 10 32, ${test.count} synthetic ${test.height}x${test.width}x${test.channels} images ` +
      `(${(test.pixels.length / 1e6).toFixed(0)} MB of bytes), --cache-mb ${cacheMB}, batch ${batchSize}, ` +
      `round_to_nearest, compat ${compat}, ${kernels().getThreads()} threads: RSS ${afterLoad.toFixed(0)} MB after loading`,
  );
  const quantizer = new ModelQuantizer(model, 'round_to_nearest', compat, 42);
  const evaluator = new FastEvaluator(model, quantizer, test, { batchSize, cacheMB, earlyStop: true });
  const phases: { phase: string; seconds: number; rss_mb: number; peak_rss_mb: number }[] = [];
  const note = (phase: string, seconds: number) => {
    phases.push({ phase, seconds, rss_mb: rssMb(), peak_rss_mb: peakRssMb() });
    const p = phases[phases.length - 1];
    console.log(
      `  ${phase}: ${seconds.toFixed(1)} s, RSS ${p.rss_mb.toFixed(0)} MB, peak ${p.peak_rss_mb.toFixed(0)} MB`,
    );
  };
  try {
    const fp = await evaluator.evaluateFullPrecision();
    note('full precision', fp.seconds);
    const layers = model.quantLayers.length;
    for (let e = 0; e < evaluations; e++) {
      // 8 bits everywhere, then lower weight bits in the last layer only: the second reuses
      // every cached prefix but the last stage's, as steps 2 to 4 of the search do
      const bits: BitConfig = uniformBits(model.quantLayers, 8);
      bits[layers - 1].weight = 8 - e;
      const r = await evaluator.evaluate(bits);
      note(`quantized evaluation ${e + 1} (w ${JSON.stringify(bitsToLists(bits).weightBits)})`, r.seconds);
    }
  } finally {
    evaluator.clear();
    quantizer.restore();
  }
  const peak = peakRssMb();
  console.log(`peak RSS ${peak.toFixed(0)} MB (target < 6144 MB), ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (json)
    console.log(
      JSON.stringify({
        model_kind: 'DeepCaps',
        input_size: 64,
        test_images: test.count,
        cache_mb: cacheMB,
        compat,
        batch: batchSize,
        threads: kernels().getThreads(),
        rss_after_load_mb: afterLoad,
        phases,
        peak_rss_mb: peak,
      }),
    );
}
