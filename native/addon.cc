// Node-API bindings of the qcapsnets kernels. Every buffer length is checked against the
// geometry before a kernel touches memory; a mismatch throws a TypeError/RangeError.
#include <malloc.h>
#include <napi.h>

#include <string>
#include <type_traits>

#include "fixedpoint.h"
#include "isa.h"
#include "kernels.h"
#include "settings.h"

namespace {

// A typed-array argument: its data and element count (data null: an allowed null or undefined).
template <typename T>
struct Typed {
  T* data = nullptr;
  size_t length = 0;
};
using F32 = Typed<float>;
using F64 = Typed<double>;
using U8 = Typed<uint8_t>;

template <typename T>
struct ArrayKind;
template <>
struct ArrayKind<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct ArrayKind<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};
template <>
struct ArrayKind<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};

template <typename T>
bool get_array(const Napi::CallbackInfo& info, size_t i, bool allowNull, Typed<T>& out, const char* name) {
  Napi::Value v = info[i];
  if (allowNull && (v.IsNull() || v.IsUndefined())) return true;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != ArrayKind<T>::type) {
    Napi::TypeError::New(info.Env(),
                         std::string("qcaps_native: argument '") + name + "' must be a " + ArrayKind<T>::name)
        .ThrowAsJavaScriptException();
    return false;
  }
  auto a = v.As<Napi::TypedArrayOf<T>>();
  out.data = a.Data();
  out.length = a.ElementLength();
  return true;
}

template <typename A>
bool need(const Napi::Env& env, const A& a, size_t n, const char* name) {
  if (a.data && a.length < n) {
    Napi::RangeError::New(env, std::string("qcaps_native: '") + name + "' has " + std::to_string(a.length) +
                                   " elements, the geometry needs " + std::to_string(n))
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

qc::ConvGeom conv_geom(const Napi::Value& v) {
  auto a = v.As<Napi::Int32Array>();
  const int32_t* d = a.Data();
  return qc::ConvGeom{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10]};
}

qc::RoutingGeom routing_geom(const Napi::Value& v) {
  auto a = v.As<Napi::Int32Array>();
  const int32_t* d = a.Data();
  return qc::RoutingGeom{d[0], d[1], d[2], d[3], d[4], d[5], d[6] != 0};
}

bool quant_spec(const Napi::Value& v, qc::QuantSpec& q) {
  if (v.IsNull() || v.IsUndefined()) return false;
  const double* d = v.As<Napi::Float64Array>().Data();
  q.method = (int)d[0];
  q.frac = (int)d[1];
  q.compat = d[2] != 0;
  q.lo = (float)d[3];
  q.hi = (float)d[4];
  q.seed = (uint32_t)d[5];
  q.stream = (uint32_t)d[6];
  return true;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  qc::set_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), qc::get_threads()); }

Napi::Value BlasInfo(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), qc::blas_info()); }

