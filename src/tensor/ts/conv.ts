// Reference 2-D convolution on channels-last tensors, as direct loops.
// x [B,H,W,C], w [O,KH,KW,C], y [B,OH,OW,O]; y[b,oy,ox,o] = bias[o] +
//   sum_{ky,kx,c} w[o,ky,kx,c] * x[b, oy*s - p + ky, ox*s - p + kx, c]  (zero outside).
import type { ConvGeom } from '../backend.js';

export function conv2dForwardTs(
  g: ConvGeom,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  y: Float32Array,
  relu: boolean,
): void {
  const { B, H, W, C, O, KH, KW, stride, pad, OH, OW } = g;
  const acc = new Float64Array(O);
  for (let b = 0; b < B; b++)
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OW; ox++) {
        for (let o = 0; o < O; o++) acc[o] = bias ? bias[o] : 0;
        for (let ky = 0; ky < KH; ky++) {
          const iy = oy * stride - pad + ky;
          if (iy < 0 || iy >= H) continue;
          for (let kx = 0; kx < KW; kx++) {
            const ix = ox * stride - pad + kx;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            for (let o = 0; o < O; o++) {
              const wo = ((o * KH + ky) * KW + kx) * C;
              let s = 0;
              for (let c = 0; c < C; c++) s += w[wo + c] * x[xo + c];
              acc[o] += s;
            }
          }
        }
        const yo = ((b * OH + oy) * OW + ox) * O;
        for (let o = 0; o < O; o++) y[yo + o] = relu && acc[o] < 0 ? 0 : acc[o];
      }
}

export function conv2dBackwardDataTs(g: ConvGeom, dy: Float32Array, w: Float32Array, dx: Float32Array): void {
  const { B, H, W, C, O, KH, KW, stride, pad, OH, OW } = g;
  const acc = new Float64Array(B * H * W * C);
  for (let b = 0; b < B; b++)
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OW; ox++) {
        const yo = ((b * OH + oy) * OW + ox) * O;
        for (let ky = 0; ky < KH; ky++) {
          const iy = oy * stride - pad + ky;
          if (iy < 0 || iy >= H) continue;
          for (let kx = 0; kx < KW; kx++) {
            const ix = ox * stride - pad + kx;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            for (let o = 0; o < O; o++) {
              const d = dy[yo + o];
              if (d === 0) continue;
              const wo = ((o * KH + ky) * KW + kx) * C;
              for (let c = 0; c < C; c++) acc[xo + c] += d * w[wo + c];
            }
          }
        }
      }
  for (let i = 0; i < acc.length; i++) dx[i] = acc[i];
}

export function conv2dBackwardWeightTs(
  g: ConvGeom,
  x: Float32Array,
  dy: Float32Array,
  dw: Float32Array,
  db: Float32Array | null,
): void {
  const { B, H, W, C, O, KH, KW, stride, pad, OH, OW } = g;
  const acc = new Float64Array(O * KH * KW * C);
  const accB = new Float64Array(O);
  for (let b = 0; b < B; b++)
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OW; ox++) {
        const yo = ((b * OH + oy) * OW + ox) * O;
        for (let o = 0; o < O; o++) accB[o] += dy[yo + o];
        for (let ky = 0; ky < KH; ky++) {
          const iy = oy * stride - pad + ky;
          if (iy < 0 || iy >= H) continue;
          for (let kx = 0; kx < KW; kx++) {
            const ix = ox * stride - pad + kx;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            for (let o = 0; o < O; o++) {
              const d = dy[yo + o];
              if (d === 0) continue;
              const wo = ((o * KH + ky) * KW + kx) * C;
              for (let c = 0; c < C; c++) acc[wo + c] += d * x[xo + c];
            }
          }
        }
      }
  for (let i = 0; i < acc.length; i++) dw[i] += acc[i];
  if (db) for (let o = 0; o < O; o++) db[o] += accB[o];
}
