// The evaluation cache: every evaluation of a configuration (bits + rounding method) on one
// model file and one set of test images, kept in memory and, with a file, appended to it as
// JSON lines so that a later search or sweep (or the rerun of a killed one) reuses them.
//
// File: line 1 the header (what the evaluations depend on: the model file's sha256, the test
// images' fingerprint, arithmetic, seed, batch size, early stop; under the 'dynamic' number
// format also the format and the calibration's image count and sha256, and the weight range
// rule when it is 'mse'); each later line one
// evaluation: {method, w, a, r, accuracy, lower, upper, exact, seen, total, correct,
// batchCorrect, ...}. A line is appended with one write and fsync'd, so a killed run leaves at
// most a torn last line, which the next open drops with a note. Every other line is checked
// against the header and the model (counts within the images, per-batch counts that sum, bits
// valid for the model): a line that fails is an error naming the file and the line, never
// used. Nothing is written to a file before its header and lines are read and accepted, and
// only regular files are opened (a device or FIFO is refused).
//
// Queries are answered as a fresh evaluator would answer them, so the search makes the same
// calls and decisions, and prints the same lines, with or without the cache: an evaluation
// stored with its correct count per batch (batchCorrect) is replayed batch by batch against
// the query's `decided` predicate and answers with the bounds at the first batch where the
// decision is certain (where the evaluator itself would have stopped); when the stored batches
// do not reach that far, the evaluator resumes after them (Evaluator.resumeAfter).
import * as fs from 'node:fs';
import type { BitConfig, BitLists, QuantLayerInfo } from '../quant/config.js';
import { bitsToLists, checkBitLists, configKey } from '../quant/config.js';
import { QUANT_METHODS } from '../quant/methods.js';
import { FileFormatError } from '../io/byte-source.js';
import type { QuantMethod } from '../tensor/backend.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import type { Evaluation, Evaluator } from './evaluator.js';

export const EVAL_CACHE_TOOL = 'qcapsnets eval-cache';
export const EVAL_CACHE_VERSION = 1;

/** What every evaluation in one cache depends on. Two runs share a cache only when all agree. */
export interface EvalCacheHeader {
  tool: typeof EVAL_CACHE_TOOL;
  version: typeof EVAL_CACHE_VERSION;
  /** model kind and args, e.g. "ShallowCapsNet 28 1 10 16" */
  model: string;
  /** sha256 of the model file (hex) */
  modelSha256: string;
  /** datasetFingerprint of the test images (pixels, labels, count) */
  images: string;
  compat: string;
  seed: number;
  /** images per batch: batchCorrect's unit, and stochastic rounding's draws */
  batchSize: number;
  earlyStop: boolean;
  /** dac2020's fast-convolution margin, images (0: exact evaluations only) */
  approximateMarginImages: number;
  /** 'dynamic' only (absent: 'fixed', as every cache before the format): the number format,
   *  which makes the lines' counts widths */
  numberFormat?: 'dynamic';
  /** 'dynamic' only: the calibration the evaluations used: its images and calibrationHash */
  calibrationImages?: number;
  calibrationSha256?: string;
  /** 'dynamic' with the 'mse' weight range rule only (absent: 'max', as every cache before the
   *  rule): the weights' fractional lengths, so their values, depend on it */
  weightRange?: 'mse';
}

/** One stored evaluation. */
export interface StoredEvaluation extends Pick<
  Evaluation,
  'accuracy' | 'lower' | 'upper' | 'exact' | 'seen' | 'total'
> {
  method: QuantMethod;
  /** as the file holds them */
  bits: BitLists;
  /** correct images among those seen */
  correct: number;
  /** correct images per batch, from the first (empty when the evaluator does not count them) */
  batchCorrect: number[];
  approximate: boolean;
  /** images counted in from an earlier early-stopped evaluation (as the evaluator reported) */
  resumedAfter: number;
}

