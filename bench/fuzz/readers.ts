// The readers under fuzzing, each as "read this file and use the result", and the rule that
// sorts an outcome: a valid result, the reader's own error (a FileFormatError whose message
// names the file), or anything else (an uncaught bug).
import { readCifarBatch } from '../../src/data/cifar.js';
import { readIdxFile } from '../../src/data/idx.js';
import { readMatFile } from '../../src/data/matlab.js';
import { readSvhnMat } from '../../src/data/svhn.js';
import type { RawImageSet } from '../../src/data/image-set.js';
import { FileFormatError } from '../../src/io/byte-source.js';
import { readStateDict } from '../../src/io/pt.js';
import { readQuantizedModel } from '../../src/export/quantized-file.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { readTrainingCheckpoint } from '../../src/train/checkpoint.js';
import { readRunJson, renderReport } from '../../src/report/index.js';
import {
  EVAL_CACHE_TOOL,
  EVAL_CACHE_VERSION,
  EvalCache,
  type EvalCacheHeader,
  type EvalCacheModel,
} from '../../src/search/eval-cache.js';
import { C_RUN_TIMEOUT_MS, prepareCBinary, readWithCBinary } from './c-binary.js';

export interface FuzzReader {
  /** File extension of its inputs (saved failures keep it). */
  readonly ext: string;
  /** Reads the file and touches the result the way a caller would. */
  readonly read: (file: string) => void;
  /** Milliseconds an input may take before it counts as a hang. */
  readonly timeoutMs: number;
  /** Share of the default 100,000+ inputs. */
  readonly defaultInputs: number;
  /** Run once in the campaign's main thread before its workers start (e.g. to compile a
   *  binary); returns what undoes it when the campaign ends. */
  readonly prepare?: () => () => void;
}

/** The run an evaluation-cache input is opened for (its seeds are written for it): a
 *  ShallowCapsNet's three layers, 100 images in batches of 25. */
export const FUZZ_EVAL_CACHE: { header: EvalCacheHeader; model: EvalCacheModel } = {
  header: {
    tool: EVAL_CACHE_TOOL,
    version: EVAL_CACHE_VERSION,
    model: 'ShallowCapsNet 28 1 10 16',
    modelSha256: 'ab'.repeat(32),
    images: 'crc32:00000001:00000002:100',
    compat: 'none',
    seed: 42,
    batchSize: 25,
    earlyStop: true,
    approximateMarginImages: 0,
  },
  model: {
    layers: [
      { name: 'conv1', paramCount: 20992, routes: false, iterations: 0, capsule: false },
      { name: 'primary', paramCount: 5308672, routes: true, iterations: 1, capsule: true },
      { name: 'digit', paramCount: 1474560, routes: true, iterations: 3, capsule: true },
    ],
    images: 100,
  },
};

function touchImages(set: RawImageSet): void {
  if (set.count === 0) return;
  const out = new Uint8Array(set.height * set.width * set.channels);
  set.copyImage(0, out, 0);
  set.copyImage(set.count - 1, out, 0);
}

export const READERS: Readonly<Record<string, FuzzReader>> = {
  pt: { ext: '.pt', read: (f) => void readStateDict(f), timeoutMs: 2000, defaultInputs: 24_000 },
  'pt-legacy': { ext: '.pt', read: (f) => void readStateDict(f), timeoutMs: 2000, defaultInputs: 14_000 },
  safetensors: { ext: '.safetensors', read: (f) => void readSafetensors(f), timeoutMs: 2000, defaultInputs: 14_000 },
  idx: { ext: '.idx', read: (f) => void readIdxFile(f), timeoutMs: 2000, defaultInputs: 10_000 },
  'idx-gzip': { ext: '.idx.gz', read: (f) => void readIdxFile(f), timeoutMs: 2000, defaultInputs: 8_000 },
  cifar: { ext: '.bin', read: (f) => touchImages(readCifarBatch(f)), timeoutMs: 2000, defaultInputs: 5_000 },
  svhn: { ext: '.mat', read: (f) => touchImages(readSvhnMat(f)), timeoutMs: 2000, defaultInputs: 10_000 },
  mat: { ext: '.mat', read: (f) => void readMatFile(f), timeoutMs: 2000, defaultInputs: 5_000 },
  run: {
    ext: '.ckpt.safetensors',
    read: (f) => void readTrainingCheckpoint(f),
    timeoutMs: 2000,
    defaultInputs: 10_000,
  },
  // a model is built for every valid header (~0.2 s), so fewer inputs and a longer limit
  quantized: {
    ext: '.safetensors',
    read: (f) => void readQuantizedModel(f),
    timeoutMs: 15_000,
    defaultInputs: 1_500,
  },
  // --eval-cache as a search opens it (the torn last line cut, the file kept open to append)
  'eval-cache': {
    ext: '.jsonl',
    read: (f) => EvalCache.open(f, FUZZ_EVAL_CACHE.header, FUZZ_EVAL_CACHE.model).close(),
    timeoutMs: 2000,
    defaultInputs: 6_000,
  },
  // a search, sweep or sensitivity JSON as `report` and `merge` read it, and its page
  'run-json': {
    ext: '.json',
    read: (f) => void renderReport(readRunJson(f).json, f),
    timeoutMs: 4000,
    defaultInputs: 6_000,
  },
  // the C export's command on IDX and raw float32 images: a process each (~0.5 s with the
  // sanitizers), so few inputs and a limit past the binary's own
  'c-idx': {
    ext: '.idx',
    read: readWithCBinary,
    timeoutMs: C_RUN_TIMEOUT_MS + 10_000,
    defaultInputs: 300,
    prepare: prepareCBinary,
  },
  'c-raw': {
    ext: '.f32',
    read: readWithCBinary,
    timeoutMs: C_RUN_TIMEOUT_MS + 10_000,
    defaultInputs: 300,
    prepare: prepareCBinary,
  },
};

export const READER_NAMES = Object.keys(READERS);

export type Outcome = 'ok' | 'typed' | 'uncaught';

/** Messages V8 gives its own TypeErrors and RangeErrors: a reader that wraps one into its own
 *  error type still has a bug (it indexed past an array or recursed too deep). */
const ENGINE_MESSAGES =
  /Cannot read properties of|Cannot set properties of|is not a function|is not iterable|is not a constructor|Maximum call stack size exceeded|Invalid array length|Array buffer allocation failed/;

/** The reader's own error: a FileFormatError whose message names the file, with no engine
 *  error inside it (as its message or anywhere down its `cause` chain). */
export function classifyError(err: unknown, file: string): { outcome: Outcome; message: string } {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : `thrown non-Error ${String(err)}`;
  const typed = err instanceof FileFormatError && err.message.includes(file) && !ENGINE_MESSAGES.test(err.message);
  let cause = err instanceof Error ? err.cause : undefined;
  let clean = typed;
  for (let depth = 0; clean && cause !== undefined && depth < 16; depth++) {
    if (cause instanceof TypeError || cause instanceof RangeError || cause instanceof ReferenceError) clean = false;
    if (cause instanceof Error && ENGINE_MESSAGES.test(cause.message)) clean = false;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return { outcome: clean ? 'typed' : 'uncaught', message: message.split('\n')[0].slice(0, 300) };
}

/** Runs one reader on one file, in this thread. */
export function runReader(reader: string, file: string): { outcome: Outcome; message: string } {
  try {
    READERS[reader].read(file);
    return { outcome: 'ok', message: '' };
  } catch (err) {
    return classifyError(err, file);
  }
}
