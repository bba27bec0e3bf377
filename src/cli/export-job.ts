// `qcapsnets export --format vectors`: golden vectors of a packed quantized model (see README Files).
import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import { exportGoldenVectors } from '../io/golden-vectors.js';
import { readQuantizedModel } from '../io/quantized-file.js';

export async function runExport(
  path: string,
  images: number,
  outputDir: string | null,
  loadTest: () => Promise<Dataset>,
  log: (line: string) => void,
): Promise<number> {
  if (!existsSync(path) || statSync(path).isDirectory())
    throw new Error(`--trained-weights-path ${path}: no such file (expected a <stem>_quantized_<kind>.safetensors)`);
  if (!/\.safetensors$/i.test(path))
    throw new Error(
      `--trained-weights-path ${path}: holds no quantized configuration (export needs a packed <stem>_quantized_<kind>.safetensors)`,
    );
  const { quantized: q } = readQuantizedModel(path);
  const test = await loadTest();
  const outDir = outputDir ?? dirname(path);
  const r = exportGoldenVectors(q, test, { images, outDir });
  log(`golden vectors of ${images} images: ${r.safetensors}, ${r.json} (${r.tensors.length} tensors)`);
  return 0;
}
