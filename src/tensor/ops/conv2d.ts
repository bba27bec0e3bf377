// conv2d on channels-last tensors, forward and backward (optionally fused with ReLU).
//   x [B,H,W,C], weight [O,KH,KW,C] ("OHWI"; PyTorch's OIHW is permuted on load), bias [O]
//   y [B,OH,OW,O], OH = floor((H + 2*pad - KH) / stride) + 1
import type { ConvGeom, ConvMode, QuantSpec } from '../backend.js';
import { convOutputSide } from '../conv-geometry.js';
import { kernels } from '../kernels.js';
import { take } from '../pool.js';
import { check, expectShape, shapeStr, Tensor } from '../tensor.js';

export interface Conv2dOptions {
  stride?: number;
  pad?: number;
  /** Apply max(0, .) to the output (and mask the gradient by it in backward). */
  relu?: boolean;
}

export function conv2dGeom(x: Tensor, w: Tensor, opts: Conv2dOptions, op = 'conv2d'): ConvGeom {
  check(x.rank === 4, op, `input must be [B,H,W,C], got ${shapeStr(x.shape)}`);
  check(w.rank === 4, op, `weight must be [O,KH,KW,C], got ${shapeStr(w.shape)}`);
  const [B, H, W, C] = x.shape;
  const [O, KH, KW, WC] = w.shape;
  const stride = opts.stride ?? 1;
  const pad = opts.pad ?? 0;
  check(WC === C, op, `input ${shapeStr(x.shape)} has ${C} channels but weight ${shapeStr(w.shape)} expects ${WC}`);
  check(stride >= 1 && pad >= 0, op, `stride must be >= 1 and pad >= 0 (got stride ${stride}, pad ${pad})`);
  const OH = convOutputSide(H, { kernel: KH, stride, pad });
  const OW = convOutputSide(W, { kernel: KW, stride, pad });
  check(OH >= 1 && OW >= 1, op, `kernel ${KH}x${KW} does not fit input ${shapeStr(x.shape)} with pad ${pad}`);
  return { B, H, W, C, O, KH, KW, stride, pad, OH, OW };
}

/** y = conv2d(x, w) + bias, then ReLU when opts.relu, then quantized by `quant` when given
 *  (the layer's output quantizer, fused into the kernel); `mode`: the algorithms it may use. */
export function conv2dForward(
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts: Conv2dOptions & { quant?: QuantSpec | null; mode?: ConvMode } = {},
): Tensor {
  const g = conv2dGeom(x, w, opts);
  if (bias) expectShape(bias, [g.O], 'conv2d', 'bias');
  const y = take(g.B * g.OH * g.OW * g.O);
  kernels().conv2dForward(g, x.data, w.data, bias?.data ?? null, y, opts.relu ?? false, opts.quant ?? null, opts.mode);
  return new Tensor(y, [g.B, g.OH, g.OW, g.O]);
}

export interface Conv2dGrads {
  dx: Tensor | null;
  dw: Tensor;
  db: Tensor | null;
}

/** Gradients of conv2dForward. `y` (the forward output) is needed when opts.relu.
 *  dw/db accumulate into `into` when given (parameter gradients). dy is modified in
 *  place when opts.relu (masked). */
export function conv2dBackward(
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  opts: Conv2dOptions & { y?: Tensor; needInputGrad?: boolean; hasBias?: boolean },
  into?: { dw: Tensor; db: Tensor | null },
): Conv2dGrads {
  const g = conv2dGeom(x, w, opts, 'conv2d backward');
  expectShape(dy, [g.B, g.OH, g.OW, g.O], 'conv2d backward', 'dy');
  if (opts.relu) {
    check(opts.y !== undefined, 'conv2d backward', 'the forward output y is needed to backpropagate the fused ReLU');
    kernels().reluMask(dy.data, opts.y.data, dy.size);
  }
  const k = kernels();
  const dw = into?.dw ?? new Tensor(take(w.size, true), w.shape);
  const db = into ? into.db : opts.hasBias === false ? null : new Tensor(take(g.O, true), [g.O]);
  k.conv2dBackwardWeight(g, x.data, dy.data, dw.data, db?.data ?? null);
  let dx: Tensor | null = null;
  if (opts.needInputGrad !== false) {
    dx = new Tensor(take(x.size), x.shape);
    k.conv2dBackwardData(g, dy.data, w.data, dx.data);
  }
  return { dx, dw, db };
}

/** PyTorch conv weight [O,C,KH,KW] -> ours [O,KH,KW,C]. */
export function oihwToOhwi(w: Tensor): Tensor {
  const [O, C, KH, KW] = w.shape;
  const out = new Float32Array(w.size);
  const s = w.data;
  for (let o = 0; o < O; o++)
    for (let c = 0; c < C; c++)
      for (let ky = 0; ky < KH; ky++)
        for (let kx = 0; kx < KW; kx++) out[((o * KH + ky) * KW + kx) * C + c] = s[((o * C + c) * KH + ky) * KW + kx];
  return new Tensor(out, [O, KH, KW, C]);
}

/** Ours [O,KH,KW,C] -> PyTorch [O,C,KH,KW]. */
export function ohwiToOihw(w: Tensor): Tensor {
  const [O, KH, KW, C] = w.shape;
  const out = new Float32Array(w.size);
  const s = w.data;
  for (let o = 0; o < O; o++)
    for (let c = 0; c < C; c++)
      for (let ky = 0; ky < KH; ky++)
        for (let kx = 0; kx < KW; kx++) out[((o * C + c) * KH + ky) * KW + kx] = s[((o * KH + ky) * KW + kx) * C + c];
  return new Tensor(out, [O, C, KH, KW]);
}
