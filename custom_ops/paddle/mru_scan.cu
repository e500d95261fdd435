// CUDA dispatch of the MRU scan: maps Paddle tensors and dtypes onto the framework-free launchers in
// kernels/mru_scan.cuh.
#include "binding.h"
#include "kernels/mru_scan.cuh"

using paddle::Tensor;

void mru_scan_forward_gpu(const Tensor& m, const Tensor& s0, Tensor& prefix, Tensor& s1) {
  const auto& s = m.shape();
  const int64_t BH = s[0] * s[1], T = s[2];
  const int d = static_cast<int>(s[3]);
  LRNN_DISPATCH_FLOATING(m.dtype(), "lrnn_mru_scan", ([&] {
                           using A = lrnn::acc_t<typename CudaType<data_t>::type>;
                           LRNN_CUDA_CHECK(
                               lrnn::mru_scan_forward_cuda(BH, T, d, cuda_ptr(m.data<data_t>()), s0.data<A>(),
                                                           cuda_ptr(prefix.data<data_t>()), s1.data<A>(), m.stream()),
                               "lrnn_mru_scan");
                         }));
}

void mru_scan_backward_gpu(const Tensor& m, const Tensor& s0, const Tensor& prefix, const Tensor& gp, const Tensor& gs1,
                           Tensor& gm, Tensor& gs0) {
  const auto& s = m.shape();
  const int64_t BH = s[0] * s[1], T = s[2];
  const int d = static_cast<int>(s[3]);
  LRNN_DISPATCH_FLOATING(m.dtype(), "lrnn_mru_scan", ([&] {
                           using A = lrnn::acc_t<typename CudaType<data_t>::type>;
                           LRNN_CUDA_CHECK(
                               lrnn::mru_scan_backward_cuda(
                                   BH, T, d, cuda_ptr(m.data<data_t>()), s0.data<A>(), cuda_ptr(prefix.data<data_t>()),
                                   cuda_ptr(lrnn_binding::grad_ptr<data_t>(gp)), lrnn_binding::grad_ptr<A>(gs1),
                                   cuda_ptr(gm.data<data_t>()), gs0.data<A>(), m.stream()),
                               "lrnn_mru_scan");
                         }));
}
