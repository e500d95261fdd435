// GLA's CUDA launchers (custom_ops/kernels/gla.cuh) under the CPU emulation, for tests/test_cuda_emulated_gla.py.
// gla_workspace_<dtype> writes what the launchers' callers need to know into out[3]: the forward and backward
// workspace sizes (accumulator elements; int64_t return values cannot be exported as they are) and whether the
// chunked algorithm runs (1) or the recurrent one (0).
#include "glue.h"
#include "kernels/gla.cuh"

namespace {

template <typename scalar_t>
int gla_workspace(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t* out) {
  out[0] = lrnn::gla_forward_workspace<scalar_t>(B, T, H, K, V);
  out[1] = lrnn::gla_backward_workspace<scalar_t>(B, T, H, K, V);
  out[2] = lrnn::gla_use_chunked<scalar_t>(T) ? 1 : 0;
  return 0;
}

}  // namespace

LRNN_EMU_EXPORT_DTYPES(gla_workspace, gla_workspace)
LRNN_EMU_EXPORT_DTYPES(gla_forward, lrnn::gla_forward_cuda)
LRNN_EMU_EXPORT_DTYPES(gla_backward, lrnn::gla_backward_cuda)
