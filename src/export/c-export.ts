// `qcapsnets export --format c`: a self-contained C99 directory <stem>_quantized_<kind>_c/ with
// the quantized inference of a packed quantized model (see README "C export"):
//   qcaps_weights.h   the integer weights at their formats (c-export-weights.ts)
//   qcaps_model.c/.h  qcaps_infer(image, class_lengths) -> predicted class (c-export-source.ts)
//   main.c, Makefile  a command that classifies the images of an IDX or raw float32 file
//                     (c-export-main.ts)
// The directory is written under a temporary name and renamed into place, so an export that
// fails leaves nothing behind (and an earlier export stays whole until the new one is done);
// the temporary folders of an export that was killed are removed by the next export of its name.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { QuantizedModel } from '../quant/quantized-model.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { removeStaleTempFolders } from '../io/output-set.js';
import { checkWritableFolder } from '../io/writable-folder.js';
import { mainSource, makefile, modelHeader, modelSource } from './c-export-source.js';
import { cFloatBuffers, cTensors, weightHeader } from './c-export-weights.js';
import { checkCLowerings } from './c-lowerings.js';

export interface CExportOptions {
  /** the folder that receives <stem>_quantized_<kind>_c/ */
  outDir: string;
  /** the directory's name stem, e.g. the packed file's name without .safetensors
   *  ('model_quantized_satisfied'); '_c' is appended */
  stem: string;
}

export const C_EXPORT_FILES = ['qcaps_weights.h', 'qcaps_model.h', 'qcaps_model.c', 'main.c', 'Makefile'] as const;

/** Checks that the export can be written at all, before any work: C export reproduces
 *  truncation, round to nearest and logarithmic rounding (both arithmetics), of layers whose
 *  kinds have a C lowering; `outDir` must be a writable folder or creatable. */
export function checkCExport(q: QuantizedModel, outDir: string): void {
  if (q.method === 'stochastic_rounding')
    throw new Error(
      "C export: stochastic rounding's draws depend on the evaluation batch and are not reproduced in C; " +
        'export a truncation, round_to_nearest or logarithmic configuration',
    );
  checkCLowerings(q.model.description.layers);
  checkWritableFolder(outDir, `C export: output folder ${outDir}`);
}

/** Writes the C directory of `q`; returns its path and its files' names. */
export function exportC(q: QuantizedModel, options: CExportOptions): { dir: string; files: string[] } {
  checkCExport(q, options.outDir);
  const tensors = cTensors(q);
  const floats = cFloatBuffers(q);
  const source = modelSource(q, tensors, floats);
  mkdirSync(options.outDir, { recursive: true });
  // what exports of this name that were killed (SIGKILL, a power cut) left behind
  removeStaleTempFolders(options.outDir, `${options.stem}_c`);
  const dir = join(options.outDir, `${options.stem}_c`);
  const temp = join(options.outDir, `.${options.stem}_c.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const enc = new TextEncoder();
  const text = (s: string) => () => [enc.encode(s)];
  try {
    mkdirSync(temp);
    writeFileAtomic(join(temp, 'qcaps_weights.h'), () => chunks(weightHeader(q, tensors, floats), enc));
    writeFileAtomic(join(temp, 'qcaps_model.h'), text(modelHeader(q)));
    writeFileAtomic(join(temp, 'qcaps_model.c'), text(source));
    writeFileAtomic(join(temp, 'main.c'), text(mainSource()));
    writeFileAtomic(join(temp, 'Makefile'), text(makefile()));
    // an earlier export of the same name is moved aside, then removed once the new one is in place
    const old = existsSync(dir) ? `${temp}.old` : null;
    if (old) renameSync(dir, old);
    renameSync(temp, dir);
    if (old) rmSync(old, { recursive: true, force: true });
  } catch (err) {
    rmSync(temp, { recursive: true, force: true });
    throw err;
  }
  return { dir, files: [...C_EXPORT_FILES] };
}

/** The strings of `it` encoded in chunks of about 1 MB (fewer writes). */
function* chunks(it: Iterable<string>, enc: TextEncoder): Generator<Uint8Array> {
  let parts: string[] = [];
  let size = 0;
  for (const s of it) {
    parts.push(s);
    size += s.length;
    if (size >= 1 << 20) {
      yield enc.encode(parts.join(''));
      parts = [];
      size = 0;
    }
  }
  if (parts.length) yield enc.encode(parts.join(''));
}
