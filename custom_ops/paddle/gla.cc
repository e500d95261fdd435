// Paddle binding of GLA (kernels/gla.h): checks, allocation, CPU dispatch; CUDA dispatch lives in gla.cu.
// scale travels as two float attributes (hi + lo) because to_static rejects double attributes; their sum is exact to
// about 1e-15, so float64 runs see the scale the caller asked for.
#include "kernels/gla.h"

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/gla.h"
#include "kernels/cpu_isa_variants.h"

using paddle::Tensor;

#ifdef PADDLE_WITH_CUDA
void gla_forward_gpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0, double scale,
                     Tensor& o, Tensor& s1);
void gla_backward_gpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0,
                      const Tensor& s1, const Tensor& go, const Tensor& gs1, double scale, Tensor& gq, Tensor& gk,
                      Tensor& gv, Tensor& gg, Tensor& gs0);
#endif

static void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0) {
  PD_CHECK(q.shape().size() == 4, "lrnn_gla: q must be [B, T, H, K]");
  PD_CHECK(v.shape().size() == 4, "lrnn_gla: v must be [B, T, H, V]");
  const int64_t B = q.shape()[0], T = q.shape()[1], H = q.shape()[2], K = q.shape()[3], V = v.shape()[3];
  PD_CHECK(B > 0 && T > 0 && H > 0 && K > 0 && V > 0, "lrnn_gla: every dimension must be at least 1");
  const auto acc = lrnn_binding::acc_dtype(q.dtype());
  lrnn_binding::check(q, "lrnn_gla", "q", q.shape(), q.dtype(), q.place());
  lrnn_binding::check(k, "lrnn_gla", "k", q.shape(), q.dtype(), q.place());
  lrnn_binding::check(g, "lrnn_gla", "g", q.shape(), q.dtype(), q.place());
  lrnn_binding::check(v, "lrnn_gla", "v", {B, T, H, V}, q.dtype(), q.place());
  lrnn_binding::check(s0, "lrnn_gla", "state", {B, H, K, V}, acc, q.place());
}

std::vector<Tensor> GlaForward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0,
                               float scale, float scale_lo) {
  check_inputs(q, k, v, g, s0);
  const int64_t B = q.shape()[0], T = q.shape()[1], H = q.shape()[2], K = q.shape()[3], V = v.shape()[3];
  const double sc = static_cast<double>(scale) + static_cast<double>(scale_lo);
  Tensor o = paddle::empty({B, T, H, V}, q.dtype(), q.place());
  Tensor s1 = paddle::empty({B, H, K, V}, s0.dtype(), q.place());
  if (q.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    gla_forward_gpu(q, k, v, g, s0, sc, o, s1);
    return {o, s1};
#else
    PD_THROW("lrnn_gla: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(q.dtype(), "lrnn_gla", ([&] {
                           using A = lrnn::acc_t<data_t>;
                           LRNN_ISA_CALL(gla_forward_cpu<data_t>, B, T, H, K, V, q.data<data_t>(), k.data<data_t>(),
                                                         v.data<data_t>(), g.data<data_t>(), s0.data<A>(),
                                                         static_cast<A>(sc), o.data<data_t>(), s1.data<A>());
                         }));
  return {o, s1};
}

