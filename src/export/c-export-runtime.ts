// The layer-independent C of the export (the top of qcaps_model.c): the quantizers, exp, the
// two squash variants, softmax and dynamic routing, in the float32 arithmetic of the native
// kernels (native/quantize.cc, native/expf.cc, native/routing.cc, native/elementwise.cc), so
// that the exported code gives the tool's numbers bit for bit. cRuntime() puts in the parts a
// model uses: route and/or route_saturating, and saturate_floats (quantizers with bounds).

const C_RUNTIME_HEAD = String.raw`
/* every product is rounded before it is added, as in the native kernels (GCC in -std=c99
 * mode does not contract; clang is told so) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- quantizers (SPEC 4) on fixed point with N fractional bits: q(x) = k 2^-N ----
 * truncation: floor(x 2^N) 2^-N; round to nearest: rint (half to even) of x 2^N, or with
 * QCAPS_COMPAT floor(x 2^N + 2^-(N+1)); logarithmic: sign(x) 2^rint(log2 |x|), 0 below 2^-N,
 * at most 1024. Activations are not saturated. */
typedef struct {
  float scale, inv, half;
  double min_mag;
} qformat;

static qformat qformat_of(int frac) {
  qformat q;
  q.scale = ldexpf(1.f, frac);
  q.inv = ldexpf(1.f, -frac);
  q.half = ldexpf(1.f, -frac - 1);
  q.min_mag = ldexp(1.0, -frac);
  return q;
}

static float quantize_value(float x, const qformat *q) {
#if QCAPS_METHOD == 0
  return floorf(x * q->scale) * q->inv;
#elif QCAPS_METHOD == 1
#if QCAPS_COMPAT
  return floorf(x * q->scale + q->half) * q->inv;
#else
  return nearbyintf(x * q->scale) * q->inv;
#endif
#else
  const float a = fabsf(x);
  double m;
  float r;
  if (a == 0.f && !QCAPS_COMPAT) {
    m = 0;
  } else {
    const float arg = QCAPS_COMPAT ? a + 1e-8f : a;
    m = exp2(nearbyint(log2((double)arg)));
  }
  if (m < q->min_mag) m = 0;
  if (m > 1024.0) m = 1024.0;
  r = (float)m;
  (void)q->half;
  return x > 0 ? r : (x < 0 ? -r : 0.f);
#endif
}

static void quantize_floats(float *v, size_t n, int frac) {
  const qformat q = qformat_of(frac);
  size_t i;
  for (i = 0; i < n; i++) v[i] = quantize_value(v[i], &q);
}

/* quantized floats -> their integers at frac bits (exact: a power-of-two scale). A value
 * past int32's range (only from an image far outside [0, 1]) saturates to +-INT32_MAX and NaN
 * gives 0, where the cast would be undefined behaviour (-INT32_MAX, so that max_abs may negate
 * every value). */
static void to_integers(const float *v, int32_t *out, size_t n, int frac) {
  const float scale = ldexpf(1.f, frac);
  size_t i;
  for (i = 0; i < n; i++) {
    const float x = v[i] * scale;
    out[i] = x >= 2147483648.f ? INT32_MAX : x <= -2147483648.f ? -INT32_MAX : x == x ? (int32_t)x : 0;
  }
}

static int32_t max_abs(const int32_t *x, size_t n) {
  int32_t m = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    const int32_t a = x[i] < 0 ? -x[i] : x[i];
    if (a > m) m = a;
  }
  return m;
}

/* ---- exp of float32, as native/expf.cc (glibc's expf, 2.28 and later, with FMA):
 * x N/ln2 = k + r (N = 32), exp(x) = 2^(k/N) 2^(r/N) ~= s (C0 r^3 + C1 r^2 + C2 r + 1) in
 * double with fused multiply-adds, rounded once to float; outside that formula's range
 * -inf -> 0, +inf and NaN -> x + x, x > 0x1.62e42ep6 -> inf, x < -0x1.9fe368p6 -> 0 (no call
 * to the C library's expf, whose bits differ between libraries). */
static const uint64_t exp_table[32] = {
    0x3ff0000000000000u, 0x3fefd9b0d3158574u, 0x3fefb5586cf9890fu, 0x3fef9301d0125b51u, 0x3fef72b83c7d517bu,
    0x3fef54873168b9aau, 0x3fef387a6e756238u, 0x3fef1e9df51fdee1u, 0x3fef06fe0a31b715u, 0x3feef1a7373aa9cbu,
    0x3feedea64c123422u, 0x3feece086061892du, 0x3feebfdad5362a27u, 0x3feeb42b569d4f82u, 0x3feeab07dd485429u,
    0x3feea47eb03a5585u, 0x3feea09e667f3bcdu, 0x3fee9f75e8ec5f74u, 0x3feea11473eb0187u, 0x3feea589994cce13u,
    0x3feeace5422aa0dbu, 0x3feeb737b0cdc5e5u, 0x3feec49182a3f090u, 0x3feed503b23e255du, 0x3feee89f995ad3adu,
    0x3feeff76f2fb5e47u, 0x3fef199bdd85529cu, 0x3fef3720dcef9069u, 0x3fef5818dcfba487u, 0x3fef7c97337b9b5fu,
    0x3fefa4afa2a490dau, 0x3fefd0765b6e4540u};

static float qcaps_expf(float x) {
  const double inv_ln2_n = 0x1.71547652b82fep+5, shift = 0x1.8p+52;
  const double c0 = 0x1.c6af84b912394p-20, c1 = 0x1.ebfce50fac4f3p-13, c2 = 0x1.62e42ff0c52d6p-6;
  uint32_t bits;
  uint64_t ki, t;
  double xd, kd, r, s, z, r2, y;
  memcpy(&bits, &x, sizeof bits);
  if (((bits >> 20) & 0x7ff) > 0x42a) {
    if (bits == 0xff800000u) return 0.f;
    if (((bits >> 20) & 0x7ff) >= 0x7f8) return x + x;
    if (x > 0x1.62e42ep6f) return INFINITY;
    if (x < -0x1.9fe368p6f) return 0.f;
  }
  xd = (double)x;
  kd = fma(inv_ln2_n, xd, shift);
  memcpy(&ki, &kd, sizeof ki);
  kd -= shift;
  r = fma(inv_ln2_n, xd, -kd);
  t = exp_table[ki % 32] + (ki << 47);
  memcpy(&s, &t, sizeof s);
  z = fma(c0, r, c1);
  r2 = r * r;
  y = fma(c2, r, 1.0);
  y = fma(z, r2, y);
  y = y * s;
  return (float)y;
}

/* ---- squash(s) = s |s| / (1 + |s|^2) over rows of D values (Sabour et al. eq. 1) ---- */

/* as the routing kernel: float sums */
static void squash_rows_float(const float *s, float *v, size_t rows, int D) {
  size_t r;
  int d;
  for (r = 0; r < rows; r++) {
    const float *sr = s + r * D;
    float n2 = 0, f;
    for (d = 0; d < D; d++) n2 += sr[d] * sr[d];
    f = sqrtf(n2) / (1.f + n2);
    for (d = 0; d < D; d++) v[r * D + d] = sr[d] * f;
  }
}

#ifdef QCAPS_USES_SQUASH_DOUBLE
/* as the squash op (Conv2DCaps): double sums */
static void squash_rows_double(const float *s, float *v, size_t rows, int D) {
  size_t r;
  int d;
  for (r = 0; r < rows; r++) {
    const float *sr = s + r * D;
    double n2 = 0, f;
    for (d = 0; d < D; d++) n2 += (double)sr[d] * sr[d];
    f = sqrt(n2) / (1 + n2);
    for (d = 0; d < D; d++) v[r * D + d] = (float)(sr[d] * f);
  }
}
#endif

`;

