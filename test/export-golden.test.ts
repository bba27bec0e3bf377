// The exports are byte-identical to those the code wrote when fixtures/export-golden/ was made
// (test/export-golden-files.ts): the packed file, the ONNX file, the C sources and the golden
// vectors of seeded, untrained ShallowCapsNet and DeepCaps at fixed configurations. A whole
// kept file is compared as text first (a readable difference), every file by size and SHA-256.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GOLDEN_CASES, GOLDEN_DIR, safetensorsHeader, sha256, writeGoldenCase } from './export-golden-files.js';
import { requireNative } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'qcaps-export-golden-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const manifest = JSON.parse(readFileSync(join(GOLDEN_DIR, 'manifest.json'), 'utf8')) as Record<
  string,
  { bytes: number; sha256: string }
>;

for (const c of GOLDEN_CASES) {
  test(`${c.stem}: the packed file, ONNX, C sources and golden vectors are those of the fixtures, byte for byte`, (t) => {
    if (!requireNative(t)) return;
    const written = writeGoldenCase(c, dir).sort();
    const expected = Object.keys(manifest)
      .filter((k) => k.startsWith(`${c.stem}/`))
      .sort();
    assert.deepEqual(written, expected, 'the files written');
    for (const rel of written) {
      const file = join(dir, rel);
      const kept = join(GOLDEN_DIR, rel);
      if (existsSync(kept)) assert.equal(readFileSync(file, 'utf8'), readFileSync(kept, 'utf8'), rel);
      if (existsSync(`${kept}.header.json`))
        assert.equal(safetensorsHeader(file), readFileSync(`${kept}.header.json`, 'utf8'), `${rel}'s header`);
      assert.equal(statSync(file).size, manifest[rel].bytes, `${rel}: size`);
      assert.equal(sha256(file), manifest[rel].sha256, `${rel}: SHA-256`);
    }
    rmSync(join(dir, c.stem), { recursive: true, force: true });
  });
}
