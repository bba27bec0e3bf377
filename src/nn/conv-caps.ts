// Convolutional capsule layers on capsule maps x [B,H,W,ci,ni] (types ci, dimension ni).
//
// ConvCapsRouting: one Conv2d(ni -> co*no) applied to each input capsule type separately gives
// the votes u_hat [B, ci, P = OH*OW, co, no]; dynamic routing (src/tensor/ops/routing.ts) at
// every position gives v [B,OH,OW,co,no]. Two layers of the reference are this:
//   ConvPixelToCapsules (ShallowCapsNet `primary`): conv `conv3d` without bias, routing bias
//     [co,no,1,1] (init 0), softmax over the output capsules ('j'). With one input type and one
//     iteration the couplings are all 1/co: v = squash(votes/co + bias).
//   Conv3DCaps (DeepCaps skip of block4): the reference's Conv3d(1 -> co*no, kernel (ni,k,k),
//     stride (ni,1,1), pad (0,p,p)) with bias `conv`, weight [co*no,1,ni,k,k] in PyTorch (the
//     same element order as a Conv2d weight [co*no,ni,k,k]); routing bias [co,no,1,1] (init
//     0.1); 3-D routing: softmax jointly over positions and output capsules ('pj').
// Conv2DCaps: Conv2d(ci*ni -> co*no) over the flattened capsule map, then squash over no.
import { permute } from '../tensor/ops/shape.js';
import { routingBackward, type RoutingCache, routingForward } from '../tensor/ops/routing.js';
import { squashBackward, squashForward } from '../tensor/ops/squash.js';
import { give } from '../tensor/pool.js';
import { check, shapeStr, Tensor } from '../tensor/tensor.js';
import { Conv2d } from './conv2d.js';
import { kaimingUniformBound, Rng, uniformFill, xavierUniformBound } from './init.js';
import { type ForwardContext, type Layer, Module, needCache, type QuantHooks, withClippedGradient } from './module.js';

export interface CapsConvConfig {
  ci: number;
  ni: number;
  co: number;
  no: number;
  kernel: number;
  stride: number;
  pad: number;
}

/** [B,H,W,ci,ni] (or [B,H,W,ni] when ci = 1) -> [B,H,W,ci,ni] dims. */
function capsMapDims(x: Tensor, ci: number, ni: number, what: string): [number, number, number] {
  const ok =
    (x.rank === 5 && x.shape[3] === ci && x.shape[4] === ni) || (x.rank === 4 && ci === 1 && x.shape[3] === ni);
  check(
    ok,
    what,
    `input must be [B, H, W, ${ci}, ${ni}]${ci === 1 ? ` or [B, H, W, ${ni}]` : ''}, got ${shapeStr(x.shape)}`,
  );
  return [x.shape[0], x.shape[1], x.shape[2]];
}

abstract class ConvCapsRouting extends Module implements Layer {
  readonly conv: Conv2d;
  readonly bias: Tensor;
  readonly dBias: Tensor;
  private cache: {
    x: Tensor;
    xi: Tensor;
    votes: Tensor;
    routing: RoutingCache;
    OH: number;
    OW: number;
    quant: QuantHooks | null;
  } | null = null;

  constructor(
    readonly cfg: CapsConvConfig,
    readonly iterations: number,
    readonly softmax: 'j' | 'pj',
    convName: string,
    convBias: boolean,
    torchWeightShape: number[],
  ) {
    super();
    const { ni, co, no } = cfg;
    this.bias = Tensor.zeros([co, no]);
    this.dBias = this.addParam('bias', this.bias, [co, no, 1, 1]);
    this.conv = this.addChild(
      convName,
      new Conv2d({
        inChannels: ni,
        outChannels: co * no,
        kernel: cfg.kernel,
        stride: cfg.stride,
        pad: cfg.pad,
        bias: convBias,
        quantOutput: false,
        torchWeightShape,
      }),
    );
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const { ci, ni, co, no } = this.cfg;
    const [B, H, W] = capsMapDims(x, ci, ni, `${this.kind} '${this.path}'`);
    // one image of ni channels per input capsule type: [B*ci, H, W, ni]
    const xi = ci === 1 ? x.reshape([B, H, W, ni]) : permute(x, [0, 3, 1, 2, 4]).reshape([B * ci, H, W, ni]);
    const u = this.conv.forward(xi, ctx); // [B*ci, OH, OW, co*no]
    const [, OH, OW] = u.shape;
    const votes = u.reshape([B, ci, OH * OW, co, no]);
    if (ctx.quant) ctx.quant.activation(this.path, 'votes', votes);
    const { v, cache } = routingForward(votes, this.bias, {
      iterations: this.iterations,
      softmax: this.softmax,
      training: ctx.training,
      quant: ctx.quant?.routing(this.path) ?? null,
      clip: ctx.quant?.clipGradient !== undefined,
    });
    this.cache = null;
    if (cache) this.cache = { x, xi, votes, routing: cache, OH, OW, quant: ctx.quant ?? null };
    else {
      give(votes.data);
      if (xi.data !== x.data) give(xi.data);
    }
    return v.reshape([B, OH, OW, co, no]);
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { x, xi, votes, routing, OH, OW, quant } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    const du = routingBackward(dy, votes, routing, this.dBias); // [B, ci, P, co, no]
    give(votes.data);
    const [B, ci, , co, no] = votes.shape;
    const dxi = withClippedGradient(quant, this.path, 'votes', du, (g) =>
      this.conv.backward(g.reshape([B * ci, OH, OW, co * no]), needInputGrad),
    );
    give(du.data);
    const sameBuffer = xi.data === x.data;
    if (!sameBuffer) give(xi.data);
    if (!dxi) return null;
    if (sameBuffer) return dxi.reshape(x.shape);
    const [, H, W, ni] = xi.shape;
    const dx = permute(dxi.reshape([B, ci, H, W, ni]), [0, 2, 3, 1, 4]);
    give(dxi.data);
    return dx;
  }
}

