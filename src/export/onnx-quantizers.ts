// The deterministic quantizers of src/tensor/ts/quantize.ts as ONNX ops on float32 tensors,
// with the same float32 arithmetic (every step below is exact or one correctly rounded op):
//   round_to_nearest  y = Round(x * 2^f) * 2^-f            (Round is half to even, as rint)
//     dac2020         y = Floor(x * 2^f + 2^-(f+1)) * 2^-f (the reference's offset)
//   truncation        y = Floor(x * 2^f) * 2^-f
//   logarithmic       y = sign(x) * 2^rint(log2|x|), 0 below 2^-f, at most 1024
// then, where the quantizer saturates (a finite lo or hi), Clip(y, lo, hi), as the kernels clamp
// the rounded value; the fixed format's activations and routing values do not (no Clip).
import type { ExportQuantizer } from './export-quantizers.js';
import { saturates } from './export-quantizers.js';
import type { OnnxGraph } from './onnx-graph.js';

/** A quantizer as the graph writes it (export-quantizers.ts). */
export type GraphQuantizer = ExportQuantizer;

const f32 = Math.fround;

export function quantizeOp(g: OnnxGraph, x: string, q: GraphQuantizer): string {
  const y = roundOp(g, x, q);
  if (!saturates(q)) return y;
  const bound = (v: number) => (Number.isFinite(v) ? g.scalar(v) : '');
  return g.op('Clip', [y, bound(q.lo), bound(q.hi)]);
}

/** The rounding of `q`, without its saturation. */
function roundOp(g: OnnxGraph, x: string, q: GraphQuantizer): string {
  const scale = g.scalar(2 ** q.frac);
  const inv = g.scalar(f32(2 ** -q.frac));
  switch (q.method) {
    case 'truncation':
      return g.op('Mul', [g.op('Floor', [g.op('Mul', [x, scale])]), inv]);
    case 'round_to_nearest': {
      const scaled = g.op('Mul', [x, scale]);
      const rounded = q.compat
        ? g.op('Floor', [g.op('Add', [scaled, g.scalar(f32(2 ** (-q.frac - 1)))])])
        : g.op('Round', [scaled]);
      return g.op('Mul', [rounded, inv]);
    }
    case 'logarithmic':
      return logarithmicOp(g, x, q);
  }
}

/** The largest float32 below 2^(k + 1/2): |x| > it exactly when |x| > 2^(k + 1/2) (no float32
 *  equals that irrational number), i.e. when rint(log2|x|) > k. */
export function sqrt2Threshold(k: number): number {
  let t = f32(Math.SQRT2 * 2 ** k);
  // t * t is exact in float64 (24-bit factors): step down while t lies above 2^(k + 1/2)
  while (t * t > 2 ** (2 * k + 1)) t = f32(t - 2 ** (k - 24));
  return t;
}

/** Logarithmic quantization as a staircase: the magnitude m is 0 below the first threshold,
 *  2^-f above it, and doubles at each 2^(k + 1/2) up to 1024 = 2^10. The dac2020 variant takes
 *  the log of |x| + 1e-8 (in float32), which changes no result but near the thresholds. */
function logarithmicOp(g: OnnxGraph, x: string, q: GraphQuantizer): string {
  let a = g.op('Abs', [x]);
  if (q.compat) a = g.op('Add', [a, g.scalar(f32(1e-8))]);
  // k ranges over the exponents -f-1 .. 9: crossing 2^(k + 1/2) moves m from 2^k to 2^(k+1)
  // (from 0 to 2^-f for the first one)
  let m: string | null = null;
  for (let k = -q.frac - 1; k <= 9; k++) {
    const step = k === -q.frac - 1 ? 2 ** -q.frac : 2 ** k;
    const above = g.op('Cast', [g.op('Greater', [a, g.scalar(sqrt2Threshold(k))])], { to: 1 });
    const term = g.op('Mul', [above, g.scalar(step)]);
    m = m === null ? term : g.op('Add', [m, term]);
  }
  return g.op('Mul', [g.op('Sign', [x]), m!]);
}