const HEADER_FIELDS: (keyof EvalCacheHeader)[] = [
  'model',
  'modelSha256',
  'images',
  'compat',
  'seed',
  'batchSize',
  'earlyStop',
  'approximateMarginImages',
  'numberFormat',
  'calibrationImages',
  'calibrationSha256',
  'weightRange',
];

/** A header field's value for a message: the format's absence is 'fixed', a calibration's
 *  absence none, the weight range rule's absence 'max'. */
const headerValue = (f: keyof EvalCacheHeader, v: unknown, show: (v: unknown) => string): string =>
  v !== undefined
    ? show(v)
    : f === 'numberFormat'
      ? '"fixed"'
      : f === 'weightRange'
        ? '"max"'
        : f.startsWith('calibration')
          ? 'none'
          : show(v);

const keyOf = (method: QuantMethod, bits: BitConfig | BitLists) => `${method}|${configKey(bits)}`;

export class EvalCache {
  /** per method + bits: the exact-arithmetic evaluation that saw the most images */
  private readonly best = new Map<string, StoredEvaluation>();
  /** per method + bits: the latest approximate (fast-convolution) evaluation */
  private readonly approximate = new Map<string, StoredEvaluation>();
  /** evaluations read from the file when it was opened */
  readonly loaded: number;
  /** a line about the file as it was found (created, read, a torn last line dropped) */
  readonly note: string;
  private fd: number | null = null;

  /** `load` hands the evaluations it reads to `remember` (one kept per configuration, so a
   *  large file of repeats stays small) and returns their count and the note. */
  private constructor(
    readonly header: EvalCacheHeader,
    readonly file: string | null,
    load: (remember: (e: StoredEvaluation) => void) => { loaded: number; note: string },
  ) {
    const { loaded, note } = load((e) => this.remember(e));
    this.loaded = loaded;
    this.note = note;
  }

  /** A cache in memory only. */
  static inMemory(header: EvalCacheHeader): EvalCache {
    return new EvalCache(header, null, () => ({ loaded: 0, note: 'in memory' }));
  }

