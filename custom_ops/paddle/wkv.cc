// Paddle binding of WKV (kernels/wkv.h): checks, allocation, CPU dispatch; CUDA dispatch lives in wkv.cu.
#include "kernels/wkv.h"

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/wkv.h"
#include "kernels/cpu_isa_variants.h"

using paddle::Tensor;

#ifdef PADDLE_WITH_CUDA
void wkv_forward_gpu(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0, double eps,
                     Tensor& y, Tensor& s1, Tensor& ckpt);
void wkv_backward_gpu(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0,
                      const Tensor& s1, const Tensor& ckpt, double eps, const Tensor& gy, const Tensor& gs1, Tensor& gk,
                      Tensor& gv, Tensor& gw, Tensor& gu, Tensor& gs0);
#endif

static int64_t num_chunks(int64_t T) { return (T + lrnn::kWkvChunk - 1) / lrnn::kWkvChunk; }

static void check_inputs(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0) {
  PD_CHECK(k.shape().size() == 3, "lrnn_wkv: k must be [B, T, C]");
  const int64_t B = k.shape()[0], T = k.shape()[1], C = k.shape()[2];
  PD_CHECK(T > 0 && C > 0, "lrnn_wkv: k must have T > 0 and C > 0");
  const auto acc = lrnn_binding::acc_dtype(k.dtype());
  lrnn_binding::check(v, "lrnn_wkv", "v", k.shape(), k.dtype(), k.place());
  lrnn_binding::check(w, "lrnn_wkv", "w", {C}, acc, k.place());
  lrnn_binding::check(u, "lrnn_wkv", "u", {C}, acc, k.place());
  lrnn_binding::check(s0, "lrnn_wkv", "state", {B, 3, C}, acc, k.place());
}

std::vector<Tensor> WkvForward(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0,
                               float eps_hi, float eps_lo) {
  check_inputs(w, u, k, v, s0);
  const double eps = static_cast<double>(eps_hi) + static_cast<double>(eps_lo);  // (float attributes only)
  const int64_t B = k.shape()[0], T = k.shape()[1], C = k.shape()[2];
  const auto acc = lrnn_binding::acc_dtype(k.dtype());
  Tensor y = paddle::empty(k.shape(), k.dtype(), k.place());
  Tensor s1 = paddle::empty({B, 3, C}, acc, k.place());
  Tensor ckpt = paddle::empty({B, num_chunks(T), 3, C}, acc, k.place());
  if (k.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    wkv_forward_gpu(w, u, k, v, s0, eps, y, s1, ckpt);
    return {y, s1, ckpt};
#else
    PD_THROW("lrnn_wkv: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(k.dtype(), "lrnn_wkv", ([&] {
                           using A = lrnn::acc_t<data_t>;
                           LRNN_ISA_CALL(wkv_forward_cpu<data_t>, B, T, C, w.data<A>(), u.data<A>(), k.data<data_t>(),
                                                         v.data<data_t>(), s0.data<A>(), static_cast<A>(eps),
                                                         y.data<data_t>(), s1.data<A>(), ckpt.data<A>());
                         }));
  return {y, s1, ckpt};
}

