// DeepCaps' first layer (the reference's Conv2d_BN_ReLU): conv, ReLU, then BatchNorm2d, in
// that order (ReLU before BN), BN with eps 1e-3 and PyTorch momentum 0.99.
//   x [B,H,W,Cin] -> y [B,H',W',Cout]; children `conv` (Conv2d) and `batchnorm` (BatchNorm2d)
import { give } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';
import { BatchNorm2d } from './batchnorm2d.js';
import { Conv2d } from './conv2d.js';
import {
  type ForwardContext,
  inputGrad,
  type Layer,
  Module,
  needCache,
  type QuantHooks,
  withClippedGradient,
} from './module.js';

export class Conv2dBnRelu extends Module implements Layer {
  readonly kind = 'Conv2d_BN_ReLU';
  readonly conv: Conv2d;
  readonly batchnorm: BatchNorm2d;
  private cache: { h: Tensor; quant: QuantHooks | null } | null = null;

  constructor(cfg: {
    inChannels: number;
    outChannels: number;
    kernel: number;
    stride?: number;
    pad?: number;
    momentum?: number;
    eps?: number;
  }) {
    super();
    this.conv = this.addChild(
      'conv',
      new Conv2d({
        inChannels: cfg.inChannels,
        outChannels: cfg.outChannels,
        kernel: cfg.kernel,
        stride: cfg.stride ?? 1,
        pad: cfg.pad ?? 1,
        relu: true,
        quantOutput: false,
      }),
    );
    this.batchnorm = this.addChild(
      'batchnorm',
      new BatchNorm2d(cfg.outChannels, { momentum: cfg.momentum ?? 0.99, eps: cfg.eps ?? 1e-3 }),
    );
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const h = this.conv.forward(x, ctx); // relu(conv(x))
    const y = this.batchnorm.forward(h, ctx);
    this.cache = null;
    if (ctx.training) this.cache = { h, quant: ctx.quant ?? null };
    else give(h.data);
    if (ctx.quant) ctx.quant.activation(this.path, 'out', y);
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { h, quant } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    const dh = withClippedGradient(quant, this.path, 'out', dy, (g) => inputGrad(this.batchnorm.backward(g)));
    const dx = this.conv.backward(dh, needInputGrad);
    give(dh.data);
    give(h.data);
    return dx;
  }
}
