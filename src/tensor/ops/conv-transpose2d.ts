// conv_transpose2d on channels-last tensors: the adjoint of conv2d.
//   x [B,H,W,Cin], weight [Cin,KH,KW,Cout] (PyTorch's [Cin,Cout,KH,KW] permuted), bias [Cout]
//   y [B,OH,OW,Cout], OH = (H - 1)*stride - 2*pad + KH + outputPadding
// Forward is conv2d's input gradient for the conv that maps y-space to x-space; backward
// is that conv's forward (dx) and its weight gradient (dw).
import type { ConvGeom } from '../backend.js';
import { kernels } from '../kernels.js';
import { take } from '../pool.js';
import { check, expectShape, shapeStr, Tensor } from '../tensor.js';

export interface ConvTranspose2dOptions {
  stride?: number;
  pad?: number;
  outputPadding?: number;
}

function adjointGeom(x: Tensor, w: Tensor, opts: ConvTranspose2dOptions, op: string): ConvGeom {
  check(x.rank === 4, op, `input must be [B,H,W,Cin], got ${shapeStr(x.shape)}`);
  check(w.rank === 4, op, `weight must be [Cin,KH,KW,Cout], got ${shapeStr(w.shape)}`);
  const [B, H, W, Cin] = x.shape;
  const [WCin, KH, KW, Cout] = w.shape;
  const stride = opts.stride ?? 1;
  const pad = opts.pad ?? 0;
  const op2 = opts.outputPadding ?? 0;
  check(
    WCin === Cin,
    op,
    `input ${shapeStr(x.shape)} has ${Cin} channels but weight ${shapeStr(w.shape)} expects ${WCin}`,
  );
  check(op2 >= 0 && op2 < stride, op, `output_padding must be in [0, stride) (got ${op2}, stride ${stride})`);
  const OH = (H - 1) * stride - 2 * pad + KH + op2;
  const OW = (W - 1) * stride - 2 * pad + KW + op2;
  check(OH >= 1 && OW >= 1, op, `output size ${OH}x${OW} is empty for input ${shapeStr(x.shape)}`);
  // the adjoint conv: input image [B,OH,OW,Cout] -> output [B,H,W,Cin]
  return { B, H: OH, W: OW, C: Cout, O: Cin, KH, KW, stride, pad, OH: H, OW: W };
}

export function convTranspose2dForward(
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts: ConvTranspose2dOptions = {},
): Tensor {
  const g = adjointGeom(x, w, opts, 'conv_transpose2d');
  if (bias) expectShape(bias, [g.C], 'conv_transpose2d', 'bias');
  const y = take(g.B * g.H * g.W * g.C);
  kernels().conv2dBackwardData(g, x.data, w.data, y);
  if (bias) {
    const b = bias.data;
    const C = g.C;
    for (let i = 0; i < y.length; i += C) for (let c = 0; c < C; c++) y[i + c] += b[c];
  }
  return new Tensor(y, [g.B, g.H, g.W, g.C]);
}

export function convTranspose2dBackward(
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  opts: ConvTranspose2dOptions & { needInputGrad?: boolean },
  into: { dw: Tensor; db: Tensor | null },
): Tensor | null {
  const g = adjointGeom(x, w, opts, 'conv_transpose2d backward');
  expectShape(dy, [g.B, g.H, g.W, g.C], 'conv_transpose2d backward', 'dy');
  const k = kernels();
  // dw[cin,ky,kx,cout] += sum x[b,iy,ix,cin] * dy[b, iy*s-p+ky, ix*s-p+kx, cout]
  k.conv2dBackwardWeight(g, dy.data, x.data, into.dw.data, null);
  if (into.db) {
    const db = into.db.data;
    const d = dy.data;
    const C = g.C;
    for (let i = 0; i < d.length; i += C) for (let c = 0; c < C; c++) db[c] += d[i + c];
  }
  if (opts.needInputGrad === false) return null;
  const dx = take(x.size);
  k.conv2dForward(g, dy.data, w.data, null, dx, false);
  return new Tensor(dx, x.shape);
}

/** PyTorch conv_transpose weight [Cin,Cout,KH,KW] -> ours [Cin,KH,KW,Cout]. */
export function convTransposeWeightFromTorch(w: Tensor): Tensor {
  const [Ci, Co, KH, KW] = w.shape;
  const out = new Float32Array(w.size);
  for (let i = 0; i < Ci; i++)
    for (let o = 0; o < Co; o++)
      for (let ky = 0; ky < KH; ky++)
        for (let kx = 0; kx < KW; kx++)
          out[((i * KH + ky) * KW + kx) * Co + o] = w.data[((i * Co + o) * KH + ky) * KW + kx];
  return new Tensor(out, [Ci, KH, KW, Co]);
}

/** Ours [Cin,KH,KW,Cout] -> PyTorch [Cin,Cout,KH,KW]. */
export function convTransposeWeightToTorch(w: Tensor): Tensor {
  const [Ci, KH, KW, Co] = w.shape;
  const out = new Float32Array(w.size);
  for (let i = 0; i < Ci; i++)
    for (let o = 0; o < Co; o++)
      for (let ky = 0; ky < KH; ky++)
        for (let kx = 0; kx < KW; kx++)
          out[((i * Co + o) * KH + ky) * KW + kx] = w.data[((i * KH + ky) * KW + kx) * Co + o];
  return new Tensor(out, [Ci, Co, KH, KW]);
}
