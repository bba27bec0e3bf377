// The training schedule of the reference (main.py):
//   - learning rate: torch.optim.lr_scheduler.LambdaLR with lambda step: rate ** (step / steps),
//     stepped after every optimizer step, so the optimizer step with 0-based global index k
//     uses lr0 * rate^(k / steps) (continuous exponential decay, not staircase; the first step
//     uses lr0 itself);
//   - hard training (TrainOptions.hardTraining): the first ceil(epochs / 2) epochs use the normal margins,
//     the last floor(epochs / 2) the hard ones (0.95 / 0.05 / lambda 0.8).

/** Learning rate of the optimizer step with 0-based global index `step`. */
export function learningRate(step: number, lr0: number, decayRate: number, decaySteps: number): number {
  return lr0 * decayRate ** (step / decaySteps);
}

/** Whether 1-based `epoch` of `epochs` uses the hard margins. */
export function isHardEpoch(epoch: number, epochs: number, hardTraining: boolean): boolean {
  return hardTraining && epoch > Math.ceil(epochs / 2);
}

/** The first 1-based epoch with hard margins, or null when none has them. */
export function firstHardEpoch(epochs: number, hardTraining: boolean): number | null {
  return hardTraining && Math.floor(epochs / 2) > 0 ? Math.ceil(epochs / 2) + 1 : null;
}
