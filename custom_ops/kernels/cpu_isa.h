// Which instruction set the CPU kernels run with, chosen at run time, so that one build runs on any x86-64 CPU and
// still uses AVX2 or AVX-512 where the processor has them.
//
// The library is compiled for the x86-64 baseline (setup.py). A binding compiles its kernels a second and third
// time under `#pragma GCC target`, each copy in its own namespace (cpu_isa_variants.h): lrnn::isa_avx2 for the
// x86-64-v3 set (AVX2, FMA, F16C, BMI1/2) and lrnn::isa_avx512 for the x86-64-v4 set (AVX-512 F/BW/CD/DQ/VL), next
// to the baseline copy lrnn::isa_baseline. LRNN_ISA_CALL(fn, args...) calls the copy of the level cpu_isa() picks:
// the highest the processor and the operating system support, capped by PADDLE_LRNN_ISA=baseline|avx2|avx512.
// Only the code inside those namespaces can hold AVX instructions: everything else (the thread pool, the standard
// library, Paddle's headers) is parsed before any pragma and stays baseline code, so nothing the linker shares
// between translation units ever needs more than the processor has. Types that bindings pass to every copy live in
// lrnn::types, never in lrnn itself: argument-dependent lookup would otherwise find the baseline copy's functions
// (members of lrnn through the inline namespace) next to the current copy's, and the call would not compile.
//
// Elsewhere (another architecture, or a compiler without GCC's target pragmas) only the baseline copy exists and
// the level is always "baseline". Results differ between levels in the last bits (vector width, fused
// multiply-adds); at one level they do not depend on the thread count.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define LRNN_ISA_DISPATCH 1
#else
#define LRNN_ISA_DISPATCH 0
#endif

namespace lrnn {

enum CpuIsa : int { kIsaBaseline = 0, kIsaAvx2 = 1, kIsaAvx512 = 2 };

inline const char* cpu_isa_name(int level) {
  static const char* const names[] = {"baseline", "avx2", "avx512"};
  return level >= kIsaBaseline && level <= kIsaAvx512 ? names[level] : "unknown";
}

// The highest level this processor and its operating system support (libgcc's __builtin_cpu_supports also checks
// that the OS saves the YMM/ZMM registers).
inline int cpu_isa_supported() {
#if LRNN_ISA_DISPATCH
  __builtin_cpu_init();
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
                  __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                  __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("sse4.2");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
  return v4 ? kIsaAvx512 : v3 ? kIsaAvx2 : kIsaBaseline;
#else
  return kIsaBaseline;
#endif
}

// The level named by PADDLE_LRNN_ISA, or -1 when it is unset or not a level's name (the Python side refuses such
// a value with a clear error before any kernel runs).
inline int cpu_isa_cap_from_env() {
  const char* env = std::getenv("PADDLE_LRNN_ISA");
  if (env == nullptr) return -1;
  for (int level = kIsaBaseline; level <= kIsaAvx512; ++level)
    if (std::strcmp(env, cpu_isa_name(level)) == 0) return level;
  return -1;
}

// The level in use: set on first use from the processor and PADDLE_LRNN_ISA, changed only by set_cpu_isa_cap.
inline std::atomic<int>& cpu_isa_state() {
  static std::atomic<int> level([] {
    const int supported = cpu_isa_supported(), cap = cpu_isa_cap_from_env();
    return cap < 0 ? supported : (cap < supported ? cap : supported);
  }());
  return level;
}

inline int cpu_isa() { return cpu_isa_state().load(std::memory_order_relaxed); }

// Caps the level at `cap` (never above what the processor supports); returns the level now in use.
inline int set_cpu_isa_cap(int cap) {
  const int supported = cpu_isa_supported(), level = cap < supported ? (cap < 0 ? 0 : cap) : supported;
  cpu_isa_state().store(level);
  return level;
}

}  // namespace lrnn

// LRNN_ISA_CALL(fn, args...): lrnn::<level>::fn(args...) for the level in use (fn may name a template
// specialisation, e.g. wkv_forward_cpu<data_t>). The binding must have included cpu_isa_variants.h.
#if LRNN_ISA_DISPATCH
#define LRNN_ISA_CALL(fn, ...)                   \
  do {                                           \
    switch (::lrnn::cpu_isa()) {                 \
      case ::lrnn::kIsaAvx512:                   \
        ::lrnn::isa_avx512::fn(__VA_ARGS__);     \
        break;                                   \
      case ::lrnn::kIsaAvx2:                     \
        ::lrnn::isa_avx2::fn(__VA_ARGS__);       \
        break;                                   \
      default:                                   \
        ::lrnn::isa_baseline::fn(__VA_ARGS__);   \
    }                                            \
  } while (0)
#else
#define LRNN_ISA_CALL(fn, ...) ::lrnn::isa_baseline::fn(__VA_ARGS__)
#endif