/** saturate_floats: the bounds of a quantizer that saturates, applied after its rounding (as
 *  the kernels clamp the rounded value). Only in the exports of models that have one. */
const SATURATE = String.raw`/* ---- saturation of quantized values to [lo, hi], after their rounding ---- */
static void saturate_floats(float *v, size_t n, float lo, float hi) {
  size_t i;
  for (i = 0; i < n; i++) v[i] = v[i] < lo ? lo : (v[i] > hi ? hi : v[i]);
}

`;

const ROUTE_COMMENT = String.raw`/* ---- dynamic routing (SPEC 2.1) of one image, as native/routing.cc route_one:
 *   c = softmax(b);  s_j = sum_i c_ij u_j|i + bias_j;  v_j = squash(s_j);  b_ij += <u_j|i, v_j>
 * votes u [I][P][J][D], bias [J][D], v [P][J][D]; the softmax runs over the J output capsules
 * (joint = 0) or jointly over P*J (joint = 1, DeepCaps' 3-D routing). c and v are quantized
 * with the activation bits, s and the logits with the routing bits. Scratch: logits and c
 * (I*P*J floats), s (P*J*D floats). */
`;

/** route, or route_saturating: the same with the bounds of its quantizers (c and v with
 *  act_lo/act_hi, s and the logits with routing_lo/routing_hi). */
