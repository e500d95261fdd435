// WKV's CUDA launchers (custom_ops/kernels/wkv.cuh) under the CPU emulation, for tests/test_cuda_emulated_wkv.py.
#include "glue.h"
#include "kernels/wkv.cuh"

LRNN_EMU_EXPORT_DTYPES(wkv_forward, lrnn::wkv_forward_cuda)
LRNN_EMU_EXPORT_DTYPES(wkv_backward, lrnn::wkv_backward_cuda)