/** ShallowCapsNet's primary capsules: children `conv3d` (no bias) and parameter `bias`. */
export class ConvPixelToCapsules extends ConvCapsRouting {
  readonly kind = 'ConvPixelToCapsules';

  constructor(cfg: CapsConvConfig, iterations = 1) {
    super(cfg, iterations, 'j', 'conv3d', false, [cfg.co * cfg.no, cfg.ni, cfg.kernel, cfg.kernel]);
  }

  /** conv3d: nn.Conv2d's default init; bias: zeros (as the reference). */
  override resetParameters(seed: number): void {
    this.conv.resetParameters(seed);
    this.bias.data.fill(0);
  }
}

/** DeepCaps' 3-D convolutional capsules with routing: children `conv` and parameter `bias`. */
export class Conv3DCaps extends ConvCapsRouting {
  readonly kind = 'Conv3DCaps';

  constructor(cfg: CapsConvConfig, iterations = 3) {
    super(cfg, iterations, 'pj', 'conv', true, [cfg.co * cfg.no, 1, cfg.ni, cfg.kernel, cfg.kernel]);
  }

  /** conv weight kaiming_uniform (a = 0, fan_in = ni*k*k), conv bias 0, routing bias 0.1. */
  override resetParameters(seed: number): void {
    const { ni, co, no, kernel: k } = this.cfg;
    const bound = kaimingUniformBound([co * no, 1, ni, k, k], 0);
    uniformFill(this.conv.weight.data, Rng.forName(seed, this.conv.path + '.weight'), bound);
    this.conv.bias!.data.fill(0);
    this.bias.data.fill(0.1);
  }
}

/** DeepCaps' 2-D convolutional capsules (no routing): child `conv`, output squashed over no.
 *  [B,H,W,ci,ni] -> [B,OH,OW,co,no]. */
export class Conv2DCaps extends Module implements Layer {
  readonly kind = 'Conv2DCaps';
  readonly conv: Conv2d;
  private cache: { s: Tensor; shape: readonly number[]; quant: QuantHooks | null } | null = null;

  constructor(readonly cfg: CapsConvConfig) {
    super();
    const { ci, ni, co, no } = cfg;
    this.conv = this.addChild(
      'conv',
      new Conv2d({
        inChannels: ci * ni,
        outChannels: co * no,
        kernel: cfg.kernel,
        stride: cfg.stride,
        pad: cfg.pad,
        quantOutput: false,
      }),
    );
  }

  /** xavier_uniform weight, zero bias (as the reference). */
  override resetParameters(seed: number): void {
    const { ci, ni, co, no, kernel: k } = this.cfg;
    const bound = xavierUniformBound([co * no, ci * ni, k, k]);
    uniformFill(this.conv.weight.data, Rng.forName(seed, this.conv.path + '.weight'), bound);
    this.conv.bias!.data.fill(0);
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const { ci, ni, co, no } = this.cfg;
    const [B, H, W] = capsMapDims(x, ci, ni, `${this.kind} '${this.path}'`);
    const s = this.conv.forward(x.reshape([B, H, W, ci * ni]), ctx); // [B, OH, OW, co*no]
    const [, OH, OW] = s.shape;
    if (ctx.quant) ctx.quant.activation(this.path, 'conv', s);
    const v = squashForward(s.reshape([B, OH, OW, co, no]), -1);
    if (ctx.quant) ctx.quant.activation(this.path, 'squash', v);
    this.cache = null;
    if (ctx.training) this.cache = { s, shape: x.shape, quant: ctx.quant ?? null };
    else give(s.data);
    return v;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const { s, shape, quant } = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    const [B, OH, OW] = s.shape;
    const { co, no } = this.cfg;
    // the gradients of the quantized squash output, then of the quantized convolution output
    const ds = withClippedGradient(quant, this.path, 'squash', dy, (g) =>
      squashBackward(g.reshape([B, OH, OW, co, no]), s.reshape([B, OH, OW, co, no]), -1),
    );
    give(s.data);
    const dx = withClippedGradient(quant, this.path, 'conv', ds, (g) =>
      this.conv.backward(g.reshape([B, OH, OW, co * no]), needInputGrad),
    );
    give(ds.data);
    return dx ? dx.reshape(shape) : null;
  }
}
