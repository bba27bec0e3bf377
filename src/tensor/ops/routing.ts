// Dynamic routing as one fused op (SPEC 2.1); see src/tensor/ts/routing.ts for the math.
//   votes [B, I, P, J, D] (P = output positions, 1 for fully connected capsules)
//   bias [J, D], output v [B, P, J, D]
import type { QuantSpec, RoutingGeom, RoutingQuant } from '../backend.js';
import { kernels } from '../kernels.js';
import { routingForwardTs } from '../ts/routing.js';
import { give, take } from '../pool.js';
import { check, shapeStr, Tensor } from '../tensor.js';

export interface RoutingCache {
  geom: RoutingGeom;
  saveS: Float32Array;
  saveC: Float32Array;
  /** RoutingOptions.clip: 1 where the output's quantizer did not saturate (null: nowhere) */
  inRange: Uint8Array | null;
}

export interface RoutingOptions {
  iterations: number;
  /** 'j': softmax over output capsules (Sabour); 'pj': jointly over positions and output capsules (DeepCaps 3-D). */
  softmax: 'j' | 'pj';
  /** keep what backward needs */
  training?: boolean;
  quant?: RoutingQuant | null;
  /** Training through the quantized forward (the clipped straight-through estimator, see
   *  QuantHooks.clipGradient): backward zeroes the output's gradient where quant.act saturated
   *  the output (values outside [lo, hi] before rounding). The quantizers inside the iterations
   *  pass their gradients unchanged. */
  clip?: boolean;
}

export function routingForward(
  votes: Tensor,
  bias: Tensor,
  opts: RoutingOptions,
): { v: Tensor; cache: RoutingCache | null } {
  check(votes.rank === 5, 'routing', `votes must be [B,I,P,J,D], got ${shapeStr(votes.shape)}`);
  const [B, I, P, J, D] = votes.shape;
  check(
    bias.size === J * D,
    'routing',
    `bias ${shapeStr(bias.shape)} must hold J*D = ${J}*${D} values for votes ${shapeStr(votes.shape)}`,
  );
  check(
    Number.isInteger(opts.iterations) && opts.iterations >= 1,
    'routing',
    `iterations must be an integer >= 1, got ${opts.iterations}`,
  );
  const geom: RoutingGeom = { B, I, P, J, D, iterations: opts.iterations, softmax: opts.softmax };
  const v = take(B * P * J * D);
  const training = opts.training ?? false;
  const saveS = training ? take(opts.iterations * B * P * J * D) : null;
  const saveC = training ? take(opts.iterations * B * I * P * J) : null;
  const quant = opts.quant ?? null;
  if (quant?.record) routingForwardTs(geom, votes.data, bias.data, v, saveS, saveC, quant, quant.record);
  else kernels().routingForward(geom, votes.data, bias.data, v, saveS, saveC, quant);
  const inRange = saveS && opts.clip ? outputInRange(geom, saveS, quant?.act ?? null) : null;
  return { v: new Tensor(v, [B, P, J, D]), cache: saveS && saveC ? { geom, saveS, saveC, inRange } : null };
}

/** Where the last iteration's output v = squash(s), before its quantizer `q`, lies within [q.lo,
 *  q.hi] (1) or not (0); null when q cannot saturate. s is as saved (the routing's quantized s). */
function outputInRange(g: RoutingGeom, saveS: Float32Array, q: QuantSpec | null): Uint8Array | null {
  if (!q || (q.lo === -Infinity && q.hi === Infinity)) return null;
  const n = g.B * g.P * g.J * g.D;
  const v = take(n);
  kernels().squashRows(saveS.subarray((g.iterations - 1) * n, g.iterations * n), v, n / g.D, g.D);
  const inRange = new Uint8Array(n);
  for (let i = 0; i < n; i++) inRange[i] = v[i] >= q.lo && v[i] <= q.hi ? 1 : 0;
  give(v);
  return inRange;
}

/** Returns d votes; accumulates d bias. Releases the cache's buffers. */
export function routingBackward(dv: Tensor, votes: Tensor, cache: RoutingCache, dbias: Tensor): Tensor {
  const { B, P, J, D } = cache.geom;
  check(
    dv.size === B * P * J * D,
    'routing backward',
    `dv ${shapeStr(dv.shape)} does not match [${B}, ${P}, ${J}, ${D}]`,
  );
  const du = take(votes.size);
  let g = dv.data;
  if (cache.inRange) {
    g = take(dv.size);
    for (let i = 0; i < g.length; i++) g[i] = cache.inRange[i] ? dv.data[i] : 0;
  }
  kernels().routingBackward(cache.geom, votes.data, cache.saveS, cache.saveC, g, du, dbias.data);
  if (g !== dv.data) give(g);
  give(cache.saveS);
  give(cache.saveC);
  return new Tensor(du, votes.shape);
}
