// Reference dynamic routing (SPEC 2.1, Sabour et al. 2017, Procedure 1), forward and backward.
// votes u [B,I,P,J,D], logits b [B,I,P,J] (start at 0), bias [J,D], output v [B,P,J,D].
// Iteration t:  c = softmax(b)        over J ('j') or jointly over P,J ('pj')
//               s_j = sum_i c_ij u_j|i + bias_j
//               v_j = squash(s_j) = s_j |s_j| / (1 + |s_j|^2)
//               b_ij += <u_j|i, v_j>
import type { CapsulesGeom, QuantSpec, RoutingGeom, RoutingQuant, RoutingRecord } from '../backend.js';
import { quantizeTs } from './quantize.js';

function softmaxLogits(g: RoutingGeom, logits: Float32Array, c: Float32Array): void {
  const { B, I, P, J } = g;
  const group = g.softmax === 'j' ? J : P * J;
  const groups = (B * I * P * J) / group;
  for (let k = 0; k < groups; k++) {
    const o = k * group;
    let m = -Infinity;
    for (let j = 0; j < group; j++) m = Math.max(m, logits[o + j]);
    let sum = 0;
    for (let j = 0; j < group; j++) {
      const e = Math.exp(logits[o + j] - m);
      c[o + j] = e;
      sum += e;
    }
    for (let j = 0; j < group; j++) c[o + j] /= sum;
  }
}

function quantizeInPlace(buf: Float32Array, spec: QuantSpec | null, stream: number): void {
  if (spec) quantizeTs(buf, buf, buf.length, { ...spec, stream: spec.stream + stream });
}

export type { RoutingRecord } from '../backend.js';

export function routingForwardTs(
  g: RoutingGeom,
  u: Float32Array,
  bias: Float32Array,
  v: Float32Array,
  saveS: Float32Array | null,
  saveC: Float32Array | null,
  quant: RoutingQuant | null,
  record?: RoutingRecord,
): void {
  const { B, I, P, J, D, iterations } = g;
  const nc = B * I * P * J;
  const ns = B * P * J * D;
  const logits = new Float32Array(nc);
  const c = new Float32Array(nc);
  const s = new Float32Array(ns);
  for (let t = 0; t < iterations; t++) {
    softmaxLogits(g, logits, c);
    quantizeInPlace(c, quant?.act ?? null, 4 * t);
    record?.(t, 'c', c);
    for (let b = 0; b < B; b++)
      for (let p = 0; p < P; p++)
        for (let j = 0; j < J; j++) {
          const so = ((b * P + p) * J + j) * D;
          for (let d = 0; d < D; d++) s[so + d] = bias[j * D + d];
          for (let i = 0; i < I; i++) {
            const ci = c[((b * I + i) * P + p) * J + j];
            const uo = (((b * I + i) * P + p) * J + j) * D;
            for (let d = 0; d < D; d++) s[so + d] += ci * u[uo + d];
          }
        }
    quantizeInPlace(s, quant?.routing ?? null, 4 * t + 1);
    record?.(t, 's', s);
    for (let k = 0; k < ns; k += D) {
      let n2 = 0;
      for (let d = 0; d < D; d++) n2 += s[k + d] * s[k + d];
      const n = Math.sqrt(n2);
      const f = n / (1 + n2);
      for (let d = 0; d < D; d++) v[k + d] = s[k + d] * f;
    }
    quantizeInPlace(v.subarray(0, ns), quant?.act ?? null, 4 * t + 2);
    record?.(t, 'v', v.subarray(0, ns));
    if (saveS) saveS.set(s, t * ns);
    if (saveC) saveC.set(c, t * nc);
    if (t === iterations - 1) break; // the last update of the logits is never used
    for (let b = 0; b < B; b++)
      for (let i = 0; i < I; i++)
        for (let p = 0; p < P; p++)
          for (let j = 0; j < J; j++) {
            const uo = (((b * I + i) * P + p) * J + j) * D;
            const vo = ((b * P + p) * J + j) * D;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += u[uo + d] * v[vo + d];
            logits[((b * I + i) * P + p) * J + j] += dot;
          }
    quantizeInPlace(logits, quant?.routing ?? null, 4 * t + 3);
    record?.(t, 'logits', logits);
  }
}

/** Backward through all iterations (no detach, like the reference implementation). */
/** A capsule layer at inference: votes u[b,i] = x[b,i] W[i] (each product rounded to float32,
 *  summed in the order of k), quantized, then routed over J. */
