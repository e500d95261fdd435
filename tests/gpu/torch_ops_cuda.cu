// The CUDA side of the torch test harness: launchers.h's entry points, dispatching on dtype to the framework-free
// launchers of custom_ops/kernels/*.cuh. No torch here: tests/gpu/ext.py compiles it with nvcc for sm_90
// (and torch_ops_emulated.cpp compiles it under the CPU emulation of CUDA). One source per group of operators
// (this one: WKV, TimeX and the error strings; torch_ops_cuda_gla.cu, torch_ops_cuda_mru.cu), compiled in parallel.
#include "cuda_dispatch.cuh"
#include "kernels/timex.cuh"
#include "kernels/wkv.cuh"

namespace lrnn_gpu {

int wkv_forward(int dtype, int64_t B, int64_t T, int64_t C, const void* w, const void* u, const void* k, const void* v,
                const void* s0, double eps, void* y, void* s1, void* ckpt, void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    using A = lrnn::acc_t<S>;
    return static_cast<int>(lrnn::wkv_forward_cuda<S>(B, T, C, in<A>(w), in<A>(u), in<S>(k), in<S>(v), in<A>(s0),
                                                      static_cast<A>(eps), out<S>(y), out<A>(s1), out<A>(ckpt),
                                                      as_stream(stream)));
  });
}

int wkv_backward(int dtype, int64_t B, int64_t T, int64_t C, const void* w, const void* u, const void* k,
                 const void* v, const void* s0, const void* s1, const void* ckpt, double eps, const void* gy,
                 const void* gs1, void* gk, void* gv, void* gw, void* gu, void* gs0, void* part, void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    using A = lrnn::acc_t<S>;
    return static_cast<int>(lrnn::wkv_backward_cuda<S>(
        B, T, C, in<A>(w), in<A>(u), in<S>(k), in<S>(v), in<A>(s0), in<A>(s1), in<A>(ckpt), static_cast<A>(eps),
        in<S>(gy), in<A>(gs1), out<S>(gk), out<S>(gv), out<A>(gw), out<A>(gu), out<A>(gs0), out<A>(part),
        as_stream(stream)));
  });
}

int timex_forward(int dtype, int64_t B, int64_t C, int64_t T, int64_t L, const void* w, const void* x, double eps,
                  void* o, void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    using A = lrnn::acc_t<S>;
    return static_cast<int>(lrnn::timex_forward_cuda<S>(B, C, T, L, in<S>(w), in<S>(x), static_cast<A>(eps), out<S>(o),
                                                        as_stream(stream)));
  });
}

int timex_backward(int dtype, int64_t B, int64_t C, int64_t T, int64_t L, const void* w, const void* x, const void* g,
                   void* gw, void* gx, void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    return static_cast<int>(lrnn::timex_backward_cuda<S>(B, C, T, L, in<S>(w), in<S>(x), in<S>(g), out<S>(gw),
                                                         out<S>(gx), as_stream(stream)));
  });
}

const char* error_string(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

}  // namespace lrnn_gpu
