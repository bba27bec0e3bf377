// Calibration of the 'dynamic' number format (docs/quantization.md): the largest magnitude at
// every activation and routing quantization point over the full-precision forward of some
// images. A point's fractional length under 'dynamic' follows from it and the width
// (dynamicFracBits), so a calibration is what a dynamic model's activation and routing
// quantizers depend on besides their bits. It is a plain value (JSON as it is): the packed
// file stores it, the evaluation cache names it by its hash.
import { createHash } from 'node:crypto';
import type { CapsNet } from '../models/capsnet.js';
import { checkImagesFit, forEachBatch, type ImageSource } from '../models/evaluate.js';
import type { QuantHooks } from '../nn/module.js';
import type { RoutingQuant } from '../tensor/backend.js';
import { maxAbsOf } from './dynamic.js';

/** The ranges of one model's quantization points, measured on `images` images. */
export interface Calibration {
  /** how many images the ranges come from (the first ones of the set) */
  images: number;
  /** the largest |value| at each activation point (QuantHooks.activation), by 'path|point'
   *  ('conv.conv|out', 'digit|votes', 'block1.l1|squash', ...) */
  activations: Record<string, number>;
  /** per routing module path (QuantHooks.routing): the largest |value| of what its routing
   *  quantizes with the activation count (the coupling coefficients c and the outputs v of
   *  every iteration) and with the routing count (s and the updated logits) */
  routing: Record<string, { act: number; routing: number }>;
}

/** The key of an activation point in Calibration.activations. */
export const pointKey = (path: string, point: string): string => `${path}|${point}`;

/**
 * The calibration of `model` on the first `count` images of `images` (in their own order): the
 * float forward (no quantization; batches of options.batchSize, default 100), recording the
 * largest magnitude at every activation point and, through the TypeScript reference routing
 * (RoutingQuant.record), at every routing value. Convolutions run in the quantized forward's
 * one fixed order, so the ranges are the same on every CPU and thread count.
 */
export function calibrate(
  model: CapsNet,
  images: ImageSource,
  count: number,
  options: { batchSize?: number } = {},
): Calibration {
  if (!(images?.count >= 1)) throw new Error('calibrate: the images are empty');
  if (!(Number.isInteger(count) && count >= 1 && count <= images.count))
    throw new Error(
      `calibrate: count ${count}: expected an integer number of images in [1, ${images.count}] (the images given)`,
    );
  checkImagesFit(model, images, 'calibrate: the images');
  const activations: Record<string, number> = {};
  const routing: Record<string, { act: number; routing: number }> = {};
  const raise = (rec: Record<string, number>, key: string, m: number) => {
    if (!(rec[key] >= m)) rec[key] = m;
  };
  const hooks: QuantHooks = {
    conv: { fastAlgorithms: false, fixedPoint: true },
    activation: (path, point, t) => raise(activations, pointKey(path, point), maxAbsOf(t.data, t.size)),
    routing: (path): RoutingQuant => {
      const r = (routing[path] ??= { act: 0, routing: 0 });
      return {
        act: null,
        routing: null,
        votes: null,
        record: (_iteration, name, values) => {
          const m = maxAbsOf(values);
          if (name === 'votes') raise(activations, pointKey(path, 'votes'), m);
          else if (name === 's' || name === 'logits') r.routing = Math.max(r.routing, m);
          else r.act = Math.max(r.act, m);
        },
      };
    },
  };
  const first: ImageSource = {
    count,
    labels: images.labels.subarray(0, count),
    height: images.height,
    width: images.width,
    channels: images.channels,
    writeImage: (i, out, offset) => images.writeImage(i, out, offset),
  };
  forEachBatch(
    'calibrate',
    model,
    first,
    { batchSize: options.batchSize ?? 100 },
    () => ({ training: false, quant: hooks }),
    () => {},
  );
  // every point the model has, in forward order (a point the forward never reached is an error
  // of the model, not of the images)
  const d = model.description;
  const ordered: Record<string, number> = {};
  for (const layer of d.quantPoints())
    for (const p of layer) {
      const key = pointKey(p.path, p.point);
      if (!(key in activations)) throw new Error(`calibrate: the forward did not reach ${key}`);
      ordered[key] = activations[key];
    }
  const orderedRouting: Record<string, { act: number; routing: number }> = {};
  for (const layer of d.routingPaths())
    for (const path of layer) {
      if (!routing[path]) throw new Error(`calibrate: the forward did not route ${path}`);
      orderedRouting[path] = routing[path];
    }
  return { images: count, activations: ordered, routing: orderedRouting };
}

/** A short hash of a calibration's values (sha256 of its JSON, hex): what the evaluation cache
 *  records of the calibration its evaluations used. */
export function calibrationHash(c: Calibration): string {
  return createHash('sha256').update(JSON.stringify(c)).digest('hex');
}

const isRange = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/**
 * Checks that `c` is a calibration of `model` for the points of `layers` (names; default every
 * layer): a range, a finite number >= 0, at each of their activation points and for each of
 * their routing modules. `what` starts the errors (the option or file it came from).
 */
export function checkCalibration(model: CapsNet, c: unknown, what: string, layers?: ReadonlySet<string>): Calibration {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(c) || !isObject(c.activations) || !isObject(c.routing))
    throw new Error(`${what}: expected a calibration {images, activations, routing} (calibrate(model, images, count))`);
  if (!(Number.isSafeInteger(c.images) && (c.images as number) >= 1))
    throw new Error(`${what}.images ${String(c.images)}: expected a positive integer`);
  const d = model.description;
  const acts = c.activations;
  const routes = c.routing;
  d.layers.forEach((l, i) => {
    if (layers && !layers.has(l.name)) return;
    for (const p of d.quantPoints()[i]) {
      const key = pointKey(p.path, p.point);
      if (!isRange(acts[key]))
        throw new Error(
          `${what}.activations['${key}']: ${key in acts ? `${String(acts[key])} is not` : 'missing; expected'} a largest magnitude (a finite number >= 0) of ${model.kind}'s point ${key} (layer ${l.name})`,
        );
    }
    for (const path of d.routingPaths()[i]) {
      const r = routes[path];
      if (!isObject(r) || !isRange(r.act) || !isRange(r.routing))
        throw new Error(
          `${what}.routing['${path}']: ${r === undefined ? 'missing; expected' : 'not'} {act, routing}, the largest magnitudes (finite numbers >= 0) of ${model.kind}'s routing ${path} (layer ${l.name})`,
        );
    }
  });
  return c as unknown as Calibration;
}
