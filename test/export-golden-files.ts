// The exports of fixed models, for test/export-golden.test.ts: seeded, untrained ShallowCapsNet
// and DeepCaps, quantized at fixed mixed configurations (round to nearest; logarithmic under
// dac2020), written as the packed file, reloaded as `qcapsnets export` does, then exported as
// ONNX, C and golden vectors of 2 seeded images. fixtures/export-golden/ holds what the code
// wrote when the fixtures were made: every small file whole, every file's size and SHA-256 in
// manifest.json, and the JSON header of every large
// safetensors file (<name>.header.json, for a readable difference). Regenerate (only when an
// output change is intended) with
//   npm run build && node tools/make-export-golden.mjs
// (not from this module itself: `node --test dist/test/` loads every module under test/, and
// would rewrite the fixtures before the test compares against them)
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportC } from '../src/export/c-export.js';
import { exportGoldenVectors } from '../src/export/golden-vectors.js';
import { exportOnnx } from '../src/export/onnx-export.js';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import type { ImageSource } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/index.js';
import { bitsFromLists, quantize } from '../src/quant/index.js';
import type { QuantConfig } from '../src/quant/config.js';

export const GOLDEN_DIR = fileURLToPath(new URL('../../fixtures/export-golden/', import.meta.url));
/** files up to this size are kept whole in the fixtures (the C sources, the golden JSON) */
export const WHOLE_FILE_LIMIT = 256 * 1024;

interface GoldenCase {
  stem: string;
  model: 'ShallowCapsNet' | 'DeepCaps';
  bits: { weight: number[]; act: number[]; routing: number[] };
  method: QuantConfig['method'];
  compat: QuantConfig['compat'];
}

export const GOLDEN_CASES: readonly GoldenCase[] = [
  {
    stem: 'shallow_rtn',
    model: 'ShallowCapsNet',
    bits: { weight: [10, 7, 6], act: [6, 6, 6], routing: [5, 5] },
    method: 'round_to_nearest',
    compat: 'none',
  },
  {
    stem: 'shallow_log',
    model: 'ShallowCapsNet',
    bits: { weight: [9, 8, 7], act: [7, 6, 5], routing: [6, 5] },
    method: 'logarithmic',
    compat: 'dac2020',
  },
  {
    stem: 'deepcaps_rtn',
    model: 'DeepCaps',
    bits: { weight: [9, 8, 7, 8, 7, 6], act: [6, 6, 5, 6, 6, 6], routing: [5, 6] },
    method: 'round_to_nearest',
    compat: 'none',
  },
  {
    stem: 'deepcaps_log',
    model: 'DeepCaps',
    bits: { weight: [9, 8, 7, 8, 7, 6], act: [7, 6, 6, 6, 6, 5], routing: [6, 5] },
    method: 'logarithmic',
    compat: 'dac2020',
  },
];

/** 2 images with seeded pixels (a linear congruential generator: the same bytes everywhere). */
function seededImages(wh: number, ch: number): ImageSource {
  const count = 2;
  const pixels = new Float32Array(count * wh * wh * ch);
  let s = 12345;
  for (let i = 0; i < pixels.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    pixels[i] = (s >>> 24) / 255;
  }
  const size = wh * wh * ch;
  return {
    count,
    labels: Int32Array.from([3, 7]),
    height: wh,
    width: wh,
    channels: ch,
    writeImage: (i, out, offset) => out.set(pixels.subarray(i * size, (i + 1) * size), offset),
  };
}

/** Writes every export of `c` under outDir/<stem>/ and returns the files written. */
export function writeGoldenCase(c: GoldenCase, outDir: string): string[] {
  const dir = join(outDir, c.stem);
  mkdirSync(dir, { recursive: true });
  const model = buildModel(c.model, [28, 1, 10, c.model === 'DeepCaps' ? 32 : 16], { seed: 7 });
  const q = quantize(
    model,
    bitsFromLists(model.quantLayers, { weightBits: c.bits.weight, actBits: c.bits.act, routingBits: c.bits.routing }),
    { method: c.method, compat: c.compat },
  );
  const packed = join(dir, `${c.stem}.safetensors`);
  writeQuantizedModel(packed, q);
  const { quantized } = readQuantizedModel(packed);
  exportOnnx(quantized, { outDir: dir, fileName: `${c.stem}.onnx` });
  exportC(quantized, { outDir: dir, stem: c.stem });
  exportGoldenVectors(quantized, seededImages(28, 1), { images: 2, outDir: join(dir, 'golden') });
  return listFiles(dir).map((f) => relative(outDir, f));
}

export function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** A safetensors file's JSON header (its metadata and tensor table), as written. */
export function safetensorsHeader(file: string): string {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  return bytes.subarray(8, 8 + n).toString('utf8');
}

/** Regenerates fixtures/export-golden/ (the manifest and the whole small files). */
/** Writes fixtures/export-golden/ anew from what the code writes now. */
export function writeGoldenFixtures(): void {
  const tmp = join(GOLDEN_DIR, '.work');
  rmSync(GOLDEN_DIR, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const manifest: Record<string, { bytes: number; sha256: string }> = {};
  for (const c of GOLDEN_CASES) {
    for (const rel of writeGoldenCase(c, tmp)) {
      const file = join(tmp, rel);
      const bytes = statSync(file).size;
      manifest[rel] = { bytes, sha256: sha256(file) };
      mkdirSync(join(GOLDEN_DIR, rel, '..'), { recursive: true });
      if (bytes <= WHOLE_FILE_LIMIT) writeFileSync(join(GOLDEN_DIR, rel), readFileSync(file));
      else if (rel.endsWith('.safetensors'))
        writeFileSync(join(GOLDEN_DIR, `${rel}.header.json`), safetensorsHeader(file));
    }
    console.log(`${c.stem}: done`);
  }
  rmSync(tmp, { recursive: true, force: true });
  writeFileSync(join(GOLDEN_DIR, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
}
