// The Module base of every layer and model: named parameters (each with its gradient),
// buffers (BatchNorm running statistics), train/eval, and state_dicts with PyTorch's names,
// shapes and layouts (conv weights are held OHWI here and are OIHW in a state_dict; see
// README "Layouts").
//
// Ownership of activations (llm.c style, explicit):
//   - forward(x, ctx) returns a tensor the caller owns. In training it caches what backward
//     needs; cached inputs are held by reference, so the caller keeps x unchanged until backward.
//   - backward(dy) accumulates into the parameter gradients (call zeroGrad() between steps),
//     releases the layer's own temporaries to the pool and returns dx, owned by the caller.
//     dy stays the caller's, but a layer may use it as scratch (e.g. masking by a fused ReLU).
import type { ConvMode, QuantSpec, RoutingQuant } from '../tensor/backend.js';
import { convTransposeWeightFromTorch, convTransposeWeightToTorch } from '../tensor/ops/conv-transpose2d.js';
import { ohwiToOihw, oihwToOhwi } from '../tensor/ops/conv2d.js';
import { give } from '../tensor/pool.js';
import { numel, shapeStr, Tensor } from '../tensor/tensor.js';

/** Hooks a quantized forward pass hands to the layers (SPEC 4). `layer` is the layer's
 *  state_dict prefix ('conv', 'primary', 'block4.l_skip', ...); its first component names the
 *  top-level layer whose bits apply. Float runs pass no hooks. */
export interface QuantHooks {
  /** Quantize, in place, the activation at `point` ('out', 'votes', 'conv', 'squash'). */
  activation(layer: string, point: string, t: Tensor): void;
  /** The quantizer that activation(layer, point, .) applies, for kernels that fuse it into
   *  their output (absent: layers call activation; null: that point is not quantized). */
  activationSpec?(layer: string, point: string): QuantSpec | null;
  /** The quantizers for the routing inside `layer` (c and v with the activation bits, s and
   *  the logits with the routing bits), or null. */
  routing(layer: string): RoutingQuant | null;
  /** The convolution algorithms this forward may use (absent: DEFAULT_CONV_MODE). */
  conv?: ConvMode;
  /** Training through these hooks (quantization-aware fine-tuning's clipped straight-through
   *  estimator): the gradient dy of the value quantized at (layer, point) in the last training
   *  forward, with zeros where that quantizer saturated, as a new tensor the caller gives back;
   *  null where nothing saturated (dy passes unchanged). Layers call it in backward, once per
   *  point, and ask their routing to clip its output's gradient too (RoutingOptions.clip).
   *  Absent: every gradient passes its quantizer unchanged. */
  clipGradient?(layer: string, point: string, dy: Tensor): Tensor | null;
}

/** dy through the clipped straight-through estimator of the hooks' quantizer at (layer, point)
 *  (QuantHooks.clipGradient), handed to `use`; a masked copy is given back after. */
export function withClippedGradient<T>(
  quant: QuantHooks | null,
  layer: string,
  point: string,
  dy: Tensor,
  use: (g: Tensor) => T,
): T {
  const masked = quant?.clipGradient?.(layer, point, dy) ?? null;
  if (!masked) return use(dy);
  try {
    return use(masked);
  } finally {
    give(masked.data);
  }
}

export interface ForwardContext {
  /** Cache for backward and use batch statistics in BatchNorm. */
  training: boolean;
  quant?: QuantHooks | null;
}

export const EVAL: ForwardContext = { training: false };
export const TRAIN: ForwardContext = { training: true };

/** The one interface of a layer with a single input and output. */
export interface Layer {
  forward(x: Tensor, ctx: ForwardContext): Tensor;
  /** Returns dx, or null when needInputGrad is false (the first layer of a network). */
  backward(dy: Tensor, needInputGrad?: boolean): Tensor | null;
}

/** How a parameter is held here compared with PyTorch.
 *  'plain': same element order (the shape may differ, e.g. a capsule bias [J,D] vs [J,D,1,1]);
 *  'ohwi': conv weight [O,KH,KW,C] here, [O,C,KH,KW] in PyTorch (Conv3DCaps: [O,1,C,KH,KW]);
 *  'convT': conv-transpose weight [Cin,KH,KW,Cout] here, [Cin,Cout,KH,KW] in PyTorch. */
export type ParamLayout = 'plain' | 'ohwi' | 'convT';

export interface Parameter {
  /** PyTorch state_dict name, e.g. 'block1.l1.conv.weight'. */
  name: string;
  param: Tensor;
  grad: Tensor;
  torchShape: number[];
  layout: ParamLayout;
}

/** A tensor in a state_dict: PyTorch's shape and element order. Structurally the same as
 *  src/io's NamedTensor, so a state_dict goes to and from checkpoint files unchanged. */
export interface StateTensor {
  shape: number[];
  data: Float32Array;
  dtype: string;
  integers?: BigInt64Array;
}

