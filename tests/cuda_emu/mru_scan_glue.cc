// The MRU scan's CUDA launchers (custom_ops/kernels/mru_scan.cuh) under the CPU emulation, for
// tests/test_cuda_emulated_mru_scan.py.
#include "glue.h"
#include "kernels/mru_scan.cuh"

LRNN_EMU_EXPORT_DTYPES(mru_scan_forward, lrnn::mru_scan_forward_cuda)
LRNN_EMU_EXPORT_DTYPES(mru_scan_backward, lrnn::mru_scan_backward_cuda)
