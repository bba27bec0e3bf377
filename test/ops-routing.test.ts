// Fused dynamic routing (both variants of SPEC 2.1) matches PyTorch on each backend and refuses
// bad shapes; the fused capsule-layer inference equals the separate ops; the native routing
// (2 threads, quantizers inside) and capsule layer match the typescript kernels.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { permute, routingBackward, routingForward, Tensor } from '../src/tensor/index.js';
import { capsuleVotesForward } from '../src/tensor/ops/capsule-votes.js';
import type { Kernels } from '../src/tensor/backend.js';
import { assertClose, backendCases, fixture, requireBothBackends, withBackend } from './helpers.js';

// PyTorch votes [bs, ci, co, no, ho, wo] -> ours [B, I, P, J, D]; v [bs, co, no, ho, wo] -> [B, P, J, D]
const votes6 = (u: Tensor) => {
  const [bs, ci, co, no, ho, wo] = u.shape;
  return permute(u, [0, 1, 4, 5, 2, 3]).reshape([bs, ci, ho * wo, co, no]);
};
const out5ToTorch = (v: Tensor, ho: number, wo: number) => {
  const [B, , J, D] = v.shape;
  return permute(v.reshape([B, ho, wo, J, D]), [0, 3, 4, 1, 2]);
};
const dvotesToTorch = (du: Tensor, ho: number, wo: number) => {
  const [B, I, , J, D] = du.shape;
  return permute(du.reshape([B, I, ho, wo, J, D]), [0, 1, 4, 5, 2, 3]);
};

for (const [k, skip] of backendCases()) {
  test(`routing over output capsules (fully connected, 3 iterations) matches PyTorch (${k.name})`, { skip }, () =>
    withBackend(k, () => {
      const f = fixture('routing_fc');
      const u = f.get('u');
      const [B, I, J, D] = u.shape;
      const votes = u.reshape([B, I, 1, J, D]);
      const { v, cache } = routingForward(votes, f.get('bias'), { iterations: 3, softmax: 'j', training: true });
      assertClose(v, f.get('v'), 'v');
      const dbias = Tensor.zeros([J, D]);
      const du = routingBackward(f.get('g'), votes, cache!, dbias);
      assertClose(du, f.get('du'), 'd votes');
      assertClose(dbias, f.get('dbias'), 'd bias');
    }),
  );

  for (const [name, softmax] of [
    ['routing_conv', 'j'],
    ['routing_3d', 'pj'],
  ] as const) {
    test(`${name}: convolutional routing (softmax '${softmax}') matches PyTorch (${k.name})`, { skip }, () =>
      withBackend(k, () => {
        const f = fixture(name);
        const u = f.get('u');
        const [, , co, no, ho, wo] = u.shape;
        const votes = votes6(u);
        const iterations = f.meta.iterations as number;
        const { v, cache } = routingForward(votes, f.get('bias'), { iterations, softmax, training: true });
        assertClose(out5ToTorch(v, ho, wo), f.get('v'), 'v');
        const g = permute(f.get('g'), [0, 3, 4, 1, 2]);
        const dbias = Tensor.zeros([co, no]);
        const du = routingBackward(g, votes, cache!, dbias);
        assertClose(dvotesToTorch(du, ho, wo), f.get('du'), 'd votes');
        assertClose(dbias, f.get('dbias'), 'd bias');
      }),
    );
  }

  test(`routing rejects bad shapes and iteration counts (${k.name})`, { skip }, () =>
    withBackend(k, () => {
      const votes = Tensor.zeros([2, 3, 1, 4, 5]);
      assert.throws(
        () => routingForward(votes, Tensor.zeros([4, 4]), { iterations: 3, softmax: 'j' }),
        /routing: bias \[4, 4\] must hold J\*D = 4\*5 values/,
      );
      assert.throws(
        () => routingForward(votes, Tensor.zeros([4, 5]), { iterations: 0, softmax: 'j' }),
        /iterations must be an integer >= 1/,
      );
    }),
  );
}

