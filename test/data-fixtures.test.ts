// Agreement with the real tools, on reference files made by fixtures/data/make_fixtures.py:
// Pillow's bilinear resize (bit-exact), Pillow's affine transform (what torchvision's
// RandomAffine runs), and MAT-files written by scipy.io.savemat, plain and compressed.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { augmentImage, parseSvhnMat, readMatFile, resizeBilinear, type Interpolation } from '../src/data/index.js';

const fixtures = fileURLToPath(new URL('../../fixtures/data/', import.meta.url));

/** The fixture script's input generator (a 31-bit LCG, byte = bits 16..23). */
function lcgBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = BigInt(seed);
  for (let i = 0; i < n; i++) {
    x = (1103515245n * x + 12345n) % 2n ** 31n;
    out[i] = Number((x >> 16n) & 0xffn);
  }
  return out;
}

describe('agreement with Pillow and SciPy', () => {
  test('resize 32x32 -> 64x64 matches Pillow BILINEAR bit for bit', () => {
    const bytes = readFileSync(`${fixtures}pil-resize-32to64.bin`);
    const input = bytes.subarray(0, 3072);
    assert.deepEqual(Uint8Array.from(input), lcgBytes(3072, 1));
    const out = new Uint8Array(64 * 64 * 3);
    resizeBilinear(input, 0, 32, 32, 3, out, 0, 64, 64);
    assert.deepEqual(out, Uint8Array.from(bytes.subarray(3072)));
  });

  test('shift/rotation sampling matches Pillow AFFINE (within its truncation to uint8)', () => {
    const fixture = JSON.parse(readFileSync(`${fixtures}pil-affine.json`, 'utf8')) as {
      side: number;
      input: string;
      cases: { angleDeg: number; shiftX: number; shiftY: number; interpolation: Interpolation; output: string }[];
    };
    const side = fixture.side;
    const input = Uint8Array.from(Buffer.from(fixture.input, 'base64'));
    assert.equal(fixture.cases.length, 8);
    for (const c of fixture.cases) {
      const expected = Buffer.from(c.output, 'base64');
      const out = new Float32Array(side * side);
      augmentImage(
        input,
        0,
        side,
        side,
        1,
        { angleDeg: c.angleDeg, shiftX: c.shiftX, shiftY: c.shiftY, flip: false },
        c.interpolation,
        out,
        0,
      );
      let worst = 0;
      for (let i = 0; i < out.length; i++) {
        // Pillow truncates the interpolated value to uint8; we keep the float.
        const diff = Math.abs(out[i] * 255 - expected[i]);
        if (c.interpolation === 'nearest' || c.angleDeg === 0)
          assert.equal(Math.round(out[i] * 255), expected[i], `${JSON.stringify(c)} pixel ${i}`);
        worst = Math.max(worst, diff);
      }
      assert.ok(worst < 1.0001, `${c.interpolation} ${c.angleDeg}deg: max difference ${worst}`);
    }
  });

  for (const file of ['scipy-v5.mat', 'scipy-v5-zlib.mat']) {
    test(`reads ${file} written by scipy.io.savemat`, () => {
      const vars = readMatFile(`${fixtures}${file}`);
      assert.deepEqual(vars.get('X')?.dims, [32, 32, 3, 3]);
      assert.equal(vars.get('X')?.className, 'uint8');
      assert.deepEqual(Array.from(vars.get('y')?.data as Float64Array), [10, 1, 7]);
      const set = parseSvhnMat(readFileSync(`${fixtures}${file}`), file);
      assert.deepEqual(Array.from(set.labels), [0, 1, 7]);
      // savemat wrote numpy's C-order x[h, w, c, n] as MATLAB column-major X(h, w, c, n).
      const x = lcgBytes(32 * 32 * 3 * 3, 3); // C order: ((h * 32 + w) * 3 + c) * 3 + n
      const img = new Uint8Array(3072);
      set.copyImage(1, img, 0);
      const expected = Uint8Array.from({ length: 3072 }, (_, k) => x[k * 3 + 1]);
      assert.deepEqual(img, expected);
    });
  }
});
