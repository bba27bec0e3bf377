// DataLoader: batches { images: Tensor [b, H, W, C] Float32 in [0, 1], labels, indices }.
//   - training: a fresh seeded shuffle each epoch, augmentation per image;
//     test: dataset order, no augmentation. The last partial batch is kept.
//   - reproducible: the order of epoch e comes from Rng(seed, e, ORDER_STREAM) and the
//     augmentation of batch k of epoch e from Rng(seed, e, k), so the same seed gives the
//     same batches, with or without prefetch, and batches(e, k) resumes mid-epoch exactly.
//   - prefetch: while the caller works on batch k, batch k+1 (augmentation included) is
//     prepared in a setImmediate callback, i.e. whenever the caller awaits.
//   - buffers: two batch buffers are allocated once and used in turn (fresh memory costs
//     ~3 ms/MB here), so a batch's arrays are valid until the next call to next() (batchAt
//     shares them too). Pass reuseBuffers: false to get fresh arrays for every batch.

import { Tensor } from '../tensor/tensor.js';
import { augmentImage, augmentationFor, drawAugmentParams, type AugmentSpec } from './augment.js';
import type { Dataset } from './dataset.js';
import { Rng } from './rng.js';
import { DEFAULT_SEED } from '../tensor/seed.js';

export interface Batch {
  /** [b, H, W, C] Float32 in [0, 1]. */
  images: Tensor;
  labels: Int32Array;
  /** Dataset index of each sample. */
  indices: Int32Array;
  epoch: number;
  /** Position of this batch within its epoch. */
  batchIndex: number;
}

export interface DataLoaderOptions {
  batchSize: number;
  /** Shuffle each epoch; default: true for the train split. */
  shuffle?: boolean;
  /** Augmentation; default: augmentationFor(dataset.name) for the train split, none for test. null: none. */
  augment?: AugmentSpec | null;
  /** Seed of shuffling and augmentation (default DEFAULT_SEED, as trainModel's). */
  seed?: number;
  /** Prepare the next batch in the background (default true). */
  prefetch?: boolean;
  /** Fill two preallocated buffers in turn (default true). */
  reuseBuffers?: boolean;
}

/** Stream key of the per-epoch permutation (batch streams use keys 0, 1, 2, ...). */
const ORDER_STREAM = 0xffffffff;

interface Slot {
  images: Float32Array;
  labels: Int32Array;
  indices: Int32Array;
}

export class DataLoader {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly augment: AugmentSpec | null;
  readonly seed: number;
  readonly prefetch: boolean;
  readonly reuseBuffers: boolean;
  private readonly slots: Slot[] = [];

  constructor(dataset: Dataset, options: DataLoaderOptions) {
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
      throw new Error(`DataLoader: batchSize must be a positive integer, got ${options.batchSize}`);
    }
    const training = dataset.split === 'train';
    this.dataset = dataset;
    this.batchSize = options.batchSize;
    this.shuffle = options.shuffle ?? training;
    this.augment = options.augment !== undefined ? options.augment : training ? augmentationFor(dataset.name) : null;
    this.seed = options.seed ?? DEFAULT_SEED;
    this.prefetch = options.prefetch ?? true;
    this.reuseBuffers = options.reuseBuffers ?? true;
  }

  get batchesPerEpoch(): number {
    return Math.ceil(this.dataset.count / this.batchSize);
  }

  /** The sample order of an epoch: a seeded permutation when shuffling, else 0..N-1. */
  epochOrder(epoch: number): Int32Array {
    const order = new Int32Array(this.dataset.count);
    for (let i = 0; i < order.length; i++) order[i] = i;
    if (this.shuffle) new Rng(this.seed, epoch, ORDER_STREAM).shuffle(order);
    return order;
  }

  /** Batch `batchIndex` of `epoch`, built now (synchronously). */
  batchAt(epoch: number, batchIndex: number, order: Int32Array = this.epochOrder(epoch)): Batch {
    if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= this.batchesPerEpoch) {
      throw new Error(`DataLoader: batch ${batchIndex} is out of range; an epoch has ${this.batchesPerEpoch} batches`);
    }
    return this.build(order, epoch, batchIndex, this.slotFor(batchIndex));
  }

  /** The batches of one epoch, from `fromBatch` on (to resume mid-epoch). */
  async *batches(epoch = 0, fromBatch = 0): AsyncGenerator<Batch, void, undefined> {
    const total = this.batchesPerEpoch;
    if (fromBatch >= total) return;
    const order = this.epochOrder(epoch);
    const schedule = (k: number): Promise<Batch> =>
      new Promise((resolve, reject) => {
        setImmediate(() => {
          try {
            resolve(this.build(order, epoch, k, this.slotFor(k)));
          } catch (err) {
            reject(err as Error);
          }
        });
      });
    let pending: Promise<Batch> | undefined = this.prefetch ? schedule(fromBatch) : undefined;
    for (let k = fromBatch; k < total; k++) {
      const batch = pending ? await pending : this.build(order, epoch, k, this.slotFor(k));
      // Batch k+1 goes into the other buffer; the caller is done with batch k-1 by now.
      pending = this.prefetch && k + 1 < total ? schedule(k + 1) : undefined;
      if (pending) pending.catch(() => undefined); // surfaced when awaited
      yield batch;
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<Batch, void, undefined> {
    return this.batches(0);
  }

  private slotFor(batchIndex: number): Slot {
    const size = this.batchSize * this.dataset.imageSize;
    const fresh = (): Slot => ({
      images: new Float32Array(size),
      labels: new Int32Array(this.batchSize),
      indices: new Int32Array(this.batchSize),
    });
    if (!this.reuseBuffers) return fresh();
    const s = batchIndex % 2;
    this.slots[s] ??= fresh();
    return this.slots[s];
  }

  private build(order: Int32Array, epoch: number, batchIndex: number, slot: Slot): Batch {
    const ds = this.dataset;
    const start = batchIndex * this.batchSize;
    const b = Math.min(this.batchSize, ds.count - start);
    const size = ds.imageSize;
    const rng = this.augment ? new Rng(this.seed, epoch, batchIndex) : undefined;
    for (let j = 0; j < b; j++) {
      const index = order[start + j];
      slot.indices[j] = index;
      slot.labels[j] = ds.labels[index];
      if (this.augment && rng) {
        const params = drawAugmentParams(this.augment, rng);
        augmentImage(
          ds.pixels,
          index * size,
          ds.height,
          ds.width,
          ds.channels,
          params,
          this.augment.interpolation,
          slot.images,
          j * size,
        );
      } else {
        ds.writeImage(index, slot.images, j * size);
      }
    }
    const full = b === this.batchSize;
    return {
      images: new Tensor(full ? slot.images : slot.images.subarray(0, b * size), [b, ds.height, ds.width, ds.channels]),
      labels: full ? slot.labels : slot.labels.subarray(0, b),
      indices: full ? slot.indices : slot.indices.subarray(0, b),
      epoch,
      batchIndex,
    };
  }
}
