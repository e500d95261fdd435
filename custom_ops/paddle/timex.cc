// Paddle binding of TimeX (kernels/timex.h): checks, allocation, CPU dispatch; CUDA dispatch lives in timex.cu.
#include "kernels/timex.h"

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/timex.h"
#include "kernels/cpu_isa_variants.h"

using paddle::Tensor;

#ifdef PADDLE_WITH_CUDA
void timex_forward_gpu(const Tensor& w, const Tensor& x, float eps, Tensor& out);
void timex_backward_gpu(const Tensor& w, const Tensor& x, const Tensor& g, Tensor& gw, Tensor& gx);
#endif

static void check_inputs(const Tensor& w, const Tensor& x) {
  PD_CHECK(x.shape().size() == 3, "lrnn_timex: x must be [B, C, T]");
  PD_CHECK(w.shape().size() == 2, "lrnn_timex: w must be [C, L]");
  const int64_t C = x.shape()[1], T = x.shape()[2], L = w.shape()[1];
  PD_CHECK(T > 0 && L > 0, "lrnn_timex: sequence length and kernel length must be positive");
  lrnn_binding::check(w, "lrnn_timex", "w", {C, L}, x.dtype(), x.place());
  PD_CHECK(x.is_contiguous(), "lrnn_timex: x must be contiguous");
}

std::vector<Tensor> TimexForward(const Tensor& w, const Tensor& x, float eps) {
  check_inputs(w, x);
  const int64_t B = x.shape()[0], C = x.shape()[1], T = x.shape()[2], L = w.shape()[1];
  Tensor out = paddle::empty(x.shape(), x.dtype(), x.place());
  if (x.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    timex_forward_gpu(w, x, eps, out);
    return {out};
#else
    PD_THROW("lrnn_timex: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(x.dtype(), "lrnn_timex", ([&] {
                           LRNN_ISA_CALL(timex_forward_cpu<data_t>, B, C, T, L, w.data<data_t>(), x.data<data_t>(),
                                                           static_cast<lrnn::acc_t<data_t>>(eps), out.data<data_t>());
                         }));
  return {out};
}

std::vector<Tensor> TimexBackward(const Tensor& w, const Tensor& x, const Tensor& g, float eps) {
  check_inputs(w, x);
  const int64_t B = x.shape()[0], C = x.shape()[1], T = x.shape()[2], L = w.shape()[1];
  lrnn_binding::check(g, "lrnn_timex backward", "grad of out", x.shape(), x.dtype(), x.place());
  Tensor gw = paddle::empty(w.shape(), w.dtype(), w.place());
  Tensor gx = paddle::empty(x.shape(), x.dtype(), x.place());
  if (x.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    timex_backward_gpu(w, x, g, gw, gx);
    return {gw, gx};
#else
    PD_THROW("lrnn_timex: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(x.dtype(), "lrnn_timex", ([&] {
                           LRNN_ISA_CALL(timex_backward_cpu<data_t>, B, C, T, L, w.data<data_t>(), x.data<data_t>(),
                                                            g.data<data_t>(), gw.data<data_t>(), gx.data<data_t>());
                         }));
  return {gw, gx};
}

std::vector<std::vector<int64_t>> TimexInferShape(const std::vector<int64_t>& w, const std::vector<int64_t>& x) {
  return {x};
}
std::vector<paddle::DataType> TimexInferDtype(const paddle::DataType& w, const paddle::DataType& x) { return {x}; }
std::vector<std::vector<int64_t>> TimexGradInferShape(const std::vector<int64_t>& w, const std::vector<int64_t>& x,
                                                      const std::vector<int64_t>& g) {
  return {w, x};
}
std::vector<paddle::DataType> TimexGradInferDtype(const paddle::DataType& w, const paddle::DataType& x,
                                                  const paddle::DataType& g) {
  return {w, x};
}

PD_BUILD_OP(lrnn_timex)
    .Inputs({"W", "X"})
    .Outputs({"Out"})
    .Attrs({"eps: float"})
    .SetKernelFn(PD_KERNEL(TimexForward))
    .SetInferShapeFn(PD_INFER_SHAPE(TimexInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(TimexInferDtype));

PD_BUILD_GRAD_OP(lrnn_timex)
    .Inputs({"W", "X", paddle::Grad("Out")})
    .Outputs({paddle::Grad("W"), paddle::Grad("X")})
    .Attrs({"eps: float"})
    .SetKernelFn(PD_KERNEL(TimexBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(TimexGradInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(TimexGradInferDtype));