std::vector<Tensor> WkvBackward(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0,
                                const Tensor& s1, const Tensor& ckpt, const Tensor& gy, const Tensor& gs1, float eps_hi,
                                float eps_lo) {
  check_inputs(w, u, k, v, s0);
  const double eps = static_cast<double>(eps_hi) + static_cast<double>(eps_lo);
  const int64_t B = k.shape()[0], T = k.shape()[1], C = k.shape()[2];
  const auto acc = lrnn_binding::acc_dtype(k.dtype());
  lrnn_binding::check(s1, "lrnn_wkv backward", "final state", {B, 3, C}, acc, k.place());
  lrnn_binding::check(ckpt, "lrnn_wkv backward", "checkpoints", {B, num_chunks(T), 3, C}, acc, k.place());
  if (gy.initialized()) lrnn_binding::check(gy, "lrnn_wkv backward", "grad of y", k.shape(), k.dtype(), k.place());
  if (gs1.initialized()) lrnn_binding::check(gs1, "lrnn_wkv backward", "grad of state", {B, 3, C}, acc, k.place());
  Tensor gk = paddle::empty(k.shape(), k.dtype(), k.place());
  Tensor gv = paddle::empty(k.shape(), k.dtype(), k.place());
  Tensor gw = paddle::empty({C}, acc, k.place());
  Tensor gu = paddle::empty({C}, acc, k.place());
  Tensor gs0 = paddle::empty({B, 3, C}, acc, k.place());
  if (k.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    wkv_backward_gpu(w, u, k, v, s0, s1, ckpt, eps, gy, gs1, gk, gv, gw, gu, gs0);
    return {gw, gu, gk, gv, gs0};
#else
    PD_THROW("lrnn_wkv: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(k.dtype(), "lrnn_wkv", ([&] {
                           using A = lrnn::acc_t<data_t>;
                           LRNN_ISA_CALL(wkv_backward_cpu<data_t>, B, T, C, w.data<A>(), u.data<A>(), k.data<data_t>(),
                                                          v.data<data_t>(), s0.data<A>(), s1.data<A>(), ckpt.data<A>(),
                                                          static_cast<A>(eps), lrnn_binding::grad_ptr<data_t>(gy),
                                                          lrnn_binding::grad_ptr<A>(gs1), gk.data<data_t>(),
                                                          gv.data<data_t>(), gw.data<A>(), gu.data<A>(), gs0.data<A>());
                         }));
  return {gw, gu, gk, gv, gs0};
}

std::vector<std::vector<int64_t>> WkvInferShape(const std::vector<int64_t>& w, const std::vector<int64_t>& u,
                                                const std::vector<int64_t>& k, const std::vector<int64_t>& v,
                                                const std::vector<int64_t>& s0) {
  const int64_t T = k[1];
  return {k, s0, {k[0], T < 0 ? -1 : num_chunks(T), 3, k[2]}};
}

std::vector<paddle::DataType> WkvInferDtype(const paddle::DataType& w, const paddle::DataType& u,
                                            const paddle::DataType& k, const paddle::DataType& v,
                                            const paddle::DataType& s0) {
  return {k, s0, s0};
}

std::vector<std::vector<int64_t>> WkvGradInferShape(const std::vector<int64_t>& w, const std::vector<int64_t>& u,
                                                    const std::vector<int64_t>& k, const std::vector<int64_t>& v,
                                                    const std::vector<int64_t>& s0, const std::vector<int64_t>& s1,
                                                    const std::vector<int64_t>& ckpt, const std::vector<int64_t>& gy,
                                                    const std::vector<int64_t>& gs1) {
  return {w, u, k, v, s0};
}

std::vector<paddle::DataType> WkvGradInferDtype(const paddle::DataType& w, const paddle::DataType& u,
                                                const paddle::DataType& k, const paddle::DataType& v,
                                                const paddle::DataType& s0, const paddle::DataType& s1,
                                                const paddle::DataType& ckpt, const paddle::DataType& gy,
                                                const paddle::DataType& gs1) {
  return {w, u, k, v, s0};
}

PD_BUILD_OP(lrnn_wkv)
    .Inputs({"W", "U", "K", "V", "S0"})
    .Outputs({"Y", "S1", "Ckpt"})
    .Attrs({"eps: float", "eps_lo: float"})
    .SetKernelFn(PD_KERNEL(WkvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(WkvInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(WkvInferDtype));

PD_BUILD_GRAD_OP(lrnn_wkv)
    .Inputs({"W", "U", "K", "V", "S0", "S1", "Ckpt", paddle::Grad("Y"), paddle::Grad("S1")})
    .Outputs({paddle::Grad("W"), paddle::Grad("U"), paddle::Grad("K"), paddle::Grad("V"), paddle::Grad("S0")})
    .Attrs({"eps: float", "eps_lo: float"})
    .SetKernelFn(PD_KERNEL(WkvBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(WkvGradInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(WkvGradInferDtype));
