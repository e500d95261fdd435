// The MRU scan's launchers (kernels/mru_scan.cuh) for one storage type, behind void pointers. Its kernels (4 frame
// sizes x 2 directions per dtype, fully unrolled) are the slowest part of the harness to compile, so each dtype is
// instantiated in its own source (torch_ops_cuda_mru_<dtype>.cu) and they compile in parallel;
// torch_ops_cuda_mru.cu holds the entry points that dispatch on dtype.
#pragma once

#include "cuda_dispatch.cuh"

namespace lrnn_gpu {

template <typename S>
int mru_scan_forward_typed(int64_t BH, int64_t T, int d, const void* m, const void* s0, void* prefix, void* s1,
                           void* stream);
template <typename S>
int mru_scan_backward_typed(int64_t BH, int64_t T, int d, const void* m, const void* s0, const void* prefix,
                            const void* gp, const void* gs1, void* gm, void* gs0, void* stream);

}  // namespace lrnn_gpu

#ifdef LRNN_GPU_MRU_INSTANTIATE
#include "kernels/mru_scan.cuh"

namespace lrnn_gpu {

template <typename S>
int mru_scan_forward_typed(int64_t BH, int64_t T, int d, const void* m, const void* s0, void* prefix, void* s1,
                           void* stream) {
  using A = lrnn::acc_t<S>;
  return static_cast<int>(
      lrnn::mru_scan_forward_cuda<S>(BH, T, d, in<S>(m), in<A>(s0), out<S>(prefix), out<A>(s1), as_stream(stream)));
}

template <typename S>
int mru_scan_backward_typed(int64_t BH, int64_t T, int d, const void* m, const void* s0, const void* prefix,
                            const void* gp, const void* gs1, void* gm, void* gs0, void* stream) {
  using A = lrnn::acc_t<S>;
  return static_cast<int>(lrnn::mru_scan_backward_cuda<S>(BH, T, d, in<S>(m), in<A>(s0), in<S>(prefix), in<S>(gp),
                                                          in<A>(gs1), out<S>(gm), out<A>(gs0), as_stream(stream)));
}

}  // namespace lrnn_gpu

#define LRNN_GPU_MRU_INSTANTIATE_FOR(S)                                                                              \
  namespace lrnn_gpu {                                                                                               \
  template int mru_scan_forward_typed<S>(int64_t, int64_t, int, const void*, const void*, void*, void*, void*);      \
  template int mru_scan_backward_typed<S>(int64_t, int64_t, int, const void*, const void*, const void*, const void*, \
                                          const void*, void*, void*, void*);                                         \
  }
#endif
