// torch_ops_cuda.cu compiled by g++ under the CPU emulation of CUDA (tests/cuda_emu), so that the whole harness
// (tests/gpu/check.py --backend emulated) runs on a machine without a GPU, "device" tensors being CPU tensors.
// The kernels' namespace is renamed so that their inline helpers (compiled here with __CUDA_ARCH__ defined) never
// merge with the CPU kernels' ones in torch_ops.cpp.
#define lrnn lrnn_emulated
#include "torch_ops_cuda.cu"

namespace lrnn_gpu {

void set_emulation_schedule(int schedule, int64_t seed) {
  lrnn_emu::config().schedule = static_cast<lrnn_emu::Schedule>(schedule);
  lrnn_emu::config().seed = static_cast<uint64_t>(seed);
}

}  // namespace lrnn_gpu
