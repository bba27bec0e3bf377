// linear, batch_norm2d, activations, softmax, squash, capsule votes, losses, Adam and the
// shape ops match PyTorch (fixtures/core): linear, capsule votes and Adam on each backend, the
// others on the default one; the permute kernel puts every element where the index arithmetic
// says on each backend; bad input gives errors naming the op.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Adam,
  batchNorm2dBackward,
  batchNorm2dForward,
  capsuleVotesBackward,
  capsuleVotesForward,
  concat,
  linearBackward,
  linearForward,
  MARGIN_DEFAULT,
  MARGIN_HARD,
  marginLoss,
  permute,
  permuteBackward,
  reconstructionLoss,
  reluBackward,
  reluForward,
  sigmoidBackward,
  sigmoidForward,
  softmaxBackward,
  softmaxForward,
  split,
  squashBackward,
  squashForward,
  Tensor,
} from '../src/tensor/index.js';
import type { BatchNormState } from '../src/tensor/index.js';
import { assertClose, backendCases, fixture, nchwToNhwc, nhwcToNchw, withBackend } from './helpers.js';

for (const [k, skip] of backendCases()) {
  test(`linear forward and backward match PyTorch (${k.name})`, { skip }, () =>
    withBackend(k, () => {
      const f = fixture('linear');
      const x = f.get('x');
      const w = f.get('w');
      assertClose(linearForward(x, w, f.get('b')), f.get('y'), 'linear y');
      const dw = Tensor.zeros(w.shape);
      const db = Tensor.zeros([w.shape[0]]);
      const dx = linearBackward(f.get('g'), x, w, { dw, db });
      assertClose(dx!, f.get('dx'), 'linear dx');
      assertClose(dw, f.get('dw'), 'linear dw');
      assertClose(db, f.get('db'), 'linear db');
    }),
  );

  test(`capsule votes forward and backward match PyTorch (${k.name})`, { skip }, () =>
    withBackend(k, () => {
      const f = fixture('capsule_votes');
      const x = f.get('x');
      const w = f.get('w');
      const u = capsuleVotesForward(x, w);
      assertClose(u, f.get('u'), 'votes');
      const dw = Tensor.zeros(w.shape);
      const dx = capsuleVotesBackward(f.get('g'), x, w, dw);
      assertClose(dx!, f.get('dx'), 'votes dx');
      assertClose(dw, f.get('dw'), 'votes dw');
    }),
  );
}

test('batch_norm2d: training forward/backward, running statistics with momentum 0.99, eval', () => {
  const f = fixture('batch_norm2d');
  const bn: BatchNormState = {
    weight: f.get('gamma'),
    bias: f.get('beta'),
    runningMean: Tensor.zeros([3]),
    runningVar: Tensor.from([1, 1, 1], [3]),
    numBatchesTracked: 0,
    momentum: f.meta.momentum as number,
    eps: f.meta.eps as number,
  };
  const x1 = nchwToNhwc(f.get('x1'));
  const { y, cache } = batchNorm2dForward(x1, bn, true);
  assertClose(nhwcToNchw(y), f.get('y1'), 'bn y1');
  const dw = Tensor.zeros([3]);
  const db = Tensor.zeros([3]);
  const dx = batchNorm2dBackward(nchwToNhwc(f.get('g1')), cache!, bn, { dw, db });
  assertClose(nhwcToNchw(dx), f.get('dx1'), 'bn dx');
  assertClose(dw, f.get('dgamma'), 'bn dgamma');
  assertClose(db, f.get('dbeta'), 'bn dbeta');
  const y2 = batchNorm2dForward(nchwToNhwc(f.get('x2')), bn, true).y;
  assertClose(nhwcToNchw(y2), f.get('y2'), 'bn y2');
  assertClose(bn.runningMean, f.get('running_mean'), 'running mean');
  assertClose(bn.runningVar, f.get('running_var'), 'running var (unbiased)');
  assert.equal(bn.numBatchesTracked, 2);
  const y3 = batchNorm2dForward(nchwToNhwc(f.get('x3')), bn, false).y;
  assertClose(nhwcToNchw(y3), f.get('y3'), 'bn eval');
});

test('relu and sigmoid forward and backward match PyTorch', () => {
  const f = fixture('activations');
  const y = reluForward(f.get('x'));
  assertClose(y, f.get('relu'), 'relu');
  assertClose(reluBackward(f.get('g'), y), f.get('drelu'), 'drelu');
  const s = sigmoidForward(f.get('x2'));
  assertClose(s, f.get('sigmoid'), 'sigmoid');
  assertClose(sigmoidBackward(f.get('g2'), s), f.get('dsigmoid'), 'dsigmoid');
});

test('softmax over one axis and jointly over several axes matches PyTorch', () => {
  const f = fixture('softmax');
  const y = softmaxForward(f.get('x'), 2);
  assertClose(y, f.get('y'), 'softmax dim 2');
  assertClose(softmaxBackward(f.get('g'), y, 2), f.get('dx'), 'softmax dim 2 backward');
  const y2 = softmaxForward(f.get('x2'), [2, 3, 4]);
  assertClose(y2, f.get('y2'), 'softmax joint');
  assertClose(softmaxBackward(f.get('g2'), y2, [2, 3, 4]), f.get('dx2'), 'softmax joint backward');
  assert.throws(() => softmaxForward(f.get('x'), [1, 3]), /softmax: axes \[1, 3\] must be adjacent/);
});

test('squash forward and backward match PyTorch, including a zero capsule', () => {
  const f = fixture('squash');
  const y = squashForward(f.get('x'), 2);
  assertClose(y, f.get('y'), 'squash');
  assertClose(squashBackward(f.get('g'), f.get('x'), 2), f.get('dx'), 'squash backward');
});

