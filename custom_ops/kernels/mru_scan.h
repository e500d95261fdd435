// MRU scan: the Matrix Recurrent Unit's cumulative matrix product along time, per (batch, head) sequence:
//   P_t = P_{t-1} M_t   (t = 0 .. T-1, the new matrix multiplied on the RIGHT),   P_{-1} = S0,   S1 = P_{T-1}.
// Backward, with G_t = dL/dP_t and carry C_T = dL/dS1 (zero when S1 does not reach the loss):
//   B_t = G_t + C_{t+1},   C_t = B_t M_t^T,   dM_t = P_{t-1}^T B_t,   dS0 = C_0.
// (B_t is the total gradient reaching P_t; C_t the part of it that flows on to P_{t-1}.)
// Layouts: m, prefix [BH, T, d, d]; s0, s1 [BH, d, d]; all row-major and contiguous. Prefixes are stored in the
// input's type and accumulated in acc_t (float, double for double); states are acc_t. The backward pass reads the
// forward prefixes instead of recomputing them (for half inputs it thus sees them rounded to half).
//
// This header holds the per-row math shared by the CPU and CUDA kernels, and the CPU kernels: one task per
// sequence, a sequential product whose d x d matmuls are written as rows of axpys (out_row += a * in_row), so that
// the innermost loop runs over contiguous columns and vectorises; d in {1, 2, 4, 8, 16, 32} is a template parameter
// (loops fully unrolled, several rows in flight), any other d takes the same code with a runtime size.
#ifndef LRNN_KERNELS_MRU_SCAN_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_MRU_SCAN_H

#include <type_traits>
#include <vector>

#include "common.h"

#if defined(__linux__) && !defined(__CUDA_ARCH__)
#include <sys/mman.h>
#endif

LRNN_ISA_BEGIN

constexpr int kMruMaxCudaD = 32;             // the CUDA kernels hold a matrix in one warp's registers
constexpr int64_t kMruCpuChunkElems = 8192;  // CPU backward: elements staged per stream and chunk (32 KB floats)

// out[0, n) += a * row[0, n): one row of a matrix product, accumulated over the inner index.
template <int N, typename A>
LRNN_HD void mru_axpy(A* __restrict__ out, A a, const A* __restrict__ row) {
#pragma unroll
  for (int j = 0; j < N; ++j) out[j] += a * row[j];
}

#ifndef __CUDA_ARCH__
namespace mru_cpu {

// A matrix-sized scratch buffer: on the stack for a compile-time size D, on the heap for D == 0 (runtime size).
template <typename A, int D>
struct Buf {
  alignas(64) A v[D * D > 0 ? D * D : 1];
  explicit Buf(int) {}
  A* data() { return v; }
};
template <typename A>
struct Buf<A, 0> {
  std::vector<A> v;
  explicit Buf(int n) : v(static_cast<size_t>(n) * n) {}
  A* data() { return v.data(); }
};

// Rows computed together: up to eight 32-byte vectors of accumulators (independent FMA chains that hide the FMA
// latency, few enough to stay in registers), at most 4 rows. float: D = 1, 2, 4, 8, 16, 32 -> 1, 2, 4, 4, 4, 2.
template <int D, typename A>
constexpr int row_block() {
  constexpr int vectors_per_row = (D * static_cast<int>(sizeof(A)) + 31) / 32;
  constexpr int r = 8 / vectors_per_row > 4 ? 4 : (8 / vectors_per_row < 1 ? 1 : 8 / vectors_per_row);
  return D <= 0 ? 1 : (r < D ? r : D);
}

// dst = src as acc_t; returns src itself when no conversion is needed.
template <typename A, typename T>
inline const A* as_acc(const T* src, int64_t count, A* dst) {
  if constexpr (std::is_same<A, T>::value) {
    return src;
  } else {
    for (int64_t i = 0; i < count; ++i) dst[i] = load<A>(src, i);
    return dst;
  }
}

template <typename T, typename A>
inline void store_matrix(T* dst, const A* src, int64_t count) {
  if constexpr (std::is_same<A, T>::value) {
    std::memcpy(dst, src, count * sizeof(A));
  } else {
    for (int64_t i = 0; i < count; ++i) store(dst, i, src[i]);
  }
}

// out = x @ y, or x^T @ y with XT, for n x n row-major matrices (no aliasing). Each block of RB output rows is
// accumulated in registers as axpys over the rows of y, the first term initialising the accumulators. Not inlined:
// inlined into its callers, gcc interleaved the row blocks and spilled accumulators (2-3x slower); this shape ran
// at about two FMA vectors per cycle for D = 8, 16 and 32.
template <int D, bool XT, typename A>
__attribute__((noinline)) void matmul(int n_rt, const A* __restrict__ x, const A* __restrict__ y, A* __restrict__ out) {
  if constexpr (D > 0) {
    constexpr int RB = row_block<D, A>();
    for (int i0 = 0; i0 < D; i0 += RB) {
      A acc[RB][D];
#pragma GCC unroll 4
      for (int r = 0; r < RB; ++r) {
        const A a = XT ? x[i0 + r] : x[(i0 + r) * D];
        for (int j = 0; j < D; ++j) acc[r][j] = a * y[j];
      }
#pragma GCC unroll 32
      for (int k = 1; k < D; ++k)
#pragma GCC unroll 4
        for (int r = 0; r < RB; ++r) mru_axpy<D>(acc[r], XT ? x[k * D + i0 + r] : x[(i0 + r) * D + k], y + k * D);
      for (int r = 0; r < RB; ++r)
        for (int j = 0; j < D; ++j) out[(i0 + r) * D + j] = acc[r][j];
    }
  } else {
    const int n = n_rt;
    for (int i = 0; i < n; ++i) {
      A* __restrict__ acc = out + i * n;
      for (int j = 0; j < n; ++j) acc[j] = A(0);
      for (int k = 0; k < n; ++k) {
        const A a = XT ? x[k * n + i] : x[i * n + k];
        const A* __restrict__ yk = y + k * n;
        for (int j = 0; j < n; ++j) acc[j] += a * yk[j];
      }
    }
  }
}

// out = src^T as acc_t. The loop order that gcc compiled fastest: contiguous stores for D <= 16, contiguous loads
// for larger D.
template <int D, typename A, typename T>
inline void transpose(int n_rt, const T* __restrict__ src, A* __restrict__ out) {
  const int n = D > 0 ? D : n_rt;
  if constexpr (D > 0 && D <= 16) {
    for (int j = 0; j < D; ++j)
      for (int i = 0; i < D; ++i) out[j * D + i] = load<A>(src, i * D + j);
  } else {
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) out[j * n + i] = load<A>(src, i * n + j);
  }
}

