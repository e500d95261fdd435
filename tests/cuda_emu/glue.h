// What a glue source needs to expose CUDA launchers, compiled under the CPU emulation, to Python (build.py).
//
// A glue source includes this header and a kernels/*.cuh, then names the functions to export:
//   LRNN_EMU_EXPORT_DTYPES(wkv_forward, lrnn::wkv_forward_cuda)
// exports wkv_forward_f32, _f64, _f16 and _bf16 (fn<float>, fn<double>, fn<__half>, fn<__nv_bfloat16>), and
//   LRNN_EMU_EXPORT_AS(my_name, some_function)
// exports one function. Each export is a data symbol holding the function's address plus `<name>__sig`, a string
// with one letter per parameter (q int64_t, i int32_t, f float, d double, p any pointer), from which build.py makes
// the ctypes prototype. The function must return an int-sized value (cudaError_t or int); 0 means success.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda_emulation.h"

#define LRNN_EMU_EXPORT extern "C" __attribute__((visibility("default")))

namespace lrnn_emu {
namespace glue {

template <typename T>
struct always_false : std::false_type {};

template <typename T>
constexpr char sig_char() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_pointer<U>::value) {
    return 'p';
  } else if constexpr (std::is_integral<U>::value && sizeof(U) == 8) {
    return 'q';
  } else if constexpr (std::is_integral<U>::value && sizeof(U) == 4) {
    return 'i';
  } else if constexpr (std::is_same<U, float>::value) {
    return 'f';
  } else if constexpr (std::is_same<U, double>::value) {
    return 'd';
  } else {
    static_assert(always_false<T>::value, "glue parameters must be pointers, 32/64-bit integers, float or double");
    return '?';
  }
}

template <typename R, typename... P>
const char* signature(R (*)(P...)) {
  static_assert(sizeof(R) == sizeof(int) && (std::is_integral<R>::value || std::is_enum<R>::value),
                "glue functions return an int or cudaError_t");
  static const char sig[] = {sig_char<P>()..., '\0'};
  return sig;
}

}  // namespace glue
}  // namespace lrnn_emu

#define LRNN_EMU_EXPORT_AS(sym, ...)                                                  \
  LRNN_EMU_EXPORT void* const sym = reinterpret_cast<void*>(&__VA_ARGS__);            \
  LRNN_EMU_EXPORT const char* const sym##__sig = ::lrnn_emu::glue::signature(&__VA_ARGS__);

#define LRNN_EMU_EXPORT_DTYPES(name, fn)             \
  LRNN_EMU_EXPORT_AS(name##_f32, fn<float>)          \
  LRNN_EMU_EXPORT_AS(name##_f64, fn<double>)         \
  LRNN_EMU_EXPORT_AS(name##_f16, fn<__half>)         \
  LRNN_EMU_EXPORT_AS(name##_bf16, fn<__nv_bfloat16>)
