// The seeded PRNG and the training augmentation: reference outputs, exact resume,
// determinism, and the geometry of shifts, flips and rotations on hand-made images.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { augmentationFor, augmentImage, drawAugmentParams, Rng, type AugmentParams } from '../src/data/index.js';

describe('Rng (xoshiro128**)', () => {
  test('matches the reference implementation from state {1, 2, 3, 4}', () => {
    const rng = new Rng(0);
    rng.setState([1, 2, 3, 4]);
    const got = Array.from({ length: 8 }, () => rng.next());
    assert.deepEqual(got, [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849]);
  });

  test('state()/setState() resume the exact stream', () => {
    const a = new Rng(42);
    for (let i = 0; i < 100; i++) a.next();
    const saved = a.state();
    const expected = Array.from({ length: 50 }, () => a.uniform());
    const b = new Rng(7);
    b.setState(saved);
    assert.deepEqual(
      Array.from({ length: 50 }, () => b.uniform()),
      expected,
    );
    assert.throws(() => b.setState([0, 0, 0, 0]), /all-zero state/);
  });

  test('same seed and keys give the same stream; different keys differ', () => {
    const draw = (r: Rng): number[] => Array.from({ length: 10 }, () => r.next());
    assert.deepEqual(draw(new Rng(42, 3, 5)), draw(Rng.derive(42, 3, 5)));
    assert.notDeepEqual(draw(new Rng(42, 3, 5)), draw(new Rng(42, 3, 6)));
    assert.notDeepEqual(draw(new Rng(42)), draw(new Rng(43)));
  });

  test('uniform in [0, 1), int(n) in range and unbiased-looking, shuffle is a permutation', () => {
    const rng = new Rng(1);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60000; i++) {
      const u = rng.uniform();
      assert.ok(u >= 0 && u < 1);
      counts[rng.int(6)]++;
    }
    for (const c of counts) assert.ok(Math.abs(c - 10000) < 500, `counts ${counts}`);
    const arr = Int32Array.from({ length: 100 }, (_, i) => i);
    new Rng(9).shuffle(arr);
    assert.deepEqual(
      Array.from(arr).sort((x, y) => x - y),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.notDeepEqual(
      Array.from(arr),
      Array.from({ length: 100 }, (_, i) => i),
    );
  });
});

/** A 5x5 one-channel image with value 10 * (y * 5 + x) + 5 at (y, x). */
function ramp(): Uint8Array {
  return Uint8Array.from({ length: 25 }, (_, i) => 10 * i + 5);
}

function apply(
  src: Uint8Array,
  params: Partial<AugmentParams>,
  side = 5,
  interpolation: 'bilinear' | 'nearest' = 'bilinear',
): number[] {
  const out = new Float32Array(src.length);
  augmentImage(
    src,
    0,
    side,
    side,
    1,
    { angleDeg: 0, shiftX: 0, shiftY: 0, flip: false, ...params },
    interpolation,
    out,
    0,
  );
  return Array.from(out, (v) => Math.round(v * 255));
}

