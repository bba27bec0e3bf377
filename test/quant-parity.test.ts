// --rounding-compat dac2020 reproduces the reference implementation's quantized models
// (fixtures/quant, tools/make-quant-fixtures.py): per-layer weight, activation and routing
// bits with its round_to_nearest and truncation, on ShallowCapsNet and DeepCaps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildModel } from '../src/models/factory.js';
import { ModelQuantizer } from '../src/quant/quantized-forward.js';
import { bitsFromLists } from '../src/quant/config.js';
import { give, type Tensor } from '../src/tensor/index.js';
import { fixture } from './helpers.js';
import { type Fill, fillModule, fixtureImages } from './model-fixtures.js';

// ShallowCapsNet reproduces the reference bit for bit. DeepCaps' deeper float32 sums land on
// the other side of a rounding boundary now and then: its outputs stay within a few steps of
// the output quantization and give the same predictions.
/** The longest class capsule per image. */
function predictions(caps: Tensor): number[] {
  const [B, K, D] = caps.shape;
  return Array.from({ length: B }, (_, b) => {
    let best = -1;
    let arg = 0;
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += caps.data[(b * K + k) * D + d] ** 2;
      if (s > best) [best, arg] = [s, k];
    }
    return arg;
  });
}

for (const [name, model, args, bitExact] of [
  ['shallow28', 'ShallowCapsNet', [28, 1, 10, 16], true],
  ['deepcaps28', 'DeepCaps', [28, 1, 10, 32], false],
  ['deepcaps28_fine', 'DeepCaps', [28, 1, 10, 32], false],
] as const) {
  for (const method of ['round_to_nearest', 'truncation'] as const) {
    test(`${name}: the reference's quantized forward with ${method} (dac2020 arithmetic)`, () => {
      const f = fixture(name, 'quant');
      const net = buildModel(model, [...args]);
      fillModule(net, f.meta.fill as Fill);
      net.eval();
      const bits = f.meta.bits as { weights: number[]; act: number[]; routing: number[] };
      const q = new ModelQuantizer(net, method, 'dac2020', 0);
      const config = bitsFromLists(net.quantLayers, {
        weightBits: bits.weights,
        actBits: bits.act,
        routingBits: bits.routing,
      });
      q.applyWeights(config);
      const x = fixtureImages(f);
      const out = net.forward(x, {
        training: false,
        quant: q.hooks(config, 0),
      });
      const ref = f.get(method);
      if (bitExact) assert.deepEqual(out.data, ref.data);
      const lsb = 2 ** -bits.act[bits.act.length - 1];
      for (let i = 0; i < ref.size; i++) {
        const d = Math.abs(out.data[i] - ref.data[i]);
        assert.ok(d <= 4 * lsb, `element ${i}: ${out.data[i]} vs ${ref.data[i]} (output step ${lsb})`);
      }
      assert.deepEqual(predictions(out), predictions(ref));
      give(out.data);
      q.restore();
    });
  }
}
