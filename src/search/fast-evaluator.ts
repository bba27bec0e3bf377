// The search's evaluator (issue: fast evaluator that changes no decision):
//  (a) reuse: the output of every leading run of layers is kept, per batch, for the last few
//      configuration prefixes evaluated (weight, activation and routing bits of those layers;
//      the least recently used go first), within a memory bound; an evaluation whose prefix
//      matches starts after it. (Step 3B returns to its last passing configuration after each
//      failed try, so the next try shares that configuration's leading layers.) Outputs
//      that cost less to recompute than to hold are not kept: fresh memory costs about
//      FRESH_MS_PER_MB (page faults), and ShallowCapsNet's first convolution, for one, makes
//      41 MB per 100 images in 14 ms;
//  (b) early stop: after each batch the accuracy is bounded by [correct, correct + unseen]
//      out of all images; once the step's pass/fail cannot change the evaluation stops;
//  (c) batches always run in the same order: hardest images first. The full-precision pass
//      ranks the images by their margin (label capsule against the longest other one), so
//      that a failing configuration meets its misses, and its certain fail, within the first
//      batches; a passing one needs nearly every image whatever the order;
//  (d) resume: an evaluation that stopped early keeps its counts, so a later evaluation of
//      the same configuration (a final model's exact accuracy, another threshold) runs only
//      the batches it did not see.
import type { CapsNet } from '../models/capsnet.js';
import { evaluateFullPrecision, type ImageSource, sourceBatch } from '../models/evaluate.js';
import { countCorrect } from '../models/metrics.js';
import { type BitConfig, bitsToLists } from '../quant/config.js';
import type { ModelQuantizer } from '../quant/quantized-forward.js';
import { give } from '../tensor/pool.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Evaluation, Evaluator } from './evaluator.js';

export interface FastEvaluatorOptions {
  batchSize: number;
  /** memory for reused intermediate results, MB (0 disables reuse) */
  cacheMB: number;
  /** stop an evaluation once its pass/fail is certain */
  earlyStop: boolean;
  /** Under dac2020 arithmetic (exact-order convolutions), first try the fast convolutions and
   *  keep their answer when it is decided with this margin (percent points) to spare; else
   *  evaluate again exactly. null: always exact. Final accuracies are always exact. */
  approximateMargin?: number | null;
  /** 'hardest-first' (default): batches follow the full-precision margins once
   *  evaluateFullPrecision has run; 'dataset': the test set's own order */
  order?: 'hardest-first' | 'dataset';
  /** called after each batch (progress bars) */
  onBatch?: (done: number, total: number) => void;
}

interface PrefixCache {
  key: string;
  states: (Tensor | undefined)[];
  bytes: number;
  /** too big for the budget, or cheaper to recompute: not kept for this key */
  skip: boolean;
  /** when an evaluation last used it (for least-recently-used eviction) */
  lastUse: number;
}

/** Prefixes kept per depth. */
const PREFIXES_PER_DEPTH = 4;

/** What a fresh megabyte costs (page faults), for the choice of what to keep (see (a)). */
const FRESH_MS_PER_MB = 1;

/** Where an evaluation that stopped early stood. */
interface Partial {
  nextBatch: number;
  correct: number;
  seen: number;
  /** correct images per batch so far */
  batchCorrect: number[];
}

export class FastEvaluator implements Evaluator {
  /** per depth d (the input of stage d): the kept prefixes, by key */
  private readonly caches: Map<string, PrefixCache>[];
  private uses = 0;
  private readonly numBatches: number;
  /** position -> image index (null: the dataset's order) and the labels in that order */
  private order: Int32Array | null = null;
  private labels: Int32Array;
  private readonly partials = new Map<string, Partial>();
  /** milliseconds per batch of each stage (a running mean), for the choice of what to keep */
  private readonly stageMs: Float64Array;
  /** evaluations and batches actually computed, for the report */
  stats = { evaluations: 0, batchesRun: 0, stagesRun: 0, stagesReused: 0, approximateRedone: 0 };

  constructor(
    readonly model: CapsNet,
    readonly quantizer: ModelQuantizer,
    readonly data: ImageSource,
    readonly opts: FastEvaluatorOptions,
  ) {
    if (!(Number.isInteger(opts.batchSize) && opts.batchSize >= 1))
      throw new Error(`FastEvaluator: batchSize ${opts.batchSize}: expected a positive integer`);
    if (data.count < 1) throw new Error('FastEvaluator: the test images are empty');
    this.caches = model.stages.map(() => new Map());
    this.stageMs = new Float64Array(model.stages.length);
    this.numBatches = Math.ceil(data.count / opts.batchSize);
    this.labels = data.labels;
  }

  /** Image indices in evaluation order (hardest first after the full-precision pass). */
  get imageOrder(): Int32Array {
    return this.order ?? Int32Array.from({ length: this.data.count }, (_, i) => i);
  }

  private setOrder(order: Int32Array): void {
    this.clear(); // cached batches and partial counts belong to the old batches
    this.order = order;
    this.labels = Int32Array.from(order, (i) => this.data.labels[i]);
  }