// setGemm('builtin' | 'blas' | null, isa?: 'auto' | 'avx512' | 'avx2' | 'scalar') -> blasInfo();
// null keeps the GEMM that runs and sets only the built-in kernels' family
Napi::Value SetGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool keep = info[0].IsNull() || info[0].IsUndefined();
  const std::string which = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (!keep && !qc::set_gemm(which.c_str())) {
    Napi::Error::New(env, "qcaps_native: setGemm('" + which + "'): expected 'builtin' or 'blas' (this build: " +
                              qc::blas_info() + ")")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() > 1 && info[1].IsString()) {
    const std::string isa = info[1].As<Napi::String>().Utf8Value();
    if (!qc::set_builtin_gemm_isa(isa.c_str())) {
      Napi::Error::New(env, "qcaps_native: setGemm: built-in kernels '" + isa +
                                "' not available (auto, avx512, avx2 or scalar, as the CPU allows)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  return Napi::String::New(env, qc::blas_info());
}

// sgemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc)
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool tA = info[0].As<Napi::Boolean>(), tB = info[1].As<Napi::Boolean>();
  int M = info[2].As<Napi::Number>(), N = info[3].As<Napi::Number>(), K = info[4].As<Napi::Number>();
  float alpha = info[5].As<Napi::Number>().FloatValue();
  F32 A, B, C;
  if (!get_array(info, 6, false, A, "A") || !get_array(info, 9, false, B, "B") || !get_array(info, 13, false, C, "C"))
    return env.Undefined();
  size_t aOff = info[7].As<Napi::Number>().Int64Value(), bOff = info[10].As<Napi::Number>().Int64Value(),
         cOff = info[14].As<Napi::Number>().Int64Value();
  int lda = info[8].As<Napi::Number>(), ldb = info[11].As<Napi::Number>(), ldc = info[15].As<Napi::Number>();
  float beta = info[12].As<Napi::Number>().FloatValue();
  size_t aRows = tA ? K : M, bRows = tB ? N : K;
  if ((aRows && !need(env, A, aOff + (aRows - 1) * (size_t)lda + (tA ? M : K), "A")) ||
      (bRows && !need(env, B, bOff + (bRows - 1) * (size_t)ldb + (tB ? K : N), "B")) ||
      (M && !need(env, C, cOff + (M - 1) * (size_t)ldc + N, "C")))
    return env.Undefined();
  qc::sgemm(tA, tB, M, N, K, alpha, A.data + aOff, lda, B.data + bOff, ldb, beta, C.data + cOff, ldc);
  return env.Undefined();
}

// The arguments of conv2dForward and conv2dForwardFixedPoint: (geom, x, w, bias | null, y,
// relu), each array checked against the geometry; false after throwing.
struct ConvForwardArgs {
  qc::ConvGeom g;
  F32 x, w, bias, y;
  bool relu;
};

bool conv_forward_args(const Napi::CallbackInfo& info, ConvForwardArgs& a) {
  Napi::Env env = info.Env();
  const qc::ConvGeom& g = a.g = conv_geom(info[0]);
  a.relu = info[5].ToBoolean();
  return get_array(info, 1, false, a.x, "x") && get_array(info, 2, false, a.w, "w") &&
         get_array(info, 3, true, a.bias, "bias") && get_array(info, 4, false, a.y, "y") &&
         need(env, a.x, (size_t)g.B * g.H * g.W * g.C, "x") && need(env, a.w, (size_t)g.O * g.KH * g.KW * g.C, "w") &&
         need(env, a.bias, g.O, "bias") && need(env, a.y, (size_t)g.B * g.OH * g.OW * g.O, "y");
}

// The exact fixed-point convolution's method, or null where it did not run
Napi::Value MethodValue(Napi::Env env, qc::FixedMethod m) {
  if (m == qc::FixedMethod::declined) return env.Null();
  return Napi::String::New(env, qc::fixed_method_name(m));
}

// conv2dForward(geom, x, w, bias | null, y, relu, quant | null, mode) -> the exact fixed-point
// method that ran, or null: quant, the output's quantizer; mode bit 0: fast algorithms
// allowed, bit 1: exact fixed-point tried first
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  ConvForwardArgs a;
  qc::QuantSpec q{};
  const bool hasQ = quant_spec(info[6], q);
  const uint32_t bits = info.Length() > 7 && info[7].IsNumber() ? info[7].As<Napi::Number>().Uint32Value() : 1u;
  qc::ConvMode mode;
  mode.fast = (bits & 1u) != 0;
  mode.fixed_point = (bits & 2u) != 0;
  if (!conv_forward_args(info, a)) return info.Env().Undefined();
  return MethodValue(info.Env(), qc::conv2d_forward(a.g, a.x.data, a.w.data, a.bias.data, a.y.data, a.relu,
                                                    hasQ ? &q : nullptr, mode));
}

