// CIFAR-10 binary version (cifar-10-binary.tar.gz -> cifar-10-batches-bin/): each file
// is a run of 3073-byte records, one label byte (0..9) then 3072 pixel bytes: the 1024
// red values of the 32x32 image row by row, then the 1024 green, then the 1024 blue.
// https://www.cs.toronto.edu/~kriz/cifar.html ("Binary version").

import { readFileSync } from 'node:fs';
import type { RawImageSet } from './image-set.js';
import { fileError } from '../io/byte-source.js';

export const CIFAR_SIDE = 32;
export const CIFAR_PLANE = CIFAR_SIDE * CIFAR_SIDE;
export const CIFAR_RECORD_BYTES = 1 + 3 * CIFAR_PLANE;
export const CIFAR_TRAIN_FILES = [
  'data_batch_1.bin',
  'data_batch_2.bin',
  'data_batch_3.bin',
  'data_batch_4.bin',
  'data_batch_5.bin',
];
export const CIFAR_TEST_FILES = ['test_batch.bin'];
/** Records per file in the published archive. */
export const CIFAR_RECORDS_PER_FILE = 10000;

/** Parses one CIFAR-10 binary batch; `fileName` is used in error messages. */
export function parseCifarBatch(bytes: Uint8Array, fileName = '<cifar bytes>'): RawImageSet {
  if (bytes.length === 0 || bytes.length % CIFAR_RECORD_BYTES !== 0) {
    const whole = Math.floor(bytes.length / CIFAR_RECORD_BYTES);
    throw fileError(
      fileName,
      `${bytes.length} bytes is not a whole number of CIFAR-10 records; expected a multiple of ` +
        `${CIFAR_RECORD_BYTES} (1 label byte + 3x32x32 pixels), ${CIFAR_RECORDS_PER_FILE * CIFAR_RECORD_BYTES} for a full batch ` +
        `(file truncated after ${whole} records?)`,
    );
  }
  const count = bytes.length / CIFAR_RECORD_BYTES;
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const label = bytes[i * CIFAR_RECORD_BYTES];
    if (label > 9) {
      throw fileError(fileName, `record ${i} has label ${label}; expected 0..9 (is this the CIFAR-10 binary version?)`);
    }
    labels[i] = label;
  }
  return {
    source: fileName,
    count,
    height: CIFAR_SIDE,
    width: CIFAR_SIDE,
    channels: 3,
    labels,
    copyImage(i, out, outOffset) {
      const record = i * CIFAR_RECORD_BYTES + 1;
      for (let p = 0; p < CIFAR_PLANE; p++) {
        const o = outOffset + 3 * p;
        out[o] = bytes[record + p];
        out[o + 1] = bytes[record + CIFAR_PLANE + p];
        out[o + 2] = bytes[record + 2 * CIFAR_PLANE + p];
      }
    },
  };
}

export function readCifarBatch(path: string): RawImageSet {
  return parseCifarBatch(readFileSync(path), path);
}
