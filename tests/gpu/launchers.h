// Entry points of the CUDA kernels (custom_ops/kernels/*.cuh) for the torch test harness: raw pointers, sizes and a
// stream, no torch and no CUDA headers, so that torch_ops.cpp compiles with a plain C++ compiler and
// torch_ops_cuda.cu with nvcc alone. Every function returns 0 or a CUDA error code (error_string gives its text).
// dtype: one of DType; accumulator tensors (states, w and u of WKV, ...) are float64 for kFloat64, float32 otherwise.
#pragma once

#include <cstdint>

namespace lrnn_gpu {

enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

int wkv_forward(int dtype, int64_t B, int64_t T, int64_t C, const void* w, const void* u, const void* k, const void* v,
                const void* s0, double eps, void* y, void* s1, void* ckpt, void* stream);
// gy and gs1 may be null; part: scratch of 2 * B * C accumulators.
int wkv_backward(int dtype, int64_t B, int64_t T, int64_t C, const void* w, const void* u, const void* k,
                 const void* v, const void* s0, const void* s1, const void* ckpt, double eps, const void* gy,
                 const void* gs1, void* gk, void* gv, void* gw, void* gu, void* gs0, void* part, void* stream);

int timex_forward(int dtype, int64_t B, int64_t C, int64_t T, int64_t L, const void* w, const void* x, double eps,
                  void* out, void* stream);
int timex_backward(int dtype, int64_t B, int64_t C, int64_t T, int64_t L, const void* w, const void* x, const void* g,
                   void* gw, void* gx, void* stream);

// GLA (kernels/gla.cuh). q, k, g [B, T, H, K]; v, o [B, T, H, V]; states [B, H, K, V] (accumulator type). The
// launchers need a workspace of accumulators: gla_workspace gives its size (elements) for each direction and whether
// the chunked algorithm runs (T > 64, not float64).
int gla_workspace(int dtype, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t* forward,
                  int64_t* backward, int* chunked);
int gla_forward(int dtype, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const void* q, const void* k,
                const void* v, const void* g, const void* s0, double scale, void* o, void* s1, void* work,
                void* stream);
// go and gs1 may be null.
int gla_backward(int dtype, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const void* q, const void* k,
                 const void* v, const void* g, const void* s0, const void* s1, double scale, const void* go,
                 const void* gs1, void* gq, void* gk, void* gv, void* gg, void* gs0, void* work, void* stream);

// MRU scan (kernels/mru_scan.cuh). m, prefix [BH, T, d, d]; states [BH, d, d] (accumulator type); d <= 32.
int mru_scan_forward(int dtype, int64_t BH, int64_t T, int d, const void* m, const void* s0, void* prefix, void* s1,
                     void* stream);
// gp and gs1 may be null.
int mru_scan_backward(int dtype, int64_t BH, int64_t T, int d, const void* m, const void* s0, const void* prefix,
                      const void* gp, const void* gs1, void* gm, void* gs0, void* stream);

const char* error_string(int err);

#ifdef LRNN_TORCH_EMULATION
// The emulation's schedule (tests/cuda_emu/README.md): 0 parallel (OS threads), 1 forward, 2 reverse, 3 random (one
// thread at a time, as fibers: about ten times faster on kernels that synchronise often).
void set_emulation_schedule(int schedule, int64_t seed);
#endif

}  // namespace lrnn_gpu
