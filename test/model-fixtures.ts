// The weights and images of the model fixtures (tools/make-model-fixtures.py): every
// state_dict entry and every image filled from a counter-based hash that src/nn/init.ts
// reproduces exactly, so the fixtures need not store 21 MB of weights.
import assert from 'node:assert/strict';
import { hashUniformFill, type Module, type StateTensor } from '../src/nn/index.js';
import { permute, Tensor } from '../src/tensor/index.js';
import type { Fixture } from './helpers.js';

export type Fill = Record<string, [number, number, number]>;

/** The fixture's weights: every state_dict entry filled as the fixture script does. */
export function fillModule(m: Module, fill: Fill): void {
  const sd = new Map<string, StateTensor>();
  for (const [key, t] of m.stateDict()) {
    const spec = fill[key];
    assert.ok(spec, `the fixture has no fill for ${key}`);
    const [seed, scale, offset] = spec;
    const data = new Float32Array(t.data.length);
    if (key.endsWith('num_batches_tracked')) data.fill(offset);
    else hashUniformFill(data, seed, scale, offset);
    sd.set(key, { shape: t.shape, data, dtype: t.dtype });
  }
  m.loadStateDict(sd, 'fixture');
}

/** Images [B,H,W,C] from the fixture's per-image fills (NCHW in PyTorch). */
export function fixtureImages(f: Fixture): Tensor {
  const [B, C, H, W] = f.meta.x_shape as number[];
  const fills = f.meta.x_fill as [number, number, number][];
  const nchw = new Float32Array(B * C * H * W);
  for (let b = 0; b < B; b++) {
    const [seed, scale, offset] = fills[b];
    hashUniformFill(nchw.subarray(b * C * H * W, (b + 1) * C * H * W), seed, scale, offset);
  }
  return permute(new Tensor(nchw, [B, C, H, W]), [0, 2, 3, 1]);
}
