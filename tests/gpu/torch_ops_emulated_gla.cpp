// torch_ops_cuda_gla.cu under the CPU emulation of CUDA; see torch_ops_emulated.cpp.
#define lrnn lrnn_emulated
#include "torch_ops_cuda_gla.cu"
