// What every capsule network and decoder here offers (ShallowCapsNet, DeepCaps, and the model
// kinds a user registers; FCDecoder, ConvDecoder28, ConvDecoder64).
import { type ForwardContext, Module, needCache } from '../nn/module.js';
import { give } from '../tensor/pool.js';
import { expectShape, type Tensor } from '../tensor/tensor.js';
import type { LayerDescription, ModelDescription } from './description.js';

export type ModelName = 'ShallowCapsNet' | 'DeepCaps';
export type DecoderName = 'FCDecoder' | 'ConvDecoder28' | 'ConvDecoder64';

/** One top-level layer of an inference forward pass (SPEC 4's "layer"), so that an
 *  evaluator can start from a cached intermediate result. run() does not release its input;
 *  its output belongs to the caller. Composed in order they equal forward(x, eval). */
export interface InferenceStage {
  readonly name: string;
  run(input: Tensor, ctx: ForwardContext): Tensor;
}

/** One top-level layer as quantization sees it (SPEC 4's "layer"): what the search and the
 *  memory count need of a layer (a LayerDescription has it all). */
export interface QuantLayerInfo {
  name: string;
  /** parameters counted in the weight memory (weights, biases, capsule biases, BN affine) */
  paramCount: number;
  /** parameter tensors, each with one stored exponent under the 'dynamic' number format
   *  (quant/memory.ts); absent where only 'fixed' configurations are counted */
  tensorCount?: number;
  /** the layer routes: it has routing bits (SPEC 4) */
  routes: boolean;
  /** dynamic routing iterations (1 for ShallowCapsNet's primary capsules; 0: no routing) */
  iterations: number;
  /** a capsule layer (DeepCaps blocks, primary and class capsules) */
  capsule: boolean;
}

/** The forward pass, written once as the stages: they run in order; in training every
 *  intermediate result (the input of stages 1..n-1) is kept, in that order, for backward;
 *  in eval each is released as soon as the next stage has read it. x stays the caller's. */
export function runStages(
  stages: readonly InferenceStage[],
  x: Tensor,
  ctx: ForwardContext,
): { out: Tensor; kept: Tensor[] } {
  const kept: Tensor[] = [];
  let t = x;
  for (const stage of stages) {
    const out = stage.run(t, ctx);
    if (t !== x) {
      if (ctx.training) kept.push(t);
      else give(t.data);
    }
    t = out;
  }
  return { out: t, kept };
}

/** A capsule network: what every model here offers and everything else reads. A model states
 *  its layers once (description) and its forward as one stage per layer (stages); the rest
 *  follows from them. A model kind of the user's extends this class and is registered with
 *  registerModel (src/models/registry.ts). */
export abstract class CapsNet extends Module {
  /** The inference forward, one stage per top-level layer (same order as layerNames);
   *  forward() is these stages composed (runStages). */
  abstract readonly stages: readonly InferenceStage[];
  /** The model's one description: its top-level layers by name (src/models/description.ts). */
  abstract readonly description: ModelDescription;
  /** Its model kind: the name it is registered and built by (buildModel). */
  abstract override readonly kind: string;
  abstract readonly inputWh: number;
  abstract readonly inputCh: number;
  abstract readonly numClasses: number;
  abstract readonly capsDim: number;
  /** the training forward's intermediate results (runStages' kept), for backward */
  private kept: Tensor[] | null = null;

  /** The top-level layers (description.layers). */
  get quantLayers(): readonly LayerDescription[] {
    return this.description.layers;
  }

  /** Top-level layers in order (description.names). */
  get layerNames(): readonly string[] {
    return this.description.names;
  }

  /** Top-level layers that route, in order (description.routingNames). */
  get routingLayerNames(): readonly string[] {
    return this.description.routingNames;
  }

  /** The model's arguments as on the command line (--model-args): by default input_wh,
   *  input_ch, num_classes, caps_dim; what buildModel(kind, args) rebuilds it from. */
  get args(): readonly number[] {
    return [this.inputWh, this.inputCh, this.numClasses, this.capsDim];
  }

  /** Images x [B,H,W,C] (channels-last, values in [0,1]) -> class capsules [B, numClasses,
   *  capsDim], owned by the caller. `training` (or ctx.training; default: the train()/eval()
   *  mode) caches for backward and uses BatchNorm's batch statistics; x must stay unchanged
   *  until backward. */
  forward(x: Tensor, training?: boolean | ForwardContext): Tensor {
    const ctx = toContext(training, this.training);
    expectShape(x, [-1, this.inputWh, this.inputWh, this.inputCh], this.kind, 'input');
    const { out, kept } = runStages(this.stages, x, ctx);
    this.kept = ctx.training ? kept : null;
    return out;
  }

  /** The training forward's intermediate results (the inputs of stages 1..n-1, in order), once:
   *  what backward starts from (an error when there was no training forward). */
  protected takeKept(): Tensor[] {
    const kept = needCache(this.kept, this.kind, '');
    this.kept = null;
    return kept;
  }

  /** Accumulates every parameter's gradient from d loss / d capsules and releases the
   *  activations kept by the training forward (takeKept). */
  abstract backward(dCaps: Tensor): void;
}

export interface CapsDecoder extends Module {
  readonly kind: DecoderName;
  /** Dimension of the capsule it reads (the model's capsDim). */
  readonly inDim: number;
  /** The model's arguments as on the command line (--decoder-args). */
  readonly args: readonly number[];
  /** Class capsules [B,K,D] masked by the labels (the capsule of the true class, as the
   *  reference's mask()) -> reconstruction: [B, out_dim] (FCDecoder) or [B,H,W,out_ch]. */
  forward(caps: Tensor, labels: Int32Array, training?: boolean | ForwardContext): Tensor;
  /** d loss / d reconstruction -> d loss / d capsules [B,K,D] (zero except the true class). */
  backward(dRecon: Tensor): Tensor;
}

/** A forward's context from its `training` argument; omitted: the module's train()/eval() mode. */
export function toContext(training: boolean | ForwardContext | undefined, dflt: boolean): ForwardContext {
  if (typeof training === 'object') return training;
  return { training: training ?? dflt };
}
