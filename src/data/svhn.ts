// SVHN cropped digits (train_32x32.mat, test_32x32.mat; http://ufldl.stanford.edu/housenumbers/):
// a level-5 MAT-file with X, uint8 [32, 32, 3, N] (row, column, channel, sample; MATLAB
// column-major, so the row index varies fastest), and y, [N, 1] labels 1..10 where 10 is
// the digit 0. Labels are mapped 10 -> 0 like torchvision's datasets.SVHN.

import { readFileSync } from 'node:fs';
import type { RawImageSet } from './image-set.js';
import { parseMat } from './matlab.js';
import { fileError } from '../io/byte-source.js';

export const SVHN_TRAIN_FILE = 'train_32x32.mat';
export const SVHN_TEST_FILE = 'test_32x32.mat';

/** Parses an SVHN cropped-digits MAT-file; `fileName` is used in error messages. */
export function parseSvhnMat(bytes: Uint8Array, fileName = '<svhn mat bytes>'): RawImageSet {
  const vars = parseMat(bytes, fileName);
  const x = vars.get('X');
  const y = vars.get('y');
  if (!x || !y) {
    const found =
      [...vars.values()].map((v) => `${v.name} (${v.className} [${v.dims.join(', ')}])`).join(', ') || 'none';
    throw fileError(fileName, `expected variables X (uint8 [32, 32, 3, N]) and y ([N, 1]); found ${found}`);
  }
  const [height, width, channels, count = 1] = x.dims;
  if (
    x.className !== 'uint8' ||
    !(x.data instanceof Uint8Array) ||
    x.dims.length < 3 ||
    x.dims.length > 4 ||
    channels !== 3
  ) {
    throw fileError(fileName, `X is ${x.className} [${x.dims.join(', ')}]; expected uint8 [32, 32, 3, N]`);
  }
  const yCount = y.dims.reduce((a, b) => a * b, 1);
  if (!y.data || y.dims.filter((d) => d !== 1).length > 1 || yCount !== count) {
    throw fileError(
      fileName,
      `y is ${y.className} [${y.dims.join(', ')}]; expected ${count} labels as [${count}, 1] to match X`,
    );
  }
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const v = Number(y.data[i]);
    if (!Number.isInteger(v) || v < 0 || v > 10) {
      throw fileError(fileName, `y(${i + 1}) = ${v}; expected SVHN labels 1..10 (10 meaning the digit 0)`);
    }
    labels[i] = v === 10 ? 0 : v;
  }
  const pixels = x.data;
  const plane = height * width;
  const sample = plane * channels;
  return {
    source: fileName,
    count,
    height,
    width,
    channels,
    labels,
    copyImage(i, out, outOffset) {
      // Column-major X(h, w, c, n) sits at h + H*w + H*W*c + H*W*C*n.
      const base = i * sample;
      let o = outOffset;
      for (let h = 0; h < height; h++) {
        for (let w = 0; w < width; w++) {
          const at = base + h + height * w;
          for (let c = 0; c < channels; c++) out[o++] = pixels[at + plane * c];
        }
      }
    },
  };
}

export function readSvhnMat(path: string): RawImageSet {
  return parseSvhnMat(readFileSync(path), path);
}
