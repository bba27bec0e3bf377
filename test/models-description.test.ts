// The one description each model states (src/models/description.ts): its layers by name with
// kind, parameters, routing, convolution geometry and inputs; the module-path -> layer rule;
// the quantization points traced from the forward; the conv-geometry and integer-container
// rules everything shares; and the per-layer bit records with their file-boundary lists.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildModel } from '../src/models/index.js';
import { activationCounts } from '../src/quant/activation-volume.js';
import { bitsFromLists, bitsToLists, configKey, uniformBits } from '../src/quant/config.js';
import { integerContainer } from '../src/quant/integer-container.js';
import { convOutputSide } from '../src/tensor/conv-geometry.js';

test('ShallowCapsNet states its layers once: kinds, geometry, routing, inputs and parameters', () => {
  const m = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const d = m.description;
  assert.deepEqual(d.names, ['conv', 'primary', 'digit']);
  assert.deepEqual(d.routingNames, ['primary', 'digit']);
  assert.deepEqual(
    d.layers.map((l) => [l.kind, l.iterations, l.conv]),
    [
      ['Conv2d_ReLU', 0, { kernel: 9, stride: 1, pad: 0 }],
      ['ConvPixelToCapsules', 1, { kernel: 9, stride: 2, pad: 0 }],
      ['Capsules', 3, null],
    ],
  );
  assert.deepEqual(d.layer('digit').input, { from: ['primary'], flatten: true });
  assert.deepEqual(d.layer('conv').input, { from: ['image'], flatten: false });
  // every parameter belongs to exactly one layer, and the layer's count is its parameters'
  const all = m.parameters().map((p) => p.name);
  assert.deepEqual(
    d.layers.flatMap((l) => l.params.map((p) => p.name)),
    all,
  );
  for (const l of d.layers)
    assert.equal(
      l.paramCount,
      l.params.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0),
      l.name,
    );
  assert.deepEqual(d.layer('conv').params[0], {
    name: 'conv.conv.weight',
    shape: [256, 1, 9, 9],
    heldShape: [256, 9, 9, 1],
    layout: 'ohwi',
  });
  // primary capsules on a 6 x 6 grid for 28 x 28 images: 32 * 36 = 1152
  assert.equal(convOutputSide(convOutputSide(28, d.layer('conv').conv!), d.layer('primary').conv!), 6);
  assert.equal((m as unknown as { numPrimaryCaps: number }).numPrimaryCaps, 1152);
});

test('DeepCaps: capsLayer reads block3 and block4 flattened; paths resolve to their layer', () => {
  const m = buildModel('DeepCaps', [28, 1, 10, 32]);
  const d = m.description;
  assert.deepEqual(d.names, ['conv1', 'block1', 'block2', 'block3', 'block4', 'capsLayer']);
  assert.deepEqual(d.layer('capsLayer').input, { from: ['block3', 'block4'], flatten: true });
  assert.deepEqual(d.layer('block2').input, { from: ['block1'], flatten: false });
  assert.equal(d.layerOf('block4.l_skip.conv.bias').name, 'block4');
  assert.equal(d.layerOf('capsLayer').name, 'capsLayer');
  assert.equal(d.index('block3'), 3);
  assert.throws(() => d.layerOf('block9.l1.conv.weight'), /DeepCaps: 'block9\.l1\.conv\.weight' belongs to no layer/);
  assert.throws(() => d.index('digit'), /DeepCaps: no layer named 'digit' \(its layers: conv1, block1/);
});

test("the quantization points are traced from the model's own forward, per layer", () => {
  const m = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const points = m.description.quantPoints();
  assert.deepEqual(
    points.map((ps) => ps.map((p) => `${p.path}/${p.point}`)),
    [['conv.conv/out'], ['primary/votes'], ['digit/votes']],
  );
  assert.equal(points[0][0].elements, 20 * 20 * 256);
  assert.deepEqual(
    activationCounts(m),
    points.map((ps) => ps.reduce((n, p) => n + p.elements, 0)),
  );
  assert.equal(m.description.quantPoints(), points, 'traced once');
});

test('one rule for the integer container of a width', () => {
  assert.deepEqual([1, 8, 9, 16, 17, 32, 33, 64].map(integerContainer), [8, 8, 16, 16, 32, 32, 64, 64]);
  assert.throws(() => integerContainer(65), /a width of 65 bits: expected an integer in \[1, 64\]/);
  assert.throws(() => integerContainer(0), /a width of 0 bits/);
});

test('bits are records by layer name; the files keep their positional lists', () => {
  const m = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  const lists = { weightBits: [8, 7, 6], actBits: [6, 5, 4], routingBits: [5, 3] };
  const bits = bitsFromLists(m.quantLayers, lists);
  assert.deepEqual(bits, [
    { name: 'conv', format: 'fixed', weight: 8, act: 6, routing: null },
    { name: 'primary', format: 'fixed', weight: 7, act: 5, routing: 5 },
    { name: 'digit', format: 'fixed', weight: 6, act: 4, routing: 3 },
  ]);
  assert.deepEqual(bitsToLists(bits), lists);
  assert.equal(configKey(bits), 'w8,7,6|a6,5,4|r5,3');
  assert.equal(configKey(lists), configKey(bits));
  assert.equal(configKey(uniformBits(m.quantLayers, 4)), 'w4,4,4|a4,4,4|r4,4');
  assert.throws(
    () => bitsFromLists(m.quantLayers, { ...lists, routingBits: [5] }),
    /bits\.routingBits: expected 2 bit counts \(primary, digit\), got 1/,
  );
});
