// The data folder's public surface: readers, datasets, augmentation, loader, download.

export { Rng, type RngState } from './rng.js';
export { parseIdx, readIdxFile, readIdxImages, readIdxLabels, isGzip, type IdxArray, type IdxType } from './idx.js';
export { parseCifarBatch, readCifarBatch, CIFAR_TRAIN_FILES, CIFAR_TEST_FILES, CIFAR_RECORD_BYTES } from './cifar.js';
export { parseMat, readMatFile, type MatVariable, type MatClass, type MatNumeric } from './matlab.js';
export { parseSvhnMat, readSvhnMat, SVHN_TRAIN_FILE, SVHN_TEST_FILE } from './svhn.js';
export { resizeBilinear, bilinearTaps } from './resize.js';
export { type RawImageSet, channelsLastImageSet } from './image-set.js';
export { Dataset, assembleDataset, BYTE_TO_UNIT, type DatasetInit, type Split } from './dataset.js';
export { checkSelectionSplit, splitOffSelection, type SelectionSplit } from './selection-split.js';
export { MNIST_PACKAGE_SPLIT, loadMnistPackage } from './mnist-package.js';
export { DATASET_NAMES, DATASET_SOURCES, type DatasetName, type Checksum, type RemoteFile } from './sources.js';
export {
  loadDataset,
  loadTrainTest,
  isDatasetName,
  DatasetMissingError,
  DATASET_INFO,
  DEFAULT_DATA_DIRS,
  CIFAR_SUBDIR,
  type LoadOptions,
  type DatasetInfo,
} from './load.js';
export {
  augmentationFor,
  drawAugmentParams,
  augmentImage,
  type AugmentSpec,
  type AugmentParams,
  type Interpolation,
} from './augment.js';
export { DataLoader, type Batch, type DataLoaderOptions } from './loader.js';
export { downloadDataset, type DownloadOptions } from './download.js';
export { readTar, type TarEntry } from './tar.js';
