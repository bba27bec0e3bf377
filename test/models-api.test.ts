// Models and decoders by name: every SPEC 7 configuration builds with PyTorch's state_dict names
// and shapes, runs a forward and a training step; state_dict loading reports every mismatch;
// bad names and arguments are refused with errors that say what is valid; initialisation follows
// the reference's schemes; pooled buffers are never used after they are given back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  buildDecoder,
  buildModel,
  type CapsNet,
  DeepCaps,
  reconstructionTarget,
  ShallowCapsNet,
  trainingStep,
} from '../src/models/index.js';
import { type QuantHooks, type StateTensor } from '../src/nn/index.js';
import { poolStats, Tensor } from '../src/tensor/index.js';
import { assertClose } from './helpers.js';

interface Config {
  dataset: string;
  model: string;
  modelArgs: number[];
  decoder: string;
  decoderArgs: number[];
  params: number;
  decoderParams: number;
  keys: Record<string, number[]>;
  decoderKeys: Record<string, number[]>;
}

// Parameter counts from PyTorch (the reference's classes; ShallowCapsNet 64 with 18432 capsules).
const configs: Config[] = [
  {
    dataset: 'mnist / fashion-mnist',
    model: 'ShallowCapsNet',
    modelArgs: [28, 1, 10, 16],
    decoder: 'FCDecoder',
    decoderArgs: [16, 784],
    params: 6804384,
    decoderParams: 1337616,
    keys: {
      'conv.conv.weight': [256, 1, 9, 9],
      'conv.conv.bias': [256],
      'primary.bias': [32, 8, 1, 1],
      'primary.conv3d.weight': [256, 256, 9, 9],
      'digit.weight': [1152, 8, 160],
      'digit.bias': [10, 16],
    },
    decoderKeys: {
      'fc1.weight': [512, 16],
      'fc1.bias': [512],
      'fc2.weight': [1024, 512],
      'fc2.bias': [1024],
      'fc3.weight': [784, 1024],
      'fc3.bias': [784],
    },
  },
  {
    dataset: 'cifar10',
    model: 'ShallowCapsNet',
    modelArgs: [64, 3, 10, 16],
    decoder: 'FCDecoder',
    decoderArgs: [16, 4096],
    params: 28964256,
    decoderParams: 4732416,
    keys: {
      'conv.conv.weight': [256, 3, 9, 9],
      'conv.conv.bias': [256],
      'primary.bias': [32, 8, 1, 1],
      'primary.conv3d.weight': [256, 256, 9, 9],
      'digit.weight': [18432, 8, 160],
      'digit.bias': [10, 16],
    },
    decoderKeys: {
      'fc1.weight': [512, 16],
      'fc1.bias': [512],
      'fc2.weight': [1024, 512],
      'fc2.bias': [1024],
      'fc3.weight': [4096, 1024],
      'fc3.bias': [4096],
    },
  },
  {
    dataset: 'mnist / fashion-mnist',
    model: 'DeepCaps',
    modelArgs: [28, 1, 10, 32],
    decoder: 'ConvDecoder28',
    decoderArgs: [32, 1],
    params: 8445504,
    decoderParams: 58417,
    keys: {
      'conv1.conv.weight': [128, 1, 3, 3],
      'conv1.batchnorm.running_mean': [128],
      'conv1.batchnorm.num_batches_tracked': [],
      'block1.l1.conv.weight': [128, 128, 3, 3],
      'block2.l1.conv.weight': [256, 128, 3, 3],
      'block4.l_skip.bias': [32, 8, 1, 1],
      'block4.l_skip.conv.weight': [256, 1, 8, 3, 3],
      'block3.l_skip.conv.weight': [256, 256, 3, 3],
      'capsLayer.weight': [640, 8, 320],
      'capsLayer.bias': [10, 32],
    },
    decoderKeys: {
      'lin.weight': [784, 32],
      'bn.running_var': [16],
      'bn.num_batches_tracked': [],
      'dc1.weight': [16, 64, 3, 3],
      'dc2.weight': [64, 32, 3, 3],
      'dc4.weight': [16, 1, 3, 3],
      'dc4.bias': [1],
    },
  },
  {
    dataset: 'cifar10 / svhn',
    model: 'DeepCaps',
    modelArgs: [64, 3, 10, 32],
    decoder: 'ConvDecoder64',
    decoderArgs: [32, 3],
    params: 13363008,
    decoderParams: 86387,
    keys: {
      'conv1.conv.weight': [128, 3, 3, 3],
      'block4.l_skip.conv.weight': [256, 1, 8, 3, 3],
      'capsLayer.weight': [2560, 8, 320],
    },
    decoderKeys: {
      'lin.weight': [1024, 32],
      'dc2.weight': [64, 32, 4, 4],
      'dc5.weight': [8, 3, 3, 3],
      'dc5.bias': [3],
    },
  },
];