export function capsulesForwardTs(
  g: CapsulesGeom,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array,
  v: Float32Array,
  quant: RoutingQuant | null,
  record?: RoutingRecord,
): void {
  const { B, I, Din, J, D, iterations } = g;
  const JD = J * D;
  const u = new Float32Array(B * I * JD);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < I; i++) {
      const xo = (b * I + i) * Din;
      const uo = (b * I + i) * JD;
      for (let jd = 0; jd < JD; jd++) {
        let acc = 0;
        for (let k = 0; k < Din; k++) acc = Math.fround(acc + Math.fround(x[xo + k] * w[(i * Din + k) * JD + jd]));
        u[uo + jd] = acc;
      }
    }
  if (quant?.votes) quantizeTs(u, u, u.length, quant.votes);
  record?.(-1, 'votes', u);
  routingForwardTs({ B, I, P: 1, J, D, iterations, softmax: 'j' }, u, bias, v, null, null, quant, record);
}

export function routingBackwardTs(
  g: RoutingGeom,
  u: Float32Array,
  saveS: Float32Array,
  saveC: Float32Array,
  dvOut: Float32Array,
  du: Float32Array,
  dbias: Float32Array,
): void {
  const { B, I, P, J, D, iterations } = g;
  const nc = B * I * P * J;
  const ns = B * P * J * D;
  const group = g.softmax === 'j' ? J : P * J;
  du.fill(0, 0, nc * D);
  const gb = new Float32Array(nc); // gradient w.r.t. the logits b_{t+1}
  const dv = new Float32Array(ns);
  const ds = new Float32Array(ns);
  const dc = new Float32Array(nc);
  const v = new Float32Array(ns);
  for (let t = iterations - 1; t >= 0; t--) {
    const sOff = t * ns;
    const cOff = t * nc;
    // v_t from s_t
    for (let k = 0; k < ns; k += D) {
      let n2 = 0;
      for (let d = 0; d < D; d++) n2 += saveS[sOff + k + d] ** 2;
      const f = Math.sqrt(n2) / (1 + n2);
      for (let d = 0; d < D; d++) v[k + d] = saveS[sOff + k + d] * f;
    }
    if (t === iterations - 1) dv.set(dvOut.subarray(0, ns));
    else {
      // b_{t+1} = b_t + <u, v_t>:  du += gb v_t,  dv_t = sum_i gb u
      dv.fill(0);
      for (let b = 0; b < B; b++)
        for (let i = 0; i < I; i++)
          for (let p = 0; p < P; p++)
            for (let j = 0; j < J; j++) {
              const gi = gb[((b * I + i) * P + p) * J + j];
              const uo = (((b * I + i) * P + p) * J + j) * D;
              const vo = ((b * P + p) * J + j) * D;
              for (let d = 0; d < D; d++) {
                du[uo + d] += gi * v[vo + d];
                dv[vo + d] += gi * u[uo + d];
              }
            }
    }
    // squash backward: ds = f dv + s (s.dv) f'(n)/n,  f(n) = n/(1+n^2), f'(n) = (1-n^2)/(1+n^2)^2
    for (let k = 0; k < ns; k += D) {
      let n2 = 0;
      let sdv = 0;
      for (let d = 0; d < D; d++) {
        const sv = saveS[sOff + k + d];
        n2 += sv * sv;
        sdv += sv * dv[k + d];
      }
      const n = Math.sqrt(n2);
      const f = n / (1 + n2);
      const coef = n > 0 ? ((1 - n2) / ((1 + n2) * (1 + n2) * n)) * sdv : 0;
      for (let d = 0; d < D; d++) ds[k + d] = f * dv[k + d] + coef * saveS[sOff + k + d];
    }
    // s = sum_i c u + bias
    for (let k = 0; k < ns; k++) dbias[k % (J * D)] += ds[k];
    for (let b = 0; b < B; b++)
      for (let i = 0; i < I; i++)
        for (let p = 0; p < P; p++)
          for (let j = 0; j < J; j++) {
            const ci = ((b * I + i) * P + p) * J + j;
            const uo = ci * D;
            const so = ((b * P + p) * J + j) * D;
            const cv = saveC[cOff + ci];
            let dot = 0;
            for (let d = 0; d < D; d++) {
              du[uo + d] += cv * ds[so + d];
              dot += u[uo + d] * ds[so + d];
            }
            dc[ci] = dot;
          }
    // c = softmax(b_t): db_t = c (dc - sum(c dc)); b_t feeds b_{t+1} through the identity
    for (let o = 0; o < nc; o += group) {
      let dot = 0;
      for (let k = 0; k < group; k++) dot += saveC[cOff + o + k] * dc[o + k];
      for (let k = 0; k < group; k++) gb[o + k] += saveC[cOff + o + k] * (dc[o + k] - dot);
    }
  }
}
