// Full-precision training and evaluation of capsule networks (SPEC 3): trainModel for the
// CLI's training, evaluateModel for its `evaluate` subcommand.
export { trainModel, runIdentity } from './trainer.js';
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
  checkResumable,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  type TrainingState,
  type RunSettings,
  type RunIdentity,
  type LoadedCheckpoint,
} from './checkpoint.js';
export {
  checkModelFitsDataset,
  checkDecoderFits,
  decoderOutputShape,
  TRAIN_OPTION_NAMES,
  type OptionNames,
  type DatasetShape,
} from './checks.js';
export {
  ProgressReporter,
  formatDuration,
  type ProgressMode,
  type ProgressStream,
  type StepReport,
} from './progress.js';
