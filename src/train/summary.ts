// What trainModel returns: one record per epoch and the run's outcome.

export interface EpochSummary {
  /** 1-based */
  epoch: number;
  /** hard margins (0.95 / 0.05 / 0.8) in this epoch */
  hard: boolean;
  /** means over the epoch's batches of the batch-mean losses */
  trainLoss: number;
  trainMarginLoss: number;
  trainReconLoss: number;
  /** mean of the batch accuracies, in percent (the reference's epoch_avg_acc * 100) */
  trainAccuracy: number;
  /** test pass after the epoch: correct * 100 / total, and the mean margin loss */
  testAccuracy: number;
  testCorrect: number;
  testTotal: number;
  testLoss: number;
  /** training seconds of the epoch (without the test pass) */
  seconds: number;
  testSeconds: number;
  /** training images per second */
  imagesPerSecond: number;
  /** learning rate of the epoch's last step */
  lastLr: number;
  /** this epoch's test accuracy beat the previous best, so the model file was written */
  best: boolean;
}

export interface TrainSummary {
  epochs: EpochSummary[];
  /** best test accuracy (percent) and its 1-based epoch; 0 and null before any epoch ends */
  bestAccuracy: number;
  bestEpoch: number | null;
  /** where the best model's state_dict (PyTorch .pt, model only) is */
  modelFile: string;
  /** the resumable checkpoint (see checkpoint.ts) */
  checkpointFile: string;
  /** where a resumed run started (1-based epoch, 0-based batch), or null */
  resumedFrom: { epoch: number; batch: number } | null;
  /** the run stopped early on its abort signal; the checkpoint holds the position */
  interrupted: boolean;
  /** optimizer steps done in total (over all runs of a resumed training) */
  globalStep: number;
  /** wall-clock seconds of this call */
  totalSeconds: number;
}
