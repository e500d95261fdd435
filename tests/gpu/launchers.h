// Entry points of the CUDA kernels (custom_ops/kernels/*.cuh) for the torch test harness: raw pointers, sizes and a
// stream, no torch and no CUDA headers, so that torch_ops.cpp compiles with a plain C++ compiler and
// torch_ops_cuda.cu with nvcc alone. Every function returns 0 or a CUDA error code (error_string gives its text).
// dtype: one of DType; accumulator tensors (states, w and u of WKV, ...) are float64 for kFloat64, float32 otherwise.
#pragma once

#include <cstdint>

namespace lrnn_gpu {

enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

int wkv_forward(int dtype, int64_t B, int64_t T, int64_t C, const void* w, const void* u, const void* k, const void* v,
                const void* s0, double eps, void* y, void* s1, void* ckpt, void* stream);
// gy and gs1 may be null; part: scratch of 2 * B * C accumulators.
int wkv_backward(int dtype, int64_t B, int64_t T, int64_t C, const void* w, const void* u, const void* k,
                 const void* v, const void* s0, const void* s1, const void* ckpt, double eps, const void* gy,
                 const void* gs1, void* gk, void* gv, void* gw, void* gu, void* gs0, void* part, void* stream);

int timex_forward(int dtype, int64_t B, int64_t C, int64_t T, int64_t L, const void* w, const void* x, double eps,
                  void* out, void* stream);
int timex_backward(int dtype, int64_t B, int64_t C, int64_t T, int64_t L, const void* w, const void* x, const void* g,
                   void* gw, void* gx, void* stream);

const char* error_string(int err);

}  // namespace lrnn_gpu