// conv2dForwardFixedPoint(geom, x, w, bias, y, relu) -> the exact fixed-point method that ran
// ('winograd', 'direct', 'limbs'), or null where it does not apply (y untouched)
Napi::Value Conv2dForwardFixedPoint(const Napi::CallbackInfo& info) {
  ConvForwardArgs a;
  if (!conv_forward_args(info, a)) return info.Env().Undefined();
  return MethodValue(info.Env(), qc::fixed_point_conv(a.g, a.x.data, a.w.data, a.bias.data, a.y.data, a.relu));
}

// configure({ isa?, winograd, fftConv, fixedWinograd, smallPatchConv, convWorkspaceKB,
// winogradTile, winogradKB }): the settings src/settings.ts read from the environment, passed
// in once at load (and by tests). isa: 'avx512vnni' | 'avx512' | 'avx2' | 'portable'; an
// unknown name or a level this CPU cannot run throws, naming both.
Napi::Value Configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "qcaps_native: configure expects an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const Napi::Object o = info[0].As<Napi::Object>();
  qc::Settings s = qc::settings();
  auto flag = [&](const char* key, bool& out) {
    if (o.Has(key)) out = o.Get(key).ToBoolean();
  };
  auto number = [&](const char* key, auto& out) {
    if (o.Has(key) && o.Get(key).IsNumber()) out = (std::remove_reference_t<decltype(out)>)o.Get(key).As<Napi::Number>().Int64Value();
  };
  flag("winograd", s.winograd);
  flag("fftConv", s.fftConv);
  flag("fixedWinograd", s.fixedWinograd);
  flag("smallPatchConv", s.smallPatchConv);
  number("convWorkspaceKB", s.convWorkspaceKB);
  number("winogradTile", s.winogradTile);
  number("winogradKB", s.winogradKB);
  if (o.Has("isa") && !o.Get("isa").IsUndefined() && !o.Get("isa").IsNull()) {
    const std::string name = o.Get("isa").ToString().Utf8Value();
    qc::Isa isa;
    const std::string best = qc::isa_name(qc::cpu_isa());
    if (!qc::parse_isa(name.c_str(), &isa)) {
      Napi::Error::New(env, "qcaps_native: isa '" + name +
                                "': expected one of avx512vnni, avx512, avx2, portable (this CPU's best: " + best + ")")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!qc::set_isa(isa)) {
      Napi::Error::New(env, "qcaps_native: isa '" + name + "' is beyond this CPU (its best: " + best +
                                "; it can run " + best + " and the levels below it, down to portable)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  qc::configure(s);
  return env.Undefined();
}

// isaInfo() -> { active, cpu }: the instruction-set level the exact kernels run at, and the
// best this CPU and build allow
Napi::Value IsaInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("active", qc::isa_name(qc::active_isa()));
  o.Set("cpu", qc::isa_name(qc::cpu_isa()));
  return o;
}

// portableKernelsDisagree(trials) -> how many pseudo-random calls of the portable level's
// micro-kernel and of the plain C++ loops give different integers (0 expected)
Napi::Value PortableKernelsDisagree(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), qc::fixedpoint::portable_kernels_disagree(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qc::ConvGeom g = conv_geom(info[0]);
  F32 dy, w, dx;
  if (!get_array(info, 1, false, dy, "dy") || !get_array(info, 2, false, w, "w") || !get_array(info, 3, false, dx, "dx"))
    return env.Undefined();
  if (!need(env, dy, (size_t)g.B * g.OH * g.OW * g.O, "dy") || !need(env, w, (size_t)g.O * g.KH * g.KW * g.C, "w") ||
      !need(env, dx, (size_t)g.B * g.H * g.W * g.C, "dx"))
    return env.Undefined();
  qc::conv2d_backward_data(g, dy.data, w.data, dx.data);
  return env.Undefined();
}

Napi::Value Conv2dBackwardWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qc::ConvGeom g = conv_geom(info[0]);
  F32 x, dy, dw, db;
  if (!get_array(info, 1, false, x, "x") || !get_array(info, 2, false, dy, "dy") || !get_array(info, 3, false, dw, "dw") ||
      !get_array(info, 4, true, db, "db"))
    return env.Undefined();
  if (!need(env, x, (size_t)g.B * g.H * g.W * g.C, "x") || !need(env, dy, (size_t)g.B * g.OH * g.OW * g.O, "dy") ||
      !need(env, dw, (size_t)g.O * g.KH * g.KW * g.C, "dw") || !need(env, db, g.O, "db"))
    return env.Undefined();
  qc::conv2d_backward_weight(g, x.data, dy.data, dw.data, db.data);
  return env.Undefined();
}