  /**
   * Opens (or creates) `file` for evaluations under `header`, each line checked against
   * `model` (readEvalCacheFile). Nothing is written to a file until its header and every line
   * are read and accepted: then a torn last line (a run killed mid-write) is cut off, and the
   * appends of this run follow. A path that does not exist is created with the header; an
   * empty regular file gets the header written into it; anything else that is not a regular
   * file (a folder, a device, a FIFO) is refused.
   */
  static open(file: string, header: EvalCacheHeader, model: EvalCacheModel): EvalCache {
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st === undefined) {
      writeFileAtomic(file, () => [Buffer.from(JSON.stringify(header) + '\n')]);
      return new EvalCache(header, file, () => ({ loaded: 0, note: `eval cache ${file}: created` }));
    }
    checkRegularFile(file, st);
    if (st.size === 0) {
      // an empty file (touch): the header goes into it, in place (its links and mode kept)
      const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_NONBLOCK);
      try {
        const now = fs.fstatSync(fd);
        checkRegularFile(file, now);
        if (now.size !== 0) throw cacheError(file, 'was written to while it was opened; run again');
        fs.writeSync(fd, JSON.stringify(header) + '\n');
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return new EvalCache(header, file, () => ({
        loaded: 0,
        note: `eval cache ${file}: created (in the empty file)`,
      }));
    }
    return new EvalCache(header, file, (remember) => {
      const read = readEvalCacheFile(file, header, model, remember);
      return {
        loaded: read.evaluations,
        note: `eval cache ${file}: ${read.evaluations} evaluations read${cutTail(file, read)}`,
      };
    });
  }

  private remember(e: StoredEvaluation): void {
    const key = keyOf(e.method, e.bits);
    if (e.approximate) {
      this.approximate.set(key, e);
      return;
    }
    const had = this.best.get(key);
    if (!had || e.seen > had.seen || (e.exact && !had.exact)) this.best.set(key, e);
  }

  /** The stored evaluation of these bits that saw the most images (exact arithmetic), if any. */
  get(method: QuantMethod, bits: BitConfig | BitLists): StoredEvaluation | undefined {
    return this.best.get(keyOf(method, bits));
  }

  getApproximate(method: QuantMethod, bits: BitConfig | BitLists): StoredEvaluation | undefined {
    return this.approximate.get(keyOf(method, bits));
  }

  /** Every stored evaluation (best per configuration), file and this run's. */
  entries(): StoredEvaluation[] {
    return [...this.best.values()];
  }

  /** Stores an evaluation (and appends it to the file: one write of a whole line, fsync). */
  add(method: QuantMethod, bits: BitConfig, e: Evaluation): StoredEvaluation {
    const s: StoredEvaluation = {
      method,
      bits: bitsToLists(bits),
      accuracy: e.accuracy,
      lower: e.lower,
      upper: e.upper,
      exact: e.exact,
      seen: e.seen,
      total: e.total,
      correct: Math.round((e.lower * e.total) / 100),
      batchCorrect: e.batchCorrect ? [...e.batchCorrect] : [],
      approximate: e.approximate === true,
      resumedAfter: e.resumedAfter ?? 0,
    };
    this.remember(s);
    if (this.file !== null) {
      this.fd ??= fs.openSync(this.file, 'a');
      const line = {
        method,
        w: s.bits.weightBits,
        a: s.bits.actBits,
        r: s.bits.routingBits,
        accuracy: s.accuracy,
        lower: s.lower,
        upper: s.upper,
        exact: s.exact,
        seen: s.seen,
        total: s.total,
        correct: s.correct,
        batchCorrect: s.batchCorrect,
        ...(s.approximate ? { approximate: true } : {}),
        ...(s.resumedAfter ? { resumedAfter: s.resumedAfter } : {}),
      };
      try {
        fs.writeSync(this.fd, JSON.stringify(line) + '\n');
        fs.fsyncSync(this.fd);
      } catch (err) {
        throw new Error(`eval cache ${this.file}: cannot append: ${(err as Error).message}`, { cause: err });
      }
    }
    return s;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** What the lines of a cache are checked against: the model's quantized layers (the bit
 *  counts a line may hold) and the number of images every evaluation runs on. */
export interface EvalCacheModel {
  layers: readonly QuantLayerInfo[];
  images: number;
}

/** A cache file as read (nothing changed): its count of evaluations, its size in bytes, and a
 *  last line without its line end: at `offset`, kept (a whole evaluation) or to be cut off. */
export interface EvalCacheRead {
  evaluations: number;
  bytes: number;
  tail: { offset: number; kept: boolean } | null;
}

/** The longest line a cache may hold (an evaluation with one count per batch is a few kB). */
export const EVAL_CACHE_MAX_LINE_BYTES = 16 * 2 ** 20;

const cacheError = (file: string, what: string): FileFormatError =>
  new FileFormatError(file, `eval cache ${file}: ${what}`);

function checkRegularFile(file: string, st: fs.Stats): void {
  if (st.isFile()) return;
  const kind = st.isDirectory()
    ? 'a folder'
    : st.isCharacterDevice()
      ? 'a character device'
      : st.isBlockDevice()
        ? 'a block device'
        : st.isFIFO()
          ? 'a FIFO (named pipe)'
          : st.isSocket()
            ? 'a socket'
            : 'not a regular file';
  throw cacheError(
    file,
    `is ${kind}; expected a regular file (an evaluation cache --eval-cache wrote) or a path that does not exist yet`,
  );
}

/**
 * Reads a cache file without changing it: line by line (a file of any size, no string longer
 * than one line), the header checked against `header` (a field that differs is an error
 * naming it), then every evaluation checked against the header and `model`
 * (checkStoredEvaluation). A line that is not a valid evaluation is an error naming the file
 * and the line: this tool writes each line whole, so such a line was edited or damaged, and
 * the search would otherwise pick a configuration on counts it never measured. Only a last
 * line without its line end is let pass (the torn write of a killed run): returned as `tail`.
 */
