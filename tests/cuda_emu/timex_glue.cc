// TimeX's CUDA launchers (custom_ops/kernels/timex.cuh) under the CPU emulation, for tests/test_cuda_emulated_timex.py.
#include "glue.h"
#include "kernels/timex.cuh"

LRNN_EMU_EXPORT_DTYPES(timex_forward, lrnn::timex_forward_cuda)
LRNN_EMU_EXPORT_DTYPES(timex_backward, lrnn::timex_backward_cuda)