function images(B: number, wh: number, ch: number, seed = 1): Tensor {
  const x = Tensor.zeros([B, wh, wh, ch]);
  let s = seed;
  for (let i = 0; i < x.size; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x.data[i] = (s >>> 8) / 2 ** 24;
  }
  return x;
}

for (const c of configs) {
  const name = `${c.model} ${c.modelArgs.join(' ')} + ${c.decoder} ${c.decoderArgs.join(' ')} (${c.dataset})`;
  test(`${name}: state_dict names and shapes are PyTorch's`, () => {
    const model = buildModel(c.model, c.modelArgs);
    const decoder = buildDecoder(c.decoder, c.decoderArgs);
    assert.equal(model.parameterCount(), c.params);
    assert.equal(decoder.parameterCount(), c.decoderParams);
    const sd = model.stateDict();
    for (const [k, shape] of Object.entries(c.keys)) assert.deepEqual(sd.get(k)?.shape, shape, k);
    const dsd = decoder.stateDict();
    for (const [k, shape] of Object.entries(c.decoderKeys)) assert.deepEqual(dsd.get(k)?.shape, shape, k);
    if (c.decoder === 'FCDecoder') assert.deepEqual([...dsd.keys()], Object.keys(c.decoderKeys));
  });

  test(`${name}: forward gives [B, classes, caps_dim] and a training step runs`, () => {
    const [wh, ch, classes, dim] = c.modelArgs;
    const model = buildModel(c.model, c.modelArgs);
    const decoder = buildDecoder(c.decoder, c.decoderArgs);
    const x = images(2, wh, ch);
    const caps = model.forward(x, false);
    assert.deepEqual(caps.shape, [2, classes, dim]);
    assert.ok(caps.data.every(Number.isFinite));
    const r = trainingStep(model, decoder, x, Int32Array.of(1, 4), { regularizationScale: 0.0005 });
    assert.deepEqual(r.caps.shape, [2, classes, dim]);
    assert.ok(Number.isFinite(r.loss) && r.loss > 0);
    assert.ok(Math.abs(r.loss - (r.marginLoss + 0.0005 * r.reconLoss)) < 1e-9 * r.loss);
    // gradients are finite, and reach the first and the last layer (inside DeepCaps, the
    // squashes of small capsules make block3's and block4's gradients vanish at the
    // reference's init: PyTorch gives exactly the same zeros)
    const params = [...model.parameters(), ...decoder.parameters()];
    assert.ok(params.every((p) => p.grad.data.every(Number.isFinite)));
    const first = model.parameters()[0];
    const last = model.parameters().at(-1)!;
    for (const p of [first, last, ...decoder.parameters()])
      assert.ok(
        p.grad.data.some((g) => g !== 0),
        `${p.name} gets a gradient`,
      );
  });
}

test('cifar10 ShallowCapsNet: FCDecoder 16 4096 reconstructs the mean of the three channels', () => {
  const x = images(2, 64, 3);
  const { target } = reconstructionTarget(x, [2, 4096]);
  assert.deepEqual(target.shape, [2, 4096]);
  const p = 2 * 4096 - 1;
  assert.ok(Math.abs(target.data[p] - (x.data[3 * p] + x.data[3 * p + 1] + x.data[3 * p + 2]) / 3) < 1e-7);
  // the full image in PyTorch's (C, H, W) order when the decoder reconstructs every value
  const full = reconstructionTarget(x, [2, 3 * 4096]).target;
  assert.equal(full.data[4096 + 5], x.data[5 * 3 + 1]);
  assert.throws(
    () => reconstructionTarget(x, [2, 784]),
    /gives 784 values per image but the images \[2, 64, 64, 3\] have 12288 values \(or 4096 per plane\)/,
  );
  assert.throws(
    () => reconstructionTarget(images(1, 28, 1), [1, 28, 28, 3]),
    /reconstructs \[1, 28, 28, 3\] but the images are \[1, 28, 28, 1\]/,
  );
});

