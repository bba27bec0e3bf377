// Decoders (training only; SPEC 2.4 and the reference's full_precision_decoders.py). Each reads
// the capsule of the true class, as the reference's mask(): caps[b, label[b], :] -> [B, D]
// (one capsule, not all class capsules with the others zeroed), so in_dim = caps_dim
// (args `16 784`, `32 1`).
//   FCDecoder(in_dim, out_dim):  fc1 Linear(in,512)+ReLU, fc2 Linear(512,1024)+ReLU,
//                                fc3 Linear(1024,out_dim)+sigmoid      -> [B, out_dim]
//   ConvDecoder28(in, out_ch):   lin Linear(in,16*7*7)+ReLU, view [B,16,7,7], bn BatchNorm2d(16,
//                                momentum 0.8), dc1 16->64 (3,s1,p1), dc2 64->32 (3,s2,p1,op1),
//                                dc3 32->16 (3,s2,p1,op1), dc4 16->out_ch (3,s1,p1), ReLU
//                                                                      -> [B,28,28,out_ch]
//   ConvDecoder64(in, out_ch):   lin Linear(in,16*8*8)+ReLU, view, bn, dc1 16->64 (3,1,1),
//                                dc2 64->32 (4,2,1), dc3 32->16 (4,2,1), dc4 16->8 (4,2,1),
//                                dc5 8->out_ch (3,1,1), ReLU           -> [B,64,64,out_ch]
// The linear layer's output is viewed as NCHW [B,16,s,s] as in PyTorch, then permuted to the
// channels-last layout the convolutions here use.
import { BatchNorm2d } from '../nn/batchnorm2d.js';
import { maskCapsules, maskCapsulesBackward } from '../nn/capsule-shapes.js';
import { ConvTranspose2d } from '../nn/conv-transpose2d.js';
import { Linear } from '../nn/linear.js';
import { type ForwardContext, inputGrad, Module, needCache } from '../nn/module.js';
import { permute } from '../tensor/ops/shape.js';
import { give } from '../tensor/pool.js';
import { check, shapeStr, Tensor } from '../tensor/tensor.js';
import { type CapsDecoder, type DecoderName, toContext } from './capsnet.js';
import { DEFAULT_SEED } from '../tensor/seed.js';

function checkCaps(kind: string, caps: Tensor, inDim: number): void {
  check(
    caps.rank === 3 && caps.shape[2] === inDim,
    kind,
    `reads capsules of dimension ${inDim} (its first argument) but got capsules ${shapeStr(caps.shape)}`,
  );
}

export class FCDecoder extends Module implements CapsDecoder {
  readonly kind = 'FCDecoder';
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly fc3: Linear;
  private cache: { v: Tensor; h1: Tensor; h2: Tensor; labels: Int32Array; K: number } | null = null;

  constructor(
    readonly inDim: number,
    readonly outDim: number,
    seed = DEFAULT_SEED,
  ) {
    super();
    this.fc1 = this.addChild('fc1', new Linear(inDim, 512, 'relu'));
    this.fc2 = this.addChild('fc2', new Linear(512, 1024, 'relu'));
    this.fc3 = this.addChild('fc3', new Linear(1024, outDim, 'sigmoid'));
    this.resetParameters(seed);
  }

  get args(): number[] {
    return [this.inDim, this.outDim];
  }

  forward(caps: Tensor, labels: Int32Array, training?: boolean | ForwardContext): Tensor {
    const ctx = toContext(training, this.training);
    checkCaps(this.kind, caps, this.inDim);
    const v = maskCapsules(caps, labels);
    const h1 = this.fc1.forward(v, ctx);
    const h2 = this.fc2.forward(h1, ctx);
    const y = this.fc3.forward(h2, ctx);
    this.cache = null;
    if (ctx.training) this.cache = { v, h1, h2, labels: labels.slice(), K: caps.shape[1] };
    else {
      give(h1.data);
      give(h2.data);
    }
    return y;
  }

  backward(dRecon: Tensor): Tensor {
    const { v, h1, h2, labels, K } = needCache(this.cache, this.kind, '');
    this.cache = null;
    const B = v.shape[0];
    const dh2 = inputGrad(this.fc3.backward(dRecon.reshape([B, this.outDim])));
    give(h2.data);
    const dh1 = inputGrad(this.fc2.backward(dh2));
    give(dh2.data);
    give(h1.data);
    const dv = inputGrad(this.fc1.backward(dh1));
    give(dh1.data);
    const dCaps = maskCapsulesBackward(dv, labels, K);
    give(dv.data);
    return dCaps;
  }
}

interface DeconvSpec {
  out: number;
  kernel: number;
  stride: number;
  pad: number;
  outputPadding?: number;
}

