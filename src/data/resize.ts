// Bilinear resize of uint8 channels-last images, reproducing Pillow's Image.resize(size,
// BILINEAR) — what torchvision's transforms.Resize does to the PIL images of CIFAR-10 and
// SVHN in the public Q-CapsNets code — bit for bit: Pillow's convolution resampler
// (libImaging/Resample.c) with the triangle filter (support 1, widened by the scale when
// shrinking), pixel centres at i + 0.5, taps beyond the edge dropped and the remaining
// weights renormalised, weights in 22-bit fixed point, a horizontal pass rounded to
// uint8 and then a vertical pass rounded to uint8. Upscaling 32 -> 64 therefore gives
// out[0] = in[0], out[1] = 0.75 in[0] + 0.25 in[1], out[2] = 0.25 in[0] + 0.75 in[1], ...

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);

/** For each output index: the first input index and the fixed-point weights of its taps. */
export interface ResizeTaps {
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array; // [outSize, maxTaps]
  maxTaps: number;
}

function triangle(x: number): number {
  const a = Math.abs(x);
  return a < 1 ? 1 - a : 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter. */
export function bilinearTaps(inSize: number, outSize: number): ResizeTaps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 1 * filterScale;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * maxTaps);
  const w = new Float64Array(maxTaps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const n = hi - lo;
    let total = 0;
    for (let k = 0; k < n; k++) {
      w[k] = triangle((k + lo - center + 0.5) / filterScale);
      total += w[k];
    }
    for (let k = 0; k < n; k++) {
      const normalized = total !== 0 ? w[k] / total : w[k];
      weights[o * maxTaps + k] = Math.trunc(
        normalized < 0 ? normalized * (1 << PRECISION_BITS) - 0.5 : normalized * (1 << PRECISION_BITS) + 0.5,
      );
    }
    first[o] = lo;
    count[o] = n;
  }
  return { first, count, weights, maxTaps };
}

/** Rounds a fixed-point sum (HALF included) to uint8. Sums stay below 2^31: 255 * 2^22 plus rounding. */
function clip8(sum: number): number {
  const v = sum >> PRECISION_BITS;
  return v > 255 ? 255 : v < 0 ? 0 : v;
}

/** Taps padded to the same count per output (zero weights), with input positions clamped. */
interface PaddedTaps {
  taps: number;
  position: Int32Array; // [outSize, taps] input index
  weight: Int32Array; // [outSize, taps] fixed-point weight
}

const tapCache = new Map<string, PaddedTaps>();

function paddedTaps(inSize: number, outSize: number): PaddedTaps {
  const key = `${inSize}->${outSize}`;
  let padded = tapCache.get(key);
  if (!padded) {
    const t = bilinearTaps(inSize, outSize);
    const taps = Math.max(1, ...t.count);
    const position = new Int32Array(outSize * taps);
    const weight = new Int32Array(outSize * taps);
    for (let o = 0; o < outSize; o++) {
      for (let k = 0; k < taps; k++) {
        position[o * taps + k] = Math.min(t.first[o] + k, inSize - 1);
        weight[o * taps + k] = k < t.count[o] ? t.weights[o * t.maxTaps + k] : 0;
      }
    }
    padded = { taps, position, weight };
    tapCache.set(key, padded);
  }
  return padded;
}

/**
 * Resizes one image src[srcOffset ..] of shape [inH, inW, C] (uint8, channels-last) into
 * dst[dstOffset ..] of shape [outH, outW, C]. `scratch` (optional) must hold inH*outW*C bytes.
 * (About 60 us per 32x32x3 -> 64x64x3 image here: 3 s for CIFAR-10's 50,000.)
 */
export function resizeBilinear(
  src: Uint8Array,
  srcOffset: number,
  inH: number,
  inW: number,
  channels: number,
  dst: Uint8Array,
  dstOffset: number,
  outH: number,
  outW: number,
  scratch: Uint8Array = new Uint8Array(inH * outW * channels),
): void {
  const horizontal = paddedTaps(inW, outW);
  const vertical = paddedTaps(inH, outH);
  // Horizontal pass: [inH, inW, C] -> scratch [inH, outW, C], rounded to uint8.
  const hTaps = horizontal.taps;
  const hPos = horizontal.position;
  const hWeight = horizontal.weight;
  for (let y = 0; y < inH; y++) {
    const rowIn = srcOffset + y * inW * channels;
    let o = y * outW * channels;
    for (let x = 0; x < outW; x++) {
      const base = x * hTaps;
      if (hTaps === 2) {
        const a = rowIn + hPos[base] * channels;
        const b = rowIn + hPos[base + 1] * channels;
        const wa = hWeight[base];
        const wb = hWeight[base + 1];
        for (let c = 0; c < channels; c++) scratch[o++] = clip8(HALF + src[a + c] * wa + src[b + c] * wb);
      } else {
        for (let c = 0; c < channels; c++) {
          let sum = HALF;
          for (let k = 0; k < hTaps; k++) sum += src[rowIn + hPos[base + k] * channels + c] * hWeight[base + k];
          scratch[o++] = clip8(sum);
        }
      }
    }
  }
  // Vertical pass: scratch [inH, outW, C] -> dst [outH, outW, C], rounded to uint8.
  const rowStride = outW * channels;
  const vTaps = vertical.taps;
  for (let y = 0; y < outH; y++) {
    const base = y * vTaps;
    const rowOut = dstOffset + y * rowStride;
    if (vTaps === 2) {
      const a = vertical.position[base] * rowStride;
      const b = vertical.position[base + 1] * rowStride;
      const wa = vertical.weight[base];
      const wb = vertical.weight[base + 1];
      for (let i = 0; i < rowStride; i++) dst[rowOut + i] = clip8(HALF + scratch[a + i] * wa + scratch[b + i] * wb);
    } else {
      for (let i = 0; i < rowStride; i++) {
        let sum = HALF;
        for (let k = 0; k < vTaps; k++)
          sum += scratch[vertical.position[base + k] * rowStride + i] * vertical.weight[base + k];
        dst[rowOut + i] = clip8(sum);
      }
    }
  }
}
