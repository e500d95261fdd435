// The kernels of the header named by LRNN_ISA_KERNELS, compiled again for AVX2 and for AVX-512 (cpu_isa.h).
// Usage, once per translation unit, after the header itself has been included (its baseline copy):
//   #include "kernels/wkv.h"
//   #define LRNN_ISA_KERNELS "kernels/wkv.h"
//   #include "kernels/cpu_isa_variants.h"
//   ... LRNN_ISA_CALL(wkv_forward_cpu<data_t>, args...);
#include "cpu_isa.h"

#if LRNN_ISA_DISPATCH
#pragma push_macro("LRNN_ISA")
#pragma push_macro("LRNN_ISA_INLINE")
#pragma push_macro("LRNN_ISA_LEVEL")
#undef LRNN_ISA
#undef LRNN_ISA_INLINE
#undef LRNN_ISA_LEVEL
#define LRNN_ISA_INLINE

// x86-64-v3 without MOVBE and LZCNT (nothing here uses them and cpu_isa_supported does not check them).
#pragma GCC push_options
#pragma GCC target("sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,fma,f16c,bmi,bmi2")
#define LRNN_ISA isa_avx2
#define LRNN_ISA_LEVEL 1
#include "cpu_isa_copy.h"
#pragma GCC pop_options

// x86-64-v4. Loops the compiler vectorises use 256-bit vectors (with AVX-512's masks and 32 registers), as gcc's
// tuning for Intel's AVX-512 processors does: 512-bit ones made the MRU scan 2-3x slower on an AMD Zen 4
// (measured). Intrinsics (weight_matmul.h) use the full width.
#pragma GCC push_options
#pragma GCC target("sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,fma,f16c,bmi,bmi2",                      \
                   "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,prefer-vector-width=256")
#define LRNN_ISA isa_avx512
#define LRNN_ISA_LEVEL 2
#include "cpu_isa_copy.h"
#pragma GCC pop_options

#pragma pop_macro("LRNN_ISA_LEVEL")
#pragma pop_macro("LRNN_ISA_INLINE")
#pragma pop_macro("LRNN_ISA")
#endif
