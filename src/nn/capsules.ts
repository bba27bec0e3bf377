// Capsules: a fully connected capsule layer with dynamic routing (the reference's Capsules).
//   x [B,I,Din] -> votes u_hat[b,i] = x[b,i] @ W[i]  [B,I,J*D]  -> routing -> v [B,J,D]
//   weight [I, Din, J*D] (PyTorch's layout; kaiming_uniform with a = 0: fan_in = Din*J*D)
//   bias [J, D] (init 0.1)
import { capsuleVotesBackward, capsuleVotesForward } from '../tensor/ops/capsule-votes.js';
import { capsulesForwardTs } from '../tensor/ts/routing.js';
import { routingBackward, type RoutingCache, routingForward } from '../tensor/ops/routing.js';
import { kernels } from '../tensor/kernels.js';
import { give, take } from '../tensor/pool.js';
import { check, shapeStr, Tensor } from '../tensor/tensor.js';
import { kaimingUniformBound, Rng, uniformFill } from './init.js';
import { type ForwardContext, type Layer, Module, needCache, type QuantHooks, withClippedGradient } from './module.js';

export class Capsules extends Module implements Layer {
  readonly kind = 'Capsules';
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly dWeight: Tensor;
  readonly dBias: Tensor;
  private cache: { x: Tensor; votes: Tensor; routing: RoutingCache; quant: QuantHooks | null } | null = null;

  /** I input capsules of dimension Din -> J output capsules of dimension D. */
  constructor(
    readonly I: number,
    readonly Din: number,
    readonly J: number,
    readonly D: number,
    readonly iterations = 3,
  ) {
    super();
    this.weight = Tensor.zeros([I, Din, J * D]);
    this.bias = Tensor.zeros([J, D]);
    this.dWeight = this.addParam('weight', this.weight, [I, Din, J * D]);
    this.dBias = this.addParam('bias', this.bias, [J, D]);
  }

  override resetParameters(seed: number): void {
    const shape = [this.I, this.Din, this.J * this.D];
    uniformFill(this.weight.data, Rng.forName(seed, this.qualified('weight')), kaimingUniformBound(shape, 0));
    this.bias.data.fill(0.1);
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    check(
      x.rank === 3 && x.shape[1] === this.I && x.shape[2] === this.Din,
      `Capsules '${this.path}'`,
      `input must be [B, ${this.I}, ${this.Din}], got ${shapeStr(x.shape)}`,
    );
    const B = x.shape[0];
    const quant = ctx.quant?.routing(this.path) ?? null;
    // inference: votes, their quantizer and the routing in one kernel, image by image, when
    // the hooks hand over the votes' quantizer (or there are none)
    if (!ctx.training && (!ctx.quant || quant?.votes !== undefined)) {
      const v = take(B * this.J * this.D);
      const g = { B, I: this.I, Din: this.Din, J: this.J, D: this.D, iterations: this.iterations };
      // a routing that reports its values runs in the TypeScript reference
      if (quant?.record) capsulesForwardTs(g, x.data, this.weight.data, this.bias.data, v, quant, quant.record);
      else kernels().capsulesForward(g, x.data, this.weight.data, this.bias.data, v, quant);
      this.cache = null;
      return new Tensor(v, [B, this.J, this.D]);
    }
    const votes = capsuleVotesForward(x, this.weight).reshape([B, this.I, 1, this.J, this.D]);
    if (ctx.quant) ctx.quant.activation(this.path, 'votes', votes);
    const { v, cache } = routingForward(votes, this.bias, {
      iterations: this.iterations,
      softmax: 'j',
      training: ctx.training,
      quant,
      clip: ctx.quant?.clipGradient !== undefined,
    });
    this.cache = null;
    if (cache) this.cache = { x, votes, routing: cache, quant: ctx.quant ?? null };
    else give(votes.data);
    return v.reshape([B, this.J, this.D]);
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { x, votes, routing, quant } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    const du = routingBackward(dy, votes, routing, this.dBias);
    give(votes.data);
    const dx = withClippedGradient(quant, this.path, 'votes', du, (g) =>
      capsuleVotesBackward(
        g.reshape([x.shape[0], this.I, this.J * this.D]),
        x,
        this.weight,
        this.dWeight,
        needInputGrad,
      ),
    );
    give(du.data);
    return dx;
  }
}