/** ConvDecoder28 and ConvDecoder64: lin, bn, dc1..dcN. */
abstract class ConvDecoder extends Module implements CapsDecoder {
  abstract override readonly kind: DecoderName;
  readonly lin: Linear;
  readonly bn: BatchNorm2d;
  readonly deconvs: ConvTranspose2d[] = [];
  private cache: { acts: Tensor[]; labels: Int32Array; K: number } | null = null;

  constructor(
    readonly inDim: number,
    readonly outChannels: number,
    readonly side: number,
    specs: DeconvSpec[],
    seed: number,
  ) {
    super();
    this.lin = this.addChild('lin', new Linear(inDim, 16 * side * side, 'relu'));
    this.bn = this.addChild('bn', new BatchNorm2d(16, { momentum: 0.8 }));
    let cin = 16;
    specs.forEach((s, k) => {
      const last = k === specs.length - 1;
      const dc = new ConvTranspose2d({
        inChannels: cin,
        outChannels: last ? outChannels : s.out,
        kernel: s.kernel,
        stride: s.stride,
        pad: s.pad,
        outputPadding: s.outputPadding ?? 0,
        relu: last,
      });
      this.deconvs.push(this.addChild(`dc${k + 1}`, dc));
      cin = s.out;
    });
    this.resetParameters(seed);
  }

  get args(): number[] {
    return [this.inDim, this.outChannels];
  }

  forward(caps: Tensor, labels: Int32Array, training?: boolean | ForwardContext): Tensor {
    const ctx = toContext(training, this.training);
    checkCaps(this.kind, caps, this.inDim);
    const B = caps.shape[0];
    const s = this.side;
    const v = maskCapsules(caps, labels);
    const z = this.lin.forward(v, ctx); // [B, 16*s*s], read as NCHW [B,16,s,s]
    const zNhwc = permute(z.reshape([B, 16, s, s]), [0, 2, 3, 1]);
    let h = this.bn.forward(zNhwc, ctx);
    const acts = [v, z, zNhwc, h];
    for (const dc of this.deconvs) {
      const next = dc.forward(h, ctx);
      acts.push(next);
      h = next;
    }
    const y = acts.pop()!; // the output belongs to the caller
    this.cache = null;
    if (ctx.training) this.cache = { acts, labels: labels.slice(), K: caps.shape[1] };
    else for (const t of acts.slice(1)) give(t.data);
    return y;
  }

  backward(dRecon: Tensor): Tensor {
    const { acts, labels, K } = needCache(this.cache, this.kind, '');
    this.cache = null;
    const [v, z, zNhwc, ...hs] = acts;
    const B = v.shape[0];
    let d = dRecon;
    for (let k = this.deconvs.length - 1; k >= 0; k--) {
      const dIn = inputGrad(this.deconvs[k].backward(d));
      if (d !== dRecon) give(d.data);
      give(hs[k].data);
      d = dIn;
    }
    const dzNhwc = inputGrad(this.bn.backward(d));
    give(d.data);
    give(zNhwc.data);
    const dz = permute(dzNhwc, [0, 3, 1, 2]).reshape([B, 16 * this.side * this.side]);
    give(dzNhwc.data);
    const dv = inputGrad(this.lin.backward(dz));
    give(dz.data);
    give(z.data);
    const dCaps = maskCapsulesBackward(dv, labels, K);
    give(dv.data);
    return dCaps;
  }
}

export class ConvDecoder28 extends ConvDecoder {
  readonly kind = 'ConvDecoder28';

  constructor(inDim: number, outChannels: number, seed = DEFAULT_SEED) {
    super(
      inDim,
      outChannels,
      7,
      [
        { out: 64, kernel: 3, stride: 1, pad: 1 },
        { out: 32, kernel: 3, stride: 2, pad: 1, outputPadding: 1 },
        { out: 16, kernel: 3, stride: 2, pad: 1, outputPadding: 1 },
        { out: outChannels, kernel: 3, stride: 1, pad: 1 },
      ],
      seed,
    );
  }
}

export class ConvDecoder64 extends ConvDecoder {
  readonly kind = 'ConvDecoder64';

  constructor(inDim: number, outChannels: number, seed = DEFAULT_SEED) {
    super(
      inDim,
      outChannels,
      8,
      [
        { out: 64, kernel: 3, stride: 1, pad: 1 },
        { out: 32, kernel: 4, stride: 2, pad: 1 },
        { out: 16, kernel: 4, stride: 2, pad: 1 },
        { out: 8, kernel: 4, stride: 2, pad: 1 },
        { out: outChannels, kernel: 3, stride: 1, pad: 1 },
      ],
      seed,
    );
  }
}
