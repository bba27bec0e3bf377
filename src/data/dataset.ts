// A loaded split of a dataset: uint8 pixels, channels-last [N, H, W, C], and Int32 labels.
// Pixels stay as bytes (CIFAR-10 train at 64x64x3 is 614 MB as bytes, 2.4 GB as floats);
// the loader turns each batch into Float32 in [0, 1] (byte / 255, like torchvision's
// ToTensor), and `images` gives the whole split as such a tensor on demand.

import { Tensor } from '../tensor/tensor.js';
import type { RawImageSet } from './image-set.js';
import { resizeBilinear } from './resize.js';

export type Split = 'train' | 'test';

/** byte -> byte / 255 as float32. */
export const BYTE_TO_UNIT: Float32Array = Float32Array.from({ length: 256 }, (_, i) => i / 255);

export interface DatasetInit {
  name: string;
  split: Split;
  height: number;
  width: number;
  channels: number;
  /** [N, H, W, C] bytes. */
  pixels: Uint8Array;
  labels: Int32Array;
  numClasses?: number;
  /** Where the data came from (paths or package), for logs and the README. */
  source?: string;
}

export class Dataset {
  readonly name: string;
  readonly split: Split;
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly pixels: Uint8Array;
  readonly labels: Int32Array;
  readonly numClasses: number;
  readonly source: string;
  private floatImages: Tensor | undefined;

  constructor(init: DatasetInit) {
    const stride = init.height * init.width * init.channels;
    if (init.pixels.length !== init.labels.length * stride) {
      throw new Error(
        `Dataset ${init.name}/${init.split}: ${init.pixels.length} pixel bytes for ${init.labels.length} labels; ` +
          `expected ${init.labels.length} x ${init.height}x${init.width}x${init.channels}`,
      );
    }
    this.name = init.name;
    this.split = init.split;
    this.count = init.labels.length;
    this.height = init.height;
    this.width = init.width;
    this.channels = init.channels;
    this.pixels = init.pixels;
    this.labels = init.labels;
    this.numClasses = init.numClasses ?? 10;
    this.source = init.source ?? 'in memory';
  }

  /** Values per image: H * W * C. */
  get imageSize(): number {
    return this.height * this.width * this.channels;
  }

  /** [N, H, W, C] */
  get shape(): number[] {
    return [this.count, this.height, this.width, this.channels];
  }

  /** The whole split as Float32 [N, H, W, C] in [0, 1]; built on first use (4 bytes per value). */
  get images(): Tensor {
    if (!this.floatImages) {
      const data = new Float32Array(this.pixels.length);
      for (let i = 0; i < data.length; i++) data[i] = BYTE_TO_UNIT[this.pixels[i]];
      this.floatImages = new Tensor(data, this.shape);
    }
    return this.floatImages;
  }

  /** Writes image `index` as Float32 in [0, 1] into out[outOffset ..]. */
  writeImage(index: number, out: Float32Array, outOffset: number): void {
    const size = this.imageSize;
    const from = index * size;
    for (let k = 0; k < size; k++) out[outOffset + k] = BYTE_TO_UNIT[this.pixels[from + k]];
  }

  toString(): string {
    return `${this.name}/${this.split}: ${this.count} images ${this.height}x${this.width}x${this.channels} from ${this.source}`;
  }
}

export interface AssembleOptions {
  name: string;
  split: Split;
  /** Resize every image to size x size (Pillow-exact bilinear); omitted: keep the file's size. */
  resizeTo?: number;
  /** Keep only the first `limit` images (quick runs). */
  limit?: number;
}

/** Concatenates reader outputs into one Dataset, resizing on the way if asked. */
export function assembleDataset(sets: RawImageSet[], options: AssembleOptions): Dataset {
  if (sets.length === 0) throw new Error(`${options.name}/${options.split}: no image files to assemble`);
  const { height: inH, width: inW, channels } = sets[0];
  for (const s of sets) {
    if (s.height !== inH || s.width !== inW || s.channels !== channels) {
      throw new Error(
        `${s.source}: images are ${s.height}x${s.width}x${s.channels}; expected ${inH}x${inW}x${channels} like ${sets[0].source}`,
      );
    }
  }
  const available = sets.reduce((n, s) => n + s.count, 0);
  const count = options.limit !== undefined ? Math.min(options.limit, available) : available;
  const outH = options.resizeTo ?? inH;
  const outW = options.resizeTo ?? inW;
  const outStride = outH * outW * channels;
  const pixels = new Uint8Array(count * outStride);
  const labels = new Int32Array(count);
  const resizing = outH !== inH || outW !== inW;
  const original = resizing ? new Uint8Array(inH * inW * channels) : undefined;
  const scratch = resizing ? new Uint8Array(inH * outW * channels) : undefined;
  let at = 0;
  for (const s of sets) {
    for (let i = 0; i < s.count && at < count; i++, at++) {
      labels[at] = s.labels[i];
      if (original && scratch) {
        s.copyImage(i, original, 0);
        resizeBilinear(original, 0, inH, inW, channels, pixels, at * outStride, outH, outW, scratch);
      } else {
        s.copyImage(i, pixels, at * outStride);
      }
    }
  }
  const source =
    sets.map((s) => s.source).join(', ') + (resizing ? ` (resized ${inH}x${inW} -> ${outH}x${outW}, bilinear)` : '');
  return new Dataset({
    name: options.name,
    split: options.split,
    height: outH,
    width: outW,
    channels,
    pixels,
    labels,
    source,
  });
}
