// torch_ops_cuda_mru*.cu under the CPU emulation of CUDA (the entry points and every dtype's instantiation in one
// source); see torch_ops_emulated.cpp.
#define lrnn lrnn_emulated
#define LRNN_GPU_MRU_INSTANTIATE  // before the first include of torch_ops_cuda_mru.cuh (#pragma once)
#include "torch_ops_cuda_mru.cu"
#include "torch_ops_cuda_mru_bf16.cu"
#include "torch_ops_cuda_mru_f16.cu"
#include "torch_ops_cuda_mru_f32.cu"
#include "torch_ops_cuda_mru_f64.cu"