for (const hard of [false, true]) {
  test(`margin and reconstruction losses match PyTorch (${hard ? 'hard' : 'default'} margins)`, () => {
    const f = fixture(hard ? 'losses_hard' : 'losses');
    const labels = Int32Array.from(f.get('labels').data);
    const m = marginLoss(f.get('v'), labels, hard ? MARGIN_HARD : MARGIN_DEFAULT);
    const scale = f.meta.scale as number;
    const r = reconstructionLoss(f.get('recon'), f.get('image'), scale);
    assertClose(Float32Array.of(m.loss), f.get('margin'), 'margin loss');
    assertClose(Float32Array.of(r.loss / scale), f.get('recon_loss'), 'reconstruction loss');
    assertClose(Float32Array.of(m.loss + r.loss), f.get('total'), 'total loss');
    assertClose(m.dv, f.get('dv'), 'd total / d v');
    assertClose(r.dRecon, f.get('drecon'), 'd total / d reconstruction');
  });
}

for (const [k, skip] of backendCases()) {
  test(`Adam follows torch.optim.Adam over three steps (${k.name})`, { skip }, () =>
    withBackend(k, () => {
      const f = fixture('adam');
      const p = f.get('p0').clone();
      const opt = new Adam([p], { lr: f.meta.lr as number });
      const gs = f.get('grads');
      for (let t = 0; t < 3; t++) opt.update([new Tensor(gs.data.slice(t * 20, t * 20 + 20), [20])]);
      assertClose(p, f.get('p3'), 'Adam parameters after 3 steps', 1e-5, 1e-6);
    }),
  );
}

test('permute/concat and their backward passes invert each other', () => {
  const x = Tensor.from(
    Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => i),
    [2, 3, 4, 5],
  );
  const perm = [0, 2, 3, 1];
  const y = permute(x, perm);
  assert.deepEqual(y.shape, [2, 4, 5, 3]);
  // y[b, h, w, c] = x[b, c, h, w]
  assert.equal(y.data[((1 * 4 + 2) * 5 + 3) * 3 + 1], x.data[((1 * 3 + 1) * 4 + 2) * 5 + 3]);
  assert.deepEqual(Array.from(permuteBackward(y, perm).data), Array.from(x.data));
  const a = Tensor.from([1, 2, 3, 4], [2, 2]);
  const b = Tensor.from([5, 6], [2, 1]);
  const c = concat([a, b], 1);
  assert.deepEqual(Array.from(c.data), [1, 2, 5, 3, 4, 6]);
  const [a2, b2] = split(c, 1, [2, 1]);
  assert.deepEqual(Array.from(a2.data), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(b2.data), [5, 6]);
  assert.throws(() => permute(x, [0, 1, 1, 2]), /permute: \[0, 1, 1, 2\] is not a permutation/);
  assert.throws(() => x.reshape([7, -1]), /reshape: cannot reshape 120 elements into \[7, -1\]/);
});

test('bad input: wrong dtype, non-finite loss inputs and gradients give errors naming the op', () => {
  assert.throws(
    () => new Tensor(new Float64Array(4) as unknown as Float32Array, [4]),
    /Tensor: data must be a Float32Array \(float32\), got Float64Array/,
  );
  assert.throws(
    () => new Tensor(new Float32Array(6), [2, 2]),
    /Tensor: buffer has 6 elements but shape \[2, 2\] needs 4/,
  );
  const v = Tensor.from([0.1, NaN, 0.2, 0.3], [1, 2, 2]);
  assert.throws(
    () => marginLoss(v, Int32Array.of(0)),
    /margin loss: capsules \[1, 2, 2\] has a non-finite value \(NaN\) at flat index 1/,
  );
  assert.throws(
    () => marginLoss(Tensor.from([0.1, 0.2, 0.2, 0.3], [1, 2, 2]), Int32Array.of(5)),
    /margin loss: label 5 outside \[0, 2\)/,
  );
  const p = Tensor.from([1, 2], [2]);
  const opt = new Adam([p], { lr: 0.1 });
  assert.throws(
    () => opt.update([Tensor.from([0.5, Infinity], [2])]),
    /Adam: gradient 0 Tensor\[2\] has a non-finite value \(Infinity\) at index 1; no parameter was updated/,
  );
  assert.deepEqual(Array.from(p.data), [1, 2]);
  assert.equal(opt.step, 0);
});

const permuteCases: [number[], number[]][] = [
  [
    [3, 6, 6, 4, 8],
    [0, 3, 1, 2, 4],
  ], // flattenCapsules: rows of 8 contiguous values
  [
    [3, 4, 6, 6, 8],
    [0, 2, 3, 1, 4],
  ],
  [
    [2, 3, 5, 7],
    [0, 3, 1, 2],
  ], // innermost axis strided
  [
    [5, 7],
    [1, 0],
  ],
  [[11], [0]],
];
for (const [k, skip] of backendCases())
  test(`permute kernel: every element where the index arithmetic puts it (${k.name})`, { skip }, () => {
    for (const [shape, perm] of permuteCases) {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = Float32Array.from({ length: n }, (_, i) => i);
      const y = new Float32Array(n).fill(-1);
      k.permute(x, shape, perm, y);
      const outShape = perm.map((p) => shape[p]);
      const inStride = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
      for (let o = 0; o < n; o++) {
        let rem = o;
        let src = 0;
        for (let d = outShape.length - 1; d >= 0; d--) {
          src += (rem % outShape[d]) * inStride[perm[d]];
          rem = Math.floor(rem / outShape[d]);
        }
        if (y[o] !== src) assert.fail(`${k.name}: [${shape}] by [${perm}]: y[${o}] = ${y[o]}, expected ${src}`);
      }
    }
  });
