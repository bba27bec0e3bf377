// Helpers of the C export tests (test/export-c*.test.ts): export through the command line,
// compile with cc -std=c99 -O2 (warnings are errors), run the binary, compare it with
// QuantizedModel.forward on Fashion-MNIST test images.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadDataset } from '../src/data/load.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { predictedClass } from '../src/models/metrics.js';
import type { QuantizedModel } from '../src/quant/quantized-model.js';

const cli = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
export const runCli = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

/** Exports `file` through the command line, compiles it (warnings are errors), returns the binary. */
export function exportAndBuild(file: string, outDir: string): { cDir: string; binary: string } {
  const r = runCli(['export', '--format', 'c', '--trained-weights-path', file, '--output-dir', outDir]);
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
export function runC(binary: string, images: string, n: number): { pred: number[]; lengths: number[][] } {
  const r = spawnSync(binary, [images, String(n)], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, n);
  const rows = lines.map((l) => l.split(' ').map(Number));
  return { pred: rows.map((r) => r[0]), lengths: rows.map((r) => r.slice(1)) };
}

/** Compares the C binary with QuantizedModel.forward (batches of 100) on the first n test
 *  images: the same predictions and the same class lengths, bit for bit (both compute every
 *  float in one order; the C prints %.9g, which reads back as the same float32); returns the
 *  largest class length difference (0) and the C predictions. */
export function compare(
  q: QuantizedModel,
  binary: string,
  n: number,
  tag: string,
  dir: string,
): { maxDiff: number; pred: number[] } {
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
        // as the C's class_lengths_of: squares summed in double, the root rounded to float;
        // the C's %.9g read back to the nearest float32 is the C's float
        let n2 = 0;
        for (let d = 0; d < D; d++) n2 += caps.data[(i * K + k) * D + d] ** 2;
        const diff = Math.abs(Math.fround(Math.sqrt(n2)) - Math.fround(c.lengths[img][k]));
        maxDiff = Math.max(maxDiff, diff);
      }
    }
  }
  assert.equal(maxDiff, 0, `${tag}: class lengths differ by up to ${maxDiff}`);
  return { maxDiff, pred: c.pred };
}
