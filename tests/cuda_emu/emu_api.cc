// Linked into every emulation library by build.py: schedule control, the last error message, and the half-precision
// conversions (so that tests can check them bit for bit).
#include <algorithm>
#include <string>

#include "glue.h"

LRNN_EMU_EXPORT void lrnn_emu_set_schedule(int64_t schedule, int64_t seed) {
  lrnn_emu::config().schedule = static_cast<lrnn_emu::Schedule>(schedule);
  lrnn_emu::config().seed = static_cast<uint64_t>(seed);
}

// Copies the last emulation error message (NUL-terminated, truncated to n bytes); returns its full length.
LRNN_EMU_EXPORT int64_t lrnn_emu_last_message(char* buf, int64_t n) {
  const std::string m = lrnn_emu::last_message();
  if (n > 0) {
    const size_t k = std::min<size_t>(m.size(), static_cast<size_t>(n - 1));
    std::copy(m.data(), m.data() + k, buf);
    buf[k] = '\0';
  }
  return static_cast<int64_t>(m.size());
}

LRNN_EMU_EXPORT void lrnn_emu_float_to_half(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = __half_as_ushort(__float2half_rn(x[i]));
}
LRNN_EMU_EXPORT void lrnn_emu_float_to_bfloat16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}
LRNN_EMU_EXPORT void lrnn_emu_half_to_float(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = __half2float(__ushort_as_half(x[i]));
}
LRNN_EMU_EXPORT void lrnn_emu_bfloat16_to_float(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = __bfloat162float(__ushort_as_bfloat16(x[i]));
}
LRNN_EMU_EXPORT void lrnn_emu_double_to_half(const double* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = __half_as_ushort(__double2half(x[i]));
}
