// `npm run check:isa`: the quantized forward of ShallowCapsNet and DeepCaps on the first 200
// Fashion-MNIST test images, the four methods in both arithmetics and in the 'dynamic' number
// format (calibrated on the same images), under every instruction-set level of the exact
// fixed-point kernels this CPU runs, at 1 and 2 threads, with the build's CBLAS and the built-in
// GEMM: class lengths compared bit for bit with the best level at 1 thread
// (test/isa-exact.test.ts runs the same on 2 MNIST images in CI). Seeded models, or trained
// ones: --shallow FILE, --deepcaps FILE (ShallowCapsNet 28 1 10 16, DeepCaps 28 1 10 32).
//   npm run check:isa [-- --images N] [--shallow FILE] [--deepcaps FILE] [--json]
// Exit status 1 when any path differs.
import { loadDataset } from '../src/data/load.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { readStateDict } from '../src/io/pt.js';
import { calibrate } from '../src/quant/calibration.js';
import { kernels } from '../src/tensor/kernels.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { arg } from './common.js';
import { cases, firstDifference, kernelPaths, pathName, runnableLevels, withPath } from '../test/isa-runs.js';

function main(): number {
  const json = process.argv.includes('--json');
  const n = Number(arg('images', '200'));
  if (!Number.isInteger(n) || n < 1) throw new Error(`--images ${arg('images', '')}: expected a positive integer`);
  if (kernels().name !== 'native') throw new Error('the native kernels are not loaded: nothing to compare');
  const data = loadDataset('fashion-mnist', 'test', { limit: n });
  const batches: Tensor[] = [];
  for (let b = 0; b * 100 < n; b++) batches.push(sourceBatch(data, b, 100));
  const { levels, skipped } = runnableLevels();
  for (const [level, why] of skipped) console.log(`isa ${level}: skipped (${why})`);
  const paths = kernelPaths(levels);
  let runs = 0;
  const differences: string[] = [];
  for (const [name, args, flag] of [
    ['ShallowCapsNet', [28, 1, 10, 16], 'shallow'],
    ['DeepCaps', [28, 1, 10, 32], 'deepcaps'],
  ] as const) {
    const model = buildModel(name, [...args]);
    const file = arg(flag, '');
    if (file) model.loadStateDict(readStateDict(file), file);
    for (const c of cases(name, model, calibrate(model, data, n))) {
      const lengths = () => {
        const parts = batches.map((x) => c.lengths(x));
        const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
        let o = 0;
        for (const p of parts) all.set(p, (o += p.length) - p.length);
        return all;
      };
      const expected = withPath(paths[0], lengths);
      for (const p of paths.slice(1)) {
        const d = firstDifference(withPath(p, lengths), expected);
        runs++;
        if (d) differences.push(`${c.what}: ${pathName(p)} against ${pathName(paths[0])}: ${d}`);
      }
      console.log(`${c.what}: ${paths.length} paths compared`);
    }
  }
  for (const d of differences) console.log(`DIFFERENT ${d}`);
  console.log(
    `${runs} runs against ${pathName(paths[0])}: ${differences.length === 0 ? 'all the same bits' : `${differences.length} differ`}`,
  );
  if (json)
    console.log(
      JSON.stringify({
        images: n,
        levels,
        skipped: skipped.map(([l]) => l),
        runs,
        identical: differences.length === 0,
        differences,
      }),
    );
  return differences.length === 0 ? 0 : 1;
}

process.exitCode = main();
