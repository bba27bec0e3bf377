// ConvTranspose2d (+ optional ReLU) on channels-last images.
//   x [B,H,W,Cin] -> y [B,OH,OW,Cout], OH = (H-1) stride - 2 pad + K + outputPadding
//   weight [Cin,K,K,Cout] (PyTorch [Cin,Cout,K,K]), bias [Cout]
// PyTorch's default init; its fan_in is computed from weight dim 1 (Cout) * K * K.
import { reluBackward } from '../tensor/ops/activations.js';
import { convTranspose2dBackward, convTranspose2dForward } from '../tensor/ops/conv-transpose2d.js';
import { give } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';
import { torchDefaultInit } from './init.js';
import { type ForwardContext, type Layer, Module, needCache } from './module.js';

export interface ConvTranspose2dConfig {
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride?: number;
  pad?: number;
  outputPadding?: number;
  relu?: boolean;
}

export class ConvTranspose2d extends Module implements Layer {
  readonly kind = 'ConvTranspose2d';
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly dWeight: Tensor;
  readonly dBias: Tensor;
  readonly opts: { stride: number; pad: number; outputPadding: number };
  private cache: { x: Tensor; y: Tensor } | null = null;

  constructor(readonly cfg: ConvTranspose2dConfig) {
    super();
    const { inChannels: Ci, outChannels: Co, kernel: K } = cfg;
    this.opts = { stride: cfg.stride ?? 1, pad: cfg.pad ?? 0, outputPadding: cfg.outputPadding ?? 0 };
    this.weight = Tensor.zeros([Ci, K, K, Co]);
    this.bias = Tensor.zeros([Co]);
    this.dWeight = this.addParam('weight', this.weight, [Ci, Co, K, K], 'convT');
    this.dBias = this.addParam('bias', this.bias, [Co]);
  }

  override resetParameters(seed: number): void {
    torchDefaultInit(
      seed,
      { name: this.qualified('weight'), data: this.weight.data },
      this.bias ? { name: this.qualified('bias'), data: this.bias.data } : null,
      [this.cfg.inChannels, this.cfg.outChannels, this.cfg.kernel, this.cfg.kernel],
    );
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const y = convTranspose2dForward(x, this.weight, this.bias, this.opts);
    if (this.cfg.relu) {
      const d = y.data;
      for (let i = 0; i < d.length; i++) d[i] = d[i] > 0 ? d[i] : 0;
    }
    this.cache = ctx.training ? { x, y } : null;
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { x, y } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    const dz = this.cfg.relu ? reluBackward(dy, y) : dy;
    const dx = convTranspose2dBackward(
      dz,
      x,
      this.weight,
      { ...this.opts, needInputGrad },
      { dw: this.dWeight, db: this.dBias },
    );
    if (dz !== dy) give(dz.data);
    return dx;
  }
}