export function readEvalCacheFile(
  file: string,
  header: EvalCacheHeader,
  model: EvalCacheModel,
  onEvaluation: (e: StoredEvaluation) => void = () => {},
): EvalCacheRead {
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (st === undefined) throw cacheError(file, 'no such file');
  checkRegularFile(file, st);
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    checkRegularFile(file, fs.fstatSync(fd));
    let evaluations = 0;
    let lineNumber = 0;
    let headerSeen = false;
    const onLine = (text: string) => {
      lineNumber++;
      if (!headerSeen) {
        checkHeader(file, text, header);
        headerSeen = true;
      } else {
        onEvaluation(checkStoredEvaluation(text, `eval cache ${file}: line ${lineNumber}`, file, header, model));
        evaluations++;
      }
    };
    const { bytes, tailOffset } = readLines(fd, file, onLine);
    if (tailOffset === null) {
      if (!headerSeen) throw cacheError(file, 'is empty');
      return { evaluations, bytes, tail: null };
    }
    if (!headerSeen)
      throw cacheError(
        file,
        'not an evaluation cache: it has no line end, so no header line (a file --eval-cache writes starts with one); nothing was changed',
      );
    // the last line has no line end: kept when it is a whole evaluation, else torn
    const tail = Buffer.alloc(bytes - tailOffset);
    fs.readSync(fd, tail, 0, tail.length, tailOffset);
    let whole: StoredEvaluation | null = null;
    try {
      whole = checkStoredEvaluation(tail.toString('utf8'), '', file, header, model);
    } catch {
      whole = null;
    }
    if (whole) {
      onEvaluation(whole);
      evaluations++;
    }
    return { evaluations, bytes, tail: { offset: tailOffset, kept: whole !== null } };
  } finally {
    fs.closeSync(fd);
  }
}

/** Calls `onLine` with each line that ends in '\n' (decoded alone); returns the bytes read and
 *  where a last line without its line end starts (null: none). */
function readLines(
  fd: number,
  file: string,
  onLine: (text: string) => void,
): { bytes: number; tailOffset: number | null } {
  const chunk = Buffer.alloc(2 ** 20);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let offset = 0; // bytes read
  let lineStart = 0; // offset of the line in progress
  let lineNumber = 0;
  for (;;) {
    const n = fs.readSync(fd, chunk, 0, chunk.length, offset);
    if (n === 0) break;
    let from = 0;
    for (let nl = chunk.indexOf(10, 0); nl !== -1 && nl < n; nl = chunk.indexOf(10, from)) {
      const line = pending.length ? Buffer.concat([...pending, chunk.subarray(from, nl)]) : chunk.subarray(from, nl);
      pending = [];
      pendingBytes = 0;
      lineNumber++;
      if (line.length > EVAL_CACHE_MAX_LINE_BYTES) throw longLine(file, lineNumber);
      onLine(line.toString('utf8'));
      from = nl + 1;
      lineStart = offset + from;
    }
    if (from < n) {
      pending.push(Buffer.from(chunk.subarray(from, n)));
      pendingBytes += n - from;
      if (pendingBytes > EVAL_CACHE_MAX_LINE_BYTES) throw longLine(file, lineNumber + 1);
    }
    offset += n;
  }
  return { bytes: offset, tailOffset: lineStart < offset ? lineStart : null };
}

const longLine = (file: string, line: number) =>
  cacheError(
    file,
    `line ${line} is longer than ${EVAL_CACHE_MAX_LINE_BYTES / 2 ** 20} MiB; ${line === 1 ? 'not an evaluation cache' : 'expected one evaluation per line'}; nothing was changed`,
  );

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A header value for a message: JSON of a string, number or boolean; an array or object only
 *  named (a hostile one may nest deeper than JSON.stringify can recurse). */
