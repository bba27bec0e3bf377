// DeepCaps block: l1 = Conv2DCaps(ci,ni -> co,no, 3x3, stride, pad 1); l2, l3 = Conv2DCaps
// (co,no -> co,no, 3x3, 1, 1); l_skip = Conv2DCaps of l2's shape when iterations == 1, else
// Conv3DCaps with that many routing iterations.
//   x1 = l1(x); out = l3(l2(x1)) + l_skip(x1).   [B,H,W,ci,ni] -> [B,H',W',co,no]
import { add } from '../tensor/ops/shape.js';
import { give } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';
import { Conv2DCaps, Conv3DCaps } from './conv-caps.js';
import { type ForwardContext, inputGrad, type Layer, Module, needCache } from './module.js';

export class DeepCapsBlock extends Module implements Layer {
  readonly kind = 'DeepCapsBlock';
  readonly l1: Conv2DCaps;
  readonly l2: Conv2DCaps;
  readonly l3: Conv2DCaps;
  readonly l_skip: Conv2DCaps | Conv3DCaps;
  private cache: { x1: Tensor; x2: Tensor } | null = null;

  constructor(ci: number, ni: number, co: number, no: number, stride: number, iterations: number) {
    super();
    const same = { ci: co, ni: no, co, no, kernel: 3, stride: 1, pad: 1 };
    this.l1 = this.addChild('l1', new Conv2DCaps({ ci, ni, co, no, kernel: 3, stride, pad: 1 }));
    this.l2 = this.addChild('l2', new Conv2DCaps(same));
    this.l3 = this.addChild('l3', new Conv2DCaps(same));
    this.l_skip = this.addChild('l_skip', iterations === 1 ? new Conv2DCaps(same) : new Conv3DCaps(same, iterations));
  }

  /** The skip's dynamic routing iterations (Conv3DCaps), or null when the block does not route. */
  get routingIterations(): number | null {
    return this.l_skip instanceof Conv3DCaps ? this.l_skip.iterations : null;
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const x1 = this.l1.forward(x, ctx);
    const skip = this.l_skip.forward(x1, ctx);
    const x2 = this.l2.forward(x1, ctx);
    const x3 = this.l3.forward(x2, ctx);
    const out = add(x3, skip);
    give(x3.data);
    give(skip.data);
    this.cache = null;
    if (ctx.training) this.cache = { x1, x2 };
    else {
      give(x1.data);
      give(x2.data);
    }
    return out;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { x1, x2 } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    const dx2 = inputGrad(this.l3.backward(dy));
    give(x2.data);
    const dx1 = inputGrad(this.l2.backward(dx2));
    give(dx2.data);
    const dx1Skip = inputGrad(this.l_skip.backward(dy));
    const a = dx1.data;
    const b = dx1Skip.data;
    for (let i = 0; i < a.length; i++) a[i] += b[i];
    give(b);
    const dx = this.l1.backward(dx1, needInputGrad);
    give(dx1.data);
    give(x1.data);
    return dx;
  }
}
