// The CPU kernels' instruction-set level (kernels/cpu_isa.h) for Python, by plain C symbols that
// paddle_lrnn/ops/_library.py reads with ctypes from this library (no operator needed).
#include "kernels/cpu_isa.h"

#ifndef LRNN_BUILD_MARCH
#define LRNN_BUILD_MARCH "unknown"
#endif

extern "C" {

// The level in use: 0 baseline, 1 avx2, 2 avx512.
int lrnn_cpu_isa() { return lrnn::cpu_isa(); }

// The highest level this processor supports.
int lrnn_cpu_isa_supported() { return lrnn::cpu_isa_supported(); }

// Caps the level (tests run every level in one process); returns the level now in use.
int lrnn_set_cpu_isa_cap(int cap) { return lrnn::set_cpu_isa_cap(cap); }

// The -march the library was compiled with (setup.py).
const char* lrnn_build_march() { return LRNN_BUILD_MARCH; }
}