/** What loadStateDict reads: a Map (as src/io returns) or a plain object. */
export type StateDictLike =
  | ReadonlyMap<string, { shape: readonly number[]; data: Float32Array; integers?: BigInt64Array }>
  | Readonly<Record<string, { shape: readonly number[]; data: Float32Array; integers?: BigInt64Array }>>;

/** One state_dict entry with its conversion to and from PyTorch's layout. */
interface StateEntry {
  name: string;
  buffer: boolean;
  torchShape: number[];
  dtype: 'float32' | 'int64';
  read(): Float32Array;
  write(values: Float32Array): void;
}

interface LocalParam {
  local: string;
  param: Tensor;
  grad: Tensor;
  torchShape: number[];
  layout: ParamLayout;
}

interface LocalBuffer {
  local: string;
  torchShape: number[];
  dtype: 'float32' | 'int64';
  read(): Float32Array;
  write(values: Float32Array): void;
}

function toTorch(p: { param: Tensor; torchShape: number[]; layout: ParamLayout }): Float32Array {
  switch (p.layout) {
    case 'plain':
      return p.param.data.slice();
    case 'ohwi':
      return ohwiToOihw(p.param).data;
    case 'convT':
      return convTransposeWeightToTorch(p.param).data;
  }
}

function fromTorch(p: { param: Tensor; torchShape: number[]; layout: ParamLayout }, values: Float32Array): void {
  switch (p.layout) {
    case 'plain':
      p.param.data.set(values);
      return;
    case 'ohwi': {
      const [O, KH, KW, C] = p.param.shape;
      p.param.data.set(oihwToOhwi(new Tensor(values, [O, C, KH, KW])).data);
      return;
    }
    case 'convT': {
      const [Ci, KH, KW, Co] = p.param.shape;
      p.param.data.set(convTransposeWeightFromTorch(new Tensor(values, [Ci, Co, KH, KW])).data);
      return;
    }
  }
}

/** A parameter's value (or its gradient) in PyTorch's layout and shape. */
export function torchLayout(p: Parameter, which: 'param' | 'grad' = 'param'): StateTensor {
  const t = which === 'param' ? p.param : p.grad;
  return {
    shape: [...p.torchShape],
    data: toTorch({ param: t, torchShape: p.torchShape, layout: p.layout }),
    dtype: 'float32',
  };
}

export abstract class Module {
  /** The state_dict prefix of this module ('' for a whole model). */
  path = '';
  training = false;
  private readonly ownParams: LocalParam[] = [];
  private readonly ownBuffers: LocalBuffer[] = [];
  private readonly children: [string, Module][] = [];

  /** The module's type name in messages ('ShallowCapsNet', 'Conv2d', ...). */
  abstract readonly kind: string;

  protected qualified(local: string): string {
    return this.path ? `${this.path}.${local}` : local;
  }

  /** Registers a parameter held in `layout`; returns its gradient tensor (zeros). */
  protected addParam(
    local: string,
    param: Tensor,
    torchShape: readonly number[],
    layout: ParamLayout = 'plain',
  ): Tensor {
    if (numel(torchShape) !== param.size)
      throw new Error(
        `${this.kind}: parameter ${local} ${shapeStr(param.shape)} cannot be ${shapeStr(torchShape)} in PyTorch`,
      );
    const grad = Tensor.zeros(param.shape);
    this.ownParams.push({ local, param, grad, torchShape: [...torchShape], layout });
    return grad;
  }

  protected addBuffer(buffer: LocalBuffer): void {
    this.ownBuffers.push(buffer);
  }

  protected addChild<T extends Module>(name: string, child: T): T {
    this.children.push([name, child]);
    child.setPath(this.qualified(name));
    return child;
  }

  private setPath(path: string): void {
    this.path = path;
    for (const [name, child] of this.children) child.setPath(this.qualified(name));
  }

  /** Parameters in PyTorch's order (a module's own, then its children's, recursively). */
  parameters(): Parameter[] {
    const out: Parameter[] = this.ownParams.map((p) => ({
      name: this.qualified(p.local),
      param: p.param,
      grad: p.grad,
      torchShape: p.torchShape,
      layout: p.layout,
    }));
    for (const [, child] of this.children) out.push(...child.parameters());
    return out;
  }

  /** Re-initialises every parameter with the module's PyTorch init scheme, drawing from
   *  sub-streams of `seed` named after the parameters (so one layer's values do not depend on
   *  the others'). Layers with parameters override this with their own scheme. */
  resetParameters(seed: number): void {
    for (const [, child] of this.children) child.resetParameters(seed);
  }

