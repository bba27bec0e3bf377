// The quantized forward under every instruction-set level of the exact fixed-point kernels,
// thread count and GEMM, compared bit for bit (class lengths) with the best level's: shared by
// test/isa-exact.test.ts (a few images) and `npm run check:isa` (bench/check-isa.ts, 200
// Fashion-MNIST test images).
import type { CapsNet } from '../src/models/capsnet.js';
import type { Calibration } from '../src/quant/calibration.js';
import { type NumberFormat, quantize, uniformBits } from '../src/quant/index.js';
import { QUANT_METHODS, ROUNDING_COMPATS } from '../src/quant/methods.js';
import type { RoundingCompat } from '../src/quant/methods.js';
import type { QuantMethod } from '../src/tensor/backend.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { isaInfo, setGemm, setIsa, blasInfo } from '../src/tensor/kernels-native.js';
import { kernels } from '../src/tensor/kernels.js';
import { ISA_LEVELS, type IsaLevel } from '../src/settings.js';

/** One way to run the kernels: a level, a thread count, a GEMM. */
export interface KernelPath {
  isa: IsaLevel;
  threads: number;
  gemm: 'blas' | 'builtin';
}

export const pathName = (p: KernelPath) => `isa ${p.isa}, ${p.threads} thread(s), ${p.gemm} GEMM`;

/** The levels this CPU runs (the best first) and, for the others, why not. */
export function runnableLevels(): { levels: IsaLevel[]; skipped: [IsaLevel, string][] } {
  const { cpu } = isaInfo();
  const best = ISA_LEVELS.indexOf(cpu);
  return {
    levels: ISA_LEVELS.slice(best),
    skipped: ISA_LEVELS.slice(0, best).map((l) => [l, `this CPU runs at most ${cpu}`]),
  };
}

/** Whether this build has a CBLAS besides the built-in GEMM. */
export const hasBlas = () => !blasInfo().includes('no CBLAS');

/** Every path to compare, the best level at 1 thread with the build's GEMM first: each level
 *  this CPU runs, at 1 and 2 threads, with the build's CBLAS (if any) and the built-in GEMM. */
export function kernelPaths(levels: readonly IsaLevel[]): KernelPath[] {
  const gemms = hasBlas() ? (['blas', 'builtin'] as const) : (['builtin'] as const);
  const paths: KernelPath[] = [];
  for (const isa of levels) for (const threads of [1, 2]) for (const gemm of gemms) paths.push({ isa, threads, gemm });
  return paths;
}

/** Each capsule's length as the C export's class_lengths_of computes it: squares summed in
 *  double, the root rounded to float32 ([B, K, D] capsules -> B * K lengths). */
export function classLengths(caps: Tensor): Float32Array {
  const [B, K, D] = caps.shape;
  const l = new Float32Array(B * K);
  for (let i = 0; i < B * K; i++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += caps.data[i * D + d] ** 2;
    l[i] = Math.fround(Math.sqrt(s));
  }
  return l;
}

/** Runs fn with the kernels set to path, restoring the best level, the GEMM and the threads. */
export function withPath<T>(p: KernelPath, fn: () => T): T {
  const threads = kernels().getThreads();
  const best = isaInfo().cpu;
  setIsa(p.isa);
  setGemm(p.gemm);
  kernels().setThreads(p.threads);
  try {
    return fn();
  } finally {
    setIsa(best);
    if (hasBlas()) setGemm('blas');
    kernels().setThreads(threads);
  }
}

/** The bits of the models' quantized forward: every method in both arithmetics, with mixed
 *  widths, so that the exact convolutions run every way (narrow activations: integer Winograd;
 *  wide ones: direct sums, or two passes over limbs past int16); given a calibration, every
 *  method in the 'dynamic' number format too (the default arithmetic: dac2020 is 'fixed' only). */
export interface Case {
  what: string;
  method: QuantMethod;
  compat: RoundingCompat;
  lengths: (x: Tensor) => Float32Array;
}

export function cases(name: string, model: CapsNet, calibration: Calibration | null = null): Case[] {
  const out: Case[] = [];
  const n = model.quantLayers.length;
  const formats: [RoundingCompat, NumberFormat][] = ROUNDING_COMPATS.map((c) => [c, 'fixed']);
  if (calibration) formats.push(['none', 'dynamic']);
  for (const [compat, format] of formats)
    for (const method of QUANT_METHODS) {
      const bits = uniformBits(model.quantLayers, 8, format);
      // the first layers' activations (the exact convolutions' inputs): 6 fractional bits for
      // stochastic rounding, 12 to 14 for the others (under 'dynamic', widths: one more)
      const extra = format === 'dynamic' ? 1 : 0;
      bits.forEach((b, l) => {
        if (l < n - 1) b.act = (method === 'stochastic_rounding' ? 6 : 14 - (l % 3)) + extra;
      });
      const q = quantize(model, bits, { method, compat, seed: 7, calibration });
      out.push({
        what: `${name}, ${method}, ${compat}${format === 'dynamic' ? ', dynamic' : ''}`,
        method,
        compat,
        lengths: (x) => classLengths(q.forward(x, 0)),
      });
    }
  return out;
}

/** Where two length vectors differ first ('' when bit for bit the same). */
export function firstDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `${a.length} lengths against ${b.length}`;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++)
    if (ua[i] !== ub[i]) return `length ${i} (image ${Math.floor(i / 10)}): ${a[i]} against ${b[i]}`;
  return '';
}
