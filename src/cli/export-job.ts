// `qcapsnets export --format vectors`: golden vectors of a packed quantized model (see README Files);
// `--format onnx`: its quantized forward as an ONNX graph (README "ONNX export"); `--format c`: a
// C99 directory with its integer weights and inference (README "C export").
import { existsSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import { checkCExport, exportC } from '../export/c-export.js';
import { exportGoldenVectors } from '../export/golden-vectors.js';
import { exportOnnx, ONNX_ROUNDINGS } from '../export/onnx-export.js';
import { BUILD_COMMAND } from '../export/c-export-source.js';
import { readQuantizedModel } from '../export/quantized-file.js';
import { checkWritableFolder } from '../io/writable-folder.js';

/** The packed quantized model at `path` (errors name the file and the flag). */
function readPacked(path: string): ReturnType<typeof readQuantizedModel> {
  if (!existsSync(path) || statSync(path).isDirectory())
    throw new Error(`--trained-weights-path ${path}: no such file (expected a <stem>_quantized_<kind>.safetensors)`);
  if (!/\.safetensors$/i.test(path))
    throw new Error(
      `--trained-weights-path ${path}: holds no quantized configuration (export needs a packed <stem>_quantized_<kind>.safetensors)`,
    );
  return readQuantizedModel(path);
}

/** `path` as one word of a POSIX shell command: as it is when it holds only characters no
 *  shell treats specially, else in single quotes (a quote inside as '\''); a leading '-' gets
 *  './' so that cd does not read it as an option. */
export function shellWord(path: string): string {
  const word = path.startsWith('-') ? `./${path}` : path;
  return /^[A-Za-z0-9_/.,:@%+=-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/** `export --format onnx`: <stem>_quantized_<kind>.onnx beside the packed file (or in --output-dir). */
export async function runOnnxExport(
  path: string,
  outputDir: string | null,
  rounding: string | null,
  log: (line: string) => void,
): Promise<number> {
  if (rounding !== null && !(ONNX_ROUNDINGS as readonly string[]).includes(rounding))
    throw new Error(`--onnx-rounding ${rounding}: expected ${ONNX_ROUNDINGS.join(', ')}`);
  if (outputDir !== null) checkWritableFolder(outputDir, `--output-dir ${outputDir}`);
  const { quantized: q } = readPacked(path);
  const r = exportOnnx(q, {
    outDir: outputDir ?? dirname(path),
    fileName: basename(path).replace(/\.safetensors$/i, '.onnx'),
    rounding: rounding as (typeof ONNX_ROUNDINGS)[number] | null,
    roundingLabel: '--onnx-rounding',
  });
  log(`ONNX graph (opset ${r.opset}, ${r.nodes} nodes, ${r.rounding}): ${r.file} (${r.bytes} bytes)`);
  return 0;
}

export async function runExport(
  path: string,
  images: number,
  outputDir: string | null,
  loadTest: () => Promise<Dataset>,
  log: (line: string) => void,
  format = 'vectors',
): Promise<number> {
  const { quantized: q } = readPacked(path);
  if (format === 'c') {
    const outDir = outputDir ?? dirname(path);
    checkCExport(q, outDir);
    const r = exportC(q, { outDir, stem: basename(path).replace(/\.safetensors$/i, '') });
    log(`C export: ${r.dir} (${r.files.join(', ')}); build: cd ${shellWord(r.dir)} && ${BUILD_COMMAND}`);
    return 0;
  }
  const test = await loadTest();
  const outDir = outputDir ?? dirname(path);
  const r = exportGoldenVectors(q, test, { images, outDir });
  log(`golden vectors of ${images} images: ${r.safetensors}, ${r.json} (${r.tensors.length} tensors)`);
  return 0;
}
