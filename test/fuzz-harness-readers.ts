// Readers that misbehave on purpose, with readers.ts's exports, for test/fuzz-harness.test.ts:
// the fuzz worker must report each failure as what it is.
import { FileFormatError } from '../src/io/byte-source.js';
import { classifyError, type FuzzReader, type Outcome } from '../bench/fuzz/readers.js';

const reader = (read: (file: string) => void): FuzzReader => ({ ext: '.bin', read, timeoutMs: 1000, defaultInputs: 1 });

export const READERS: Readonly<Record<string, FuzzReader>> = {
  typed: reader((f) => {
    throw new FileFormatError(f, `${f}: not a file of this kind`);
  }),
  'type-error': reader(() => {
    const fields = JSON.parse('{}') as { size: { length: number } };
    void fields.size.length; // Cannot read properties of undefined
  }),
  hang: reader(() => {
    for (;;);
  }),
  // a size field of 2^32-1 float64 values, from a file of a few bytes
  oversized: reader(() => void new Float64Array(0xffffffff)),
  // a JS heap that grows until the worker's heap limit ends it
  crash: reader(() => {
    const hoard: number[][] = [];
    for (;;) hoard.push(Array.from({ length: 1e5 }, (_, i) => i + hoard.length));
  }),
};

export function runReader(name: string, file: string): { outcome: Outcome; message: string } {
  try {
    READERS[name].read(file);
    return { outcome: 'ok', message: '' };
  } catch (err) {
    return classifyError(err, file);
  }
}
