// Helpers of the CUDA side of the torch test harness (torch_ops_cuda*.cu): dtype dispatch onto the launchers'
// storage types and pointer casts.
#pragma once

#include <type_traits>

#include "kernels/common.cuh"  // the CUDA types (or their emulation)
#include "launchers.h"

namespace lrnn_gpu {
namespace {

// f(tag) with tag a null pointer of the storage type of `dtype`.
template <typename F>
int dispatch(int dtype, F&& f) {
  switch (dtype) {
    case kFloat32:
      return f(static_cast<float*>(nullptr));
    case kFloat64:
      return f(static_cast<double*>(nullptr));
    case kFloat16:
      return f(static_cast<__half*>(nullptr));
    case kBFloat16:
      return f(static_cast<__nv_bfloat16*>(nullptr));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

template <typename X>
const X* in(const void* p) {
  return static_cast<const X*>(p);
}
template <typename X>
X* out(void* p) {
  return static_cast<X*>(p);
}
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace
}  // namespace lrnn_gpu
