// Where each dataset's canonical files live on the web, with their published checksums,
// and the file names the readers look for. One table used by the loader's "missing
// dataset" message and by downloadDataset().

export type DatasetName = 'mnist' | 'fashion-mnist' | 'cifar10' | 'svhn';
export const DATASET_NAMES: readonly DatasetName[] = ['mnist', 'fashion-mnist', 'cifar10', 'svhn'];

/** A checksum to verify a downloaded file against (hex, lower case). */
export interface Checksum {
  md5?: string;
  sha256?: string;
}

export interface RemoteFile {
  /** File name as published (and as stored in the data directory). */
  name: string;
  checksum: Checksum;
  /** For archives: the members to extract and the folder (inside the data directory) they go to. */
  extract?: { members: string[]; into: string };
}

export interface DatasetSource {
  baseUrl: string;
  files: RemoteFile[];
  /** Human-readable origin, for messages. */
  homepage: string;
}

const IDX_FILES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
];

/** Canonical files; MD5s are the ones the dataset authors / torchvision publish. */
export const DATASET_SOURCES: Record<DatasetName, DatasetSource> = {
  mnist: {
    baseUrl: 'https://ossci-datasets.s3.amazonaws.com/mnist/',
    homepage:
      'http://yann.lecun.com/exdb/mnist/ (mirror used by torchvision: https://ossci-datasets.s3.amazonaws.com/mnist/)',
    files: [
      { name: 'train-images-idx3-ubyte.gz', checksum: { md5: 'f68b3c2dcbeaaa9fbdd348bbdeb94873' } },
      { name: 'train-labels-idx1-ubyte.gz', checksum: { md5: 'd53e105ee54ea40749a09fcbcd1e9432' } },
      { name: 't10k-images-idx3-ubyte.gz', checksum: { md5: '9fb629c4189551a2d022fa330f9573f3' } },
      { name: 't10k-labels-idx1-ubyte.gz', checksum: { md5: 'ec29112dd5afa0611ce80d1b7f02629c' } },
    ],
  },
  'fashion-mnist': {
    baseUrl: 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
    homepage: 'https://github.com/zalandoresearch/fashion-mnist (Debian: apt install dataset-fashion-mnist)',
    files: [
      { name: 'train-images-idx3-ubyte.gz', checksum: { md5: '8d4fb7e6c68d591d4c3dfef9ec88bf0d' } },
      { name: 'train-labels-idx1-ubyte.gz', checksum: { md5: '25c81989df183df01b3e8a0aad5dffbe' } },
      { name: 't10k-images-idx3-ubyte.gz', checksum: { md5: 'bef4ecab320f06d8554ea6380940ec79' } },
      { name: 't10k-labels-idx1-ubyte.gz', checksum: { md5: 'bb300cfdad3c16e7a12a480ee83cd310' } },
    ],
  },
  cifar10: {
    baseUrl: 'https://www.cs.toronto.edu/~kriz/',
    homepage: 'https://www.cs.toronto.edu/~kriz/cifar.html (binary version)',
    files: [
      {
        name: 'cifar-10-binary.tar.gz',
        checksum: { md5: 'c32a1d4ab5d03f1284b67883e8d87530' },
        extract: {
          into: 'cifar-10-batches-bin',
          members: [
            'data_batch_1.bin',
            'data_batch_2.bin',
            'data_batch_3.bin',
            'data_batch_4.bin',
            'data_batch_5.bin',
            'test_batch.bin',
            'batches.meta.txt',
          ],
        },
      },
    ],
  },
  svhn: {
    baseUrl: 'http://ufldl.stanford.edu/housenumbers/',
    homepage: 'http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)',
    files: [
      { name: 'train_32x32.mat', checksum: { md5: 'e26dedcc434d2e4c54c9b2d4a06d8373' } },
      { name: 'test_32x32.mat', checksum: { md5: 'eb5a983be6a315427106f1b164d9cef3' } },
    ],
  },
};

/** The IDX base names (without .gz) for a split of MNIST / Fashion-MNIST. */
export function idxFileNames(split: 'train' | 'test'): { images: string; labels: string } {
  return split === 'train'
    ? { images: IDX_FILES[0], labels: IDX_FILES[1] }
    : { images: IDX_FILES[2], labels: IDX_FILES[3] };
}
