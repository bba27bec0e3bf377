// The clipped straight-through estimator of quantization-aware fine-tuning
// (src/search/straight-through.ts): a weight outside its quantizer's [lo, hi] gets no gradient,
// one inside gets the quantized forward's gradient whole; the float weights come back after the
// step; each activation point, and each routing output, clips where its quantizer saturates;
// stochastic rounding's draws differ per step and repeat for a seed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildModel } from '../src/models/factory.js';
import { Capsules } from '../src/nn/capsules.js';
import { Conv2dBnRelu } from '../src/nn/conv-bn-relu.js';
import { Conv2DCaps, Conv3DCaps, ConvPixelToCapsules } from '../src/nn/conv-caps.js';
import { Conv2dRelu } from '../src/nn/conv2d.js';
import type { Layer, Module, QuantHooks } from '../src/nn/module.js';
import { uniformBits } from '../src/quant/config.js';
import { quantHooks, quantizeWeightsInPlace } from '../src/quant/quantized-forward.js';
import { clippedHooks, StraightThroughSteps, stepRounding } from '../src/search/straight-through.js';
import type { QuantSpec, RoutingQuant } from '../src/tensor/backend.js';
import { Tensor } from '../src/tensor/tensor.js';

const spec = (lo: number, hi: number): QuantSpec => ({
  method: 'round_to_nearest',
  frac: 6,
  compat: false,
  lo,
  hi,
  seed: 1,
  stream: 0,
});

const input = (shape: number[]) => {
  let s = 11;
  const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s >>> 8) / 16777216 - 0.25;
  });
  return new Tensor(data, shape);
};

test('clippedHooks: the gradient passes where the activation lay within [lo, hi], is 0 elsewhere, once', () => {
  const q = spec(-0.5, 0.5);
  const base: QuantHooks = {
    activation: () => {},
    activationSpec: (_layer, point) => (point === 'out' ? q : spec(-Infinity, Infinity)),
    routing: () => null,
  };
  const hooks = clippedHooks(base);
  // a point that can saturate is not fused into the convolution: activation() sees the float values
  assert.equal(hooks.activationSpec!('l', 'out'), null);
  assert.deepEqual(hooks.activationSpec!('l', 'votes'), spec(-Infinity, Infinity));
  hooks.activation('l', 'out', new Tensor(Float32Array.of(-1, -0.5, 0.2, 0.5, 0.9), [5]));
  hooks.activation('l', 'votes', new Tensor(Float32Array.of(-9, 9), [2]));
  const g = hooks.clipGradient!('l', 'out', new Tensor(Float32Array.of(1, 2, 3, 4, 5), [5]));
  assert.deepEqual([...g!.data], [0, 2, 3, 4, 0]);
  assert.equal(hooks.clipGradient!('l', 'out', new Tensor(new Float32Array(5), [5])), null, 'used once');
  assert.equal(hooks.clipGradient!('l', 'votes', new Tensor(new Float32Array(2), [2])), null, 'no bounds');
});

test('weights: outside [lo, hi] no gradient, inside the quantized forward gradient whole; floats back after', () => {
  const model = buildModel('ShallowCapsNet', [18, 1, 2, 2], { seed: 3 });
  const w = model.parameters().find((p) => p.name === 'conv.conv.weight')!;
  // 4 fractional bits: weights saturate to [-1, 1 - 1/16]
  const outside = [5, 40];
  const inside = [6, 41];
  w.param.data[5] = 1.5;
  w.param.data[40] = -3;
  w.param.data[6] = 0.7;
  w.param.data[41] = -0.9;
  const floats = model.parameters().map((p) => p.param.data.slice());
  const bits = uniformBits(model.quantLayers, 4);
  const rounding = { method: 'stochastic_rounding' as const, compat: 'none' as const, seed: 9 };
  const x = new Tensor(
    input([3, 18, 18, 1]).data.map((v) => Math.max(0, v)),
    [3, 18, 18, 1],
  );
  // a forward and backward of the model as it is, through `quant`
  const pass = (quant: QuantHooks) => {
    const caps = model.forward(x, { training: true, quant });
    const dy = new Tensor(
      caps.data.map((_, i) => ((i % 5) - 2) / 7),
      caps.shape,
    );
    model.backward(dy);
  };

  // the reference: the model's parameters quantized as step 3 quantizes them, plain hooks
  const r3 = stepRounding(rounding, 3);
  quantizeWeightsInPlace(model, r3, bits);
  model.zeroGrad();
  pass(quantHooks(model, r3, bits, 0));
  const reference = model.parameters().map((p) => p.grad.data.slice());
  model.parameters().forEach((p, k) => p.param.data.set(floats[k]));

  model.zeroGrad();
  new StraightThroughSteps(model, bits, rounding).run(3, pass);
  const k = model.parameters().findIndex((p) => p.name === w.name);
  for (const i of [...outside, ...inside])
    assert.notEqual(reference[k][i], 0, `the quantized forward's gradient at ${i} (precondition)`);
  const grads = model.parameters().map((p) => p.grad.data);
  for (const i of outside) assert.equal(grads[k][i], 0, `weight ${i} = ${floats[k][i]} saturates: no gradient`);
  const expected = reference.map((g) => g.slice());
  for (const i of outside) expected[k][i] = 0;
  grads.forEach((g, j) => assert.deepEqual(g, expected[j], model.parameters()[j].name));
  model.parameters().forEach((p, j) => assert.deepEqual(p.param.data, floats[j], `${p.name}: the float values back`));
});

