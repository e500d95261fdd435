// Framework-free CUDA helpers: storage <-> accumulator conversions for float, double, half and bfloat16.
#pragma once

#ifdef LRNN_CUDA_EMULATION
// tests/cuda_emu: runs these kernels on CPU threads, so that CI checks them without a GPU.
#include "cuda_emulation.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include "common.h"

// kernel<<<grid, block, smem, stream>>>(args) written so that the CPU emulation can run it too:
//   LRNN_LAUNCH(grid, block, smem, stream, kernel<T>)(args...)
// Dynamic shared memory (the launch's smem bytes), likewise: LRNN_DYNAMIC_SHARED(float, buf); declares float* buf.
#ifdef LRNN_CUDA_EMULATION
#define LRNN_LAUNCH(grid, block, smem, stream, ...) ::lrnn_emu::launch(grid, block, smem, __VA_ARGS__, #__VA_ARGS__)
#else
#define LRNN_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define LRNN_DYNAMIC_SHARED(type, name)                       \
  extern __shared__ __align__(16) unsigned char lrnn_smem_[]; \
  type* name = reinterpret_cast<type*>(lrnn_smem_)
#endif

namespace lrnn {

template <typename T>
struct Conv;
template <>
struct Conv<float> {
  static __device__ __forceinline__ float to(float x) { return x; }
  static __device__ __forceinline__ float from(float x) { return x; }
};
template <>
struct Conv<double> {
  static __device__ __forceinline__ double to(double x) { return x; }
  static __device__ __forceinline__ double from(double x) { return x; }
};
template <>
struct Conv<__half> {
  static __device__ __forceinline__ float to(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from(float x) { return __float2half_rn(x); }
};
template <>
struct Conv<__nv_bfloat16> {
  static __device__ __forceinline__ float to(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace lrnn