template <typename A, typename T>
inline void copy_to_acc(const T* __restrict__ src, int64_t count, A* __restrict__ out) {
  for (int64_t i = 0; i < count; ++i) out[i] = load<A>(src, i);
}

// One sequence forward: s = s0, then s = s @ M_t, stored every step.
template <typename scalar_t, int D>
void forward_task(int64_t T, int n_rt, const scalar_t* m, const acc_t<scalar_t>* s0, scalar_t* prefix,
                  acc_t<scalar_t>* s1) {
  using A = acc_t<scalar_t>;
  const int n = D > 0 ? D : n_rt;
  const int64_t nn = static_cast<int64_t>(n) * n;
  Buf<A, D> buf0(n), buf1(n), conv(n);
  A *s = buf0.data(), *next = buf1.data();
  std::memcpy(s, s0, nn * sizeof(A));
  for (int64_t t = 0; t < T; ++t) {
    matmul<D, false>(n, s, as_acc<A>(m + t * nn, nn, conv.data()), next);
    std::swap(s, next);
    store_matrix(prefix + t * nn, s, nn);
  }
  std::memcpy(s1, s, nn * sizeof(A));
}

// One sequence backward (recurrences in the header comment); g and gs1 may be null. The sequence is walked in chunks
// from the end; each chunk's inputs are first staged in ascending time order (M_t^T, P_{t-1}^T, G_t as acc_t),
// since memory streams read backwards ran at half the bandwidth, then the recurrence runs backwards over the
// cache-resident chunk and the gradients are written out ascending. Per step: one transpose, two matmuls.
template <typename scalar_t, int D>
void backward_task(int64_t T, int n_rt, const scalar_t* m, const acc_t<scalar_t>* s0, const scalar_t* prefix,
                   const scalar_t* g, const acc_t<scalar_t>* gs1, scalar_t* gm, acc_t<scalar_t>* gs0) {
  using A = acc_t<scalar_t>;
  const int n = D > 0 ? D : n_rt;
  const int64_t nn = static_cast<int64_t>(n) * n;
  const int64_t K = std::max<int64_t>(1, std::min<int64_t>(T, kMruCpuChunkElems / nn));
  std::vector<A> staged(3 * K * nn);
  A *mt = staged.data(), *pp = mt + K * nn, *gd = pp + K * nn;  // M_t^T, P_{t-1}, G_t (overwritten by dM_t)
  Buf<A, D> c(n), b(n);
  if (gs1) {
    std::memcpy(c.data(), gs1, nn * sizeof(A));
  } else {
    std::fill(c.data(), c.data() + nn, A(0));
  }
  for (int64_t end = T; end > 0; end -= K) {
    const int64_t t0 = std::max<int64_t>(0, end - K), len = end - t0;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t t = t0 + i;
      transpose<D>(n, m + t * nn, mt + i * nn);
      if (t > 0) {
        copy_to_acc(prefix + (t - 1) * nn, nn, pp + i * nn);
      } else {
        copy_to_acc(s0, nn, pp + i * nn);
      }
      if (g) {
        copy_to_acc(g + t * nn, nn, gd + i * nn);
      } else {
        std::fill(gd + i * nn, gd + (i + 1) * nn, A(0));
      }
    }
    for (int64_t i = len - 1; i >= 0; --i) {
      A *bt = b.data(), *ct = c.data(), *gdi = gd + i * nn;
      for (int64_t e = 0; e < nn; ++e) bt[e] = gdi[e] + ct[e];  // B_t = G_t + C_{t+1}
      matmul<D, false>(n, bt, mt + i * nn, ct);                 // C_t = B_t M_t^T
      matmul<D, true>(n, pp + i * nn, bt, gdi);                 // dM_t = P_{t-1}^T B_t
    }
    store_matrix(gm + t0 * nn, gd, len * nn);
  }
  std::memcpy(gs0, c.data(), nn * sizeof(A));
}