const shown = (v: unknown): string =>
  v === null || typeof v !== 'object' ? String(JSON.stringify(v)) : Array.isArray(v) ? 'an array' : 'an object';

function checkHeader(file: string, line: string, header: EvalCacheHeader): void {
  let found: unknown;
  try {
    found = JSON.parse(line);
  } catch {
    found = undefined;
  }
  if (!isObject(found) || found.tool !== EVAL_CACHE_TOOL)
    throw cacheError(
      file,
      `not an evaluation cache: its first line is not the JSON header {"tool": "${EVAL_CACHE_TOOL}", ...} that --eval-cache writes; nothing was changed (name a new file, or one an earlier --eval-cache wrote)`,
    );
  if (found.version !== EVAL_CACHE_VERSION)
    throw cacheError(file, `version ${shown(found.version)}, this qcapsnets reads version ${EVAL_CACHE_VERSION}`);
  for (const f of HEADER_FIELDS)
    if (found[f] !== header[f])
      throw cacheError(
        file,
        `made with ${f} ${headerValue(f, found[f], shown)}, this run has ${f} ${headerValue(f, header[f], (v) => String(JSON.stringify(v)))}; ` +
          `use another --eval-cache file for this ${f === 'modelSha256' || f === 'model' ? 'model' : 'setting'}`,
      );
}

/**
 * One line of a cache as an evaluation, checked against what this tool writes: the method,
 * bits valid for the model (checkBitConfig), total = the cache's images, 0 <= correct <= seen
 * <= total (all of them when exact), per-batch counts within the batch size that cover the
 * images seen and sum to `correct`, and percentages that are those counts. `where` starts the
 * errors (the file and line; empty: the file alone).
 */
