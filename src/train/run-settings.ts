// The settings a checkpoint records and a resumed run must repeat (checkpoint.ts), on their own
// so that the option checks (checks.ts) and the checkpoint can both name them.

/** The options that decide a run's numbers; a resumed run must use the same (epochs may grow). */
export interface RunSettings {
  epochs: number;
  lr: number;
  batchSize: number;
  regularizationScale: number;
  decaySteps: number;
  decayRate: number;
  hardTraining: boolean;
  seed: number;
  testBatchSize: number;
}
