// The seam between ops and kernels (the tfjs "backend" idea): ops in src/tensor/ops call
// the kernels of the active backend, native (C + CBLAS, native/) or typescript (plain loops,
// src/tensor/kernels-ts.ts). Both compute the same numbers; tests hold them to PyTorch.

/** Geometry of a 2-D convolution on channels-last tensors.
 *  x [B, H, W, C], weight [O, KH, KW, C] ("OHWI"), y [B, OH, OW, O]. */
export interface ConvGeom {
  B: number;
  H: number;
  W: number;
  C: number;
  O: number;
  KH: number;
  KW: number;
  stride: number;
  pad: number;
  OH: number;
  OW: number;
}

/** Geometry of dynamic routing (SPEC 2.1). votes u [B, I, P, J, D]: input capsule i at
 *  position p voting for output capsule j; logits b [B, I, P, J]; output v [B, P, J, D].
 *  softmax 'j' normalises over J for each (b, i, p) (Sabour et al.); 'pj' normalises jointly
 *  over (P, J) for each (b, i) (DeepCaps' 3-D routing). */
export interface RoutingGeom {
  B: number;
  I: number;
  P: number;
  J: number;
  D: number;
  iterations: number;
  softmax: 'j' | 'pj';
}

export const QuantMethodIds = {
  truncation: 0,
  round_to_nearest: 1,
  stochastic_rounding: 2,
  logarithmic: 3,
} as const;
export type QuantMethod = keyof typeof QuantMethodIds;

/** One fixed-point quantizer: N = frac fractional bits (SPEC 4). `compat` reproduces the
 *  arithmetic of the DAC 2020 code (the 2^(-N-1) offset). Results are clamped to [lo, hi]
 *  (use +-Infinity for no saturation). Stochastic rounding draws its uniforms from a
 *  counter-based hash of (seed, stream, index), so every backend draws the same numbers. */
export interface QuantSpec {
  method: QuantMethod;
  frac: number;
  compat: boolean;
  lo: number;
  hi: number;
  seed: number;
  stream: number;
}

/** Quantizers applied inside routing (SPEC 4): `act` to c and v, `routing` to s and the
 *  updated logits. Stream numbers for stochastic rounding advance by 4 per iteration. */
export interface RoutingQuant {
  act: QuantSpec | null;
  routing: QuantSpec | null;
  /** The votes' quantizer (activation bits) of a capsule layer, for capsulesForward: when
   *  present it is the one the layer's activation hook at 'votes' applies. */
  votes?: QuantSpec | null;
  /** Present: the routing runs in the TypeScript reference (src/tensor/ts/routing.ts), which
   *  reports each value it computes to this (the golden vectors' capture); absent: the
   *  current kernels run it. */
  record?: RoutingRecord;
}

/** Called by the TypeScript reference routing after each value is computed and quantized:
 *  (iteration, 'c' | 's' | 'v' | 'logits', values), and by capsulesForwardTs with iteration -1
 *  and 'votes'. `values` is scratch that the routing goes on using: copy it to keep it. */
export type RoutingRecord = (
  iteration: number,
  name: 'c' | 's' | 'v' | 'logits' | 'votes',
  values: Float32Array,
) => void;

/** A fully connected capsule layer at inference: x [B, I, Din], weight [I, Din, J*D],
 *  bias [J, D] -> v [B, J, D], routing with softmax over J. */
export interface CapsulesGeom {
  B: number;
  I: number;
  Din: number;
  J: number;
  D: number;
  iterations: number;
}

/** conv2dForward's arguments but the output quantizer: (g, x, w, bias | null, y, relu). */
export type ConvForwardArgs = [
  g: ConvGeom,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  y: Float32Array,
  relu: boolean,
];

/** How an exact fixed-point convolution ran: natively 'winograd' (exact integer Winograd,
 *  fewer products), 'direct' (one pass), 'limbs' (two passes over the limbs of inputs wider
 *  than int16); the TypeScript reference always sums directly. The same bits every way. */
export type FixedPointConvMethod = 'direct' | 'limbs' | 'winograd';

/** Which algorithms one convolution may use; it travels with each call (a quantized forward
 *  passes its own, in QuantHooks.conv), so no kernel state is process-wide. */
export interface ConvMode {
  /** the DFT and Winograd algorithms may run; false: im2col + GEMM only, so that rounding
   *  decisions downstream match a direct convolution's (rounding compat 'dac2020'). Natively
   *  without effect under fixedPoint, whose convolutions have one order already. */
  fastAlgorithms: boolean;
  /** the quantized forward's convolutions: natively the exact fixed-point convolution
   *  (conv2dForwardFixedPoint) where it applies, else the float convolution in one fixed order
   *  (native/smallconv.cc), the same bits on every CPU, BLAS and thread count; the TypeScript
   *  backend keeps its float convolution */
  fixedPoint: boolean;
}

/** A float forward's convolutions: every algorithm, no fixed-point path. */
export const DEFAULT_CONV_MODE: ConvMode = Object.freeze({ fastAlgorithms: true, fixedPoint: false });