Napi::Value RoutingForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qc::RoutingGeom g = routing_geom(info[0]);
  F32 u, bias, v, sS, sC;
  if (!get_array(info, 1, false, u, "votes") || !get_array(info, 2, false, bias, "bias") ||
      !get_array(info, 3, false, v, "v") || !get_array(info, 4, true, sS, "saveS") || !get_array(info, 5, true, sC, "saveC"))
    return env.Undefined();
  size_t nc = (size_t)g.B * g.I * g.P * g.J, ns = (size_t)g.B * g.P * g.J * g.D;
  if (!need(env, u, nc * g.D, "votes") || !need(env, bias, (size_t)g.J * g.D, "bias") || !need(env, v, ns, "v") ||
      !need(env, sS, ns * g.iterations, "saveS") || !need(env, sC, nc * g.iterations, "saveC"))
    return env.Undefined();
  qc::QuantSpec qa{}, qr{};
  bool hasA = quant_spec(info[6], qa), hasR = quant_spec(info[7], qr);
  qc::routing_forward(g, u.data, bias.data, v.data, sS.data, sC.data, hasA ? &qa : nullptr, hasR ? &qr : nullptr);
  return env.Undefined();
}

Napi::Value CapsulesForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int32_t* d = info[0].As<Napi::Int32Array>().Data();
  const qc::CapsulesGeom g{d[0], d[1], d[2], d[3], d[4], d[5]};
  F32 x, w, bias, v;
  if (!get_array(info, 1, false, x, "x") || !get_array(info, 2, false, w, "weight") ||
      !get_array(info, 3, false, bias, "bias") || !get_array(info, 4, false, v, "v"))
    return env.Undefined();
  const size_t JD = (size_t)g.J * g.D;
  if (!need(env, x, (size_t)g.B * g.I * g.Din, "x") || !need(env, w, (size_t)g.I * g.Din * JD, "weight") ||
      !need(env, bias, JD, "bias") || !need(env, v, (size_t)g.B * JD, "v"))
    return env.Undefined();
  qc::QuantSpec qv{}, qa{}, qr{};
  bool hasV = quant_spec(info[5], qv), hasA = quant_spec(info[6], qa), hasR = quant_spec(info[7], qr);
  qc::capsules_forward(g, x.data, w.data, bias.data, v.data, hasV ? &qv : nullptr, hasA ? &qa : nullptr,
                       hasR ? &qr : nullptr);
  return env.Undefined();
}

Napi::Value RoutingBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qc::RoutingGeom g = routing_geom(info[0]);
  F32 u, sS, sC, dv, du, dbias;
  if (!get_array(info, 1, false, u, "votes") || !get_array(info, 2, false, sS, "saveS") ||
      !get_array(info, 3, false, sC, "saveC") || !get_array(info, 4, false, dv, "dv") ||
      !get_array(info, 5, false, du, "dvotes") || !get_array(info, 6, false, dbias, "dbias"))
    return env.Undefined();
  size_t nc = (size_t)g.B * g.I * g.P * g.J, ns = (size_t)g.B * g.P * g.J * g.D;
  if (!need(env, u, nc * g.D, "votes") || !need(env, sS, ns * g.iterations, "saveS") ||
      !need(env, sC, nc * g.iterations, "saveC") || !need(env, dv, ns, "dv") || !need(env, du, nc * g.D, "dvotes") ||
      !need(env, dbias, (size_t)g.J * g.D, "dbias"))
    return env.Undefined();
  qc::routing_backward(g, u.data, sS.data, sC.data, dv.data, du.data, dbias.data);
  return env.Undefined();
}