test('loadStateDict reports every missing, unexpected and mis-shaped key in one error and writes nothing', () => {
  const model = new ShallowCapsNet(28, 1, 10, 16, 1);
  const before = model.digit.weight.data.slice(0, 16);
  const sd = new ShallowCapsNet(28, 1, 10, 16, 2).stateDict();
  sd.delete('digit.bias');
  sd.delete('primary.bias');
  sd.set('digit.extra', { shape: [3], data: new Float32Array(3), dtype: 'float32' });
  sd.set('conv.conv.weight', { shape: [256, 3, 9, 9], data: new Float32Array(256 * 243), dtype: 'float32' });
  assert.throws(
    () => model.loadStateDict(sd, 'checkpoint model.pt'),
    (err: Error) => {
      const m = err.message;
      assert.match(m, /^ShallowCapsNet: the checkpoint model.pt does not match the model/);
      assert.match(m, /missing keys \(2\):\n {4}primary.bias \[32, 8, 1, 1\]\n {4}digit.bias \[10, 16\]/);
      assert.match(m, /unexpected keys \(1\):\n {4}digit.extra \[3\]/);
      assert.match(
        m,
        /wrong shapes \(1\):\n {4}conv.conv.weight: \[256, 3, 9, 9\] in the checkpoint model.pt, expected \[256, 1, 9, 9\]/,
      );
      return true;
    },
  );
  assert.deepEqual(model.digit.weight.data.slice(0, 16), before);
});

test('stateDict -> loadStateDict round-trips weights, BN statistics and num_batches_tracked', () => {
  const a = new DeepCaps(28, 1, 10, 32, 1);
  const x = images(2, 28, 1);
  a.forward(x, true); // moves the running statistics, counts one batch
  const sd = a.stateDict();
  const nbt = sd.get('conv1.batchnorm.num_batches_tracked')!;
  assert.equal(nbt.dtype, 'int64');
  assert.deepEqual(nbt.integers, BigInt64Array.of(1n));
  assert.deepEqual(
    a.buffers().map((b) => b.name),
    ['conv1.batchnorm.running_mean', 'conv1.batchnorm.running_var', 'conv1.batchnorm.num_batches_tracked'],
  );
  const b = new DeepCaps(28, 1, 10, 32, 2);
  // an int64 tensor as src/io reads it: exact values in `integers`
  const loaded = new Map<string, StateTensor>(sd);
  loaded.set('conv1.batchnorm.num_batches_tracked', {
    shape: [],
    data: Float32Array.of(0),
    dtype: 'int64',
    integers: BigInt64Array.of(1n),
  });
  b.loadStateDict(loaded);
  assert.equal(b.conv1.batchnorm.state.numBatchesTracked, 1);
  for (const [k, t] of b.stateDict()) assert.deepEqual(t.data, sd.get(k)!.data, k);
  assert.deepEqual(b.forward(x, false).data, a.forward(x, false).data);
  // plain objects work too
  const c = new DeepCaps(28, 1, 10, 32, 3);
  c.loadStateDict(Object.fromEntries(sd));
  assert.deepEqual(c.capsLayer.weight.data, a.capsLayer.weight.data);
});

test('bad model and decoder names and arguments are refused with what is valid', () => {
  assert.throws(() => buildModel('Foo', [28, 1, 10, 16]), /unknown model 'Foo': expected ShallowCapsNet or DeepCaps/);
  assert.throws(
    () => buildDecoder('Bar', [16, 784]),
    /unknown decoder 'Bar': expected FCDecoder, ConvDecoder28 or ConvDecoder64/,
  );
  assert.throws(() => buildModel('DeepCaps', [32, 1, 10, 32]), /DeepCaps: input_wh must be 28 or 64, got 32/);
  assert.throws(
    () => buildModel('ShallowCapsNet', [28, 1, 10]),
    /buildModel\('ShallowCapsNet', args\): args needs 4 values \(input_wh input_ch num_classes caps_dim\), got 3 \(28 1 10\)/,
  );
  assert.throws(
    () => buildModel('DeepCaps', [28, 0, 10, 32]),
    /buildModel\('DeepCaps', args\): args\[1\] \(input_ch\) must be a positive integer, got 0/,
  );
  assert.throws(
    () => buildModel('ShallowCapsNet', [28, 1, 10.5, 16]),
    /args\[2\] \(num_classes\) must be a positive integer/,
  );
  assert.throws(() => buildModel('ShallowCapsNet', [16, 1, 10, 16]), /input_wh 16 is too small \(at least 17 pixels\)/);
  assert.throws(
    () => buildDecoder('ConvDecoder28', [32]),
    /buildDecoder\('ConvDecoder28', args\): args needs 2 values \(in_dim out_channels\), got 1/,
  );
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
  assert.throws(
    () => model.forward(images(1, 28, 3), false),
    /ShallowCapsNet: input has shape \[1, 28, 28, 3\], expected \[\*, 28, 28, 1\]/,
  );
  assert.throws(
    () =>
      trainingStep(model, buildDecoder('FCDecoder', [32, 784]), images(1, 28, 1), Int32Array.of(0), {
        regularizationScale: 0.0005,
      }),
    /FCDecoder reads capsules of dimension 32 but ShallowCapsNet gives 16/,
  );
  assert.throws(() => model.backward(Tensor.zeros([1, 10, 16])), /backward called without a training-mode forward/);
});

