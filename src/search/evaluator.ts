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
}

export interface Evaluator {
  evaluate(bits: BitConfig, decided?: (lower: number, upper: number) => boolean): Promise<Evaluation>;
}
