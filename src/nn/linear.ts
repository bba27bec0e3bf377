// Linear (+ optional ReLU or sigmoid): y = act(x W^T + b).
//   x [N,in] -> y [N,out]; weight [out,in] (PyTorch's layout), bias [out]
// PyTorch's default init: kaiming_uniform(a = sqrt(5)) weight, bias U(-1/sqrt(in), 1/sqrt(in)).
import { reluBackward, sigmoidBackward } from '../tensor/ops/activations.js';
import { linearBackward, linearForward } from '../tensor/ops/linear.js';
import { give } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';
import { torchDefaultInit } from './init.js';
import { type ForwardContext, type Layer, Module, needCache } from './module.js';

export type Activation = 'none' | 'relu' | 'sigmoid';

export class Linear extends Module implements Layer {
  readonly kind = 'Linear';
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly dWeight: Tensor;
  readonly dBias: Tensor;
  private cache: { x: Tensor; y: Tensor } | null = null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly activation: Activation = 'none',
  ) {
    super();
    this.weight = Tensor.zeros([outFeatures, inFeatures]);
    this.bias = Tensor.zeros([outFeatures]);
    this.dWeight = this.addParam('weight', this.weight, [outFeatures, inFeatures]);
    this.dBias = this.addParam('bias', this.bias, [outFeatures]);
  }

  override resetParameters(seed: number): void {
    torchDefaultInit(
      seed,
      { name: this.qualified('weight'), data: this.weight.data },
      this.bias ? { name: this.qualified('bias'), data: this.bias.data } : null,
      [this.outFeatures, this.inFeatures],
    );
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const y = linearForward(x, this.weight, this.bias);
    const d = y.data;
    if (this.activation === 'relu') for (let i = 0; i < d.length; i++) d[i] = d[i] > 0 ? d[i] : 0;
    else if (this.activation === 'sigmoid') for (let i = 0; i < d.length; i++) d[i] = 1 / (1 + Math.exp(-d[i]));
    this.cache = ctx.training ? { x, y } : null;
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { x, y } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    let dz = dy;
    if (this.activation === 'relu') dz = reluBackward(dy, y);
    else if (this.activation === 'sigmoid') dz = sigmoidBackward(dy, y);
    const dx = linearBackward(dz, x, this.weight, { dw: this.dWeight, db: this.dBias }, needInputGrad);
    if (dz !== dy) give(dz.data);
    return dx;
  }
}