  /** The key of the first `depth` layers' bits and number formats (and of the convolution
   *  algorithms used). A layer's quantizers depend on its own bits and format alone (under
   *  'dynamic' with the quantizer's one calibration), so equal keys are equal outputs. */
  private prefixKey(bits: BitConfig, depth: number): string {
    const prefix = bits.slice(0, depth);
    const { weightBits, actBits, routingBits } = bitsToLists(prefix);
    const formats = prefix.map((b) => (b.format === 'dynamic' ? 'd' : 'f')).join('');
    return `${this.quantizer.fastConv ? 'fast' : 'exact'}|${formats}|w${weightBits}|a${actBits}|r${routingBits}`;
  }

  private peakBytes = 0;

  /** Bytes of intermediate results held now, and the most held at once since construction
   *  (at most cacheMB * 2^20: a prefix is kept only when all its batches fit). */
  get cacheBytes(): number {
    return this.cachedBytes();
  }
  get peakCacheBytes(): number {
    return this.peakBytes;
  }

  private cachedBytes(): number {
    let sum = 0;
    for (const m of this.caches) for (const c of m.values()) sum += c.bytes;
    return sum;
  }

  private drop(depth: number, key: string): void {
    const c = this.caches[depth].get(key);
    if (c) for (const t of c.states) if (t) give(t.data);
    this.caches[depth].delete(key);
  }

  /** Frees the least recently used prefix, of one depth or of any, among those the running
   *  evaluation (use number `current`) does not use; false when there is none. With no depth,
   *  only prefixes that hold memory count. */
  private evictOne(current: number, depth?: number): boolean {
    let victim: [number, PrefixCache] | null = null;
    this.caches.forEach((m, d) => {
      if (depth !== undefined && d !== depth) return;
      for (const c of m.values())
        if (c.lastUse < current && (depth !== undefined || c.bytes > 0) && (!victim || c.lastUse < victim[1].lastUse))
          victim = [d, c];
    });
    if (!victim) return false;
    const [d, c] = victim as [number, PrefixCache];
    this.drop(d, c.key);
    return true;
  }

  /** Frees every kept intermediate result. */
  clear(): void {
    this.caches.forEach((m, d) => [...m.keys()].forEach((k) => this.drop(d, k)));
    this.partials.clear();
  }

  private batchImages(b: number): { x: Tensor; labels: Int32Array } {
    return { x: sourceBatch(this.data, b, this.opts.batchSize, this.order), labels: this.batchLabels(b) };
  }

  async evaluate(bits: BitConfig, decided?: (lower: number, upper: number) => boolean): Promise<Evaluation> {
    const margin = this.opts.approximateMargin ?? null;
    if (decided && margin !== null && !this.quantizer.fastConv) {
      const t0 = performance.now();
      this.quantizer.fastConv = true;
      let e: Evaluation;
      try {
        e = await this.run(bits, (lo, hi) => decided(Math.max(0, lo - margin), Math.min(100, hi + margin)));
      } finally {
        this.quantizer.fastConv = false;
      }
      const lower = Math.max(0, e.lower - margin);
      const upper = Math.min(100, e.upper + margin);
      if (decided(lower, upper))
        return {
          ...e,
          lower,
          upper,
          accuracy: e.lower,
          exact: false,
          approximate: true,
          seconds: (performance.now() - t0) / 1000,
        };
      this.stats.approximateRedone++;
    }
    return this.run(bits, decided);
  }