function checkStoredEvaluation(
  line: string,
  where: string,
  file: string,
  header: EvalCacheHeader,
  model: EvalCacheModel,
): StoredEvaluation {
  const fail = (what: string): never => {
    throw new FileFormatError(
      file,
      `${where || `eval cache ${file}`}: ${what}; this tool writes each line whole, so the line was edited or damaged: delete it (or the file) to go on`,
    );
  };
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    fail('not JSON; expected one evaluation per line');
  }
  if (!isObject(o)) return fail('not a JSON object; expected one evaluation per line');
  const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
  const nums = ['accuracy', 'lower', 'upper'] as const;
  const ints = ['seen', 'total', 'correct'] as const;
  const numbers = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number');
  if (
    typeof o.method !== 'string' ||
    !numbers(o.w) ||
    !numbers(o.a) ||
    !numbers(o.r) ||
    !nums.every((k) => typeof o[k] === 'number' && Number.isFinite(o[k])) ||
    !ints.every((k) => isInt(o[k])) ||
    typeof o.exact !== 'boolean' ||
    !(Array.isArray(o.batchCorrect) && o.batchCorrect.every(isInt)) ||
    !(o.approximate === undefined || typeof o.approximate === 'boolean') ||
    !(o.resumedAfter === undefined || isInt(o.resumedAfter))
  )
    fail(
      'expected method, w, a, r (arrays of bit counts), accuracy, lower, upper (numbers), exact (a boolean), ' +
        'seen, total, correct (integers), batchCorrect (an array of integers)',
    );
  if (!(QUANT_METHODS as readonly string[]).includes(o.method as string))
    fail(`method ${JSON.stringify(o.method)}: expected one of ${QUANT_METHODS.join(', ')}`);
  const bits: BitLists = { weightBits: o.w as number[], actBits: o.a as number[], routingBits: o.r as number[] };
  try {
    checkBitLists(model.layers, bits, 'bits', header.numberFormat ?? 'fixed');
  } catch (err) {
    fail(`${(err as Error).message} (w, a, r: the bits of ${header.model})`);
  }
  const [accuracy, lower, upper] = nums.map((k) => o[k] as number);
  const [seen, total, correct] = ints.map((k) => o[k] as number);
  const batchCorrect = o.batchCorrect as number[];
  const approximate = o.approximate === true;
  const resumedAfter = (o.resumedAfter as number | undefined) ?? 0;
  if (total !== model.images) fail(`total ${total}: this cache's evaluations run on ${model.images} images`);
  if (!(seen >= 0 && seen <= total)) fail(`seen ${seen}: expected 0..${total} images`);
  if (o.exact && seen !== total) fail(`exact with seen ${seen}: an exact evaluation sees all ${total} images`);
  if (approximate && o.exact) fail('approximate and exact: a fast-convolution evaluation is never exact');
  if (!(correct >= 0 && correct <= seen)) fail(`correct ${correct}: expected 0..${seen} (the images seen)`);
  if (!(resumedAfter >= 0 && resumedAfter <= seen)) fail(`resumedAfter ${resumedAfter}: expected 0..${seen}`);
  const b = header.batchSize;
  if (batchCorrect.length > 0) {
    const covered = Math.min(total, batchCorrect.length * b);
    if (covered !== seen)
      fail(`batchCorrect has ${batchCorrect.length} batches of ${b} images (${covered} images), seen is ${seen}`);
    let sum = 0;
    for (let i = 0; i < batchCorrect.length; i++) {
      const size = Math.min(b, total - i * b);
      if (!(batchCorrect[i] >= 0 && batchCorrect[i] <= size))
        fail(`batchCorrect[${i}] ${batchCorrect[i]}: expected 0..${size} (the images of that batch)`);
      sum += batchCorrect[i];
    }
    // a fast-convolution evaluation stores `correct` of its widened lower bound
    if (approximate ? sum < correct : sum !== correct) fail(`batchCorrect sums to ${sum}, correct is ${correct}`);
  }
  const near = (x: number, y: number) => Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(y));
  if (!(lower >= 0 && lower <= accuracy && accuracy <= upper && upper <= 100))
    fail(`accuracy ${accuracy}, lower ${lower}, upper ${upper}: expected 0 <= lower <= accuracy <= upper <= 100`);
  if (!approximate) {
    const want = [(correct * 100.0) / total, ((correct + total - seen) * 100.0) / total];
    if (!near(lower, want[0]) || !near(accuracy, want[0]) || !near(upper, want[1]))
      fail(
        `accuracy ${accuracy}, lower ${lower}, upper ${upper}: ${correct} correct of ${seen} seen (of ${total}) ` +
          `make ${want[0]}, ${want[0]} and ${want[1]}`,
      );
  }
  return {
    method: o.method as QuantMethod,
    bits,
    accuracy,
    lower,
    upper,
    exact: o.exact as boolean,
    seen,
    total,
    correct,
    batchCorrect,
    approximate,
    resumedAfter,
  };
}

/** Cuts off the torn last line of a cache whose header and lines were accepted (or adds the
 *  line end of a whole last evaluation); returns the note saying which. */
function cutTail(file: string, read: EvalCacheRead): string {
  if (read.tail === null) return '';
  // the header and every line are accepted: only now is the file changed
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_NONBLOCK);
  try {
    if (fs.fstatSync(fd).size !== read.bytes) throw cacheError(file, 'was appended to while it was read; run again');
    let note: string;
    if (read.tail.kept) {
      fs.writeSync(fd, '\n');
      note = '; its last line had no line end, one added';
    } else {
      fs.ftruncateSync(fd, read.tail.offset);
      note = `; a torn last line (${read.bytes - read.tail.offset} bytes, from a run stopped mid-write) dropped`;
    }
    fs.fsyncSync(fd);
    return note;
  } finally {
    fs.closeSync(fd);
  }
}

/** Counts of a caching evaluator: queries, and those the wrapped evaluator had to run. */
export interface CachingStats {
  queries: number;
  fromCache: number;
  computed: number;
  /** images the queries would have run on a fresh evaluator of each search (an evaluation
   *  resumed after an early stop of the same search counts only the rest) */
  imagesAsked: number;
  /** images the wrapped evaluator ran for the computed ones */
  imagesRun: number;
}