export interface Kernels {
  readonly name: 'native' | 'typescript';
  /** Threads used by GEMM and the parallel kernels (1 = single-threaded). */
  setThreads(n: number): void;
  getThreads(): number;
  /** The exact convolution of fixed-point values (x multiples of 2^-fx, w of 2^-fw, integers
   *  within int16, and no int32 sum of 64 products of a kernel row that could overflow):
   *  y = sum rounded once to float32, + bias, ReLU; conv2dForward's arguments. Returns how it
   *  ran, or null, leaving y untouched, where it does not apply. Natively it runs on every CPU
   *  (at the level of QCAPS_ISA / the CPU's best), where it applies by the values and the
   *  geometry alone, with the same bits. */
  conv2dForwardFixedPoint(...args: ConvForwardArgs): FixedPointConvMethod | null;
  /** Row-major C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C. */
  sgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    aOff: number,
    lda: number,
    B: Float32Array,
    bOff: number,
    ldb: number,
    beta: number,
    C: Float32Array,
    cOff: number,
    ldc: number,
  ): void;
  /** y = conv(x, w) + bias (bias may be null), then max(0, y) when relu, then quantized by
   *  `quant` when given (as quantize over all of y; natively while the output is in cache);
   *  y is overwritten. `mode` (default DEFAULT_CONV_MODE) says which algorithms may run.
   *  Returns how the exact fixed-point convolution ran (mode.fixedPoint, natively), else null. */
  conv2dForward(
    g: ConvGeom,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    y: Float32Array,
    relu: boolean,
    quant?: QuantSpec | null,
    mode?: ConvMode,
  ): FixedPointConvMethod | null;
  /** dx = d loss / d x given dy; dx is overwritten. */
  conv2dBackwardData(g: ConvGeom, dy: Float32Array, w: Float32Array, dx: Float32Array): void;
  /** dw += d loss / d w and db += d loss / d bias (db may be null). */
  conv2dBackwardWeight(g: ConvGeom, x: Float32Array, dy: Float32Array, dw: Float32Array, db: Float32Array | null): void;
  /** v = routing(votes); when saveS/saveC are given (sizes iterations*B*P*J*D and
   *  iterations*B*I*P*J) the per-iteration s and c are kept for the backward pass. */
  routingForward(
    g: RoutingGeom,
    votes: Float32Array,
    bias: Float32Array,
    v: Float32Array,
    saveS: Float32Array | null,
    saveC: Float32Array | null,
    quant: RoutingQuant | null,
  ): void;
  /** v = routing(quantize(votes(x, weight))) at inference, fused so that each image's votes
   *  are made, quantized (quant.votes) and routed (quant.act, quant.routing) in cache. Votes
   *  are u_j|i = sum_k x_ik w_ik,j with each product rounded and the sum in the order of k. */
  capsulesForward(
    g: CapsulesGeom,
    x: Float32Array,
    weight: Float32Array,
    bias: Float32Array,
    v: Float32Array,
    quant: RoutingQuant | null,
  ): void;
  /** dvotes (overwritten) and dbias (accumulated) from dv, through every iteration. */
  routingBackward(
    g: RoutingGeom,
    votes: Float32Array,
    saveS: Float32Array,
    saveC: Float32Array,
    dv: Float32Array,
    dvotes: Float32Array,
    dbias: Float32Array,
  ): void;
  /** v = squash(s) over rows of D values (the capsule axis last). */
  squashRows(s: Float32Array, v: Float32Array, rows: number, D: number): void;
  /** ds from dv through squash, rows of D values. */
  squashRowsBackward(s: Float32Array, dv: Float32Array, ds: Float32Array, rows: number, D: number): void;
  /** out[c] = sum over rows of x[r,c], or of (x[r,c] - shift[c])^2 when shift is given (float64 sums). */
  channelSums(x: Float32Array, rows: number, C: number, shift: Float64Array | null, out: Float64Array): void;
  /** BatchNorm's affine map: y = gamma (x - mean) invStd + beta, and xhat when given. */
  batchNormApply(
    x: Float32Array,
    rows: number,
    C: number,
    mean: Float64Array,
    invStd: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
    xhat: Float32Array | null,
  ): void;
  /** BatchNorm's training backward: dx (overwritten), dgamma and dbeta (accumulated). */
  batchNormBackward(
    dy: Float32Array,
    xhat: Float32Array,
    rows: number,
    C: number,
    gamma: Float32Array,
    invStd: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
  ): void;
  /** One Adam step over n values (see src/tensor/ops/adam.ts): m, v and p in place; the
   *  scalars are float32 values. */
  adamUpdate(
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
  ): void;
  /** dy[i] = 0 where y[i] <= 0, for i < n (ReLU backward from the ReLU's output). */
  reluMask(dy: Float32Array, y: Float32Array, n: number): void;
  /** y = x.permute(perm) made contiguous, x of `shape` (rank <= 8). */
  permute(x: Float32Array, shape: readonly number[], perm: readonly number[], y: Float32Array): void;
  /** y[i] = q(x[i]) for i < n (x and y may be the same buffer). */
  quantize(x: Float32Array, y: Float32Array, n: number, q: QuantSpec): void;
  /** quantize(x, y, n, q) and, in the same pass, mask[i] = 1 where q.lo <= x[i] <= q.hi, else 0
   *  (NaN: 0), for i < n (x may be y): a saturating quantizer's forward in quantization-aware
   *  training, recording where its input lay within its bounds (the clipped straight-through
   *  estimator). */
  quantizeMasked(x: Float32Array, y: Float32Array, n: number, q: QuantSpec, mask: Uint8Array): void;
  /** out[i] = mask[i] ? dy[i] : 0 for i < n (the clipped straight-through gradient). */
  maskGradient(dy: Float32Array, mask: Uint8Array, n: number, out: Float32Array): void;
  /** errors[j] = sum_i (q_j(x[i]) - x[i])^2 over i < n, for j < count (1 to 9): q_j
   *  round-to-nearest (ties to even) at 2^-(frac0 + j), saturating to `width` bits as the
   *  'dynamic' format does (dynamicRange); float64, each sum in index order, NaN left out. Both
   *  backends give the same bits (src/tensor/ts/frac-errors.ts). */
  fracErrors(x: Float32Array, n: number, frac0: number, count: number, width: number, errors: Float64Array): void;
}
