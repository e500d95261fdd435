// CUDA dispatch of TimeX: maps Paddle tensors and dtypes onto the launchers in kernels/timex.cuh.
#include "binding.h"
#include "kernels/timex.cuh"

using paddle::Tensor;

void timex_forward_gpu(const Tensor& w, const Tensor& x, float eps, Tensor& out) {
  const int64_t B = x.shape()[0], C = x.shape()[1], T = x.shape()[2], L = w.shape()[1];
  LRNN_DISPATCH_FLOATING(
      x.dtype(), "lrnn_timex", ([&] {
        using A = lrnn::acc_t<typename CudaType<data_t>::type>;
        LRNN_CUDA_CHECK(lrnn::timex_forward_cuda(B, C, T, L, cuda_ptr(w.data<data_t>()), cuda_ptr(x.data<data_t>()),
                                                 static_cast<A>(eps), cuda_ptr(out.data<data_t>()), x.stream()),
                        "lrnn_timex");
      }));
}

void timex_backward_gpu(const Tensor& w, const Tensor& x, const Tensor& g, Tensor& gw, Tensor& gx) {
  const int64_t B = x.shape()[0], C = x.shape()[1], T = x.shape()[2], L = w.shape()[1];
  LRNN_DISPATCH_FLOATING(
      x.dtype(), "lrnn_timex", ([&] {
        LRNN_CUDA_CHECK(lrnn::timex_backward_cuda(B, C, T, L, cuda_ptr(w.data<data_t>()), cuda_ptr(x.data<data_t>()),
                                                  cuda_ptr(g.data<data_t>()), cuda_ptr(gw.data<data_t>()),
                                                  cuda_ptr(gx.data<data_t>()), x.stream()),
                        "lrnn_timex");
      }));
}