/**
 * An Evaluator that answers from an EvalCache when it can (see the file's comment) and stores
 * every evaluation the wrapped one makes. `beginSearch()` starts a new search: a fresh
 * evaluator's view, where an exact query after an early-stopped one says "resumed after".
 */
export class CachingEvaluator implements Evaluator {
  stats: CachingStats = { queries: 0, fromCache: 0, computed: 0, imagesAsked: 0, imagesRun: 0 };
  /** per configuration any query of this run asked about: its stored evaluation with the
   *  most images */
  readonly answered = new Map<string, StoredEvaluation>();
  /** this search's early-stopped answers (images seen), as a fresh evaluator's partials */
  private partials = new Map<string, number>();

  constructor(
    readonly inner: Evaluator,
    readonly cache: EvalCache,
    readonly method: QuantMethod,
  ) {}

  beginSearch(): void {
    this.partials = new Map();
  }

  async evaluate(bits: BitConfig, decided?: (lower: number, upper: number) => boolean): Promise<Evaluation> {
    this.stats.queries++;
    const key = configKey(bits);
    const resumedAfter = this.partials.get(key);
    const stored = this.cache.get(this.method, bits);
    let answer = stored ? this.replay(stored, decided) : null;
    if (!answer && decided) {
      // dac2020's fast-convolution answers keep their widened bounds; used when they decide
      const approx = this.cache.getApproximate(this.method, bits);
      if (approx && decided(approx.lower, approx.upper)) answer = { ...toEvaluation(approx), approximate: true };
    }
    if (answer) this.stats.fromCache++;
    else {
      if (stored && !stored.exact && stored.batchCorrect.length > 0)
        this.inner.resumeAfter?.(bits, stored.batchCorrect);
      answer = await this.inner.evaluate(bits, decided);
      this.cache.add(this.method, bits, answer);
      this.stats.computed++;
      this.stats.imagesRun += answer.seen - (answer.resumedAfter ?? 0);
    }
    // "resumed after": what this search's own evaluator would say, whatever the cache held
    if (resumedAfter !== undefined && answer.seen > resumedAfter && !answer.approximate)
      answer.resumedAfter = resumedAfter;
    else delete answer.resumedAfter;
    this.stats.imagesAsked += answer.seen - (answer.resumedAfter ?? 0);
    if (answer.exact) this.partials.delete(key);
    else if (!answer.approximate) this.partials.set(key, answer.seen);
    const best = this.cache.get(this.method, bits);
    if (best && !answer.approximate) this.answered.set(key, best);
    return answer;
  }

  /** What a fresh evaluation of `stored`'s configuration would return for `decided`, from the
   *  stored batches; null when they do not reach its answer. */
  private replay(stored: StoredEvaluation, decided?: (lower: number, upper: number) => boolean): Evaluation | null {
    const { total } = stored;
    const batchSize = this.cache.header.batchSize;
    if (decided && this.cache.header.earlyStop) {
      // the same test, on the same expressions, as FastEvaluator after each batch
      let correct = 0;
      for (let b = 0; b < stored.batchCorrect.length; b++) {
        correct += stored.batchCorrect[b];
        const seen = Math.min(total, (b + 1) * batchSize);
        if (seen >= total) break;
        const lower = (correct * 100.0) / total;
        const upper = ((correct + total - seen) * 100.0) / total;
        if (decided(lower, upper)) return { accuracy: lower, lower, upper, exact: false, seen, total, seconds: 0 };
      }
    }
    return stored.exact ? toEvaluation(stored) : null;
  }
}

function toEvaluation(s: StoredEvaluation): Evaluation {
  return {
    accuracy: s.accuracy,
    lower: s.lower,
    upper: s.upper,
    exact: s.exact,
    seen: s.seen,
    total: s.total,
    seconds: 0,
    ...(s.batchCorrect.length ? { batchCorrect: [...s.batchCorrect] } : {}),
  };
}