test('native routing on 2 threads, with quantizers inside, matches the typescript kernel', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const [nat, ts] = ks;
  const tensor = (shape: number[], f: (i: number) => number) =>
    Tensor.from(
      Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => f(i)),
      shape,
    );
  const votes = tensor([5, 7, 2, 4, 6], (i) => Math.sin(i * 0.71) * 0.8);
  const bias = tensor([4, 6], (i) => Math.cos(i) * 0.1);
  const spec = (frac: number) => ({
    method: 'round_to_nearest' as const,
    frac,
    compat: false,
    lo: -Infinity,
    hi: Infinity,
    seed: 1,
    stream: 0,
  });
  nat.setThreads(2);
  try {
    // capsules of 16 values take the AVX-512 path where the CPU has it: pair counts that are
    // not multiples of 16 and P*J that is not a multiple of 8 exercise its remainders
    const cases = [
      [votes, bias],
      [tensor([3, 37, 1, 10, 16], (i) => Math.sin(i * 0.37) * 0.6), tensor([10, 16], (i) => Math.cos(i) * 0.1)],
      [tensor([2, 9, 3, 3, 16], (i) => Math.cos(i * 0.53) * 0.7), tensor([3, 16], (i) => Math.sin(i) * 0.1)],
    ];
    for (const [u, bi] of cases)
      for (const softmax of ['j', 'pj'] as const)
        for (const quant of [null, { act: spec(10), routing: spec(8) }]) {
          const [a, b] = [nat, ts].map((k) =>
            withBackend(k, () => routingForward(u, bi, { iterations: 3, softmax, quant }).v),
          );
          // a quantized value may sit one LSB apart where float rounding differs
          const what = `votes ${u.shape}, softmax ${softmax}, quantized ${quant !== null}`;
          assertClose(a, b, what, 1e-4, quant ? 2 ** -9 : 1e-5);
        }
    const [ga, gb] = [nat, ts].map((k) =>
      withBackend(k, () => {
        const { v, cache } = routingForward(votes, bias, { iterations: 3, softmax: 'pj', training: true });
        const dbias = Tensor.zeros([4, 6]);
        return [routingBackward(v, votes, cache!, dbias), dbias];
      }),
    );
    assertClose(ga[0], gb[0], 'd votes (2 threads)');
    assertClose(ga[1], gb[1], 'd bias (2 threads)');
  } finally {
    nat.setThreads(1);
  }
});

const capsSpec = (frac: number, stream: number) => ({
  method: 'round_to_nearest' as const,
  frac,
  compat: true,
  lo: -Infinity,
  hi: Infinity,
  seed: 3,
  stream,
});
// J*D = 160 takes the AVX-512 votes where the CPU has them, 3*5 = 15 the plain loops
const capsShapes = [
  [3, 37, 8, 10, 16],
  [2, 11, 4, 3, 5],
] as const;
const capsQuants = [null, { act: capsSpec(10, 1), routing: capsSpec(8, 2), votes: capsSpec(10, 3) }] as const;
function capsInputs([B, I, Din, J, D]: readonly number[]) {
  const x = Tensor.from(
    Array.from({ length: B * I * Din }, (_, i) => Math.sin(i * 0.61) * 0.9),
    [B, I, Din],
  );
  const w = Tensor.from(
    Array.from({ length: I * Din * J * D }, (_, i) => Math.cos(i * 0.29) * 0.3),
    [I, Din, J * D],
  );
  const bias = Tensor.from(
    Array.from({ length: J * D }, (_, i) => Math.sin(i) * 0.1),
    [J, D],
  );
  return { x, w, bias };
}
function fusedCapsules(k: Kernels, shape: readonly number[], quant: (typeof capsQuants)[number]): Float32Array {
  const [B, I, Din, J, D] = shape;
  const { x, w, bias } = capsInputs(shape);
  const fused = new Float32Array(B * J * D);
  k.capsulesForward({ B, I, Din, J, D, iterations: 3 }, x.data, w.data, bias.data, fused, quant);
  return fused;
}

for (const [k, skip] of backendCases())
  test(
    `capsule layer inference (votes, their quantizer and the routing in one kernel) matches the separate ops (${k.name})`,
    { skip },
    () => {
      for (const shape of capsShapes)
        for (const quant of capsQuants)
          withBackend(k, () => {
            const [B, I, , J, D] = shape;
            const { x, w, bias } = capsInputs(shape);
            const fused = fusedCapsules(k, shape, quant);
            const votes = capsuleVotesForward(x, w);
            if (quant) k.quantize(votes.data, votes.data, votes.size, quant.votes);
            const { v } = routingForward(votes.reshape([B, I, 1, J, D]), bias, { iterations: 3, softmax: 'j', quant });
            const what = `${k.name}, [${shape.slice(0, 3)}] -> [${J},${D}], quantized ${quant !== null}`;
            // the separate votes are a GEMM (fused multiply-adds): a quantized value may move one LSB
            assertClose(Tensor.from(fused, [B, 1, J, D]), v, what, 1e-4, quant ? 2 ** -7 : 1e-5);
          });
    },
  );

test('native capsule layer inference matches the typescript kernel', (t) => {
  const ks = requireBothBackends(t);
  if (!ks) return;
  const [nat, ts] = ks;
  for (const shape of capsShapes)
    for (const quant of capsQuants) {
      const [B, , , J, D] = shape;
      assertClose(
        Tensor.from(fusedCapsules(nat, shape, quant), [B, J, D]),
        Tensor.from(fusedCapsules(ts, shape, quant), [B, J, D]),
        `native against typescript, [${shape}], quantized ${quant !== null}`,
        1e-4,
        quant ? 2 ** -7 : 1e-5,
      );
    }
});
