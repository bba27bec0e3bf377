// The native backend: the Node-API addon built from native/ (C++, CBLAS GEMM).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FixedPointConvMethod, Kernels, QuantSpec, RoutingQuant } from './backend.js';
import { DEFAULT_CONV_MODE, QuantMethodIds } from './backend.js';
import { settings, ISA_LEVELS, type IsaLevel, type NativeSettings } from '../settings.js';

/** The functions the addon exports (see native/addon.cc). */
interface Addon {
  setThreads(n: number): void;
  getThreads(): number;
  conv2dForwardFixedPoint(...args: unknown[]): FixedPointConvMethod | null;
  configure(s: Partial<NativeSettings> & { isa?: IsaLevel }): void;
  isaInfo(): { active: IsaLevel; cpu: IsaLevel };
  portableKernelsDisagree(trials: number): number;
  blasInfo(): string;
  setGemm(which: string | null, isa?: string): string;
  sgemm(...args: unknown[]): void;
  conv2dForward(
    geom: Int32Array,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    y: Float32Array,
    relu: boolean,
    quant: Float64Array | null,
    /** bit 0: fast algorithms (Winograd, DFT) allowed; bit 1: exact fixed-point tried first */
    mode: number,
  ): FixedPointConvMethod | null;
  conv2dBackwardData(geom: Int32Array, dy: Float32Array, w: Float32Array, dx: Float32Array): void;
  conv2dBackwardWeight(
    geom: Int32Array,
    x: Float32Array,
    dy: Float32Array,
    dw: Float32Array,
    db: Float32Array | null,
  ): void;
  routingForward(
    geom: Int32Array,
    votes: Float32Array,
    bias: Float32Array,
    v: Float32Array,
    saveS: Float32Array | null,
    saveC: Float32Array | null,
    qAct: Float64Array | null,
    qRouting: Float64Array | null,
  ): void;
  capsulesForward(
    geom: Int32Array,
    x: Float32Array,
    weight: Float32Array,
    bias: Float32Array,
    v: Float32Array,
    qVotes: Float64Array | null,
    qAct: Float64Array | null,
    qRouting: Float64Array | null,
  ): void;
  routingBackward(
    geom: Int32Array,
    votes: Float32Array,
    saveS: Float32Array,
    saveC: Float32Array,
    dv: Float32Array,
    dvotes: Float32Array,
    dbias: Float32Array,
  ): void;
  quantize(x: Float32Array, y: Float32Array, n: number, q: Float64Array): void;
  quantizeMasked(x: Float32Array, y: Float32Array, n: number, q: Float64Array, mask: Uint8Array): void;
  maskGradient(dy: Float32Array, mask: Uint8Array, n: number, out: Float32Array): void;
  fracErrors(x: Float32Array, n: number, frac0: number, count: number, width: number, errors: Float64Array): void;
  reluMask(dy: Float32Array, y: Float32Array, n: number): void;
  permute(x: Float32Array, shape: Int32Array, perm: Int32Array, y: Float32Array): void;
  squashForward(s: Float32Array, v: Float32Array, rows: number, D: number): void;
  squashBackward(s: Float32Array, dv: Float32Array, ds: Float32Array, rows: number, D: number): void;
  channelSums(x: Float32Array, rows: number, C: number, shift: Float64Array | null, out: Float64Array): void;
  batchnormApply(...args: unknown[]): void;
  batchnormBackward(...args: unknown[]): void;
  adamUpdate(...args: unknown[]): void;
}

function findAddon(): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/src/tensor -> package root
  for (const up of ['../../..', '../..']) {
    for (const kind of ['Release', 'Debug']) {
      const p = join(here, up, 'build', kind, 'qcaps_native.node');
      if (existsSync(p)) return p;
    }
  }
  return null;
}

export function packQuant(q: QuantSpec): Float64Array {
  return Float64Array.of(QuantMethodIds[q.method], q.frac, q.compat ? 1 : 0, q.lo, q.hi, q.seed >>> 0, q.stream >>> 0);
}

