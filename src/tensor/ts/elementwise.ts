// Reference row-wise kernels (native/elementwise.cc): squash over rows of D values and the
// BatchNorm passes over rows of C channels, on channels-last data.

export function squashRowsTs(s: Float32Array, v: Float32Array, rows: number, D: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    let n2 = 0;
    for (let d = 0; d < D; d++) n2 += s[o + d] * s[o + d];
    const f = Math.sqrt(n2) / (1 + n2);
    for (let d = 0; d < D; d++) v[o + d] = s[o + d] * f;
  }
}

/** ds = f dv + s (s.dv) f'(n)/n with f(n) = n/(1+n^2), f'(n) = (1-n^2)/(1+n^2)^2 (0 at n = 0). */
export function squashRowsBackwardTs(
  s: Float32Array,
  dv: Float32Array,
  ds: Float32Array,
  rows: number,
  D: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    let n2 = 0;
    let sdv = 0;
    for (let d = 0; d < D; d++) {
      n2 += s[o + d] * s[o + d];
      sdv += s[o + d] * dv[o + d];
    }
    const n = Math.sqrt(n2);
    const f = n / (1 + n2);
    const coef = n > 0 ? ((1 - n2) / ((1 + n2) * (1 + n2) * n)) * sdv : 0;
    for (let d = 0; d < D; d++) ds[o + d] = f * dv[o + d] + coef * s[o + d];
  }
}

/** out[c] = sum_r x[r,c], or sum_r (x[r,c] - shift[c])^2 when shift is given. */
export function channelSumsTs(
  x: Float32Array,
  rows: number,
  C: number,
  shift: Float64Array | null,
  out: Float64Array,
): void {
  out.fill(0, 0, C);
  for (let i = 0; i < rows * C; i += C)
    for (let c = 0; c < C; c++) {
      if (shift) {
        const d = x[i + c] - shift[c];
        out[c] += d * d;
      } else out[c] += x[i + c];
    }
}

/** y = gamma (x - mean) invStd + beta; xhat = (x - mean) invStd when given. */
export function batchNormApplyTs(
  x: Float32Array,
  rows: number,
  C: number,
  mean: Float64Array,
  invStd: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  y: Float32Array,
  xhat: Float32Array | null,
): void {
  for (let i = 0; i < rows * C; i += C)
    for (let c = 0; c < C; c++) {
      const h = Math.fround((x[i + c] - mean[c]) * invStd[c]);
      if (xhat) xhat[i + c] = h;
      y[i + c] = gamma[c] * h + beta[c];
    }
}

/** dx = gamma invStd (dy - sum(dy)/n - xhat sum(dy xhat)/n); dgamma += sum(dy xhat); dbeta += sum(dy). */
export function batchNormBackwardTs(
  dy: Float32Array,
  xhat: Float32Array,
  rows: number,
  C: number,
  gamma: Float32Array,
  invStd: Float32Array,
  dx: Float32Array,
  dgamma: Float32Array,
  dbeta: Float32Array,
): void {
  const sumDy = new Float64Array(C);
  const sumDyXh = new Float64Array(C);
  for (let i = 0; i < rows * C; i += C)
    for (let c = 0; c < C; c++) {
      sumDy[c] += dy[i + c];
      sumDyXh[c] += dy[i + c] * xhat[i + c];
    }
  for (let c = 0; c < C; c++) {
    dbeta[c] += sumDy[c];
    dgamma[c] += sumDyXh[c];
  }
  for (let i = 0; i < rows * C; i += C)
    for (let c = 0; c < C; c++) {
      const k = gamma[c] * invStd[c];
      dx[i + c] = k * (dy[i + c] - sumDy[c] / rows - (xhat[i + c] * sumDyXh[c]) / rows);
    }
}

/** One Adam step in float32 (torch.optim.Adam's order of operations): m, v and p updated in place. */
export function adamUpdateTs(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  n: number,
  b1: number,
  c1: number,
  b2: number,
  c2: number,
  stepSize: number,
  bc2sqrt: number,
  eps: number,
): void {
  const f = Math.fround;
  for (let i = 0; i < n; i++) {
    const gi = g[i];
    m[i] = f(f(m[i] * b1) + f(gi * c1)); // exp_avg.lerp_(grad, 1 - beta1)
    v[i] = f(f(v[i] * b2) + f(f(gi * gi) * c2)); // exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
    const denom = f(f(f(Math.sqrt(v[i])) / bc2sqrt) + eps);
    p[i] = f(p[i] - f(stepSize * f(m[i] / denom)));
  }
}

/** y = x.permute(perm) made contiguous (x of the given shape): rows of the innermost output
 *  axis, the input offset of each row following the odometer of the outer axes. */
export function permuteTs(x: Float32Array, shape: readonly number[], perm: readonly number[], y: Float32Array): void {
  const rank = shape.length;
  if (rank === 0) {
    y[0] = x[0];
    return;
  }
  const inStrides = new Int32Array(rank);
  let s = 1;
  for (let k = rank - 1; k >= 0; k--) {
    inStrides[k] = s;
    s *= shape[k];
  }
  const stride = Int32Array.from(perm, (p) => inStrides[p]); // input stride of each output axis
  const outShape = Int32Array.from(perm, (p) => shape[p]);
  const last = rank - 1;
  const n = outShape[last];
  const st = stride[last];
  const idx = new Int32Array(rank);
  const rows = n === 0 ? 0 : s / n;
  let base = 0;
  for (let r = 0, o = 0; r < rows; r++, o += n) {
    for (let j = 0; j < n; j++) y[o + j] = x[base + j * st];
    for (let k = last - 1; k >= 0; k--) {
      if (++idx[k] < outShape[k]) {
        base += stride[k];
        break;
      }
      idx[k] = 0;
      base -= (outShape[k] - 1) * stride[k];
    }
  }
}
