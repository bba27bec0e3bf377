// The common shape of what the format readers return: a labelled set of uint8 images in
// whatever layout the file uses, plus a way to copy image i out in channels-last
// [H, W, C] order. Datasets are assembled (and resized) from these without an extra copy
// of the whole set.

export interface RawImageSet {
  /** Where the images came from (a path), for messages. */
  source: string;
  count: number;
  height: number;
  width: number;
  channels: number;
  labels: Int32Array;
  /** Writes image i as [height, width, channels] uint8 into out[outOffset ..]. */
  copyImage(i: number, out: Uint8Array, outOffset: number): void;
}

/** A RawImageSet over bytes that are already channels-last [N, H, W, C]. */
export function channelsLastImageSet(
  source: string,
  pixels: Uint8Array,
  labels: Int32Array,
  height: number,
  width: number,
  channels: number,
): RawImageSet {
  const stride = height * width * channels;
  if (pixels.length !== labels.length * stride) {
    throw new Error(
      `${source}: ${pixels.length} pixel bytes for ${labels.length} labels; expected ${labels.length} x ${height}x${width}x${channels} = ${labels.length * stride}`,
    );
  }
  return {
    source,
    count: labels.length,
    height,
    width,
    channels,
    labels,
    copyImage(i, out, outOffset) {
      out.set(pixels.subarray(i * stride, (i + 1) * stride), outOffset);
    },
  };
}