function routeFunction(saturating: boolean): string {
  const name = saturating ? 'route_saturating' : 'route';
  const bounds = saturating
    ? 'float act_lo, float act_hi, float routing_lo, float routing_hi,\n                  '
    : '';
  const saturate = (buf: string, n: string, which: string) =>
    saturating ? `\n    saturate_floats(${buf}, ${n}, ${which}_lo, ${which}_hi);` : '';
  return String.raw`static void ${name}(const float *u, const float *bias, int I, int P, int J, int D, int iterations, int joint,
                  int act_frac, int routing_frac, ${bounds}float *v, float *logits, float *c, float *s) {
  const size_t PJ = (size_t)P * J, ncB = (size_t)I * PJ, nsB = PJ * D;
  const size_t group = joint ? PJ : (size_t)J;
  size_t o, k, pj, q;
  int t, i, d;
  for (q = 0; q < ncB; q++) logits[q] = 0.f;
  for (t = 0; t < iterations; t++) {
    if (t == 0) {
      /* the first softmax is of zeros: c = 1 / group */
      const float c0 = (float)(1.0 / (double)group);
      for (q = 0; q < ncB; q++) c[q] = c0;
    } else {
      for (o = 0; o < ncB; o += group) {
        float m = -INFINITY;
        double sum = 0;
        float inv;
        for (k = 0; k < group; k++) m = logits[o + k] > m ? logits[o + k] : m;
        for (k = 0; k < group; k++) c[o + k] = qcaps_expf(logits[o + k] - m);
        for (k = 0; k < group; k++) sum += c[o + k];
        inv = (float)(1.0 / sum);
        for (k = 0; k < group; k++) c[o + k] *= inv;
      }
    }
    quantize_floats(c, ncB, act_frac);${saturate('c', 'ncB', 'act')}
    for (pj = 0; pj < PJ; pj++) memcpy(s + pj * D, bias + (pj % J) * D, D * sizeof(float));
    for (i = 0; i < I; i++) {
      const float *ui = u + (size_t)i * PJ * D;
      const float *ci = c + (size_t)i * PJ;
      for (pj = 0; pj < PJ; pj++) {
        const float cv = ci[pj];
        const float *up = ui + pj * D;
        float *sp = s + pj * D;
        for (d = 0; d < D; d++) sp[d] += cv * up[d];
      }
    }
    quantize_floats(s, nsB, routing_frac);${saturate('s', 'nsB', 'routing')}
    squash_rows_float(s, v, PJ, D);
    quantize_floats(v, nsB, act_frac);${saturate('v', 'nsB', 'act')}
    if (t == iterations - 1) break; /* the last logits update is never used */
    for (q = 0; q < ncB; q++) {
      const float *up = u + q * D;
      const float *vp = v + (q % PJ) * D;
      float dot = 0;
      for (d = 0; d < D; d++) dot += up[d] * vp[d];
      logits[q] += dot;
    }
    quantize_floats(logits, ncB, routing_frac);${saturate('logits', 'ncB', 'routing')}
  }
}
`;
}

