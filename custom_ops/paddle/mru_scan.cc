// Paddle binding of the MRU scan (kernels/mru_scan.h): checks, allocation, CPU dispatch; CUDA dispatch lives in
// mru_scan.cu. The initial state is a required input (the Python wrapper passes the identity for "no state").
#include "kernels/mru_scan.h"

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/mru_scan.h"
#include "kernels/cpu_isa_variants.h"

using paddle::Tensor;

#ifdef PADDLE_WITH_CUDA
void mru_scan_forward_gpu(const Tensor& m, const Tensor& s0, Tensor& prefix, Tensor& s1);
void mru_scan_backward_gpu(const Tensor& m, const Tensor& s0, const Tensor& prefix, const Tensor& gp, const Tensor& gs1,
                           Tensor& gm, Tensor& gs0);
#endif

static void check_inputs(const Tensor& m, const Tensor& s0) {
  PD_CHECK(m.shape().size() == 5, "lrnn_mru_scan: m must be [B, H, T, d, d]");
  const auto& s = m.shape();
  PD_CHECK(s[0] > 0 && s[1] > 0 && s[2] > 0 && s[3] > 0, "lrnn_mru_scan: m must not be empty");
  PD_CHECK(s[3] == s[4], "lrnn_mru_scan: the matrices of m must be square");
  PD_CHECK(s[3] <= (1 << 15), "lrnn_mru_scan: d is too large");
  PD_CHECK(m.is_contiguous(), "lrnn_mru_scan: m must be contiguous");
  lrnn_binding::check(s0, "lrnn_mru_scan", "state", {s[0], s[1], s[3], s[3]}, lrnn_binding::acc_dtype(m.dtype()),
                      m.place());
}

std::vector<Tensor> MruScanForward(const Tensor& m, const Tensor& s0) {
  check_inputs(m, s0);
  const auto& s = m.shape();
  const int64_t BH = s[0] * s[1], T = s[2];
  const int d = static_cast<int>(s[3]);
  Tensor prefix = paddle::empty(s, m.dtype(), m.place());
  Tensor s1 = paddle::empty(s0.shape(), s0.dtype(), m.place());
  if (m.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    PD_CHECK(d <= lrnn::kMruMaxCudaD, "lrnn_mru_scan: the CUDA kernels support d <= 32, got d = ", d);
    mru_scan_forward_gpu(m, s0, prefix, s1);
    return {prefix, s1};
#else
    PD_THROW("lrnn_mru_scan: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(m.dtype(), "lrnn_mru_scan", ([&] {
                           using A = lrnn::acc_t<data_t>;
                           LRNN_ISA_CALL(mru_scan_forward_cpu<data_t>, BH, T, d, m.data<data_t>(), s0.data<A>(),
                                                              prefix.data<data_t>(), s1.data<A>());
                         }));
  return {prefix, s1};
}

std::vector<Tensor> MruScanBackward(const Tensor& m, const Tensor& s0, const Tensor& prefix, const Tensor& gp,
                                    const Tensor& gs1) {
  check_inputs(m, s0);
  const auto& s = m.shape();
  const int64_t BH = s[0] * s[1], T = s[2];
  const int d = static_cast<int>(s[3]);
  lrnn_binding::check(prefix, "lrnn_mru_scan backward", "prefix", s, m.dtype(), m.place());
  if (gp.initialized()) lrnn_binding::check(gp, "lrnn_mru_scan backward", "grad of prefix", s, m.dtype(), m.place());
  if (gs1.initialized())
    lrnn_binding::check(gs1, "lrnn_mru_scan backward", "grad of state", s0.shape(), s0.dtype(), m.place());
  Tensor gm = paddle::empty(s, m.dtype(), m.place());
  Tensor gs0 = paddle::empty(s0.shape(), s0.dtype(), m.place());
  if (m.is_gpu()) {
#ifdef PADDLE_WITH_CUDA
    PD_CHECK(d <= lrnn::kMruMaxCudaD, "lrnn_mru_scan: the CUDA kernels support d <= 32, got d = ", d);
    mru_scan_backward_gpu(m, s0, prefix, gp, gs1, gm, gs0);
    return {gm, gs0};
#else
    PD_THROW("lrnn_mru_scan: this build of paddle_lrnn has no CUDA kernels");
#endif
  }
  LRNN_DISPATCH_FLOATING(m.dtype(), "lrnn_mru_scan", ([&] {
                           using A = lrnn::acc_t<data_t>;
                           LRNN_ISA_CALL(mru_scan_backward_cpu<data_t>, 
                               BH, T, d, m.data<data_t>(), s0.data<A>(), prefix.data<data_t>(),
                               lrnn_binding::grad_ptr<data_t>(gp), lrnn_binding::grad_ptr<A>(gs1), gm.data<data_t>(),
                               gs0.data<A>());
                         }));
  return {gm, gs0};
}

std::vector<std::vector<int64_t>> MruScanInferShape(const std::vector<int64_t>& m, const std::vector<int64_t>& s0) {
  return {m, s0};
}

std::vector<paddle::DataType> MruScanInferDtype(const paddle::DataType& m, const paddle::DataType& s0) {
  return {m, s0};
}

std::vector<std::vector<int64_t>> MruScanGradInferShape(const std::vector<int64_t>& m, const std::vector<int64_t>& s0,
                                                        const std::vector<int64_t>& prefix,
                                                        const std::vector<int64_t>& gp,
                                                        const std::vector<int64_t>& gs1) {
  return {m, s0};
}

std::vector<paddle::DataType> MruScanGradInferDtype(const paddle::DataType& m, const paddle::DataType& s0,
                                                    const paddle::DataType& prefix, const paddle::DataType& gp,
                                                    const paddle::DataType& gs1) {
  return {m, s0};
}

PD_BUILD_OP(lrnn_mru_scan)
    .Inputs({"M", "S0"})
    .Outputs({"Prefix", "S1"})
    .SetKernelFn(PD_KERNEL(MruScanForward))
    .SetInferShapeFn(PD_INFER_SHAPE(MruScanInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(MruScanInferDtype));

PD_BUILD_GRAD_OP(lrnn_mru_scan)
    .Inputs({"M", "S0", "Prefix", paddle::Grad("Prefix"), paddle::Grad("S1")})
    .Outputs({paddle::Grad("M"), paddle::Grad("S0")})
    .SetKernelFn(PD_KERNEL(MruScanBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(MruScanGradInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(MruScanGradInferDtype));
