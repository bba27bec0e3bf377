// Full-precision training and evaluation of capsule networks (SPEC 3): trainModel for the
// CLI's training, evaluateModel for its `evaluate` subcommand.
export { trainModel } from './trainer.js';
export {
  evaluateModel,
  countCorrect,
  predictedClass,
  marginLossValue,
  type EvaluationResult,
  type EvaluateOptions,
} from './evaluate.js';
export { TRAIN_DEFAULTS, type TrainOptions, type ModuleSpec } from './options.js';
export type { EpochSummary, TrainSummary } from './summary.js';
export { learningRate, isHardEpoch, firstHardEpoch } from './schedule.js';
export {
  defaultCheckpointPath,
  readTrainingCheckpoint,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  type TrainingState,
  type RunSettings,
} from './checkpoint.js';
export { checkModelFitsDataset, checkDecoderFits, decoderOutputShape } from './checks.js';
export {
  ProgressReporter,
  formatDuration,
  type ProgressMode,
  type ProgressStream,
  type StepReport,
} from './progress.js';