describe('augmentation geometry', () => {
  test('shift moves content right/down and fills shifted-in pixels with 0', () => {
    const out = apply(ramp(), { shiftX: 2, shiftY: -1 });
    for (let y = 0; y < 5; y++) {
      for (let x = 0; x < 5; x++) {
        const sy = y + 1;
        const sx = x - 2;
        const want = sy < 5 && sx >= 0 ? 10 * (sy * 5 + sx) + 5 : 0;
        assert.equal(out[y * 5 + x], want, `(${y}, ${x})`);
      }
    }
    // Bottom row came from outside the image; two left columns too.
    assert.deepEqual(out.slice(20), [0, 0, 0, 0, 0]);
  });

  test('a single bright pixel lands exactly shiftX/shiftY away', () => {
    const img = new Uint8Array(25);
    img[2 * 5 + 2] = 255;
    const out = apply(img, { shiftX: 1, shiftY: -2 });
    assert.equal(out.indexOf(255), 0 * 5 + 3);
    assert.equal(out.filter((v) => v !== 0).length, 1);
  });

  test('flip mirrors columns after the shift; channels move together', () => {
    const out = apply(ramp(), { flip: true });
    assert.deepEqual(out.slice(0, 5), [45, 35, 25, 15, 5]);
    const rgb = Uint8Array.from([1, 2, 3, 4, 5, 6]); // 1x2 image, 3 channels
    const o = new Float32Array(6);
    augmentImage(rgb, 0, 1, 2, 3, { angleDeg: 0, shiftX: 1, shiftY: 0, flip: true }, 'bilinear', o, 0);
    // shift right by 1 -> [0,0,0 | 1,2,3]; flip -> [1,2,3 | 0,0,0]
    assert.deepEqual(
      Array.from(o, (v) => Math.round(v * 255)),
      [1, 2, 3, 0, 0, 0],
    );
  });

  test('a 90 degree rotation turns content counter-clockwise about the centre', () => {
    const img = new Uint8Array(25);
    img[2 * 5 + 4] = 200; // right of centre
    for (const interpolation of ['bilinear', 'nearest'] as const) {
      const out = apply(img, { angleDeg: 90 }, 5, interpolation);
      assert.equal(out[0 * 5 + 2], 200, interpolation); // now above centre
      assert.equal(out.filter((v) => v !== 0).length, 1);
    }
  });

  test('a small rotation keeps the centre, interpolates bilinearly, and zero-fills corners', () => {
    const flat = new Uint8Array(64 * 64).fill(200);
    const out = apply(flat, { angleDeg: 2 }, 64);
    assert.equal(out[32 * 64 + 32], 200);
    assert.equal(out[0], 0); // a corner rotated in from outside the image
    assert.ok(out.filter((v) => v === 0).length < 100);
    const img = ramp();
    const small = apply(img, { angleDeg: 1 });
    assert.equal(small[12], 125); // centre pixel unchanged
    assert.ok(small.some((v, i) => v !== img[i]));
  });

  test('parameters: integer shifts within the bound, torchvision-like distribution, flips at rate p', () => {
    const spec = augmentationFor('fashion-mnist')!;
    const rng = new Rng(5);
    const shifts = new Map<number, number>();
    let flips = 0;
    const n = 40000;
    for (let i = 0; i < n; i++) {
      const p = drawAugmentParams(spec, rng);
      assert.equal(p.angleDeg, 0);
      assert.ok(Number.isInteger(p.shiftX) && Math.abs(p.shiftX) <= 2);
      shifts.set(p.shiftX, (shifts.get(p.shiftX) ?? 0) + 1);
      if (p.flip) flips++;
    }
    // round(uniform(-2, 2)): -2 and 2 have probability 1/8, -1, 0, 1 have 1/4.
    assert.ok(Math.abs(shifts.get(2)! / n - 0.125) < 0.01 && Math.abs(shifts.get(0)! / n - 0.25) < 0.01);
    assert.ok(Math.abs(flips / n - 0.2) < 0.01);
    const cifar = augmentationFor('cifar10')!;
    const q = drawAugmentParams(cifar, new Rng(3));
    assert.ok(Math.abs(q.angleDeg) <= 2 && Math.abs(q.shiftX) <= 5 && Math.abs(q.shiftY) <= 5);
    assert.equal(augmentationFor('svhn'), null);
    assert.deepEqual(augmentationFor('mnist'), {
      maxShift: 2,
      maxRotationDeg: 0,
      flipProbability: 0,
      interpolation: 'bilinear',
    });
  });

  test('same seed gives the same augmented images', () => {
    const spec = augmentationFor('cifar10')!;
    const src = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 37) % 256);
    const run = (seed: number): number[] => {
      const rng = new Rng(seed);
      const out = new Float32Array(src.length * 4);
      for (let k = 0; k < 4; k++)
        augmentImage(src, 0, 8, 8, 3, drawAugmentParams(spec, rng), spec.interpolation, out, k * src.length);
      return Array.from(out);
    };
    assert.deepEqual(run(11), run(11));
    assert.notDeepEqual(run(11), run(12));
  });
});