// squashForward(s, v, rows, D) / squashBackward(s, dv, ds, rows, D)
Napi::Value Squash(const Napi::CallbackInfo& info, bool backward) {
  Napi::Env env = info.Env();
  F32 s, a, b;
  size_t k = backward ? 3 : 2;
  if (!get_array(info, 0, false, s, "s") || !get_array(info, 1, false, a, backward ? "dv" : "v") ||
      (backward && !get_array(info, 2, false, b, "ds")))
    return env.Undefined();
  size_t rows = info[k].As<Napi::Number>().Int64Value();
  int D = info[k + 1].As<Napi::Number>().Int32Value();
  size_t n = rows * (size_t)D;
  if (!need(env, s, n, "s") || !need(env, a, n, backward ? "dv" : "v") || (backward && !need(env, b, n, "ds")))
    return env.Undefined();
  if (backward)
    qc::squash_backward(s.data, a.data, b.data, rows, D);
  else
    qc::squash_forward(s.data, a.data, rows, D);
  return env.Undefined();
}
Napi::Value SquashForward(const Napi::CallbackInfo& info) { return Squash(info, false); }
Napi::Value SquashBackward(const Napi::CallbackInfo& info) { return Squash(info, true); }

// channelSums(x, rows, C, shift|null, out)
Napi::Value ChannelSums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x;
  F64 shift, out;
  if (!get_array(info, 0, false, x, "x") || !get_array(info, 3, true, shift, "shift") || !get_array(info, 4, false, out, "out"))
    return env.Undefined();
  size_t rows = info[1].As<Napi::Number>().Int64Value();
  int C = info[2].As<Napi::Number>().Int32Value();
  if (!need(env, x, rows * C, "x") || !need(env, shift, C, "shift") || !need(env, out, C, "out")) return env.Undefined();
  qc::channel_sums(x.data, rows, C, shift.data, out.data);
  return env.Undefined();
}

// batchnormApply(x, rows, C, mean, invStd, gamma, beta, y, xhat|null)
Napi::Value BatchnormApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x, invStd, gamma, beta, y, xhat;
  F64 mean;
  if (!get_array(info, 0, false, x, "x") || !get_array(info, 3, false, mean, "mean") ||
      !get_array(info, 4, false, invStd, "invStd") || !get_array(info, 5, false, gamma, "gamma") ||
      !get_array(info, 6, false, beta, "beta") || !get_array(info, 7, false, y, "y") || !get_array(info, 8, true, xhat, "xhat"))
    return env.Undefined();
  size_t rows = info[1].As<Napi::Number>().Int64Value();
  int C = info[2].As<Napi::Number>().Int32Value();
  size_t n = rows * C;
  if (!need(env, x, n, "x") || !need(env, mean, C, "mean") || !need(env, invStd, C, "invStd") ||
      !need(env, gamma, C, "gamma") || !need(env, beta, C, "beta") || !need(env, y, n, "y") || !need(env, xhat, n, "xhat"))
    return env.Undefined();
  qc::batchnorm_apply(x.data, rows, C, mean.data, invStd.data, gamma.data, beta.data, y.data, xhat.data);
  return env.Undefined();
}

// batchnormBackward(dy, xhat, rows, C, gamma, invStd, dx, dgamma, dbeta)
Napi::Value BatchnormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 dy, xhat, gamma, invStd, dx, dgamma, dbeta;
  if (!get_array(info, 0, false, dy, "dy") || !get_array(info, 1, false, xhat, "xhat") ||
      !get_array(info, 4, false, gamma, "gamma") || !get_array(info, 5, false, invStd, "invStd") ||
      !get_array(info, 6, false, dx, "dx") || !get_array(info, 7, false, dgamma, "dgamma") ||
      !get_array(info, 8, false, dbeta, "dbeta"))
    return env.Undefined();
  size_t rows = info[2].As<Napi::Number>().Int64Value();
  int C = info[3].As<Napi::Number>().Int32Value();
  size_t n = rows * C;
  if (!need(env, dy, n, "dy") || !need(env, xhat, n, "xhat") || !need(env, gamma, C, "gamma") ||
      !need(env, invStd, C, "invStd") || !need(env, dx, n, "dx") || !need(env, dgamma, C, "dgamma") ||
      !need(env, dbeta, C, "dbeta"))
    return env.Undefined();
  qc::batchnorm_backward(dy.data, xhat.data, rows, C, gamma.data, invStd.data, dx.data, dgamma.data, dbeta.data);
  return env.Undefined();
}

