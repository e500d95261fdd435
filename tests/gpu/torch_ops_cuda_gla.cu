// launchers.h's GLA entry points (kernels/gla.cuh) for the torch test harness; see torch_ops_cuda.cu.
#include "cuda_dispatch.cuh"
#include "kernels/gla.cuh"

namespace lrnn_gpu {

int gla_workspace(int dtype, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t* forward,
                  int64_t* backward, int* chunked) {
  return dispatch(dtype, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    *forward = lrnn::gla_forward_workspace<S>(B, T, H, K, V);
    *backward = lrnn::gla_backward_workspace<S>(B, T, H, K, V);
    *chunked = lrnn::gla_use_chunked<S>(T) ? 1 : 0;
    return 0;
  });
}

int gla_forward(int dtype, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const void* q, const void* k,
                const void* v, const void* g, const void* s0, double scale, void* o, void* s1, void* work,
                void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    using A = lrnn::acc_t<S>;
    return static_cast<int>(lrnn::gla_forward_cuda<S>(B, T, H, K, V, in<S>(q), in<S>(k), in<S>(v), in<S>(g),
                                                      in<A>(s0), static_cast<A>(scale), out<S>(o), out<A>(s1),
                                                      out<A>(work), as_stream(stream)));
  });
}

int gla_backward(int dtype, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const void* q, const void* k,
                 const void* v, const void* g, const void* s0, const void* s1, double scale, const void* go,
                 const void* gs1, void* gq, void* gk, void* gv, void* gg, void* gs0, void* work, void* stream) {
  return dispatch(dtype, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    using A = lrnn::acc_t<S>;
    return static_cast<int>(lrnn::gla_backward_cuda<S>(
        B, T, H, K, V, in<S>(q), in<S>(k), in<S>(v), in<S>(g), in<A>(s0), in<A>(s1), static_cast<A>(scale), in<S>(go),
        in<A>(gs1), out<S>(gq), out<S>(gk), out<S>(gv), out<S>(gg), out<A>(gs0), out<A>(work), as_stream(stream)));
  });
}

}  // namespace lrnn_gpu