  private async run(bits: BitConfig, decided?: (lower: number, upper: number) => boolean): Promise<Evaluation> {
    const t0 = performance.now();
    const stages = this.model.stages;
    const L = stages.length;
    this.model.eval();
    this.quantizer.applyWeights(bits);
    // depth d holds the input of stage d (the output of stages 0..d-1), d = 1..L-1
    const keys = stages.map((_, d) => (d === 0 ? '' : this.prefixKey(bits, d)));
    const use = ++this.uses;
    const current: (PrefixCache | undefined)[] = stages.map(() => undefined);
    for (let d = 1; d < L && this.opts.cacheMB > 0; d++) {
      const m = this.caches[d];
      let c = m.get(keys[d]);
      if (!c) {
        // the oldest prefix of this depth makes room
        while (m.size >= PREFIXES_PER_DEPTH && this.evictOne(use, d));
        c = { key: keys[d], states: [], bytes: 0, skip: false, lastUse: use };
        m.set(keys[d], c);
      }
      c.lastUse = use;
      current[d] = c;
    }
    const budget = this.opts.cacheMB * 2 ** 20;
    const configKey = this.prefixKey(bits, L);
    const resumed = this.partials.get(configKey);
    this.partials.delete(configKey);
    let correct = resumed?.correct ?? 0;
    let seen = resumed?.seen ?? 0;
    const batchCorrect = resumed ? [...resumed.batchCorrect] : [];
    const total = this.data.count;
    let exact = true;
    this.stats.evaluations++;
    for (let b = resumed?.nextBatch ?? 0; b < this.numBatches; b++) {
      let start = 0;
      for (let d = L - 1; d >= 1; d--) {
        if (current[d]?.states[b]) {
          start = d;
          break;
        }
      }
      const { x, labels } = start === 0 ? this.batchImages(b) : { x: undefined, labels: this.batchLabels(b) };
      let input = start === 0 ? x! : current[start]!.states[b]!;
      let ownsInput = start === 0;
      const ctx = { training: false, quant: this.quantizer.hooks(bits, b) };
      this.stats.stagesReused += start;
      for (let s = start; s < L; s++) {
        const ts = performance.now();
        const out = stages[s].run(input, ctx);
        const ms = performance.now() - ts;
        this.stageMs[s] = this.stageMs[s] === 0 ? ms : 0.75 * this.stageMs[s] + 0.25 * ms;
        this.stats.stagesRun++;
        if (ownsInput) give(input.data);
        input = out;
        ownsInput = true;
        const depth = s + 1;
        const c = depth < L ? current[depth] : undefined;
        if (c && !c.skip && !c.states[b]) {
          if (c.bytes === 0) {
            // keep this prefix only if reuse saves more per batch (running stages 0..s again)
            // than fresh memory for it costs, and older prefixes (least recently used first)
            // can make room within the budget
            const projected = out.data.byteLength * this.numBatches;
            const savedMs = this.stageMs.subarray(0, depth).reduce((a, b) => a + b, 0);
            const heldMs = (FRESH_MS_PER_MB * out.data.byteLength) / 2 ** 20;
            if (savedMs < heldMs) c.skip = true;
            else {
              while (this.cachedBytes() + projected > budget && this.evictOne(use));
              if (this.cachedBytes() + projected > budget) c.skip = true;
            }
          }
          if (!c.skip) {
            c.states[b] = out;
            c.bytes += out.data.byteLength;
            this.peakBytes = Math.max(this.peakBytes, this.cachedBytes());
            ownsInput = false; // the cache keeps it
          }
        }
      }
      const caps = input;
      const right = countCorrect(caps, labels);
      batchCorrect.push(right);
      correct += right;
      seen += caps.shape[0];
      if (ownsInput) give(caps.data);
      this.stats.batchesRun++;
      this.opts.onBatch?.(b + 1, this.numBatches);
      if (this.opts.earlyStop && decided && seen < total) {
        const lower = (correct * 100.0) / total;
        const upper = ((correct + total - seen) * 100.0) / total;
        if (decided(lower, upper)) {
          exact = false;
          this.partials.set(configKey, { nextBatch: b + 1, correct, seen, batchCorrect: [...batchCorrect] });
          break;
        }
      }
    }
    const lower = (correct * 100.0) / total;
    const upper = ((correct + total - seen) * 100.0) / total;
    return {
      accuracy: lower,
      lower,
      upper,
      exact,
      seen,
      total,
      seconds: (performance.now() - t0) / 1000,
      ...(resumed ? { resumedAfter: resumed.seen } : {}),
      batchCorrect,
    };
  }

  /** Seeds the partial count of an evaluation that stopped early after these batches (in an
   *  earlier run), so that the next evaluation of `bits` runs only the batches after them, as
   *  after an early stop of its own. Ignored when this evaluator holds a partial already, or
   *  when the counts do not fit its batches. Call after evaluateFullPrecision (the order). */
  resumeAfter(bits: BitConfig, batchCorrect: readonly number[]): void {
    const key = this.prefixKey(bits, this.model.stages.length);
    const n = batchCorrect.length;
    if (this.partials.has(key) || n < 1 || n >= this.numBatches) return;
    const correct = batchCorrect.reduce((a, b) => a + b, 0);
    this.partials.set(key, { nextBatch: n, correct, seen: n * this.opts.batchSize, batchCorrect: [...batchCorrect] });
  }

  /** Full-precision accuracy (no quantization, the model's own parameters), a full pass. */
  async evaluateFullPrecision(): Promise<Evaluation> {
    this.quantizer.restore();
    const fp = evaluateFullPrecision(this.model, this.data, {
      batchSize: this.opts.batchSize,
      order: this.order,
      onBatch: (done) => this.opts.onBatch?.(Math.ceil(done / this.opts.batchSize), this.numBatches),
    });
    if ((this.opts.order ?? 'hardest-first') === 'hardest-first') {
      // smallest margin first; ties keep the dataset's order
      const m = fp.margins;
      const order = Int32Array.from({ length: m.length }, (_, i) => i).sort((i, j) =>
        m[i] < m[j] ? -1 : m[i] > m[j] ? 1 : i - j,
      );
      this.setOrder(order);
    }
    return {
      accuracy: fp.accuracy,
      lower: fp.accuracy,
      upper: fp.accuracy,
      exact: true,
      seen: fp.total,
      total: fp.total,
      seconds: fp.seconds,
    };
  }

  private batchLabels(b: number): Int32Array {
    const i0 = b * this.opts.batchSize;
    return this.labels.subarray(i0, Math.min(this.data.count, i0 + this.opts.batchSize));
  }
}