std::vector<Tensor> GlaBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0,
                                const Tensor& s1, const Tensor& go, const Tensor& gs1, float scale, float scale_lo) {
  check_inputs(q, k, v, g, s0);
  const int64_t B = q.shape()[0], T = q.shape()[1], H = q.shape()[2], K = q.shape()[3], V = v.shape()[3];
  const double sc = static_cast<double>(scale) + static_cast<double>(scale_lo);
  lrnn_binding::check(s1, "lrnn_gla backward", "final state", s0.shape(), s0.dtype(), q.place());
  if (go.initialized()) lrnn_binding::check(go, "lrnn_gla backward", "grad of o", v.shape(), q.dtype(), q.place());
  if (gs1.initialized())
    lrnn_binding::check(gs1, "lrnn_gla backward", "grad of state", s0.shape(), s0.dtype(), q.place());
  Tensor gq = paddle::empty(q.shape(), q.dtype(), q.place());
  Tensor gk = paddle::empty(q.shape(), q.dtype(), q.place());
  Tensor gv = paddle::empty(v.shape(), q.dtype(), q.place());
  Tensor gg = paddle::empty(q.shape(), q.dtype(), q.place());
  Tensor gs0 = paddle::empty(s0.shape(), s0.dtype(), q.place());
  if (q.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    gla_backward_gpu(q, k, v, g, s0, s1, go, gs1, sc, gq, gk, gv, gg, gs0);
    return {gq, gk, gv, gg, gs0};
#else
    PD_THROW("lrnn_gla: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(q.dtype(), "lrnn_gla", ([&] {
                           using A = lrnn::acc_t<data_t>;
                           LRNN_ISA_CALL(gla_backward_cpu<data_t>, 
                               B, T, H, K, V, q.data<data_t>(), k.data<data_t>(), v.data<data_t>(), g.data<data_t>(),
                               s0.data<A>(), static_cast<A>(sc), lrnn_binding::grad_ptr<data_t>(go),
                               lrnn_binding::grad_ptr<A>(gs1), gq.data<data_t>(), gk.data<data_t>(), gv.data<data_t>(),
                               gg.data<data_t>(), gs0.data<A>());
                         }));
  return {gq, gk, gv, gg, gs0};
}

std::vector<std::vector<int64_t>> GlaInferShape(const std::vector<int64_t>& q, const std::vector<int64_t>& k,
                                                const std::vector<int64_t>& v, const std::vector<int64_t>& g,
                                                const std::vector<int64_t>& s0) {
  return {{q[0], q[1], q[2], v[3]}, s0};
}

std::vector<paddle::DataType> GlaInferDtype(const paddle::DataType& q, const paddle::DataType& k,
                                            const paddle::DataType& v, const paddle::DataType& g,
                                            const paddle::DataType& s0) {
  return {q, s0};
}

std::vector<std::vector<int64_t>> GlaGradInferShape(const std::vector<int64_t>& q, const std::vector<int64_t>& k,
                                                    const std::vector<int64_t>& v, const std::vector<int64_t>& g,
                                                    const std::vector<int64_t>& s0, const std::vector<int64_t>& s1,
                                                    const std::vector<int64_t>& go, const std::vector<int64_t>& gs1) {
  return {q, k, v, g, s0};
}

std::vector<paddle::DataType> GlaGradInferDtype(const paddle::DataType& q, const paddle::DataType& k,
                                                const paddle::DataType& v, const paddle::DataType& g,
                                                const paddle::DataType& s0, const paddle::DataType& s1,
                                                const paddle::DataType& go, const paddle::DataType& gs1) {
  return {q, k, v, g, s0};
}

PD_BUILD_OP(lrnn_gla)
    .Inputs({"Q", "K", "V", "G", "S0"})
    .Outputs({"O", "S1"})
    .Attrs({"scale: float", "scale_lo: float"})
    .SetKernelFn(PD_KERNEL(GlaForward))
    .SetInferShapeFn(PD_INFER_SHAPE(GlaInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(GlaInferDtype));

PD_BUILD_GRAD_OP(lrnn_gla)
    .Inputs({"Q", "K", "V", "G", "S0", "S1", paddle::Grad("O"), paddle::Grad("S1")})
    .Outputs({paddle::Grad("Q"), paddle::Grad("K"), paddle::Grad("V"), paddle::Grad("G"), paddle::Grad("S0")})
    .Attrs({"scale: float", "scale_lo: float"})
    .SetKernelFn(PD_KERNEL(GlaBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(GlaGradInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(GlaGradInferDtype));
