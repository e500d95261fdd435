// CUDA dispatch of WKV: maps Paddle tensors and dtypes onto the framework-free launchers in kernels/wkv.cuh.
#include "binding.h"
#include "kernels/wkv.cuh"

using paddle::Tensor;

void wkv_forward_gpu(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0, double eps,
                     Tensor& y, Tensor& s1, Tensor& ckpt) {
  const int64_t B = k.shape()[0], T = k.shape()[1], C = k.shape()[2];
  LRNN_DISPATCH_FLOATING(
      k.dtype(), "lrnn_wkv", ([&] {
        using A = lrnn::acc_t<typename CudaType<data_t>::type>;
        LRNN_CUDA_CHECK(lrnn::wkv_forward_cuda(B, T, C, w.data<A>(), u.data<A>(), cuda_ptr(k.data<data_t>()),
                                               cuda_ptr(v.data<data_t>()), s0.data<A>(), static_cast<A>(eps),
                                               cuda_ptr(y.data<data_t>()), s1.data<A>(), ckpt.data<A>(), k.stream()),
                        "lrnn_wkv");
      }));
}

void wkv_backward_gpu(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0,
                      const Tensor& s1, const Tensor& ckpt, double eps, const Tensor& gy, const Tensor& gs1, Tensor& gk,
                      Tensor& gv, Tensor& gw, Tensor& gu, Tensor& gs0) {
  const int64_t B = k.shape()[0], T = k.shape()[1], C = k.shape()[2];
  Tensor part = paddle::empty({2, B, C}, s0.dtype(), k.place());
  LRNN_DISPATCH_FLOATING(
      k.dtype(), "lrnn_wkv", ([&] {
        using A = lrnn::acc_t<typename CudaType<data_t>::type>;
        LRNN_CUDA_CHECK(lrnn::wkv_backward_cuda(B, T, C, w.data<A>(), u.data<A>(), cuda_ptr(k.data<data_t>()),
                                                cuda_ptr(v.data<data_t>()), s0.data<A>(), s1.data<A>(), ckpt.data<A>(),
                                                static_cast<A>(eps), cuda_ptr(lrnn_binding::grad_ptr<data_t>(gy)),
                                                lrnn_binding::grad_ptr<A>(gs1), cuda_ptr(gk.data<data_t>()),
                                                cuda_ptr(gv.data<data_t>()), gw.data<A>(), gu.data<A>(), gs0.data<A>(),
                                                part.data<A>(), k.stream()),
                        "lrnn_wkv");
      }));
}
