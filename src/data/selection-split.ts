// --selection-split N: the last N images of the training set (after --train-limit) are held
// out; training never sees them, and the search decides on them instead of the test set. The
// same N always names the same images (no draw), so `train` and a later `search` with the same
// flags agree on the split. Both parts are views of the loaded bytes, not copies.
import { Dataset } from './dataset.js';

export interface SelectionSplit {
  /** the first count - N images: what training sees */
  train: Dataset;
  /** the last N images: what the search decides on */
  selection: Dataset;
}

/** Checks N against the training set's size (`what` names it in the error). */
export function checkSelectionSplit(n: number, trainCount: number, what: string): void {
  if (!(Number.isInteger(n) && n >= 0))
    throw new Error(`--selection-split ${n}: expected a whole number of training images, 0 (off) or more`);
  if (n >= trainCount)
    throw new Error(
      `--selection-split ${n}: ${what} has ${trainCount} images; the split must leave at least one to train on (at most ${trainCount - 1})`,
    );
}

/** Splits the last `n` images off `train` (n >= 1, checked by checkSelectionSplit). */
export function splitOffSelection(train: Dataset, n: number): SelectionSplit {
  checkSelectionSplit(n, train.count, `the training set (${train})`);
  const keep = train.count - n;
  const size = train.imageSize;
  const part = (from: number, to: number, what: string) =>
    new Dataset({
      name: train.name,
      split: 'train',
      height: train.height,
      width: train.width,
      channels: train.channels,
      pixels: train.pixels.subarray(from * size, to * size),
      labels: train.labels.subarray(from, to),
      numClasses: train.numClasses,
      source: `${train.source}, ${what} (training images ${from}-${to - 1})`,
    });
  return { train: part(0, keep, 'trained on'), selection: part(keep, train.count, 'selection split') };
}