function packRoutingQuant(q: RoutingQuant | null): [Float64Array | null, Float64Array | null] {
  return [q?.act ? packQuant(q.act) : null, q?.routing ? packQuant(q.routing) : null];
}

/** A setting the addon that loaded cannot take (QCAPS_ISA above what this CPU runs): an error,
 *  never a fall-back to the TypeScript kernels. */
export class NativeSettingsError extends Error {}

let loaded: Addon | null = null;

/** The addon, configured once with the settings (src/settings.ts) when first loaded. */
function loadAddon(): Addon {
  if (loaded) return loaded;
  const path = findAddon();
  if (!path) throw new Error('build/Release/qcaps_native.node not found (run `npm rebuild` to build it)');
  const addon = createRequire(import.meta.url)(path) as Addon;
  const s = settings();
  addon.configure(s.native);
  if (s.gemm !== null || s.gemmIsa !== null) {
    try {
      addon.setGemm(s.gemm, s.gemmIsa ?? undefined);
    } catch (e) {
      throw new NativeSettingsError(
        `QCAPS_GEMM=${s.gemm ?? ''} QCAPS_GEMM_ISA=${s.gemmIsa ?? ''}: ${e instanceof Error ? e.message : e}`,
      );
    }
  }
  if (s.isa !== null) forceIsa(addon, s.isa, 'QCAPS_ISA');
  loaded = addon;
  return loaded;
}

/** Forces the exact fixed-point kernels to `level` (QCAPS_ISA does at load; tests compare the
 *  levels): every level gives the same bits. Throws, naming `source`, for a level above what
 *  this CPU runs. */
export function setIsa(level: IsaLevel): void {
  forceIsa(loadAddon(), level, 'setIsa');
}

function forceIsa(addon: Addon, level: IsaLevel, source: string): void {
  const { cpu } = addon.isaInfo();
  if (!ISA_LEVELS.includes(level))
    throw new NativeSettingsError(`${source}=${level}: expected one of ${ISA_LEVELS.join(', ')}`);
  if (ISA_LEVELS.indexOf(level) < ISA_LEVELS.indexOf(cpu))
    throw new NativeSettingsError(
      `${source}=${level}: this CPU runs at most ${cpu} (accepted here: ${ISA_LEVELS.slice(ISA_LEVELS.indexOf(cpu)).join(', ')})`,
    );
  addon.configure({ isa: level });
}

/** The level the exact fixed-point kernels run at, and the best this CPU and build allow. */
export function isaInfo(): { active: IsaLevel; cpu: IsaLevel } {
  return loadAddon().isaInfo();
}

/** How many of `trials` pseudo-random calls of the exact convolutions' portable micro-kernel
 *  (SSE2 on x86-64) and of the plain C++ loops that other CPUs run disagree (0: the same
 *  integers). x86 never runs the plain loops otherwise: the tests check them through this. */
export function portableKernelsDisagree(trials: number): number {
  return loadAddon().portableKernelsDisagree(trials);
}

/** Which GEMM the addon runs: 'blas' (the CBLAS the build found; the default there) or
 *  'builtin' (native/gemm-builtin.cc, what a build without CBLAS always runs; QCAPS_GEMM=builtin
 *  sets it at load). `isa` picks the built-in kernels ('auto', or 'avx512', 'avx2', 'scalar'
 *  where the CPU has them; for tests). Returns blasInfo(); throws for 'blas' in a build without
 *  CBLAS. The backend line printed at start-up is not updated. */
export function setGemm(which: 'builtin' | 'blas', isa?: 'auto' | 'avx512' | 'avx2' | 'scalar'): string {
  return isa === undefined ? loadAddon().setGemm(which) : loadAddon().setGemm(which, isa);
}

/** What runs the addon's GEMMs now, e.g. "OpenBLAS 0.3.21 ...; core Cooperlake" or
 *  "built-in GEMM AVX-512 12x32 (no CBLAS found at build time)". */
export function blasInfo(): string {
  return loadAddon().blasInfo();
}