const C_RUNTIME_TAIL = String.raw`/* ---- capsule votes u_hat_j|i = W_i x_i (Sabour et al. eq. 2): x [I][Din], W [I][Din][JD]
 * as integers at 2^-w_frac, u [I][JD]; products rounded, then added in the order of k ---- */
#define QCAPS_CAPSULE_VOTES(NAME, WEIGHT)                                      \
  static void NAME(const float *x, int I, int Din, int JD, float w_inv, float *u) { \
    int i, k, jd;                                                              \
    for (i = 0; i < I; i++) {                                                  \
      float *ui = u + (size_t)i * JD;                                          \
      for (jd = 0; jd < JD; jd++) ui[jd] = 0.f;                                \
      for (k = 0; k < Din; k++) {                                              \
        const float xk = x[(size_t)i * Din + k];                               \
        const size_t w0 = ((size_t)i * Din + k) * JD;                          \
        for (jd = 0; jd < JD; jd++) ui[jd] += xk * ((float)WEIGHT[w0 + jd] * w_inv); \
      }                                                                        \
    }                                                                          \
  }

/* ---- convolution of fixed-point values, as native/fixedconv.cc: the exact integer sum
 *   y[oy][ox][o] = 2^-(fx+fw) sum_(ky,kx,c) X[iy][ix][c] W[o][ky][kx][c]
 * (X at fx fractional bits, W at fw), rounded once to float, + bias, ReLU. Each kernel row
 * (kx, c) is contiguous in x and in W; its sum runs in int32 over int16 copies of x, or in
 * int32, when max|X| * ROW_L1 < 2^31 (no partial sum can overflow), else in int64; the rows
 * are added in int64. x [H][W][C] channels last, y [OH][OW][O]. x16: scratch of H*W*C. */
#define QCAPS_CONV_FIXED(NAME, WEIGHT, ROW_L1)                                                    \
  static void NAME(const int32_t *x, int H, int W, int C, int O, int K, int stride, int pad,      \
                   const float *bias, float scale, int relu, float *y, int16_t *x16) {             \
    const int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;          \
    const size_t n = (size_t)H * W * C;                                                           \
    const int64_t mx = max_abs(x, n);                                                             \
    const int narrow = mx * (int64_t)(ROW_L1) < ((int64_t)1 << 31);                               \
    const int use16 = narrow && mx <= 32767 && sizeof(WEIGHT[0]) <= 2;                           \
    int oy, ox, o, ky, k;                                                                         \
    size_t i;                                                                                     \
    if (use16)                                                                                    \
      for (i = 0; i < n; i++) x16[i] = (int16_t)x[i];                                             \
    for (oy = 0; oy < OH; oy++)                                                                   \
      for (ox = 0; ox < OW; ox++) {                                                               \
        /* the kernel columns inside the image: kx0 <= kx < kx1 */                                \
        const int ix0 = ox * stride - pad;                                                        \
        const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + K > W ? W - ix0 : K;                      \
        const int len = (kx1 - kx0) * C;                                                          \
        for (o = 0; o < O; o++) {                                                                 \
          int64_t acc = 0;                                                                        \
          float v;                                                                                \
          for (ky = 0; ky < K; ky++) {                                                            \
            const int iy = oy * stride - pad + ky;                                                \
            size_t xo, wo;                                                                        \
            if (iy < 0 || iy >= H) continue;                                                      \
            xo = ((size_t)iy * W + (ix0 + kx0)) * C;                                              \
            wo = (((size_t)o * K + ky) * K + kx0) * C;                                            \
            if (use16) {                                                                          \
              const int16_t *xr = x16 + xo;                                                       \
              int32_t a = 0;                                                                      \
              for (k = 0; k < len; k++) a += (int32_t)xr[k] * (int32_t)WEIGHT[wo + k];            \
              acc += a;                                                                           \
            } else if (narrow) {                                                                  \
              const int32_t *xr = x + xo;                                                         \
              int32_t a = 0;                                                                      \
              for (k = 0; k < len; k++) a += xr[k] * (int32_t)WEIGHT[wo + k];                     \
              acc += a;                                                                           \
            } else {                                                                              \
              const int32_t *xr = x + xo;                                                         \
              for (k = 0; k < len; k++) acc += (int64_t)xr[k] * WEIGHT[wo + k];                   \
            }                                                                                     \
          }                                                                                       \
          v = (float)acc * scale;                                                                 \
          if (bias) v = v + bias[o];                                                              \
          if (relu && !(v > 0)) v = 0;                                                            \
          y[((size_t)oy * OW + ox) * O + o] = v;                                                  \
        }                                                                                         \
      }                                                                                           \
  }

/* fmaf(a, b, c), correctly rounded, inline (libm's fmaf is a call where the target has no
 * FMA instruction): a b is exact in double; a b + c is rounded to odd in double (TwoSum gives
 * the error; an inexact even result moves one ulp towards the exact value), and rounding
 * that to float gives the correctly rounded a b + c (Boldo & Melquiond 2008: 53 >= 24 + 2) */
#if defined(FP_FAST_FMAF)
#define fma_float fmaf
#else
#if FLT_EVAL_METHOD != 0
#error "qcaps_model.c needs float and double arithmetic without extended precision (FLT_EVAL_METHOD 0)"
#endif
static float fma_float(float a, float b, float c) {
  const double p = (double)a * (double)b, cd = (double)c;
  double s = p + cd;
  const double bb = s - p;
  const double e = (p - (s - bb)) + (cd - bb);
  uint64_t bits;
  memcpy(&bits, &s, sizeof bits);
  if (e != 0 && !(bits & 1)) {
    bits += ((e > 0) == (s > 0)) ? 1 : (uint64_t)-1;
    memcpy(&s, &bits, sizeof s);
  }
  return (float)s;
}
#endif

/* ---- convolution of float values in the one order of the native ordered_conv
 * (native/smallconv.cc), on every CPU: per output one fused multiply-add after another over
 * the zero-padded patch in the order (ky, kx, c) from +0 (the padding's zeros take part),
 * then + bias, then ReLU. w: the float weights [O][K][K][C]. The outputs of one pixel are
 * summed side by side in y. ---- */
static void conv_float_input(const float *x, int H, int W, int C, const float *w, int O, int K, int stride, int pad,
                             const float *bias, int relu, float *y) {
  const int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
  const size_t KKC = (size_t)K * K * C;
  int oy, ox, o, ky, kx, c;
  for (oy = 0; oy < OH; oy++)
    for (ox = 0; ox < OW; ox++) {
      float *acc = y + ((size_t)oy * OW + ox) * O;
      for (o = 0; o < O; o++) acc[o] = 0.f;
      for (ky = 0; ky < K; ky++) {
        const int iy = oy * stride - pad + ky;
        for (kx = 0; kx < K; kx++) {
          const int ix = ox * stride - pad + kx;
          const int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
          for (c = 0; c < C; c++) {
            const float xv = inside ? x[((size_t)iy * W + ix) * C + c] : 0.f;
            const float *wp = w + ((size_t)ky * K + kx) * C + c;
            for (o = 0; o < O; o++) acc[o] = fma_float(xv, wp[(size_t)o * KKC], acc[o]);
          }
        }
      }
      for (o = 0; o < O; o++) {
        float v = acc[o];
        if (bias) v = v + bias[o];
        if (relu && !(v > 0)) v = 0;
        acc[o] = v;
      }
    }
}

#ifdef QCAPS_USES_BATCHNORM
/* ---- BatchNorm2d at inference (running statistics), as native/elementwise.cc:
 * y = gamma h + beta, h = (float)((x - mean) invStd), invStd = (float)(1 / sqrt(var + eps)),
 * over rows of C channels ---- */
static void batchnorm_eval(float *y, size_t rows, int C, const float *mean, const float *var, double eps,
                           const float *gamma, const float *beta) {
  size_t r;
  int c;
  for (r = 0; r < rows; r++)
    for (c = 0; c < C; c++) {
      const float inv_std = (float)(1.0 / sqrt((double)var[c] + eps));
      const float h = (float)(((double)y[r * C + c] - (double)mean[c]) * (double)inv_std);
      y[r * C + c] = gamma[c] * h + beta[c];
    }
}
#endif

/* class lengths |v_k| and the prediction: the longest class capsule (the first on ties) */
static int class_lengths_of(const float *v, int K, int D, float *lengths) {
  int best = -1, k, d;
  double best_n2 = -INFINITY;
  for (k = 0; k < K; k++) {
    double n2 = 0;
    for (d = 0; d < D; d++) n2 += (double)v[k * D + d] * v[k * D + d];
    if (lengths) lengths[k] = (float)sqrt(n2);
    if (n2 > best_n2) {
      best_n2 = n2;
      best = k;
    }
  }
  return best;
}
`;

/** Which optional parts of the runtime a model's C uses. */
export interface CRuntimeParts {
  /** route (quantizers without bounds) */
  route: boolean;
  /** route_saturating (quantizers with bounds) */
  routeSaturating: boolean;
  /** saturate_floats */
  saturate: boolean;
}

/** The layer-independent C: the quantizers, exp, squash, routing (the variants the model
 *  uses), votes, the convolutions, BatchNorm and the class lengths. */
export function cRuntime(parts: CRuntimeParts): string {
  return (
    C_RUNTIME_HEAD +
    (parts.saturate ? SATURATE : '') +
    (parts.route || parts.routeSaturating ? ROUTE_COMMENT : '') +
    (parts.route ? routeFunction(false) + '\n' : '') +
    (parts.routeSaturating ? routeFunction(true) + '\n' : '') +
    C_RUNTIME_TAIL
  );
}
