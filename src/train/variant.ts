// A run of training's loop through another forward than the float one. Fine-tuning through the
// quantized forward (src/search/finetune.ts) is one: it keeps training's loss (margin +
// reconstruction), schedule, data order, progress, checkpoints, resume and non-finite handling,
// and says here how a step's forward and backward run, what the test pass after each epoch
// measures, and what its checkpoints record so that a resumed run is the same run. A variant run
// writes no best model (its caller decides what to keep) and writes checkpoints only where
// TrainOptions.checkpointFilename names a file.
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import type { Distillation, TrainingStepResult } from '../models/training-step.js';
import type { QuantHooks } from '../nn/module.js';
import type { EvaluationResult } from './evaluate.js';

export interface TrainingVariant {
  /** what the run is, in messages and in its checkpoints ('fine-tuning') */
  readonly kind: string;
  /** what decides the run's numbers beside training's settings (JSON values), recorded in its
   *  checkpoints: a resumed run must have the same */
  readonly settings: Readonly<Record<string, unknown>>;
  /** One optimizer step's forward and backward: calls `run` (training's step: the model's
   *  forward through `quant`, the decoder, the loss and the backward) once, with whatever the
   *  variant does around it; the gradients it leaves are the ones the optimizer applies. */
  step(globalStep: number, run: (quant: QuantHooks | null) => TrainingStepResult): TrainingStepResult;
  /** the test pass after each epoch */
  test(
    model: CapsNet,
    data: Dataset,
    batchSize: number,
    onBatch: (done: number, total: number) => void,
  ): EvaluationResult | Promise<EvaluationResult>;
  /** how the log names that pass ('Quantized test') */
  readonly testName: string;
  /** distillation: every step's loss also pulls the class capsules towards `teacher`'s
   *  (trainingStep, TrainingStepOptions.distill); absent: none */
  readonly distill?: Distillation;
}

/** What a checkpoint records of its run's variant (absent: a training run). */
export interface VariantState {
  kind: string;
  settings: Record<string, unknown>;
}