export function loadNativeKernels(): { kernels: Kernels; info: string } {
  const addon = loadAddon();
  const geom = new Int32Array(16);
  const packGeom = (...values: number[]) => {
    geom.set(values);
    return geom;
  };
  const convGeom = (g: import('./backend.js').ConvGeom) =>
    packGeom(g.B, g.H, g.W, g.C, g.O, g.KH, g.KW, g.stride, g.pad, g.OH, g.OW);
  const routingGeom = (g: import('./backend.js').RoutingGeom) =>
    packGeom(g.B, g.I, g.P, g.J, g.D, g.iterations, g.softmax === 'j' ? 0 : 1);
  const kernels: Kernels = {
    name: 'native',
    setThreads: (n) => addon.setThreads(n),
    getThreads: () => addon.getThreads(),
    conv2dForwardFixedPoint: (g, x, w, bias, y, relu) =>
      addon.conv2dForwardFixedPoint(convGeom(g), x, w, bias, y, relu),
    sgemm: (tA, tB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc) =>
      addon.sgemm(tA, tB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc),
    conv2dForward: (g, x, w, bias, y, relu, quant, mode = DEFAULT_CONV_MODE) =>
      addon.conv2dForward(
        convGeom(g),
        x,
        w,
        bias,
        y,
        relu,
        quant ? packQuant(quant) : null,
        (mode.fastAlgorithms ? 1 : 0) | (mode.fixedPoint ? 2 : 0),
      ),
    conv2dBackwardData: (g, dy, w, dx) => addon.conv2dBackwardData(convGeom(g), dy, w, dx),
    conv2dBackwardWeight: (g, x, dy, dw, db) => addon.conv2dBackwardWeight(convGeom(g), x, dy, dw, db),
    routingForward: (g, votes, bias, v, saveS, saveC, quant) => {
      const [qa, qr] = packRoutingQuant(quant);
      addon.routingForward(routingGeom(g), votes, bias, v, saveS, saveC, qa, qr);
    },
    capsulesForward: (g, x, weight, bias, v, quant) => {
      const [qa, qr] = packRoutingQuant(quant);
      const qv = quant?.votes ? packQuant(quant.votes) : null;
      addon.capsulesForward(packGeom(g.B, g.I, g.Din, g.J, g.D, g.iterations), x, weight, bias, v, qv, qa, qr);
    },
    routingBackward: (g, votes, saveS, saveC, dv, dvotes, dbias) =>
      addon.routingBackward(routingGeom(g), votes, saveS, saveC, dv, dvotes, dbias),
    quantize: (x, y, n, q) => addon.quantize(x, y, n, packQuant(q)),
    quantizeMasked: (x, y, n, q, mask) => addon.quantizeMasked(x, y, n, packQuant(q), mask),
    maskGradient: (dy, mask, n, out) => addon.maskGradient(dy, mask, n, out),
    fracErrors: (x, n, frac0, count, width, errors) => addon.fracErrors(x, n, frac0, count, width, errors),
    reluMask: (dy, y, n) => addon.reluMask(dy, y, n),
    permute: (x, shape, perm, y) => addon.permute(x, Int32Array.from(shape), Int32Array.from(perm), y),
    adamUpdate: (p, g, m, v, n, b1, c1, b2, c2, stepSize, bc2sqrt, eps) =>
      addon.adamUpdate(p, g, m, v, n, b1, c1, b2, c2, stepSize, bc2sqrt, eps),
    squashRows: (s, v, rows, D) => addon.squashForward(s, v, rows, D),
    squashRowsBackward: (s, dv, ds, rows, D) => addon.squashBackward(s, dv, ds, rows, D),
    channelSums: (x, rows, C, shift, out) => addon.channelSums(x, rows, C, shift, out),
    batchNormApply: (x, rows, C, mean, invStd, gamma, beta, y, xhat) =>
      addon.batchnormApply(x, rows, C, mean, invStd, gamma, beta, y, xhat),
    batchNormBackward: (dy, xhat, rows, C, gamma, invStd, dx, dgamma, dbeta) =>
      addon.batchnormBackward(dy, xhat, rows, C, gamma, invStd, dx, dgamma, dbeta),
  };
  return { kernels, info: addon.blasInfo() };
}
