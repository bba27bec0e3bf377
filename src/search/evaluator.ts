// What the search asks of an evaluator: the test accuracy (percent) of a bit configuration.
// An evaluation may stop early once a decision is certain: `decided(lower, upper)` gets the
// bounds of the accuracy still possible and returns true when the step's pass/fail no
// longer depends on the images left.
import type { BitConfig } from '../quant/config.js';

export interface Evaluation {
  /** accuracy in percent: exact, or the lower bound when the evaluation stopped early */
  accuracy: number;
  lower: number;
  upper: number;
  exact: boolean;
  /** images seen and total */
  seen: number;
  total: number;
  seconds: number;
  /** the images seen by an earlier evaluation of the same configuration that stopped early,
   *  counted in and not run again */
  resumedAfter?: number;
  /** computed with the fast (DFT/Winograd) convolutions under dac2020 arithmetic; the bounds
   *  include the safety margin (see FastEvaluatorOptions.approximateMargin) */
  approximate?: boolean;
  /** correct images of each batch seen, in evaluation order, from the first batch (a resumed
   *  evaluation's too), when the evaluator counts per batch: a later query with another
   *  threshold can then find where this evaluation would have stopped (src/search/eval-cache.ts) */
  batchCorrect?: number[];
}

export interface Evaluator {
  evaluate(bits: BitConfig, decided?: (lower: number, upper: number) => boolean): Promise<Evaluation>;
  /** Optional: continue a configuration's next evaluation after the batches whose correct
   *  counts are given (an early-stopped evaluation of an earlier run, read from a file), as
   *  if this evaluator had stopped there itself. */
  resumeAfter?(bits: BitConfig, batchCorrect: readonly number[]): void;
}
