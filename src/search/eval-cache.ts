// The evaluation cache: every evaluation of a configuration (bits + rounding method) on one
// model file and one set of test images, kept in memory and, with a file, appended to it as
// JSON lines so that a later search or sweep (or the rerun of a killed one) reuses them.
//
// File: line 1 the header (what the evaluations depend on: the model file's sha256, the test
// images' fingerprint, arithmetic, seed, batch size, early stop); each later line one
// evaluation: {method, w, a, r, accuracy, lower, upper, exact, seen, total, correct,
// batchCorrect, ...}. A line is appended with one write and fsync'd, so a killed run leaves at
// most a torn last line, which the next open drops with a note.
//
// Queries are answered as a fresh evaluator would answer them, so the search makes the same
// calls and decisions, and prints the same lines, with or without the cache: an evaluation
// stored with its correct count per batch (batchCorrect) is replayed batch by batch against
// the query's `decided` predicate and answers with the bounds at the first batch where the
// decision is certain (where the evaluator itself would have stopped); when the stored batches
// do not reach that far, the evaluator resumes after them (Evaluator.resumeAfter).
import * as fs from 'node:fs';
import type { BitConfig, BitLists } from '../quant/config.js';
import { bitsToLists, configKey } from '../quant/config.js';
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
];

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

  private constructor(
    readonly header: EvalCacheHeader,
    readonly file: string | null,
    stored: StoredEvaluation[],
    note: string,
  ) {
    for (const e of stored) this.remember(e);
    this.loaded = stored.length;
    this.note = note;
  }

  /** A cache in memory only. */
  static inMemory(header: EvalCacheHeader): EvalCache {
    return new EvalCache(header, null, [], 'in memory');
  }

  /**
   * Opens (or creates) `file` for evaluations under `header`. A header that differs in any
   * field is an error naming the file and the field; a torn last line (a run killed mid-write)
   * is dropped with a note; any other unreadable line is an error naming the file and line.
   */
  static open(file: string, header: EvalCacheHeader): EvalCache {
    if (!fs.existsSync(file) || fs.statSync(file).size === 0) {
      if (fs.existsSync(file) && fs.statSync(file).isDirectory())
        throw new Error(`eval cache ${file}: is a folder, expected a file`);
      writeFileAtomic(file, () => [Buffer.from(JSON.stringify(header) + '\n')]);
      return new EvalCache(header, file, [], `eval cache ${file}: created`);
    }
    if (fs.statSync(file).isDirectory()) throw new Error(`eval cache ${file}: is a folder, expected a file`);
    let text = fs.readFileSync(file, 'utf8');
    let note = '';
    const end = text.lastIndexOf('\n');
    if (end < text.length - 1) {
      // a torn last line: cut it off so that the next append starts a line of its own
      const torn = text.length - end - 1;
      if (end < 0) throw new Error(`eval cache ${file}: no complete header line; delete the file to start afresh`);
      fs.truncateSync(file, Buffer.byteLength(text.slice(0, end + 1)));
      text = text.slice(0, end + 1);
      note = `; a torn last line (${torn} bytes, from a run stopped mid-write) dropped`;
    }
    const lines = text.split('\n').slice(0, -1);
    let found: Partial<EvalCacheHeader>;
    try {
      found = JSON.parse(lines[0]) as Partial<EvalCacheHeader>;
    } catch {
      throw new Error(`eval cache ${file}: line 1 is not a JSON header; expected a file written by --eval-cache`);
    }
    if (found.tool !== EVAL_CACHE_TOOL)
      throw new Error(
        `eval cache ${file}: not an evaluation cache (its first line has no "tool": "${EVAL_CACHE_TOOL}")`,
      );
    if (found.version !== EVAL_CACHE_VERSION)
      throw new Error(
        `eval cache ${file}: version ${found.version}, this qcapsnets reads version ${EVAL_CACHE_VERSION}`,
      );
    for (const f of HEADER_FIELDS)
      if (found[f] !== header[f])
        throw new Error(
          `eval cache ${file}: made with ${f} ${JSON.stringify(found[f])}, this run has ${f} ${JSON.stringify(header[f])}; ` +
            `use another --eval-cache file for this ${f === 'modelSha256' || f === 'model' ? 'model' : 'setting'}`,
        );
    const stored = lines.slice(1).map((line, i) => parseLine(line, `eval cache ${file}: line ${i + 2}`));
    const c = new EvalCache(header, file, stored, `eval cache ${file}: ${stored.length} evaluations read${note}`);
    return c;
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
  get(method: QuantMethod, bits: BitConfig): StoredEvaluation | undefined {
    return this.best.get(keyOf(method, bits));
  }

  getApproximate(method: QuantMethod, bits: BitConfig): StoredEvaluation | undefined {
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

function parseLine(line: string, where: string): StoredEvaluation {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`${where}: not JSON; expected one evaluation per line`);
  }
  const ints = (v: unknown) => Array.isArray(v) && v.every((x) => Number.isInteger(x));
  const nums = ['accuracy', 'lower', 'upper', 'seen', 'total', 'correct'];
  if (
    typeof o.method !== 'string' ||
    !ints(o.w) ||
    !ints(o.a) ||
    !ints(o.r) ||
    !nums.every((k) => typeof o[k] === 'number') ||
    typeof o.exact !== 'boolean' ||
    !ints(o.batchCorrect)
  )
    throw new Error(
      `${where}: expected method, w, a, r, accuracy, lower, upper, exact, seen, total, correct, batchCorrect`,
    );
  return {
    method: o.method as QuantMethod,
    bits: { weightBits: o.w as number[], actBits: o.a as number[], routingBits: o.r as number[] },
    accuracy: o.accuracy as number,
    lower: o.lower as number,
    upper: o.upper as number,
    exact: o.exact,
    seen: o.seen as number,
    total: o.total as number,
    correct: o.correct as number,
    batchCorrect: o.batchCorrect as number[],
    approximate: o.approximate === true,
    resumedAfter: typeof o.resumedAfter === 'number' ? o.resumedAfter : 0,
  };
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
