// The MRU scan's kernels for __nv_bfloat16 storage (see torch_ops_cuda_mru.cuh).
#define LRNN_GPU_MRU_INSTANTIATE
#include "torch_ops_cuda_mru.cuh"

LRNN_GPU_MRU_INSTANTIATE_FOR(__nv_bfloat16)
