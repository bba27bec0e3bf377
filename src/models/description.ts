// One description of a model, stated once by the model and read by everything else (the
// quantizer, the memory count, the search, the packed file, the exports): its top-level layers
// (SPEC 4's "layers") in order, by name, each with its kind, its parameter tensors and their
// layouts, its routing, its convolution geometry, where its input comes from, and (traced
// once, on demand, from the model's own forward) its quantization points.
//
// Layer kinds are the modules' own kinds: a handler for a kind lowers every layer of it, in any
// model. The description resolves a module path or a state_dict name ('block4.l_skip.conv.bias')
// to its top-level layer: a layer's bits apply to everything under it.
import type { Module, ParamLayout, QuantHooks } from '../nn/module.js';
import type { ConvGeometry } from '../tensor/conv-geometry.js';
import { give, take } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';

/** One parameter tensor of a layer: PyTorch's state_dict name and shape, and how it is held. */
export interface ParamDescription {
  name: string;
  /** the state_dict (PyTorch) shape */
  shape: readonly number[];
  /** the shape it is held in here */
  heldShape: readonly number[];
  /** how the held layout relates to PyTorch's (nn/module.ts ParamLayout) */
  layout: ParamLayout;
}

/** Where a layer's input comes from: the image, or the outputs of earlier layers (capsule maps
 *  flattened in the order (type, y, x) and concatenated in the order given, when `flatten`). */
export interface LayerInput {
  from: readonly string[];
  flatten: boolean;
}

/** One activation quantization point of a layer (SPEC 4): the module path and point name its
 *  hooks receive, and the elements per image it quantizes. */
export interface QuantPoint {
  path: string;
  point: string;
  elements: number;
}

/** One top-level layer as the model states it. */
export interface LayerDescription {
  name: string;
  /** the module's kind ('Conv2d_ReLU', 'Conv2d_BN_ReLU', 'ConvPixelToCapsules',
   *  'DeepCapsBlock', 'Capsules', ...): what an exporter's handler lowers */
  kind: string;
  module: Module;
  /** parameters counted in the weight memory (weights, biases, capsule biases, BN affine) */
  paramCount: number;
  /** parameter tensors (params.length): under the 'dynamic' number format each stores one
   *  exponent, counted in the weight memory */
  tensorCount: number;
  params: readonly ParamDescription[];
  /** the layer routes: it has routing bits (SPEC 4) */
  routes: boolean;
  /** dynamic routing iterations (1 for ShallowCapsNet's primary capsules; 0: no routing) */
  iterations: number;
  /** a capsule layer (DeepCaps blocks, primary and class capsules) */
  capsule: boolean;
  /** the geometry of the layer's (first) convolution, or null when it has none */
  conv: ConvGeometry | null;
  input: LayerInput;
}

/** What a model says of one of its top-level layers. */
export interface LayerSpec {
  name: string;
  module: Module;
  capsule: boolean;
  /** the layer's own routing iteration count, or null when it does not route */
  routingIterations: number | null;
  /** its convolution's geometry, or null */
  conv?: ConvGeometry | null;
  /** default: the previous layer's output (the image for the first layer), not flattened */
  input?: LayerInput;
}

/** The positions of the layers that route (SPEC 4: they have routing bits), in layer order: the
 *  one place this is derived (ModelDescription.routingNames, the search's steps 3A and 4A). */
export function routingIndices(layers: readonly { routes: boolean }[]): number[] {
  return layers.flatMap((l, i) => (l.routes ? [i] : []));
}

/** A model as everything else reads it; see the top of this file. */
export class ModelDescription {
  readonly layers: readonly LayerDescription[];
  /** the layers' names, in order */
  readonly names: readonly string[];
  /** the names of the layers that route, in order */
  readonly routingNames: readonly string[];
  private readonly byName: ReadonlyMap<string, number>;
  private points: readonly QuantPoint[][] | null = null;
  private routingPathList: readonly string[][] | null = null;

  constructor(
    private readonly model: {
      kind: string;
      inputWh: number;
      inputCh: number;
      forward(x: Tensor, ctx: { training: boolean; quant: QuantHooks }): Tensor;
      readonly training: boolean;
      train(on: boolean): unknown;
    },
    specs: readonly LayerSpec[],
  ) {
    this.layers = specs.map((s, i) => ({
      name: s.name,
      kind: (s.module as { kind?: string }).kind ?? s.module.constructor.name,
      module: s.module,
      paramCount: s.module.parameterCount(),
      tensorCount: s.module.parameters().length,
      params: s.module.parameters().map((p) => ({
        name: p.name,
        shape: [...p.torchShape],
        heldShape: [...p.param.shape],
        layout: p.layout,
      })),
      routes: s.routingIterations !== null,
      iterations: s.routingIterations ?? 0,
      capsule: s.capsule,
      conv: s.conv ?? null,
      input: s.input ?? { from: i === 0 ? ['image'] : [specs[i - 1].name], flatten: false },
    }));
    this.names = this.layers.map((l) => l.name);
    this.routingNames = routingIndices(this.layers).map((i) => this.names[i]);
    this.byName = new Map(this.names.map((n, i) => [n, i]));
  }

  /** The position of layer `name` (its place in the forward). */
  index(name: string): number {
    const i = this.byName.get(name);
    if (i === undefined)
      throw new Error(`${this.model.kind}: no layer named '${name}' (its layers: ${this.names.join(', ')})`);
    return i;
  }

  layer(name: string): LayerDescription {
    return this.layers[this.index(name)];
  }

  /** The top-level layer of a module path or state_dict name: 'block4.l_skip.conv.bias' ->
   *  block4. */
  layerOf(path: string): LayerDescription {
    const dot = path.indexOf('.');
    const i = this.byName.get(dot < 0 ? path : path.slice(0, dot));
    if (i === undefined)
      throw new Error(`${this.model.kind}: '${path}' belongs to no layer (its layers: ${this.names.join(', ')})`);
    return this.layers[i];
  }

  /** Every layer's activation quantization points, in the order the forward reaches them,
   *  traced once by running the model on one blank image with hooks that record instead of
   *  rounding. */
  quantPoints(): readonly (readonly QuantPoint[])[] {
    if (!this.points) this.trace();
    return this.points!;
  }

  /** Every layer's routing quantization points: the module paths whose routing the hooks are
   *  asked for (QuantHooks.routing), in forward order (traced with quantPoints). */
  routingPaths(): readonly (readonly string[])[] {
    if (!this.routingPathList) this.trace();
    return this.routingPathList!;
  }

  private trace(): void {
    const points: QuantPoint[][] = this.layers.map(() => []);
    const routing: string[][] = this.layers.map(() => []);
    const hooks: QuantHooks = {
      activation: (path, point, t) => {
        points[this.index(this.layerOf(path).name)].push({ path, point, elements: t.size });
      },
      routing: (path) => {
        routing[this.index(this.layerOf(path).name)].push(path);
        return null;
      },
    };
    const m = this.model;
    const size = m.inputWh * m.inputWh * m.inputCh;
    const x = new Tensor(take(size).fill(0), [1, m.inputWh, m.inputWh, m.inputCh]);
    const wasTraining = m.training;
    m.train(false);
    try {
      give(m.forward(x, { training: false, quant: hooks }).data);
    } finally {
      give(x.data);
      m.train(wasTraining);
    }
    this.points = points;
    this.routingPathList = routing;
  }
}
