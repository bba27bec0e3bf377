// Adam with PyTorch's semantics (torch.optim.Adam, no weight decay, amsgrad off):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// in float32, in the same order of operations as PyTorch's single-tensor loop.
import { Tensor } from '../tensor.js';

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
}

export interface AdamParamState {
  m: Float32Array;
  v: Float32Array;
}

export class Adam {
  beta1: number;
  beta2: number;
  eps: number;
  lr: number;
  step = 0;
  readonly state: AdamParamState[];

  constructor(
    readonly params: Tensor[],
    opts: AdamOptions,
  ) {
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.state = params.map((p) => ({ m: new Float32Array(p.size), v: new Float32Array(p.size) }));
  }

  /** One update with the gradients grads[k] of params[k]. */
  update(grads: Tensor[]): void {
    if (grads.length !== this.params.length) {
      throw new Error(`Adam: ${grads.length} gradients for ${this.params.length} parameters`);
    }
    // validate every gradient first: a bad one leaves all parameters untouched
    for (let k = 0; k < this.params.length; k++) {
      const g = grads[k].data;
      if (g.length !== this.params[k].size) {
        throw new Error(`Adam: gradient ${k} has ${g.length} values, parameter has ${this.params[k].size}`);
      }
      for (let i = 0; i < g.length; i++) {
        if (!Number.isFinite(g[i])) {
          throw new Error(
            `Adam: gradient ${k} ${grads[k].toString()} has a non-finite value (${g[i]}) at index ${i}; no parameter was updated`,
          );
        }
      }
    }
    this.step += 1;
    const f = Math.fround;
    const b1 = f(this.beta1);
    const b2 = f(this.beta2);
    const c1 = f(1 - b1);
    const c2 = f(1 - b2);
    const bc1 = 1 - this.beta1 ** this.step;
    const bc2sqrt = Math.sqrt(1 - this.beta2 ** this.step);
    const stepSize = this.lr / bc1;
    const eps = this.eps;
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k].data;
      const g = grads[k].data;
      if (g.length !== p.length)
        throw new Error(`Adam: gradient ${k} has ${g.length} values, parameter has ${p.length}`);
      const { m, v } = this.state[k];
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        m[i] = f(f(m[i] * b1) + f(gi * c1)); // exp_avg.lerp_(grad, 1 - beta1)
        v[i] = f(f(v[i] * b2) + f(f(gi * gi) * c2)); // exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
        const denom = f(f(Math.sqrt(v[i]) / bc2sqrt) + eps);
        p[i] = f(p[i] - f(stepSize * f(m[i] / denom)));
      }
    }
  }
}
