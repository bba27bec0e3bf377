// Conv2d (+ optional fused ReLU) on channels-last images.
//   x [B,H,W,C] -> y [B,OH,OW,O]; weight [O,KH,KW,C] (PyTorch [O,C,KH,KW]), bias [O]
// PyTorch's default init (nn.Conv2d.reset_parameters): kaiming_uniform(a = sqrt(5)) weight,
// bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
import { conv2dBackward, conv2dForward } from '../tensor/ops/conv2d.js';
import { Tensor } from '../tensor/tensor.js';
import { torchDefaultInit } from './init.js';
import { type ForwardContext, type Layer, Module, needCache, type QuantHooks, withClippedGradient } from './module.js';

export interface Conv2dConfig {
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride?: number;
  pad?: number;
  bias?: boolean;
  /** max(0, .) on the output */
  relu?: boolean;
  /** Call the quantization hook on the output ('out'); off when a parent quantizes later. */
  quantOutput?: boolean;
  /** PyTorch shape of the weight when it is not [O,C,K,K] (Conv3DCaps: [O,1,C,K,K]). */
  torchWeightShape?: number[];
}

export class Conv2d extends Module implements Layer {
  readonly kind = 'Conv2d';
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly dWeight: Tensor;
  readonly dBias: Tensor | null;
  readonly stride: number;
  readonly pad: number;
  readonly relu: boolean;
  readonly quantOutput: boolean;
  /** the training forward's input and output, and the hooks that quantized the output */
  private cache: { x: Tensor; y: Tensor; quant: QuantHooks | null } | null = null;

  constructor(readonly cfg: Conv2dConfig) {
    super();
    const { inChannels: C, outChannels: O, kernel: K } = cfg;
    this.stride = cfg.stride ?? 1;
    this.pad = cfg.pad ?? 0;
    this.relu = cfg.relu ?? false;
    this.quantOutput = cfg.quantOutput ?? true;
    this.weight = Tensor.zeros([O, K, K, C]);
    this.dWeight = this.addParam('weight', this.weight, cfg.torchWeightShape ?? [O, C, K, K], 'ohwi');
    if (cfg.bias ?? true) {
      this.bias = Tensor.zeros([O]);
      this.dBias = this.addParam('bias', this.bias, [O]);
    } else {
      this.bias = null;
      this.dBias = null;
    }
  }

  /** PyTorch's default init of nn.Conv2d. */
  override resetParameters(seed: number): void {
    torchDefaultInit(
      seed,
      { name: this.qualified('weight'), data: this.weight.data },
      this.bias ? { name: this.qualified('bias'), data: this.bias.data } : null,
      [this.cfg.outChannels, this.cfg.inChannels, this.cfg.kernel, this.cfg.kernel],
    );
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const q = this.quantOutput ? ctx.quant : null;
    // the output quantizer inside the kernel where the hooks give it, else over the output
    const quant = q?.activationSpec?.(this.path, 'out') ?? null;
    const y = conv2dForward(x, this.weight, this.bias, {
      stride: this.stride,
      pad: this.pad,
      relu: this.relu,
      quant,
      mode: ctx.quant?.conv,
    });
    if (q && !quant) q.activation(this.path, 'out', y);
    this.cache = ctx.training ? { x, y, quant: q ?? null } : null;
    return y;
  }

  /** dy is masked in place by the fused ReLU. */
  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { x, y, quant } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    return withClippedGradient(quant, this.path, 'out', dy, (g) => {
      const { dx } = conv2dBackward(
        g,
        x,
        this.weight,
        { stride: this.stride, pad: this.pad, relu: this.relu, y, needInputGrad },
        { dw: this.dWeight, db: this.dBias },
      );
      return dx;
    });
  }
}

/** The reference's Conv2d_ReLU: one child `conv` (Conv2d with fused ReLU, no padding). */
export class Conv2dRelu extends Module implements Layer {
  readonly kind = 'Conv2d_ReLU';
  readonly conv: Conv2d;

  constructor(cfg: { inChannels: number; outChannels: number; kernel: number; stride?: number; pad?: number }) {
    super();
    this.conv = this.addChild('conv', new Conv2d({ ...cfg, relu: true }));
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    return this.conv.forward(x, ctx);
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    return this.conv.backward(dy, needInputGrad);
  }
}