// adamUpdate(p, g, m, v, n, b1, c1, b2, c2, stepSize, bc2sqrt, eps)
Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 p, g, m, v;
  if (!get_array(info, 0, false, p, "p") || !get_array(info, 1, false, g, "g") || !get_array(info, 2, false, m, "m") ||
      !get_array(info, 3, false, v, "v"))
    return env.Undefined();
  size_t n = info[4].As<Napi::Number>().Int64Value();
  if (!need(env, p, n, "p") || !need(env, g, n, "g") || !need(env, m, n, "m") || !need(env, v, n, "v"))
    return env.Undefined();
  auto f = [&](int i) { return info[i].As<Napi::Number>().FloatValue(); };
  qc::adam_update(p.data, g.data, m.data, v.data, n, f(5), f(6), f(7), f(8), f(9), f(10), f(11));
  return env.Undefined();
}

Napi::Value ReluMask(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 dy, y;
  if (!get_array(info, 0, false, dy, "dy") || !get_array(info, 1, false, y, "y")) return env.Undefined();
  size_t n = info[2].As<Napi::Number>().Int64Value();
  if (!need(env, dy, n, "dy") || !need(env, y, n, "y")) return env.Undefined();
  qc::relu_mask(dy.data, y.data, n);
  return env.Undefined();
}

// permute(x, shape Int32Array, perm Int32Array, y)
Napi::Value Permute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x, y;
  if (!get_array(info, 0, false, x, "x") || !get_array(info, 3, false, y, "y")) return env.Undefined();
  const Napi::Int32Array shape = info[1].As<Napi::Int32Array>(), perm = info[2].As<Napi::Int32Array>();
  const int rank = (int)shape.ElementLength();
  size_t n = 1;
  for (int k = 0; k < rank; k++) n *= (size_t)shape[k];
  if (rank > 8 || (int)perm.ElementLength() != rank) {
    Napi::TypeError::New(env, "permute: rank above 8 or a permutation of another length").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!need(env, x, n, "x") || !need(env, y, n, "y")) return env.Undefined();
  qc::permute(x.data, shape.Data(), perm.Data(), rank, y.data);
  return env.Undefined();
}

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x, y;
  if (!get_array(info, 0, false, x, "x") || !get_array(info, 1, false, y, "y")) return env.Undefined();
  size_t n = info[2].As<Napi::Number>().Int64Value();
  if (!need(env, x, n, "x") || !need(env, y, n, "y")) return env.Undefined();
  qc::QuantSpec q{};
  quant_spec(info[3], q);
  qc::quantize(x.data, y.data, n, q);
  return env.Undefined();
}

// quantizeMasked(x, y, n, q, mask)
Napi::Value QuantizeMasked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x, y;
  U8 mask;
  if (!get_array(info, 0, false, x, "x") || !get_array(info, 1, false, y, "y") || !get_array(info, 4, false, mask, "mask"))
    return env.Undefined();
  size_t n = info[2].As<Napi::Number>().Int64Value();
  if (!need(env, x, n, "x") || !need(env, y, n, "y") || !need(env, mask, n, "mask")) return env.Undefined();
  qc::QuantSpec q{};
  if (!quant_spec(info[3], q)) {
    Napi::TypeError::New(env, "qcaps_native: quantizeMasked needs a quantizer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  qc::quantize_masked(x.data, y.data, n, q, mask.data);
  return env.Undefined();
}

// maskGradient(dy, mask, n, out)
Napi::Value MaskGradient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 dy, out;
  U8 mask;
  if (!get_array(info, 0, false, dy, "dy") || !get_array(info, 1, false, mask, "mask") || !get_array(info, 3, false, out, "out"))
    return env.Undefined();
  size_t n = info[2].As<Napi::Number>().Int64Value();
  if (!need(env, dy, n, "dy") || !need(env, mask, n, "mask") || !need(env, out, n, "out")) return env.Undefined();
  qc::mask_gradient(dy.data, mask.data, n, out.data);
  return env.Undefined();
}