test('weights: stochastic rounding draws differ from step to step and repeat for a seed', () => {
  const model = buildModel('ShallowCapsNet', [18, 1, 2, 2], { seed: 3 });
  const bits = uniformBits(model.quantLayers, 3);
  const digit = () =>
    model
      .parameters()
      .find((p) => p.name === 'digit.weight')!
      .param.data.slice();
  const seen = (seed: number, step: number) =>
    new StraightThroughSteps(model, bits, { method: 'stochastic_rounding', compat: 'none', seed }).run(step, digit);
  const a = seen(1, 0);
  assert.deepEqual(seen(1, 0), a);
  assert.notDeepEqual(seen(1, 1), a);
  assert.notDeepEqual(seen(2, 0), a);
  assert.ok(
    a.every((v) => Number.isInteger(v * 8)),
    'on the 3-bit grid',
  );
});

/** Hooks whose quantizer at `saturating` ('out', 'votes', 'conv', 'squash', or 'routing' for
 *  the routing's c and v) has bounds [lo, hi], every other one none; values at 6 fractional bits. */
function boundedHooks(saturating: string, lo: number, hi: number): QuantHooks {
  const q = (point: string) => (point === saturating ? spec(lo, hi) : spec(-Infinity, Infinity));
  return {
    activationSpec: (_layer, point) => q(point),
    activation: (_layer, point, t) => {
      const s = q(point);
      for (let i = 0; i < t.size; i++) t.data[i] = Math.min(s.hi, Math.max(s.lo, Math.round(t.data[i] * 64) / 64));
    },
    routing: (): RoutingQuant => ({ act: q('routing'), routing: null }),
  };
}

/** The parameter gradients of one training forward and backward of `layer` through `quant`. */
function gradients(layer: Module & Layer, x: Tensor, quant: QuantHooks): Float32Array[] {
  layer.train();
  layer.zeroGrad();
  const y = layer.forward(x, { training: true, quant });
  const dy = new Tensor(
    y.data.map((_, i) => ((i % 7) - 3) / 5),
    y.shape,
  );
  layer.backward(dy, true);
  return layer.parameters().map((p) => p.grad.data.slice());
}

test('activations: each quantization point of each layer clips its gradient where it saturated', () => {
  const layers: [string, () => Module & Layer, number[], string[]][] = [
    ['Conv2d_ReLU', () => new Conv2dRelu({ inChannels: 2, outChannels: 3, kernel: 3 }), [2, 5, 5, 2], ['out']],
    ['Conv2d_BN_ReLU', () => new Conv2dBnRelu({ inChannels: 2, outChannels: 3, kernel: 3 }), [2, 5, 5, 2], ['out']],
    [
      'Conv2DCaps',
      () => new Conv2DCaps({ ci: 2, ni: 2, co: 2, no: 3, kernel: 3, stride: 1, pad: 1 }),
      [2, 4, 4, 2, 2],
      ['conv', 'squash'],
    ],
    [
      'ConvPixelToCapsules',
      () => new ConvPixelToCapsules({ ci: 1, ni: 3, co: 2, no: 4, kernel: 3, stride: 2, pad: 0 }),
      [2, 7, 7, 3],
      ['votes', 'routing'],
    ],
    [
      'Conv3DCaps',
      () => new Conv3DCaps({ ci: 2, ni: 2, co: 2, no: 2, kernel: 3, stride: 1, pad: 1 }, 3),
      [2, 3, 3, 2, 2],
      ['votes', 'routing'],
    ],
    ['Capsules', () => new Capsules(6, 4, 3, 2, 3), [2, 6, 4], ['votes', 'routing']],
  ];
  for (const [kind, make, shape, points] of layers) {
    const x = input(shape);
    for (const point of points) {
      const layer = make();
      layer.resetParameters(5);
      // bounds that nothing reaches: the clipped gradients are the plain ones
      const wide = gradients(layer, x, clippedHooks(boundedHooks(point, -1e6, 1e6)));
      assert.deepEqual(
        wide,
        gradients(layer, x, boundedHooks(point, -1e6, 1e6)),
        `${kind} ${point}: nothing saturates`,
      );
      // bounds above every value: the straight-through gradient flows, the clipped one does not
      const plain = gradients(layer, x, boundedHooks(point, 5, 6));
      const clipped = gradients(layer, x, clippedHooks(boundedHooks(point, 5, 6)));
      assert.ok(
        plain.some((g) => g.some((v) => v !== 0)),
        `${kind} ${point}: the straight-through gradient flows (precondition)`,
      );
      // every parameter whose gradient passes the point gets none (the routing's own bias is
      // added after the votes: only a saturated routing output stops it)
      layer.parameters().forEach((p, k) => {
        if (point === 'votes' && p.name === 'bias') return;
        assert.ok(
          clipped[k].every((v) => v === 0),
          `${kind} ${point}: ${p.name} gets no gradient through a saturated quantizer`,
        );
      });
    }
  }
});
