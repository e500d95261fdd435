// Framework-free helpers shared by every kernel: accumulator types, exp, and (host only) element access and a
// parallel loop. Nothing here knows Paddle or torch; storage types only need conversions to and from float.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef __CUDACC__
#define LRNN_HD __host__ __device__ __forceinline__
#else
#define LRNN_HD inline
#endif

namespace lrnn {

// Accumulate in float for every storage type except double (double is kept for gradient checks).
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};
template <typename T>
using acc_t = typename Acc<T>::type;

// exp that gcc vectorises inside plain loops (glibc's expf does not): Cody-Waite reduction and the Cephes degree-6
// polynomial, about 2 ulp. Below -87.3 it returns exactly 0 and above 88.7 it saturates at a finite value, so
// that 0 * vexp(x) is never NaN.
inline float vexp_host(float x) {
  const float xc = std::min(std::max(x, -87.3f), 88.7f);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
  const float n = (xc * 1.44269504088896341f + magic) - magic;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, sizeof(bits));
  bits += static_cast<int32_t>(n) << 23;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return x < -87.3f ? 0.0f : out;
}

LRNN_HD float lrnn_exp(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  return vexp_host(x);
#endif
}
LRNN_HD double lrnn_exp(double x) { return exp(x); }

template <typename A>
LRNN_HD A lrnn_max(A a, A b) {
  return a > b ? a : b;
}

// Most negative finite value: the log-space "empty" marker, so that differences of markers stay finite.
template <typename A>
LRNN_HD A neg_big() {
  return static_cast<A>(-1e38);
}

#ifndef __CUDA_ARCH__
template <typename A, typename T>
inline A load(const T* p, int64_t i) {
  return static_cast<A>(static_cast<float>(p[i]));
}
template <typename A>
inline A load(const double* p, int64_t i) {
  return static_cast<A>(p[i]);
}
template <typename T, typename A>
inline void store(T* p, int64_t i, A x) {
  p[i] = T(static_cast<float>(x));
}
template <typename A>
inline void store(double* p, int64_t i, A x) {
  p[i] = static_cast<double>(x);
}

// Threads for the CPU kernels: PADDLE_LRNN_NUM_THREADS if set, else every processor this process may use.
// Paddle sets OMP_NUM_THREADS=1 at import for its own operators; the recurrences here parallelise over
// independent sequences and channels, so they take the cores unless told otherwise.
inline int num_threads() {
  static const int n = [] {
    const char* env = std::getenv("PADDLE_LRNN_NUM_THREADS");
    const int requested = env ? std::atoi(env) : 0;
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_num_procs();
#else
    return requested > 0 ? requested : 1;
#endif
  }();
  return n;
}

// Runs fn(i) for i in [0, n) on num_threads() OpenMP threads (serially without OpenMP).
template <typename F>
inline void parallel_for(int64_t n, F fn) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads()) if (n > 1)
#endif
  for (int64_t i = 0; i < n; ++i) fn(i);
}
#endif

}  // namespace lrnn