test("initialisation follows the reference's schemes and is reproducible from the seed", () => {
  const maxAbs = (d: Float32Array) => d.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const within = (d: Float32Array, bound: number, what: string) => {
    const m = maxAbs(d);
    assert.ok(m <= Math.fround(bound) && m > 0.97 * bound, `${what}: max |w| ${m}, bound ${bound}`);
  };
  const s = new ShallowCapsNet(28, 1, 10, 16, 7);
  within(s.digit.weight.data, Math.sqrt(6 / (8 * 160)), 'Capsules weight (kaiming_uniform, fan_in = 8*160)');
  assert.ok(
    s.digit.bias.data.every((v) => Math.abs(v - 0.1) < 1e-7),
    'Capsules bias 0.1',
  );
  within(s.conv.conv.weight.data, 1 / 9, 'Conv2d weight (kaiming_uniform a=sqrt(5))');
  within(s.conv.conv.bias!.data, 1 / 9, 'Conv2d bias U(+-1/sqrt(fan_in))');
  within(s.primary.conv.weight.data, 1 / Math.sqrt(256 * 81), 'primary conv3d weight');
  assert.ok(
    s.primary.bias.data.every((v) => v === 0),
    'primary bias 0 (as the reference)',
  );
  const w = s.digit.weight.data;
  const mean = w.reduce((a, v) => a + v, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, v) => a + (v - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(mean) < 1e-4 && Math.abs(std - Math.sqrt(6 / 1280) / Math.sqrt(3)) < 1e-4, 'uniform');

  const d = new DeepCaps(28, 1, 10, 32, 7);
  within(d.block1.l1.conv.weight.data, Math.sqrt(6 / (128 * 9 + 128 * 9)), 'Conv2DCaps weight (xavier_uniform)');
  assert.ok(
    d.block1.l1.conv.bias!.data.every((v) => v === 0),
    'Conv2DCaps bias 0',
  );
  within(
    d.block4.l_skip.conv.weight.data,
    Math.sqrt(6 / (8 * 9)),
    'Conv3DCaps weight (kaiming_uniform, fan_in = 8*3*3)',
  );
  assert.ok(
    d.block4.l_skip.conv.bias!.data.every((v) => v === 0),
    'Conv3DCaps conv bias 0',
  );
  const skip = d.block4.l_skip.parameters().find((p) => p.name === 'block4.l_skip.bias')!;
  assert.ok(
    skip.param.data.every((v) => Math.abs(v - 0.1) < 1e-7),
    'Conv3DCaps routing bias 0.1',
  );
  assert.ok(
    d.conv1.batchnorm.state.weight.data.every((v) => v === 1) &&
      d.conv1.batchnorm.state.runningVar.data.every((v) => v === 1),
  );
  assert.equal(d.conv1.batchnorm.state.momentum, 0.99);
  assert.equal(d.conv1.batchnorm.state.eps, 1e-3);

  const fc = buildDecoder('FCDecoder', [16, 784], { seed: 7 });
  const conv = buildDecoder('ConvDecoder28', [32, 1], { seed: 7 });
  const p = (m: { parameters(): { name: string; param: Tensor }[] }, n: string) =>
    m.parameters().find((q) => q.name === n)!.param.data;
  within(p(fc, 'fc2.weight'), 1 / Math.sqrt(512), 'Linear weight');
  within(p(fc, 'fc2.bias'), 1 / Math.sqrt(512), 'Linear bias');
  within(p(conv, 'dc2.weight'), 1 / Math.sqrt(32 * 9), 'ConvTranspose2d weight (fan_in from Cout*k*k)');
  assert.equal(conv.stateDict().get('bn.running_var')!.data[0], 1);

  assert.deepEqual(new ShallowCapsNet(28, 1, 10, 16, 7).stateDict(), s.stateDict());
  assert.notDeepEqual(
    new ShallowCapsNet(28, 1, 10, 16, 8).digit.weight.data.slice(0, 8),
    s.digit.weight.data.slice(0, 8),
  );
});

