// Dynamic routing as one fused op (SPEC 2.1); see src/tensor/ts/routing.ts for the math.
//   votes [B, I, P, J, D] (P = output positions, 1 for fully connected capsules)
//   bias [J, D], output v [B, P, J, D]
import type { RoutingGeom, RoutingQuant } from '../backend.js';
import { kernels } from '../kernels.js';
import { routingForwardTs } from '../ts/routing.js';
import { give, take } from '../pool.js';
import { check, shapeStr, Tensor } from '../tensor.js';

export interface RoutingCache {
  geom: RoutingGeom;
  saveS: Float32Array;
  saveC: Float32Array;
}

export interface RoutingOptions {
  iterations: number;
  /** 'j': softmax over output capsules (Sabour); 'pj': jointly over positions and output capsules (DeepCaps 3-D). */
  softmax: 'j' | 'pj';
  /** keep what backward needs */
  training?: boolean;
  quant?: RoutingQuant | null;
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
  return { v: new Tensor(v, [B, P, J, D]), cache: saveS && saveC ? { geom, saveS, saveC } : null };
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
  kernels().routingBackward(cache.geom, votes.data, cache.saveS, cache.saveC, dv.data, du, dbias.data);
  give(cache.saveS);
  give(cache.saveC);
  return new Tensor(du, votes.shape);
}