// Asks Linux for transparent huge pages on the 2 MB-aligned interior of a large output buffer that is about to be
// written for the first time. Paddle's CPU allocator hands out fresh mmap'ed memory for big tensors, and faulting
// in a 64 MB output 4 KB at a time cost about as much as computing it; with THP in "madvise" mode this makes it
// 2 MB at a time. Advisory only: errors are ignored, and memory that is already mapped is unaffected.
inline void advise_huge_pages(void* p, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < 4 * static_cast<int64_t>(kHuge)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

template <typename F>
inline void dispatch_d(int d, F&& fn) {
  switch (d) {
    case 1:
      fn(std::integral_constant<int, 1>());
      break;
    case 2:
      fn(std::integral_constant<int, 2>());
      break;
    case 4:
      fn(std::integral_constant<int, 4>());
      break;
    case 8:
      fn(std::integral_constant<int, 8>());
      break;
    case 16:
      fn(std::integral_constant<int, 16>());
      break;
    case 32:
      fn(std::integral_constant<int, 32>());
      break;
    default:
      fn(std::integral_constant<int, 0>());
  }
}

}  // namespace mru_cpu

// BH sequences of T steps of d x d matrices. One task per sequence.
template <typename scalar_t>
void mru_scan_forward_cpu(int64_t BH, int64_t T, int d, const scalar_t* m, const acc_t<scalar_t>* s0, scalar_t* prefix,
                          acc_t<scalar_t>* s1) {
  const int64_t nn = static_cast<int64_t>(d) * d;
  mru_cpu::advise_huge_pages(prefix, BH * T * nn * static_cast<int64_t>(sizeof(scalar_t)));
  mru_cpu::dispatch_d(d, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    parallel_for(
        BH,
        [&](int64_t s) {
          mru_cpu::forward_task<scalar_t, D>(T, d, m + s * T * nn, s0 + s * nn, prefix + s * T * nn, s1 + s * nn);
        },
        2.0 * BH * T * nn * d);
  });
}

// g (dL/dprefix) and gs1 (dL/dS1) may be null: that output does not reach the loss.
template <typename scalar_t>
void mru_scan_backward_cpu(int64_t BH, int64_t T, int d, const scalar_t* m, const acc_t<scalar_t>* s0,
                           const scalar_t* prefix, const scalar_t* g, const acc_t<scalar_t>* gs1, scalar_t* gm,
                           acc_t<scalar_t>* gs0) {
  const int64_t nn = static_cast<int64_t>(d) * d;
  mru_cpu::advise_huge_pages(gm, BH * T * nn * static_cast<int64_t>(sizeof(scalar_t)));
  mru_cpu::dispatch_d(d, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    parallel_for(
        BH,
        [&](int64_t s) {
          mru_cpu::backward_task<scalar_t, D>(T, d, m + s * T * nn, s0 + s * nn, prefix + s * T * nn,
                                              g ? g + s * T * nn : nullptr, gs1 ? gs1 + s * nn : nullptr,
                                              gm + s * T * nn, gs0 + s * nn);
        },
        6.0 * BH * T * nn * d);
  });
}
#endif

LRNN_ISA_END

#endif  // LRNN_KERNELS_MRU_SCAN_H
