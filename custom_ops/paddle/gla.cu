// CUDA dispatch of GLA: maps Paddle tensors and dtypes onto the framework-free launchers in kernels/gla.cuh, and
// allocates their workspace (an accumulator-typed scratch tensor on the inputs' device).
#include "binding.h"
#include "kernels/gla.cuh"

using paddle::Tensor;

void gla_forward_gpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0, double scale,
                     Tensor& o, Tensor& s1) {
  const int64_t B = q.shape()[0], T = q.shape()[1], H = q.shape()[2], K = q.shape()[3], V = v.shape()[3];
  LRNN_DISPATCH_FLOATING(
      q.dtype(), "lrnn_gla", ([&] {
        using T_ = typename CudaType<data_t>::type;
        using A = lrnn::acc_t<T_>;
        Tensor work = paddle::empty({lrnn::gla_forward_workspace<T_>(B, T, H, K, V)}, s0.dtype(), q.place());
        LRNN_CUDA_CHECK(lrnn::gla_forward_cuda<T_>(
                            B, T, H, K, V, cuda_ptr(q.data<data_t>()), cuda_ptr(k.data<data_t>()),
                            cuda_ptr(v.data<data_t>()), cuda_ptr(g.data<data_t>()), s0.data<A>(), static_cast<A>(scale),
                            cuda_ptr(o.data<data_t>()), s1.data<A>(), work.data<A>(), q.stream()),
                        "lrnn_gla");
      }));
}

void gla_backward_gpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0,
                      const Tensor& s1, const Tensor& go, const Tensor& gs1, double scale, Tensor& gq, Tensor& gk,
                      Tensor& gv, Tensor& gg, Tensor& gs0) {
  const int64_t B = q.shape()[0], T = q.shape()[1], H = q.shape()[2], K = q.shape()[3], V = v.shape()[3];
  LRNN_DISPATCH_FLOATING(
      q.dtype(), "lrnn_gla", ([&] {
        using T_ = typename CudaType<data_t>::type;
        using A = lrnn::acc_t<T_>;
        Tensor work = paddle::empty({lrnn::gla_backward_workspace<T_>(B, T, H, K, V)}, s0.dtype(), q.place());
        LRNN_CUDA_CHECK(
            lrnn::gla_backward_cuda<T_>(
                B, T, H, K, V, cuda_ptr(q.data<data_t>()), cuda_ptr(k.data<data_t>()), cuda_ptr(v.data<data_t>()),
                cuda_ptr(g.data<data_t>()), s0.data<A>(), s1.data<A>(), static_cast<A>(scale),
                cuda_ptr(lrnn_binding::grad_ptr<data_t>(go)), lrnn_binding::grad_ptr<A>(gs1),
                cuda_ptr(gq.data<data_t>()), cuda_ptr(gk.data<data_t>()), cuda_ptr(gv.data<data_t>()),
                cuda_ptr(gg.data<data_t>()), gs0.data<A>(), work.data<A>(), q.stream()),
            "lrnn_gla");
      }));
}
