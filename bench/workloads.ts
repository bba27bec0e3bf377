// The benchmark workloads of the numeric core, built from the public ops (issue: numeric core).
//   W1: ShallowCapsNet-shaped forward at batch B: conv 1->256 9x9 + ReLU on 28x28; conv 256->256
//       9x9 stride 2; primary capsules squash(u/32 + bias); votes 1152x8 -> 10x16; 3 routing iterations.
//   W2: W1 plus the backward pass of loss = sum(v * G) to every weight.
//   W3: DeepCaps-shaped conv stack forward + backward: conv 1->128 3x3 pad 1 on 28x28; 128->128 3x3
//       stride 2 pad 1; three 128->128 3x3 pad 1 on 14x14; loss = sum(y * G).
import {
  capsuleVotesBackward,
  capsuleVotesForward,
  conv2dBackward,
  conv2dForward,
  give,
  permute,
  routingBackward,
  routingForward,
  squashBackward,
  squashForward,
  Tensor,
  take,
} from '../src/tensor/index.js';

function random(shape: number[], scale: number, seed: number): Tensor {
  let s = seed >>> 0;
  const t = Tensor.zeros(shape);
  for (let i = 0; i < t.size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    t.data[i] = ((s >>> 8) / 16777216 - 0.5) * 2 * scale;
  }
  return t;
}

export interface Workload {
  name: string;
  flops: number;
  run(): void;
}

export function shallowCapsNetWorkload(B: number, withBackward: boolean): Workload {
  const x = random([B, 28, 28, 1], 0.5, 1);
  for (let i = 0; i < x.size; i++) x.data[i] += 0.5; // pixels in [0, 1]
  const w1 = random([256, 9, 9, 1], 1 / 9, 2);
  const b1 = random([256], 0.1, 3);
  const w2 = random([256, 9, 9, 256], 1 / 144, 4);
  const pbias = random([32, 8], 0.1, 5);
  const wd = random([1152, 8, 160], 0.05, 6);
  const dbias = random([10, 16], 0.1, 7);
  const G = random([B, 10, 16], 1, 8);
  const grads = {
    w1: Tensor.zeros(w1.shape),
    b1: Tensor.zeros(b1.shape),
    w2: Tensor.zeros(w2.shape),
    pbias: Tensor.zeros(pbias.shape),
    wd: Tensor.zeros(wd.shape),
    dbias: Tensor.zeros(dbias.shape),
  };
  const flops =
    2 * B * 20 * 20 * 256 * 81 + 2 * B * 6 * 6 * 256 * 256 * 81 + 2 * B * 1152 * 8 * 160 + 3 * 4 * B * 1152 * 160;
  return {
    name: withBackward ? 'W2' : 'W1',
    flops: withBackward ? 3 * flops : flops,
    run() {
      const h1 = conv2dForward(x, w1, b1, { relu: true }); // [B,20,20,256]
      const u2 = conv2dForward(h1, w2, null, { stride: 2 }); // [B,6,6,256] = [B,6,6,32,8]
      // primary capsules: one routing iteration over one input type -> squash(u/32 + bias)
      const s2 = take(u2.size);
      for (let i = 0; i < s2.length; i++) s2[i] = u2.data[i] / 32 + pbias.data[i % 256];
      const sPrim = new Tensor(s2, [B, 6, 6, 32, 8]);
      const prim = squashForward(sPrim, -1);
      const caps = permute(prim, [0, 3, 1, 2, 4]).reshape([B, 1152, 8]); // order (type, y, x)
      const votes = capsuleVotesForward(caps, wd).reshape([B, 1152, 1, 10, 16]);
      const { v, cache } = routingForward(votes, dbias, { iterations: 3, softmax: 'j', training: withBackward });
      const temps = [h1, u2, sPrim, prim, caps, votes, v];
      if (withBackward) {
        for (const g of Object.values(grads)) g.data.fill(0);
        const dvotes = routingBackward(G, votes, cache!, grads.dbias);
        const dcaps = capsuleVotesBackward(dvotes.reshape([B, 1152, 160]), caps, wd, grads.wd)!;
        const dprim = permute(dcaps.reshape([B, 32, 6, 6, 8]), [0, 2, 3, 1, 4]);
        const dsPrim = squashBackward(dprim, sPrim, -1);
        const du2 = take(u2.size);
        for (let i = 0; i < du2.length; i++) {
          du2[i] = dsPrim.data[i] / 32;
          grads.pbias.data[i % 256] += dsPrim.data[i];
        }
        const du2t = new Tensor(du2, u2.shape);
        const r2 = conv2dBackward(du2t, h1, w2, { stride: 2 }, { dw: grads.w2, db: null });
        const r1 = conv2dBackward(
          r2.dx!,
          x,
          w1,
          { relu: true, y: h1, needInputGrad: false },
          { dw: grads.w1, db: grads.b1 },
        );
        void r1;
        temps.push(dvotes, dcaps, dprim, dsPrim, du2t, r2.dx!);
      }
      for (const t of temps) give(t.data);
    },
  };
}

export function deepCapsConvWorkload(B: number): Workload {
  const x = random([B, 28, 28, 1], 0.5, 11);
  const layers = [
    { w: random([128, 3, 3, 1], 1 / 3, 12), b: random([128], 0.1, 13), stride: 1 },
    { w: random([128, 3, 3, 128], 1 / 34, 14), b: random([128], 0.1, 15), stride: 2 },
    { w: random([128, 3, 3, 128], 1 / 34, 16), b: random([128], 0.1, 17), stride: 1 },
    { w: random([128, 3, 3, 128], 1 / 34, 18), b: random([128], 0.1, 19), stride: 1 },
    { w: random([128, 3, 3, 128], 1 / 34, 20), b: random([128], 0.1, 21), stride: 1 },
  ];
  const grads = layers.map((l) => ({ dw: Tensor.zeros(l.w.shape), db: Tensor.zeros(l.b.shape) }));
  const G = random([B, 14, 14, 128], 1, 22);
  const fwd = 2 * B * 28 * 28 * 128 * 9 + 4 * (2 * B * 14 * 14 * 128 * 1152);
  return {
    name: 'W3',
    flops: fwd + fwd + (fwd - 2 * B * 28 * 28 * 128 * 9), // forward, dW, dX (not for the input)
    run() {
      const acts: Tensor[] = [x];
      for (const l of layers) acts.push(conv2dForward(acts[acts.length - 1], l.w, l.b, { stride: l.stride, pad: 1 }));
      let dy = G;
      const temps: Tensor[] = [];
      for (let i = layers.length - 1; i >= 0; i--) {
        for (const g of [grads[i].dw, grads[i].db]) g.data.fill(0);
        const r = conv2dBackward(
          dy,
          acts[i],
          layers[i].w,
          { stride: layers[i].stride, pad: 1, needInputGrad: i > 0 },
          grads[i],
        );
        if (r.dx) {
          temps.push(r.dx);
          dy = r.dx;
        }
      }
      for (const t of [...acts.slice(1), ...temps]) give(t.data);
    },
  };
}
