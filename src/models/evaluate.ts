// The full-precision test pass (the reference's full_precision_test), the one used by training
// (after each epoch), by `qcapsnets evaluate` and by the search (its reference accuracy and the
// margins that order its batches): eval mode (BatchNorm running statistics), batches in a
// given order, accuracy = correct * 100 / total, loss = the margin loss with the normal margins
// averaged per batch and then over the batches, and each image's margin.
import { EVAL, type ForwardContext } from '../nn/module.js';
import { give, take } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';
import type { CapsNet } from './capsnet.js';
import { classMargin, countCorrect, marginLossValue } from './metrics.js';

/** Test images in a fixed order (a Dataset is one). */
export interface ImageSource {
  count: number;
  labels: Int32Array;
  height: number;
  width: number;
  channels: number;
  /** Writes image i as float32 [H, W, C] in [0, 1] into out at offset. */
  writeImage(i: number, out: Float32Array, offset: number): void;
}

/** The one check that images fit a model's input (height x width x channels); `what` names
 *  them for the error ("searchModel: the test images"). */
export function checkImagesFit(
  model: Pick<CapsNet, 'inputWh' | 'inputCh'>,
  images: Pick<ImageSource, 'height' | 'width' | 'channels'>,
  what: string,
): void {
  const { height, width, channels } = images;
  if (height !== model.inputWh || width !== model.inputWh || channels !== model.inputCh)
    throw new Error(
      `${what} are ${height}x${width}x${channels}, the model takes ${model.inputWh}x${model.inputWh}x${model.inputCh}`,
    );
}

export interface FullPrecisionOptions {
  batchSize: number;
  /** position -> image index (default: the source's order) */
  order?: Int32Array | null;
  /** called after each batch with the images done and the total */
  onBatch?: (done: number, total: number) => void;
}

export interface FullPrecisionResult {
  /** correct * 100 / total, as the reference prints it */
  accuracy: number;
  correct: number;
  total: number;
  /** mean over the batches of the batch-mean margin loss */
  loss: number;
  /** per image (by image index): label capsule's squared length minus the longest other's;
   *  -Infinity where the output is NaN (never correct) */
  margins: Float64Array;
  seconds: number;
}

/** Batch b of a source in a given order, as a [n, H, W, C] tensor from the buffer pool. */
export function sourceBatch(data: ImageSource, b: number, batchSize: number, order: Int32Array | null = null): Tensor {
  const i0 = b * batchSize;
  const n = Math.min(batchSize, data.count - i0);
  const size = data.height * data.width * data.channels;
  const x = new Tensor(take(n * size), [n, data.height, data.width, data.channels]);
  for (let i = 0; i < n; i++) data.writeImage(order ? order[i0 + i] : i0 + i, x.data, i * size);
  return x;
}

/** One pass in eval mode over `data`'s batches (in `order`, position -> image index, when
 *  given): batch b runs with `contextOf(b)` and `visit` sees its class capsules, its labels and
 *  the position of its first image; the model's train/eval mode is put back afterwards. Used by
 *  the full-precision pass and by QuantizedModel.evaluate. `fn` names the caller in errors. */
export function forEachBatch(
  fn: string,
  model: CapsNet,
  data: ImageSource,
  opts: FullPrecisionOptions,
  contextOf: (b: number) => ForwardContext,
  visit: (caps: Tensor, labels: Int32Array, first: number) => void,
): void {
  const { batchSize } = opts;
  if (!(Number.isInteger(batchSize) && batchSize >= 1))
    throw new Error(`${fn}: batchSize ${batchSize}: expected a positive integer`);
  if (!(data.count >= 1)) throw new Error(`${fn}: the data holds no images`);
  const order = opts.order ?? null;
  const total = data.count;
  const wasTraining = model.training;
  model.eval();
  try {
    for (let b = 0, first = 0; first < total; b++, first += batchSize) {
      const x = sourceBatch(data, b, batchSize, order);
      const n = x.shape[0];
      const labels = new Int32Array(n);
      for (let i = 0; i < n; i++) labels[i] = data.labels[order ? order[first + i] : first + i];
      const caps = model.forward(x, contextOf(b));
      give(x.data);
      visit(caps, labels, first);
      give(caps.data);
      opts.onBatch?.(Math.min(total, first + batchSize), total);
    }
  } finally {
    model.train(wasTraining);
  }
}

/** One full pass of the model's own parameters over `data`. */
export function evaluateFullPrecision(
  model: CapsNet,
  data: ImageSource,
  opts: FullPrecisionOptions,
): FullPrecisionResult {
  const t0 = performance.now();
  const order = opts.order ?? null;
  const margins = new Float64Array(data.count);
  let correct = 0;
  let lossSum = 0;
  let batches = 0;
  forEachBatch(
    'evaluateFullPrecision',
    model,
    data,
    opts,
    () => EVAL,
    (caps, labels, first) => {
      correct += countCorrect(caps, labels);
      lossSum += marginLossValue(caps, labels);
      batches++;
      for (let i = 0; i < labels.length; i++) {
        const m = classMargin(caps, i, labels[i]);
        margins[order ? order[first + i] : first + i] = Number.isNaN(m) ? -Infinity : m;
      }
    },
  );
  const total = data.count;
  return {
    accuracy: (correct * 100.0) / total,
    correct,
    total,
    loss: lossSum / batches,
    margins,
    seconds: (performance.now() - t0) / 1000,
  };
}