// fracErrors(x, n, frac0, count, width, errors)
Napi::Value FracErrors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x;
  F64 errors;
  if (!get_array(info, 0, false, x, "x") || !get_array(info, 5, false, errors, "errors")) return env.Undefined();
  size_t n = info[1].As<Napi::Number>().Int64Value();
  int frac0 = info[2].As<Napi::Number>().Int32Value();
  int count = info[3].As<Napi::Number>().Int32Value();
  int width = info[4].As<Napi::Number>().Int32Value();
  if (count < 1 || count > qc::FRAC_ERRORS_LANES || width < 1 || width > 32) {
    Napi::RangeError::New(env, "qcaps_native: fracErrors: count in [1, " + std::to_string(qc::FRAC_ERRORS_LANES) +
                                   "] and width in [1, 32] expected")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!need(env, x, n, "x") || !need(env, errors, (size_t)count, "errors")) return env.Undefined();
  qc::frac_errors(x.data, n, frac0, count, width, errors.data);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Reuse freed memory instead of returning it to the kernel: fresh pages cost ~3 ms/MB
  // here. The same setting PyTorch is benchmarked with (MALLOC_MMAP_MAX_=0 ...).
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  qc::set_threads(1);
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("blasInfo", Napi::Function::New(env, BlasInfo));
  exports.Set("setGemm", Napi::Function::New(env, SetGemm));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
  exports.Set("conv2dForward", Napi::Function::New(env, Conv2dForward));
  exports.Set("conv2dForwardFixedPoint", Napi::Function::New(env, Conv2dForwardFixedPoint));
  exports.Set("configure", Napi::Function::New(env, Configure));
  exports.Set("isaInfo", Napi::Function::New(env, IsaInfo));
  exports.Set("portableKernelsDisagree", Napi::Function::New(env, PortableKernelsDisagree));
  exports.Set("conv2dBackwardData", Napi::Function::New(env, Conv2dBackwardData));
  exports.Set("conv2dBackwardWeight", Napi::Function::New(env, Conv2dBackwardWeight));
  exports.Set("routingForward", Napi::Function::New(env, RoutingForward));
  exports.Set("capsulesForward", Napi::Function::New(env, CapsulesForward));
  exports.Set("routingBackward", Napi::Function::New(env, RoutingBackward));
  exports.Set("squashForward", Napi::Function::New(env, SquashForward));
  exports.Set("squashBackward", Napi::Function::New(env, SquashBackward));
  exports.Set("channelSums", Napi::Function::New(env, ChannelSums));
  exports.Set("batchnormApply", Napi::Function::New(env, BatchnormApply));
  exports.Set("batchnormBackward", Napi::Function::New(env, BatchnormBackward));
  exports.Set("adamUpdate", Napi::Function::New(env, AdamUpdate));
  exports.Set("reluMask", Napi::Function::New(env, ReluMask));
  exports.Set("quantize", Napi::Function::New(env, Quantize));
  exports.Set("quantizeMasked", Napi::Function::New(env, QuantizeMasked));
  exports.Set("maskGradient", Napi::Function::New(env, MaskGradient));
  exports.Set("fracErrors", Napi::Function::New(env, FracErrors));
  exports.Set("permute", Napi::Function::New(env, Permute));
  return exports;
}

}  // namespace

NODE_API_MODULE(qcaps_native, Init)
