// Seeded training-set augmentation, after the public Q-CapsNets data loaders
// (torchvision RandomAffine(degrees, translate=(s/W, s/H), fillcolor=0) then
// RandomHorizontalFlip(p)):
//   mnist          shift up to 2 px
//   fashion-mnist  shift up to 2 px, horizontal flip p = 0.2
//   cifar10        rotation up to 2 degrees, shift up to 5 px, flip p = 0.5 (on 64x64)
//   svhn           none
// Draws per image, in this order: angle = uniform(-maxRotation, maxRotation) (only if
// maxRotation > 0); shiftX, shiftY = round(uniform(-maxShift, maxShift)) each (integers,
// as torchvision rounds translations); flip = uniform() < p (only if p > 0).
// Geometry: out(x, y) = in(R^-1 (x - c - shift) + c), c the image centre, positive shiftX
// moves content right and positive shiftY down, positive angle turns it counter-clockwise
// as displayed; then the flip mirrors columns. Samples falling outside the image are 0.
// Interpolation for rotations is bilinear (Pillow's rule: inside the image, taps are
// clamped to the edge; outside, fill 0); 'nearest' is what the public code's
// resample=False gives. Without rotation both reduce to an exact integer shift.

import type { Rng } from './rng.js';
import type { DatasetName } from './sources.js';
import { BYTE_TO_UNIT } from './dataset.js';

export type Interpolation = 'bilinear' | 'nearest';

export interface AugmentSpec {
  /** Largest translation in pixels, each axis. */
  maxShift: number;
  /** Largest rotation in degrees, either direction. */
  maxRotationDeg: number;
  /** Probability of a horizontal flip. */
  flipProbability: number;
  /** How rotated images are sampled. */
  interpolation: Interpolation;
}

export interface AugmentParams {
  angleDeg: number;
  shiftX: number;
  shiftY: number;
  flip: boolean;
}

/** The training augmentation of each dataset (spec section 3); null for none. */
export function augmentationFor(name: DatasetName | string): AugmentSpec | null {
  switch (name) {
    case 'mnist':
      return { maxShift: 2, maxRotationDeg: 0, flipProbability: 0, interpolation: 'bilinear' };
    case 'fashion-mnist':
      return { maxShift: 2, maxRotationDeg: 0, flipProbability: 0.2, interpolation: 'bilinear' };
    case 'cifar10':
      return { maxShift: 5, maxRotationDeg: 2, flipProbability: 0.5, interpolation: 'bilinear' };
    case 'svhn':
      return null;
    default:
      throw new Error(`augmentationFor: unknown dataset "${name}"; expected mnist, fashion-mnist, cifar10 or svhn`);
  }
}

/** Rounds half to even, like Python's round() used by torchvision. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Draws one image's parameters (see the header for the order of draws). */
export function drawAugmentParams(spec: AugmentSpec, rng: Rng): AugmentParams {
  const angleDeg = spec.maxRotationDeg > 0 ? rng.uniformIn(-spec.maxRotationDeg, spec.maxRotationDeg) : 0;
  const shiftX = spec.maxShift > 0 ? roundHalfEven(rng.uniformIn(-spec.maxShift, spec.maxShift)) : 0;
  const shiftY = spec.maxShift > 0 ? roundHalfEven(rng.uniformIn(-spec.maxShift, spec.maxShift)) : 0;
  const flip = spec.flipProbability > 0 ? rng.uniform() < spec.flipProbability : false;
  return { angleDeg, shiftX: shiftX + 0, shiftY: shiftY + 0, flip }; // + 0 turns -0 into 0
}

/**
 * Writes the augmented image src[srcOffset ..] ([H, W, C] uint8) into out[outOffset ..]
 * as Float32 in [0, 1].
 */
export function augmentImage(
  src: Uint8Array,
  srcOffset: number,
  height: number,
  width: number,
  channels: number,
  params: AugmentParams,
  interpolation: Interpolation,
  out: Float32Array,
  outOffset: number,
): void {
  if (params.angleDeg === 0) {
    shiftAndFlip(src, srcOffset, height, width, channels, params, out, outOffset);
  } else {
    rotateShiftFlip(src, srcOffset, height, width, channels, params, interpolation, out, outOffset);
  }
}

/** Integer translation (zero fill) and optional mirror: a pure copy, no interpolation. */
function shiftAndFlip(
  src: Uint8Array,
  srcOffset: number,
  height: number,
  width: number,
  channels: number,
  { shiftX, shiftY, flip }: AugmentParams,
  out: Float32Array,
  outOffset: number,
): void {
  const row = width * channels;
  for (let y = 0; y < height; y++) {
    const sy = y - shiftY;
    const outRow = outOffset + y * row;
    if (sy < 0 || sy >= height) {
      out.fill(0, outRow, outRow + row);
      continue;
    }
    const inRow = srcOffset + sy * row;
    for (let x = 0; x < width; x++) {
      const sx = (flip ? width - 1 - x : x) - shiftX;
      const o = outRow + x * channels;
      if (sx < 0 || sx >= width) {
        for (let c = 0; c < channels; c++) out[o + c] = 0;
      } else {
        const i = inRow + sx * channels;
        for (let c = 0; c < channels; c++) out[o + c] = BYTE_TO_UNIT[src[i + c]];
      }
    }
  }
}

/** Rotation about the centre plus translation, inverse-mapped, then the mirror. */
function rotateShiftFlip(
  src: Uint8Array,
  srcOffset: number,
  height: number,
  width: number,
  channels: number,
  { angleDeg, shiftX, shiftY, flip }: AugmentParams,
  interpolation: Interpolation,
  out: Float32Array,
  outOffset: number,
): void {
  const theta = (angleDeg * Math.PI) / 180;
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  const row = width * channels;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      // Undo the flip, the translation, then the (counter-clockwise as displayed) rotation.
      const dx = (flip ? width - 1 - x : x) - cx - shiftX;
      const dy = y - cy - shiftY;
      const sx = cos * dx - sin * dy + cx;
      const sy = sin * dx + cos * dy + cy;
      const o = outOffset + y * row + x * channels;
      // Pillow treats pixel i as covering [i - 0.5, i + 0.5): outside that range -> fill.
      if (sx < -0.5 || sx >= width - 0.5 || sy < -0.5 || sy >= height - 0.5) {
        for (let c = 0; c < channels; c++) out[o + c] = 0;
        continue;
      }
      if (interpolation === 'nearest') {
        const i = srcOffset + Math.floor(sy + 0.5) * row + Math.floor(sx + 0.5) * channels;
        for (let c = 0; c < channels; c++) out[o + c] = BYTE_TO_UNIT[src[i + c]];
        continue;
      }
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const xa = Math.max(x0, 0) * channels;
      const xb = Math.min(x0 + 1, width - 1) * channels;
      const ya = srcOffset + Math.max(y0, 0) * row;
      const yb = srcOffset + Math.min(y0 + 1, height - 1) * row;
      for (let c = 0; c < channels; c++) {
        const top = src[ya + xa + c] + (src[ya + xb + c] - src[ya + xa + c]) * fx;
        const bottom = src[yb + xa + c] + (src[yb + xb + c] - src[yb + xa + c]) * fx;
        out[o + c] = (top + (bottom - top) * fy) / 255;
      }
    }
  }
}