test('repeated training steps give identical results: no pooled buffer is used after it is given back', () => {
  for (const [m, args, dec, dargs] of [
    ['DeepCaps', [28, 1, 10, 32], 'ConvDecoder28', [32, 1]],
    ['ShallowCapsNet', [28, 1, 10, 16], 'FCDecoder', [16, 784]],
  ] as const) {
    const model: CapsNet = buildModel(m, args);
    const decoder = buildDecoder(dec, dargs);
    const x = images(2, 28, 1, 3);
    const labels = Int32Array.of(2, 9);
    const evalBefore = model.forward(x, false).data.slice();
    const runs: { loss: number; grads: Float32Array[] }[] = [];
    const buffers: number[] = [];
    for (let k = 0; k < 3; k++) {
      model.zeroGrad();
      decoder.zeroGrad();
      // BN's running statistics move, but training-mode outputs use batch statistics only
      const r = trainingStep(model, decoder, x, labels, { regularizationScale: 0.0005 });
      runs.push({
        loss: r.loss,
        grads: [...model.parameters(), ...decoder.parameters()].map((q) => q.grad.data.slice()),
      });
      buffers.push(poolStats().buffers);
    }
    assert.equal(runs[1].loss, runs[0].loss, `${m}: same loss`);
    assert.equal(runs[2].loss, runs[0].loss, `${m}: same loss`);
    runs[2].grads.forEach((g, i) => assert.deepEqual(g, runs[0].grads[i], `${m}: gradient ${i}`));
    assert.equal(buffers[2], buffers[1], `${m}: the pool does not grow from step to step`);
    if (m === 'ShallowCapsNet') assert.deepEqual(model.forward(x, false).data, evalBefore, 'eval output unchanged');
  }
});

test('quantization hooks see every activation point of SPEC 4 and the routing layers', () => {
  const calls: string[] = [];
  const routing: string[] = [];
  const hooks: QuantHooks = {
    activation: (layer, point, t) => {
      calls.push(`${layer}:${point}`);
      assert.ok(t.size > 0);
    },
    routing: (layer) => {
      routing.push(layer);
      return null;
    },
  };
  const s = new ShallowCapsNet(28, 1, 10, 16);
  const x = images(1, 28, 1);
  const plain = s.forward(x, false).data.slice();
  // hooks without the votes' quantizer take the unfused capsule path (votes by GEMM, then the
  // routing): the same values up to the GEMM's rounding (fused multiply-adds in the built-in
  // GEMM, products rounded first in the fused inference kernel)
  const hooked = s.forward(x, { training: false, quant: hooks });
  assertClose(hooked, new Tensor(plain, hooked.shape), 'identity hooks change nothing', 1e-6, 1e-7);
  assert.deepEqual(calls, ['conv.conv:out', 'primary:votes', 'digit:votes']);
  assert.deepEqual(routing, ['primary', 'digit']);
  calls.length = 0;
  routing.length = 0;
  new DeepCaps(28, 1, 10, 32).forward(x, { training: false, quant: hooks });
  const block = (b: string, skip: string[]) => [
    `${b}.l1:conv`,
    `${b}.l1:squash`,
    ...skip,
    `${b}.l2:conv`,
    `${b}.l2:squash`,
    `${b}.l3:conv`,
    `${b}.l3:squash`,
  ];
  const conv2dSkip = (b: string) => [`${b}.l_skip:conv`, `${b}.l_skip:squash`];
  assert.deepEqual(calls, [
    'conv1:out',
    ...block('block1', conv2dSkip('block1')),
    ...block('block2', conv2dSkip('block2')),
    ...block('block3', conv2dSkip('block3')),
    ...block('block4', ['block4.l_skip:votes']),
    'capsLayer:votes',
  ]);
  assert.deepEqual(routing, ['block4.l_skip', 'capsLayer']);
});
