// The benchmarks' trained models (bench:search, bench:sweep): --model FILE, or QCAPS_BENCH_MODEL,
// or one trained once by `qcapsnets train` on Fashion-MNIST (seed 42) and kept in .bench-cache/.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg } from './common.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

export interface BenchKind {
  modelArgs: number[];
  /** the cached model's file name in .bench-cache/ */
  cacheName: string;
  /** `qcapsnets train` flags for it (Fashion-MNIST, seed 42) */
  trainFlags: string[];
  testSize: number;
  /** the budget: MB, or a fraction of the 32-bit weight memory */
  budget: { mb: number } | { fraction: number };
}

export const KINDS: Record<string, BenchKind> = {
  ShallowCapsNet: {
    modelArgs: [28, 1, 10, 16],
    cacheName: 'shallow-fashion-1epoch.pt',
    trainFlags: ['--epochs', '1'],
    testSize: 2000,
    budget: { mb: 3 },
  },
  // 1 epoch over the first 20,000 training images: about 4 minutes on 2 cores (shared), 82.29% on the
  // 10,000 test images
  DeepCaps: {
    modelArgs: [28, 1, 10, 32],
    cacheName: 'deepcaps-fashion-1epoch-20k.pt',
    trainFlags: [
      '--model',
      'DeepCaps',
      '--model-args',
      '28',
      '1',
      '10',
      '32',
      '--decoder',
      'ConvDecoder28',
      '--decoder-args',
      '32',
      '1',
      '--epochs',
      '1',
      '--train-limit',
      '20000',
    ],
    testSize: 1000,
    budget: { fraction: 0.32 },
  },
};

/** bench:smaller's models, trained to the accuracy issue 19 asks for (>= 88% and >= 87%):
 *  ShallowCapsNet by the README's recipe (`qcapsnets train --dataset fashion-mnist`) for 7
 *  epochs, the best kept (about 5 minutes an epoch on 2 cores, 35-40 in all; measured here with
 *  the December 7 build: 80.39, 84.42, 85.55, 86.64, 86.73, 88.03 and 88.07% after epochs 1-7;
 *  an earlier build gave 88.23%), DeepCaps by the bench's
 *  DeepCaps recipe over the whole training set for 2 epochs (measured here: 86.11 and 88.17%;
 *  about 15 minutes an epoch on 2 idle cores, an hour on shared ones). */
export const SMALLER_KINDS: Record<string, BenchKind> = {
  ShallowCapsNet: {
    ...KINDS.ShallowCapsNet,
    cacheName: 'shallow-fashion-7epoch.pt',
    trainFlags: ['--epochs', '7'],
    testSize: 10000,
  },
  DeepCaps: {
    ...KINDS.DeepCaps,
    cacheName: 'deepcaps-fashion-2epoch.pt',
    trainFlags: [...KINDS.DeepCaps.trainFlags.slice(0, -4), '--epochs', '2'],
    testSize: 10000,
  },
};

export function benchModel(kind: BenchKind): string {
  const given = process.argv.includes('--model') ? arg('model', '') : process.env.QCAPS_BENCH_MODEL;
  if (given) {
    if (!existsSync(given)) throw new Error(`--model ${given}: no such file`);
    return resolve(given);
  }
  const file = join(root, '.bench-cache', kind.cacheName);
  if (existsSync(file)) return file;
  mkdirSync(join(root, '.bench-cache'), { recursive: true });
  console.log(`training the benchmark's model once (${kind.trainFlags.join(' ')}, Fashion-MNIST) into ${file} ...`);
  const r = spawnSync(
    process.execPath,
    [
      join(root, 'dist/src/cli/main.js'),
      'train',
      '--dataset',
      'fashion-mnist',
      ...kind.trainFlags,
      '--full-precision-filename',
      file,
    ],
    { stdio: 'inherit' },
  );
  if (r.status !== 0 || !existsSync(file)) throw new Error('training the benchmark model failed');
  return file;
}
