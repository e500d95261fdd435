// launchers.h's MRU scan entry points (kernels/mru_scan.cuh) for the torch test harness; see torch_ops_cuda.cu.
// The kernels themselves are instantiated per dtype in torch_ops_cuda_mru_<dtype>.cu (torch_ops_cuda_mru.cuh).
#include "torch_ops_cuda_mru.cuh"

namespace lrnn_gpu {

int mru_scan_forward(int dtype, int64_t BH, int64_t T, int d, const void* m, const void* s0, void* prefix, void* s1,
                     void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    return mru_scan_forward_typed<std::remove_pointer_t<decltype(tag)>>(BH, T, d, m, s0, prefix, s1, stream);
  });
}

int mru_scan_backward(int dtype, int64_t BH, int64_t T, int d, const void* m, const void* s0, const void* prefix,
                      const void* gp, const void* gs1, void* gm, void* gs0, void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    return mru_scan_backward_typed<std::remove_pointer_t<decltype(tag)>>(BH, T, d, m, s0, prefix, gp, gs1, gm, gs0,
                                                                         stream);
  });
}

}  // namespace lrnn_gpu
