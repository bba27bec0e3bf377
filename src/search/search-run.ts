// One run of the Q-CapsNets search as its steps see it: the tests of configurations against a
// step's threshold (each evaluated once, or again only when an early-stopped evaluation cannot
// decide a new threshold), the exact accuracy of each step's output, the record of every
// evaluation and step result, and the log lines. The decisions live in qcapsnets.ts.
import type { BitConfig, NumberFormat } from '../quant/config.js';
import { bitsText, bitsToLists, cloneBits, configKey, formatOf } from '../quant/config.js';
import type { RoundingCompat } from '../quant/methods.js';
import { activationMemoryBits, BITS_PER_MB, configMemoryBits, type MemoryLayer } from '../quant/memory.js';
import type { Evaluation, Evaluator } from './evaluator.js';

export interface SearchSettings {
  fpAccuracy: number;
  tolerance: number;
  memoryBudgetMB: number;
  compat: RoundingCompat;
  /** the configurations' number format (default 'fixed'): under 'dynamic' every count is a
   *  total width (docs/quantization.md) */
  numberFormat?: NumberFormat;
  /** elements per image at each layer's activation points (activationCounts), for the
   *  activation memory printed beside the weight memory; absent: not reported */
  activationCounts?: readonly number[];
}

export type StepName = 'step1' | 'step2' | 'step3A' | 'step4A' | 'step3B';

export interface EvaluationRecord extends Evaluation {
  step: StepName;
  bits: BitConfig;
  /** the step's test: accuracy > or >= threshold */
  threshold: number;
  strict: boolean;
  passed: boolean;
  cached: boolean;
}

export interface StepResult {
  step: StepName;
  bits: BitConfig;
  accuracy: number;
  memoryMB: number;
  reduction: number;
  /** activation memory per image in kB (1 kB = 8,000 bits) and its reduction against 32 bits,
   *  when the settings give activationCounts */
  activationKB?: number;
  activationReduction?: number;
}

export interface SearchLog {
  info(line: string): void;
  /** called as each step starts (progress displays) */
  step?(step: StepName): void;
}

export class SearchRun {
  readonly evaluations: EvaluationRecord[] = [];
  readonly steps: StepResult[] = [];
  readonly notes: string[] = [];
  /** configKey -> the evaluation kept for it (an exact one wins over an early-stopped one) */
  private readonly cache = new Map<string, Evaluation>();

  constructor(
    private readonly layers: readonly MemoryLayer[],
    private readonly settings: SearchSettings,
    private readonly evaluator: Evaluator,
    private readonly log: SearchLog,
  ) {}

  /** Announces a step: the progress display's hook and the step's title line. */
  startStep(step: StepName, title: string): void {
    this.log.step?.(step);
    this.log.info(title);
  }

  /** A note in the result and the log (a step that could not do what it is meant to). */
  note(text: string): void {
    this.notes.push(text);
    this.log.info(`  ${text}`);
  }

  /** Evaluates (or reuses) a configuration against `acc > t` (strict) or `acc >= t`. */
  async test(step: StepName, bits: BitConfig, threshold: number, strict: boolean): Promise<EvaluationRecord> {
    const pass = (acc: number) => (strict ? acc > threshold : acc >= threshold);
    const key = configKey(bits);
    let e = this.cache.get(key);
    let cached = true;
    if (!e || (!e.exact && pass(e.lower) !== pass(e.upper))) {
      cached = false;
      e = await this.evaluator.evaluate(bits, (lo, hi) => pass(lo) === pass(hi));
      const prev = this.cache.get(key);
      if (!prev || e.exact || !prev.exact) this.cache.set(key, e);
    }
    const rec: EvaluationRecord = {
      ...e,
      step,
      bits: cloneBits(bits),
      threshold,
      strict,
      passed: pass(e.lower),
      cached,
    };
    this.evaluations.push(rec);
    this.logTest(rec, e);
    return rec;
  }

  private logTest(rec: EvaluationRecord, e: Evaluation): void {
    const { step, bits, strict, threshold, cached } = rec;
    const resumed = e.resumedAfter ? ` (resumed after ${e.resumedAfter} images)` : '';
    const acc = e.exact
      ? `${e.accuracy.toFixed(2)}%${resumed}`
      : `in [${e.lower.toFixed(2)}, ${e.upper.toFixed(2)}]% after ${e.seen}/${e.total} images (decided early)`;
    this.log.info(
      `  ${step} try ${bitsText(bits)}: ${acc} ${rec.passed ? 'passes' : 'fails'} ` +
        `${strict ? '>' : '>='} ${threshold.toFixed(2)}%${cached ? ' (reused)' : ''}`,
    );
  }

  /** The exact accuracy of a configuration: a full pass, or the rest of one that stopped
   *  early (the evaluator resumes it), unless one was done already. */
  async exact(step: StepName, bits: BitConfig): Promise<number> {
    const hit = this.cache.get(configKey(bits));
    if (hit?.exact) return hit.accuracy;
    const e = await this.evaluator.evaluate(bits);
    this.cache.set(configKey(bits), e);
    this.evaluations.push({
      ...e,
      step,
      bits: cloneBits(bits),
      threshold: NaN,
      strict: false,
      passed: true,
      cached: false,
    });
    return e.accuracy;
  }

  /** A step's output at its exact accuracy: recorded, logged, and returned. */
  async finishStep(step: StepName, bits: BitConfig): Promise<StepResult> {
    return this.report(step, bits, await this.exact(step, bits));
  }

  /** Records and logs a step's output: its bits, accuracy and memory. */
  report(step: StepName, bits: BitConfig, accuracy: number): StepResult {
    const lists = bitsToLists(bits);
    const mem = configMemoryBits(this.layers, bits);
    const fp32Bits = this.layers.reduce((a, l) => a + l.paramCount, 0) * 32;
    const r: StepResult = {
      step,
      bits: cloneBits(bits),
      accuracy,
      memoryMB: mem / BITS_PER_MB,
      reduction: fp32Bits / mem,
    };
    const counts = this.settings.activationCounts;
    if (counts) {
      const act = activationMemoryBits(counts, lists.actBits, formatOf(bits));
      r.activationKB = act / 8000;
      r.activationReduction = (counts.reduce((a, b) => a + b, 0) * 32) / act;
    }
    this.steps.push(r);
    this.logStep(r);
    return r;
  }

  private logStep(r: StepResult): void {
    const lists = bitsToLists(r.bits);
    const log = this.log;
    log.info(`${r.step.toUpperCase()} output:`);
    log.info(`  weight bits:          [${lists.weightBits.join(', ')}]`);
    log.info(`  activation bits:      [${lists.actBits.join(', ')}]`);
    log.info(`  dynamic routing bits: [${lists.routingBits.join(', ')}]`);
    log.info(
      `  accuracy: ${r.accuracy.toFixed(2)}%   weight memory: ${r.memoryMB.toFixed(4)} MB (${r.reduction.toFixed(2)}x smaller than 32 bits)`,
    );
    if (r.activationKB !== undefined)
      log.info(
        `  activation memory: ${r.activationKB.toFixed(1)} kB per image (${r.activationReduction!.toFixed(2)}x smaller than 32 bits)`,
      );
  }
}
