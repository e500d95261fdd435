// The kernels of the header named by LRNN_ISA_KERNELS, compiled again for AVX2 and for AVX-512 (cpu_isa.h).
// Usage, once per translation unit, after the header itself has been included (its baseline copy):
//   #include "kernels/wkv.h"
//   #define LRNN_ISA_KERNELS "kernels/wkv.h"
//   #include "kernels/cpu_isa_variants.h"
//   ... LRNN_ISA_CALL(wkv_forward_cpu<data_t>, args...);
#include "cpu_isa.h"

#if LRNN_ISA_DISPATCH
#undef LRNN_ISA
#undef LRNN_ISA_INLINE
#define LRNN_ISA_INLINE

// x86-64-v3 without MOVBE and LZCNT (nothing here uses them and cpu_isa_supported does not check them).
#pragma GCC push_options
#pragma GCC target("sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,fma,f16c,bmi,bmi2")
#define LRNN_ISA isa_avx2
#include "cpu_isa_copy.h"
#pragma GCC pop_options

// x86-64-v4. gcc's generic tuning then vectorises loops with 512-bit registers.
#pragma GCC push_options
#pragma GCC target("sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,fma,f16c,bmi,bmi2,avx512f,avx512bw,avx512cd,avx512dq,avx512vl")
#define LRNN_ISA isa_avx512
#include "cpu_isa_copy.h"
#pragma GCC pop_options

#undef LRNN_ISA_INLINE
#define LRNN_ISA isa_baseline
#define LRNN_ISA_INLINE inline
#endif
