// DataLoader: seeded per-epoch shuffling, fixed test order, kept partial batch,
// determinism with and without prefetch, exact mid-epoch resume, buffer reuse.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DataLoader, Dataset, type Batch, type Split } from '../src/data/index.js';

/** n images of 6x6x1 whose every pixel equals the image index (mod 256); label = index mod 10. */
function tinyDataset(n: number, split: Split, name = 'mnist'): Dataset {
  const pixels = new Uint8Array(n * 36);
  for (let i = 0; i < n; i++) pixels.fill(i % 256, i * 36, (i + 1) * 36);
  return new Dataset({
    name,
    split,
    height: 6,
    width: 6,
    channels: 1,
    pixels,
    labels: Int32Array.from({ length: n }, (_, i) => i % 10),
  });
}

interface Copy {
  images: number[];
  shape: readonly number[];
  labels: number[];
  indices: number[];
}

async function collect(loader: DataLoader, epoch = 0, from = 0): Promise<Copy[]> {
  const out: Copy[] = [];
  for await (const b of loader.batches(epoch, from)) out.push(copy(b));
  return out;
}

function copy(b: Batch): Copy {
  return {
    images: Array.from(b.images.data),
    shape: b.images.shape,
    labels: Array.from(b.labels),
    indices: Array.from(b.indices),
  };
}

describe('DataLoader', () => {
  test('training: every sample once per epoch, shuffled, last partial batch kept', async () => {
    const loader = new DataLoader(tinyDataset(23, 'train'), { batchSize: 5, seed: 1 });
    assert.equal(loader.batchesPerEpoch, 5);
    const batches = await collect(loader);
    assert.deepEqual(
      batches.map((b) => b.shape[0]),
      [5, 5, 5, 5, 3],
    );
    assert.deepEqual(batches[4].shape, [3, 6, 6, 1]);
    const seen = batches.flatMap((b) => b.indices);
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      Array.from({ length: 23 }, (_, i) => i),
    );
    assert.notDeepEqual(
      seen,
      Array.from({ length: 23 }, (_, i) => i),
    );
    for (const b of batches)
      assert.deepEqual(
        b.labels,
        b.indices.map((i) => i % 10),
      );
  });

  test('same seed gives identical batches; another epoch or seed differs', async () => {
    const ds = tinyDataset(40, 'train');
    const a = await collect(new DataLoader(ds, { batchSize: 8, seed: 7 }), 3);
    const b = await collect(new DataLoader(ds, { batchSize: 8, seed: 7 }), 3);
    assert.deepEqual(a, b);
    const otherEpoch = await collect(new DataLoader(ds, { batchSize: 8, seed: 7 }), 4);
    const otherSeed = await collect(new DataLoader(ds, { batchSize: 8, seed: 8 }), 3);
    assert.notDeepEqual(
      a.map((x) => x.indices),
      otherEpoch.map((x) => x.indices),
    );
    assert.notDeepEqual(
      a.map((x) => x.indices),
      otherSeed.map((x) => x.indices),
    );
  });

  test('prefetch does not change the batches, and resume from batch k matches', async () => {
    const ds = tinyDataset(30, 'train', 'fashion-mnist'); // shift + flip augmentation
    const withPrefetch = await collect(new DataLoader(ds, { batchSize: 4, seed: 3, prefetch: true }), 2);
    const without = await collect(new DataLoader(ds, { batchSize: 4, seed: 3, prefetch: false }), 2);
    assert.deepEqual(withPrefetch, without);
    const resumed = await collect(new DataLoader(ds, { batchSize: 4, seed: 3 }), 2, 5);
    assert.deepEqual(resumed, withPrefetch.slice(5));
    assert.deepEqual(copy(new DataLoader(ds, { batchSize: 4, seed: 3 }).batchAt(2, 6)), withPrefetch[6]);
  });

  test('training images are augmented (zeros shifted in); test images are exact and in order', async () => {
    const train = await collect(new DataLoader(tinyDataset(50, 'train'), { batchSize: 50, seed: 2 }));
    const zeros = train[0].images.filter((v, k) => v === 0 && train[0].indices[Math.floor(k / 36)] !== 0).length;
    assert.ok(zeros > 0, 'some shifted-in zeros expected with a 2 px shift');
    const test = await collect(new DataLoader(tinyDataset(12, 'test'), { batchSize: 5 }));
    assert.deepEqual(
      test.flatMap((b) => b.indices),
      Array.from({ length: 12 }, (_, i) => i),
    );
    assert.deepEqual(test[1].images.slice(0, 36), new Array(36).fill(Math.fround(5 / 255)));
    const again = await collect(new DataLoader(tinyDataset(12, 'test'), { batchSize: 5, seed: 99 }));
    assert.deepEqual(again, test);
  });

  test('buffers are reused in turn unless reuseBuffers is false', async () => {
    const ds = tinyDataset(20, 'test');
    const buffers: ArrayBufferLike[] = [];
    for await (const b of new DataLoader(ds, { batchSize: 5 }).batches()) buffers.push(b.images.data.buffer);
    assert.equal(buffers[0], buffers[2]);
    assert.equal(buffers[1], buffers[3]);
    assert.notEqual(buffers[0], buffers[1]);
    const fresh: ArrayBufferLike[] = [];
    for await (const b of new DataLoader(ds, { batchSize: 5, reuseBuffers: false }).batches())
      fresh.push(b.images.data.buffer);
    assert.equal(new Set(fresh).size, 4);
  });

  test('prefetch prepares the next batch while the caller awaits', async () => {
    const loader = new DataLoader(tinyDataset(10, 'train'), { batchSize: 5, seed: 4 });
    const it = loader.batches(0);
    const first = await it.next();
    assert.equal(first.done, false);
    await new Promise((r) => setImmediate(r)); // the caller "computes" asynchronously
    const built: number[] = [];
    const original = (loader as unknown as { build: (...a: unknown[]) => Batch }).build;
    (loader as unknown as { build: (...a: unknown[]) => Batch }).build = (...a: unknown[]) => {
      built.push(1);
      return original.apply(loader, a);
    };
    const second = await it.next();
    assert.equal(second.done, false);
    assert.equal(built.length, 0, 'batch 1 was already built during the await');
  });

  test('rejects a bad batch size', () => {
    assert.throws(
      () => new DataLoader(tinyDataset(3, 'test'), { batchSize: 0 }),
      /batchSize must be a positive integer, got 0/,
    );
  });
});