  /** Number of trainable values. */
  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.param.size, 0);
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.grad.data.fill(0);
  }

  train(on = true): this {
    this.training = on;
    for (const [, child] of this.children) child.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  private stateEntries(): StateEntry[] {
    const out: StateEntry[] = [];
    for (const p of this.ownParams)
      out.push({
        name: this.qualified(p.local),
        buffer: false,
        torchShape: p.torchShape,
        dtype: 'float32',
        read: () => toTorch(p),
        write: (v) => fromTorch(p, v),
      });
    for (const b of this.ownBuffers) out.push({ ...b, name: this.qualified(b.local), buffer: true });
    for (const [, child] of this.children) out.push(...child.stateEntries());
    return out;
  }

  /** The buffers (BatchNorm's running_mean, running_var, num_batches_tracked) with their
   *  PyTorch names, as copies in PyTorch's layout. */
  buffers(): { name: string; value: StateTensor }[] {
    return this.stateEntries()
      .filter((e) => e.buffer)
      .map((e) => ({ name: e.name, value: entryTensor(e) }));
  }

  /** PyTorch names, shapes and layouts, in PyTorch's order (a module's parameters, then its
   *  buffers, then its children). The data are copies. */
  stateDict(): Map<string, StateTensor> {
    const sd = new Map<string, StateTensor>();
    for (const e of this.stateEntries()) sd.set(e.name, entryTensor(e));
    return sd;
  }

  /** Loads a PyTorch state_dict (names, shapes and layouts as stateDict() gives them). Every
   *  missing key, unexpected key and wrong shape is reported in one Error, then any float value
   *  that is not finite (NaN, an infinity); nothing is written unless all match. */
  loadStateDict(sd: StateDictLike, source = 'state_dict'): void {
    const map: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array; integers?: BigInt64Array }> =
      sd instanceof Map ? sd : new Map(Object.entries(sd));
    const entries = this.stateEntries();
    const expected = new Set(entries.map((e) => e.name));
    const missing: string[] = [];
    const wrong: string[] = [];
    for (const e of entries) {
      const t = map.get(e.name);
      if (!t) missing.push(`${e.name} ${shapeStr(e.torchShape)}`);
      else if (!sameShape(t.shape, e.torchShape) || t.data.length !== numel(e.torchShape))
        wrong.push(`${e.name}: ${shapeStr(t.shape)} in the ${source}, expected ${shapeStr(e.torchShape)}`);
    }
    const unexpected = [...map.entries()]
      .filter(([k]) => !expected.has(k))
      .map(([k, t]) => `${k} ${shapeStr(t.shape)}`);
    if (missing.length || unexpected.length || wrong.length) {
      const lines = [`${this.kind}: the ${source} does not match the model`];
      if (missing.length) lines.push(`  missing keys (${missing.length}):`, ...missing.map((s) => `    ${s}`));
      if (unexpected.length)
        lines.push(`  unexpected keys (${unexpected.length}):`, ...unexpected.map((s) => `    ${s}`));
      if (wrong.length) lines.push(`  wrong shapes (${wrong.length}):`, ...wrong.map((s) => `    ${s}`));
      throw new Error(lines.join('\n'));
    }
    const nonFinite = nonFiniteTensors(entries.map((e) => [e.name, map.get(e.name)!] as const));
    if (nonFinite)
      throw new Error(
        `${this.kind}: the ${source} holds values that are not finite numbers (a run that diverged, or a damaged ` +
          `file): ${nonFinite}`,
      );
    for (const e of entries) {
      const t = map.get(e.name)!;
      const values = t.integers ? Float32Array.from(t.integers, (v) => Number(v)) : t.data;
      e.write(values);
    }
  }
}

/** The float tensors with a NaN or an infinity, as "NAME element I is NaN (K of N values)"
 *  (the first three such tensors), or null when every value is finite. A parameter or a
 *  BatchNorm running statistic that is not finite makes every output NaN or 0, and its
 *  quantizer's integers undefined. */
export function nonFiniteTensors(
  tensors: Iterable<readonly [string, { data: Float32Array; integers?: BigInt64Array }]>,
): string | null {
  const found: string[] = [];
  let more = 0;
  for (const [name, t] of tensors) {
    if (t.integers) continue; // int64 buffers (num_batches_tracked) are finite by their type
    let first = -1;
    let count = 0;
    for (let i = 0; i < t.data.length; i++) {
      if (Number.isFinite(t.data[i])) continue;
      if (first < 0) first = i;
      count++;
    }
    if (first < 0) continue;
    if (found.length === 3) more++;
    else found.push(`${name} element ${first} is ${t.data[first]} (${count} of ${t.data.length} values)`);
  }
  if (!found.length) return null;
  return found.join('; ') + (more ? `; and ${more} more tensor${more > 1 ? 's' : ''}` : '');
}

function entryTensor(e: StateEntry): StateTensor {
  const data = e.read();
  const t: StateTensor = { shape: [...e.torchShape], data, dtype: e.dtype };
  if (e.dtype === 'int64') t.integers = BigInt64Array.from(data, (v) => BigInt(Math.round(v)));
  return t;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Throws when a backward pass runs without its forward's cache. */
export function needCache<T>(cache: T | null | undefined, kind: string, path: string): T {
  if (!cache) throw new Error(`${kind}${path ? ` '${path}'` : ''}: backward called without a training-mode forward`);
  return cache;
}

/** Unwraps an input gradient that was asked for. */
export function inputGrad(dx: Tensor | null): Tensor {
  if (!dx) throw new Error('internal: an input gradient was requested but not computed');
  return dx;
}
