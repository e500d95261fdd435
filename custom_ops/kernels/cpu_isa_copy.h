// One more copy of the kernels of LRNN_ISA_KERNELS in namespace lrnn::LRNN_ISA, for cpu_isa_variants.h only.
// Every kernel header that may be included again has its include guard undefined here; a header missing from this
// list fails to compile (its names are then missing from lrnn::LRNN_ISA), never silently.
#undef LRNN_KERNELS_WKV_H
#undef LRNN_KERNELS_TIMEX_H
#undef LRNN_KERNELS_GLA_H
#undef LRNN_KERNELS_MRU_SCAN_H
#undef LRNN_KERNELS_RWKV2_STEP_H
#undef LRNN_KERNELS_RWKV4_STEP_H
#undef LRNN_KERNELS_HGRN2_STEP_H
#undef LRNN_KERNELS_WEIGHT_MATMUL_H
#include LRNN_ISA_KERNELS
#undef LRNN_ISA
#undef LRNN_ISA_LEVEL
