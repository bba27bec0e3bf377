// `qcapsnets export --format vectors|c`: golden vectors or a C99 directory of a packed quantized
// model (see README Files, C export).
import { existsSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import { checkCExport, exportC } from '../io/c-export.js';
import { exportGoldenVectors } from '../io/golden-vectors.js';
import { BUILD_COMMAND } from '../io/c-export-source.js';
import { readQuantizedModel } from '../io/quantized-file.js';

export async function runExport(
  path: string,
  images: number,
  outputDir: string | null,
  loadTest: () => Promise<Dataset>,
  log: (line: string) => void,
  format = 'vectors',
): Promise<number> {
  if (!existsSync(path) || statSync(path).isDirectory())
    throw new Error(`--trained-weights-path ${path}: no such file (expected a <stem>_quantized_<kind>.safetensors)`);
  if (!/\.safetensors$/i.test(path))
    throw new Error(
      `--trained-weights-path ${path}: holds no quantized configuration (export needs a packed <stem>_quantized_<kind>.safetensors)`,
    );
  const { quantized: q } = readQuantizedModel(path);
  if (format === 'c') {
    const outDir = outputDir ?? dirname(path);
    checkCExport(q, outDir);
    const r = exportC(q, { outDir, stem: basename(path).replace(/\.safetensors$/i, '') });
    log(`C export: ${r.dir} (${r.files.join(', ')}); build: cd ${r.dir} && ${BUILD_COMMAND}`);
    return 0;
  }
  const test = await loadTest();
  const outDir = outputDir ?? dirname(path);
  const r = exportGoldenVectors(q, test, { images, outDir });
  log(`golden vectors of ${images} images: ${r.safetensors}, ${r.json} (${r.tensors.length} tensors)`);
  return 0;
}
