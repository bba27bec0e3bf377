// Adam with PyTorch's semantics (torch.optim.Adam, no weight decay, amsgrad off):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// in float32, in the same order of operations as PyTorch's single-tensor loop.
import { kernels } from '../kernels.js';
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
    const bc1 = 1 - this.beta1 ** this.step;
    const bc2sqrt = f(Math.sqrt(1 - this.beta2 ** this.step));
    const stepSize = f(this.lr / bc1);
    const k = kernels();
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i].data;
      const { m, v } = this.state[i];
      k.adamUpdate(p, grads[i].data, m, v, p.length, b1, f(1 - b1), b2, f(1 - b2), stepSize, bc2sqrt, f(this.eps));
    }
  }
}
