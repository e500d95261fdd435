// CUDA kernels for the MRU scan (math and layouts in mru_scan.h). One block per (batch, head) sequence, one launch
// for the forward pass and one for the backward pass, any T, d <= 32.
//
// Work split. A warp owns one d x d matrix: its lanes hold row segments (layout below) and multiply by a matrix
// staged in the warp's shared memory, taking the other lanes' row elements by shuffles. The block's W warps walk
// the sequence in rounds of W * C steps, warp w owning the C consecutive steps [(r W + w) C, (r W + w + 1) C):
//   1. each warp multiplies out its chunk sequentially (the chunk "total");
//   2. a Hillis-Steele scan over the W totals in shared memory (log2 W stages) gives every warp the product of all
//      earlier steps, the carry from earlier rounds included (warp 0 starts step 1 from that carry);
//   3. each warp redoes its chunk from its carry-in, writing every prefix. The carry-in multiplies the local
//      products on the LEFT: the product does not commute.
// That is about 2 matmuls per step instead of 1, for a depth of 2C + log2 W matmuls per W C steps; re-reading
// the round's M in step 3 hits L2 (a round is W C matrices). Every warp runs the same number of steps (those
// past T are skipped warp-uniformly), so the per-step __syncthreads that guards the staging buffers is uniform.
//
// The backward pass is the same scheme run from the end of the sequence on the affine maps of the carry,
// C -> C U + L per chunk, with U = M_b^T ... M_a^T (steps b down to a) and L the chunk's carry from zero: step 1
// builds (U, L) per warp (2 matmuls per step), step 2 composes them right to left, step 3 redoes the chunk from
// its carry-in: B_t = G_t + C_{t+1} (staged in shared memory), C_t = B_t M_t^T, and dM_t = P_{t-1}^T B_t with
// P_{t-1} read from the forward's prefix output (column i per lane, coalesced) or S0.
//
// Deterministic: fixed association order, no atomics. Written in the CUDA subset the CPU emulation runs (static
// shared arrays, full-warp shuffles, __syncthreads, LRNN_LAUNCH).
#pragma once

#include "common.cuh"
#include "mru_scan.h"

namespace lrnn {

constexpr int kMruChunk = 16;             // most steps per warp and round
constexpr int kMruSmemBytes = 48 * 1024;  // static shared memory per block
constexpr unsigned kMruFullMask = 0xffffffffu;

// A d x d matrix runs in the top-left corner of a D x D frame (D = 4, 8, 16, 32: the next one >= d), zeros
// elsewhere: block-diagonal zero padding is closed under products, so nothing leaks into the d x d block.
// Warp layout of the D x D matrix: lane q (of ACTIVE lanes)
// holds row i = q / R, columns [j0, j0 + E) with j0 = (q % R) E; R lanes share a row. For D = 4 only 16 lanes hold
// distinct elements; lanes 16..31 mirror lanes 0..15 (they compute the same values and never store).
template <int D>
struct MruLayout {
  static constexpr int R = D >= 8 ? 32 / D : D;  // lanes per row: 4, 4, 2, 1
  static constexpr int E = D / R;                // columns per lane: 1, 2, 8, 32
  static constexpr int ACTIVE = D * R;           // 16, 32, 32, 32
  static constexpr int V = E >= 4 ? 4 : E;       // elements per shared-memory load
  static constexpr int NP = D * D / V;           // packs per matrix
  static constexpr int NL = (D * D + 31) / 32;   // elements per lane when a matrix is loaded coalesced
};

// V consecutive elements, aligned so that one shared-memory load fetches them.
template <typename A, int V>
struct __align__(sizeof(A) * V) MruPack {
  A v[V];
};

// Warps per block such that one carry matrix plus `per_warp` matrices per warp fit in static shared memory, at most
// kMruMaxWarps: more warps would cap the registers per thread below what D = 16 needs without spilling (ptxas).
constexpr int kMruMaxWarps = 8;
constexpr int mru_fit_warps(int mat_bytes, int per_warp) {
  return (kMruSmemBytes / mat_bytes - 1) / per_warp < 1              ? 1
         : (kMruSmemBytes / mat_bytes - 1) / per_warp > kMruMaxWarps ? kMruMaxWarps
                                                                     : (kMruSmemBytes / mat_bytes - 1) / per_warp;
}

// float: D = 4, 8, 16 -> 8 warps forward and backward; D = 32 -> 5 and 3.
template <typename scalar_t, int D>
struct MruConfig {
  using A = acc_t<scalar_t>;
  static constexpr int kMatBytes = D * D * static_cast<int>(sizeof(A));
  static constexpr int kStages = D <= 16 ? 2 : 1;  // staging buffers per warp: 2 save one barrier per step
  static constexpr int kFwdWarps = mru_fit_warps(kMatBytes, kStages + 1);  // staging + chunk total
  static constexpr int kBwdWarps = mru_fit_warps(kMatBytes, kStages + 2);  // staging + (U, L), reused for B
};

template <typename T>
__device__ __forceinline__ acc_t<T> mru_ld(const T* p, int64_t i) {
  return static_cast<acc_t<T>>(Conv<T>::to(p[i]));
}

// This lane's coordinates in the layout.
template <int D>
struct MruLane {
  int i, j0;
  bool writer;  // holds distinct elements (stores them)
  __device__ __forceinline__ explicit MruLane(int lane) {
    using L = MruLayout<D>;
    const int q = lane % L::ACTIVE;
    i = q / L::R;
    j0 = (q % L::R) * L::E;
    writer = lane < L::ACTIVE;
  }
};

// x = diag * I (row segment).
template <int D, typename A>
__device__ __forceinline__ void mru_fill_diag(const MruLane<D>& ln, A (&x)[MruLayout<D>::E], A diag) {
#pragma unroll
  for (int e = 0; e < MruLayout<D>::E; ++e) x[e] = ln.j0 + e == ln.i ? diag : A(0);
}

// Row segment <-> shared memory.
template <int D, typename A, typename P>
__device__ __forceinline__ void mru_seg_load(const P* mat, const MruLane<D>& ln, A (&x)[MruLayout<D>::E]) {
  using L = MruLayout<D>;
#pragma unroll
  for (int p = 0; p < L::E / L::V; ++p) {
    const P pk = mat[(ln.i * D + ln.j0) / L::V + p];
#pragma unroll
    for (int u = 0; u < L::V; ++u) x[p * L::V + u] = pk.v[u];
  }
}
template <int D, typename A, typename P>
__device__ __forceinline__ void mru_seg_store(P* mat, const MruLane<D>& ln, const A (&x)[MruLayout<D>::E]) {
  using L = MruLayout<D>;
  if (!ln.writer) return;
#pragma unroll
  for (int p = 0; p < L::E / L::V; ++p) {
    P pk;
#pragma unroll
    for (int u = 0; u < L::V; ++u) pk.v[u] = x[p * L::V + u];
    mat[(ln.i * D + ln.j0) / L::V + p] = pk;
  }
}

// Row segment <-> global memory (a d x d matrix in the top-left of the D x D frame; zeros outside).
template <int D, typename A, typename T>
__device__ __forceinline__ void mru_seg_read(const T* mat, int d, const MruLane<D>& ln, A (&x)[MruLayout<D>::E]) {
#pragma unroll
  for (int e = 0; e < MruLayout<D>::E; ++e) {
    const int c = ln.j0 + e;
    x[e] = (mat != nullptr && ln.i < d && c < d) ? mru_ld(mat, ln.i * d + c) : A(0);
  }
}
template <int D, typename A, typename T>
__device__ __forceinline__ void mru_seg_write(T* mat, int d, const MruLane<D>& ln, const A (&x)[MruLayout<D>::E]) {
  if (!ln.writer || ln.i >= d) return;
#pragma unroll
  for (int e = 0; e < MruLayout<D>::E; ++e) {
    const int c = ln.j0 + e;
    if (c < d) mat[ln.i * d + c] = Conv<T>::from(x[e]);
  }
}

// Row i of a matrix: from the warp's row segments (shuffles) or from shared memory (broadcast loads).
template <int D, typename A>
__device__ __forceinline__ void mru_row_gather(const A (&x)[MruLayout<D>::E], const MruLane<D>& ln, A (&row)[D]) {
  using L = MruLayout<D>;
#pragma unroll
  for (int k = 0; k < D; ++k) {
    if constexpr (L::R == 1) {
      row[k] = x[k];
    } else {
      row[k] = __shfl_sync(kMruFullMask, x[k % L::E], ln.i * L::R + k / L::E);
    }
  }
}
template <int D, typename A, typename P>
__device__ __forceinline__ void mru_row_load(const P* mat, int i, A (&row)[D]) {
  using L = MruLayout<D>;
#pragma unroll
  for (int p = 0; p < D / L::V; ++p) {
    const P pk = mat[(i * D) / L::V + p];
#pragma unroll
    for (int u = 0; u < L::V; ++u) row[p * L::V + u] = pk.v[u];
  }
}

// out = (row @ Y)[j0, j0 + E): the lane's segment of one output row, Y in shared memory.
template <int D, typename A, typename P>
__device__ __forceinline__ void mru_mul(const A (&row)[D], const P* __restrict__ y, const MruLane<D>& ln,
                                        A (&out)[MruLayout<D>::E]) {
  using L = MruLayout<D>;
#pragma unroll
  for (int e = 0; e < L::E; ++e) out[e] = A(0);
#pragma unroll
  for (int k = 0; k < D; ++k) {
#pragma unroll
    for (int p = 0; p < L::E / L::V; ++p) {
      const P pk = y[(k * D + ln.j0) / L::V + p];
      mru_axpy<L::V>(out + p * L::V, row[k], pk.v);
    }
  }
}

// out = (row @ Y^T)[j0, j0 + E), Y in shared memory (rows j0 .. j0 + E - 1 of Y, read along k).
template <int D, typename A, typename P>
__device__ __forceinline__ void mru_mul_t(const A (&row)[D], const P* __restrict__ y, const MruLane<D>& ln,
                                          A (&out)[MruLayout<D>::E]) {
  using L = MruLayout<D>;
#pragma unroll
  for (int e = 0; e < L::E; ++e) out[e] = A(0);
#pragma unroll
  for (int kp = 0; kp < D / L::V; ++kp) {
#pragma unroll
    for (int e = 0; e < L::E; ++e) {
      const P pk = y[((ln.j0 + e) * D) / L::V + kp];
#pragma unroll
      for (int u = 0; u < L::V; ++u) out[e] += row[kp * L::V + u] * pk.v[u];
    }
  }
}

// A matrix from global memory in the coalesced layout (element idx = e * 32 + lane), then into shared memory.
template <int D, typename A, typename T>
__device__ __forceinline__ void mru_fetch(const T* mat, int d, int lane, A (&buf)[MruLayout<D>::NL]) {
#pragma unroll
  for (int e = 0; e < MruLayout<D>::NL; ++e) {
    const int idx = e * 32 + lane, r = idx / D, c = idx % D;
    buf[e] = (idx < D * D && r < d && c < d) ? mru_ld(mat, r * d + c) : A(0);
  }
}
template <int D, typename A, typename P>
__device__ __forceinline__ void mru_stage(P* mat, int lane, const A (&buf)[MruLayout<D>::NL]) {
  using L = MruLayout<D>;
#pragma unroll
  for (int e = 0; e < L::NL; ++e) {
    const int idx = e * 32 + lane;
    if (idx < D * D) mat[idx / L::V].v[idx % L::V] = buf[e];
  }
}

// Cooperative copies of one matrix by the whole block.
template <int D, typename A, typename P, typename T>
__device__ __forceinline__ void mru_block_read(P* dst, const T* src, int d) {
  using L = MruLayout<D>;
  for (int idx = threadIdx.x; idx < D * D; idx += blockDim.x) {
    const int r = idx / D, c = idx % D;
    dst[idx / L::V].v[idx % L::V] = (src != nullptr && r < d && c < d) ? static_cast<A>(src[r * d + c]) : A(0);
  }
}
template <int D, typename P, typename A>
__device__ __forceinline__ void mru_block_write(A* dst, const P* src, int d) {
  using L = MruLayout<D>;
  for (int idx = threadIdx.x; idx < D * D; idx += blockDim.x) {
    const int r = idx / D, c = idx % D;
    if (r < d && c < d) dst[r * d + c] = src[idx / L::V].v[idx % L::V];
  }
}
template <int D, typename P>
__device__ __forceinline__ void mru_block_copy(P* dst, const P* src) {
  for (int idx = threadIdx.x; idx < MruLayout<D>::NP; idx += blockDim.x) dst[idx] = src[idx];
}

// x <- x @ M_{t0} @ ... @ M_{t0+len-1}, and with out != null, prefix_t = x stored after every step. Called by every
// warp of the block with the same C >= len (a barrier per step); stage: this warp's kStages staging matrices.
template <typename scalar_t, int D, typename P>
__device__ __forceinline__ void mru_forward_chunk(const scalar_t* m, int64_t t0, int64_t len, int64_t C, int d,
                                                  int lane, const MruLane<D>& ln, P (*stage)[MruLayout<D>::NP],
                                                  acc_t<scalar_t> (&x)[MruLayout<D>::E], scalar_t* out) {
  using A = acc_t<scalar_t>;
  using L = MruLayout<D>;
  constexpr int NS = MruConfig<scalar_t, D>::kStages;
  const int64_t dd = static_cast<int64_t>(d) * d;
  A buf[L::NL];
  if (len > 0) {
    mru_fetch<D>(m + t0 * dd, d, lane, buf);
    mru_stage<D>(stage[0], lane, buf);
  }
  __syncthreads();
  for (int64_t s = 0; s < C; ++s) {
    const bool active = s < len, more = s + 1 < len;
    if (more) mru_fetch<D>(m + (t0 + s + 1) * dd, d, lane, buf);  // in flight during this step's product
    if (active) {
      A row[D];
      mru_row_gather<D>(x, ln, row);
      mru_mul<D>(row, stage[s % NS], ln, x);
      if (out != nullptr) mru_seg_write<D>(out + (t0 + s) * dd, d, ln, x);
    }
    if (NS == 1) __syncthreads();  // one buffer: everyone has read it before it is refilled
    if (more) mru_stage<D>(stage[(s + 1) % NS], lane, buf);
    __syncthreads();
  }
}

template <typename scalar_t, int D>
__global__ void __launch_bounds__(32 * MruConfig<scalar_t, D>::kFwdWarps)
    mru_scan_forward_kernel(int64_t T, int d, const scalar_t* __restrict__ m, const acc_t<scalar_t>* __restrict__ s0,
                            scalar_t* __restrict__ prefix, acc_t<scalar_t>* __restrict__ s1) {
  using A = acc_t<scalar_t>;
  using L = MruLayout<D>;
  using P = MruPack<A, L::V>;
  constexpr int W = MruConfig<scalar_t, D>::kFwdWarps, NS = MruConfig<scalar_t, D>::kStages;
  static_assert((1 + W * (NS + 1)) * D * D * sizeof(A) <= kMruSmemBytes, "shared memory");
  __shared__ P carry[L::NP];         // S0 M_0 ... M_{t-1} for the first step t of the round
  __shared__ P total[W][L::NP];      // chunk products, then their inclusive scan
  __shared__ P stage[W][NS][L::NP];  // the next M of each warp
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const MruLane<D> ln(lane);
  const int64_t dd = static_cast<int64_t>(d) * d, seq = blockIdx.x;
  m += seq * T * dd;
  prefix += seq * T * dd;
  const int64_t C = T < W * kMruChunk ? (T + W - 1) / W : kMruChunk;
  const int64_t rounds = (T + W * C - 1) / (W * C);

  mru_block_read<D, A>(carry, s0 + seq * dd, d);
  __syncthreads();
  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t t0 = (r * W + warp) * C;
    const int64_t len = T - t0 < 0 ? 0 : (T - t0 < C ? T - t0 : C);
    A x[L::E];
    // 1. chunk total (warp 0 starts from the carry, so that the scan includes it)
    if (warp == 0) {
      mru_seg_load<D>(carry, ln, x);
    } else {
      mru_fill_diag<D>(ln, x, A(1));
    }
    mru_forward_chunk<scalar_t, D>(m, t0, len, C, d, lane, ln, stage[warp], x, static_cast<scalar_t*>(nullptr));
    mru_seg_store<D>(total[warp], ln, x);
    __syncthreads();
    // 2. inclusive scan: total[w] <- total[w - off] @ total[w], earlier product on the left
    for (int off = 1; off < W; off <<= 1) {
      const bool update = warp >= off;
      A y[L::E];
      if (update) {
        A row[D];
        mru_row_load<D>(total[warp - off], ln.i, row);
        mru_mul<D>(row, total[warp], ln, y);
      }
      __syncthreads();
      if (update) mru_seg_store<D>(total[warp], ln, y);
      __syncthreads();
    }
    // 3. the chunk again from its carry-in, storing every prefix
    mru_seg_load<D>(warp == 0 ? carry : total[warp - 1], ln, x);
    __syncthreads();
    mru_block_copy<D>(carry, total[W - 1]);  // the next round's carry; read after the barriers below
    mru_forward_chunk<scalar_t, D>(m, t0, len, C, d, lane, ln, stage[warp], x, prefix);
  }
  __syncthreads();
  mru_block_write<D>(s1 + seq * dd, carry, d);
}

// Column i of P_{t-1} (S0 for t = 0): pcol[k] = P_{t-1}[k][i]. The lanes of one row read consecutive addresses.
template <int D, typename A, typename T>
__device__ __forceinline__ void mru_prev_col(const A* s0, const T* prefix, int64_t t, int d, const MruLane<D>& ln,
                                             A (&pcol)[D]) {
  const int64_t dd = static_cast<int64_t>(d) * d;
#pragma unroll
  for (int k = 0; k < D; ++k) {
    const bool in = k < d && ln.i < d;
    pcol[k] = !in ? A(0) : (t == 0 ? s0[k * d + ln.i] : mru_ld(prefix + (t - 1) * dd, k * d + ln.i));
  }
}

// Backward over one chunk, steps t0 + len - 1 down to t0 (every warp with the same C >= len, a barrier per step).
// Phase 1 (bwork == null): u <- u M_t^T and l <- (G_t + l) M_t^T.
// Phase 3: b = G_t + c is staged in bwork[s % 2], c <- b M_t^T, and dM_t = P_{t-1}^T b is stored.
template <typename scalar_t, int D, typename P>
__device__ __forceinline__ void mru_backward_chunk(const scalar_t* m, const acc_t<scalar_t>* s0, const scalar_t* prefix,
                                                   const scalar_t* gp, scalar_t* gm, int64_t t0, int64_t len, int64_t C,
                                                   int d, int lane, const MruLane<D>& ln, P (*stage)[MruLayout<D>::NP],
                                                   P (*bwork)[MruLayout<D>::NP], acc_t<scalar_t> (&u)[MruLayout<D>::E],
                                                   acc_t<scalar_t> (&c)[MruLayout<D>::E]) {
  using A = acc_t<scalar_t>;
  using L = MruLayout<D>;
  constexpr int NS = MruConfig<scalar_t, D>::kStages;
  constexpr bool kPrefetch = D <= 16;  // load G_t and P_{t-1} a step early (D = 32: too many registers)
  const int64_t dd = static_cast<int64_t>(d) * d;
  A buf[L::NL], g[L::E];
  if (len > 0) {
    const int64_t t = t0 + len - 1;
    mru_fetch<D>(m + t * dd, d, lane, buf);
    mru_stage<D>(stage[0], lane, buf);
    if (kPrefetch) mru_seg_read<D>(gp == nullptr ? gp : gp + t * dd, d, ln, g);
  }
  __syncthreads();
  for (int64_t s = 0; s < C; ++s) {
    const int64_t t = t0 + len - 1 - s;
    const bool active = s < len, more = s + 1 < len;
    if (more) mru_fetch<D>(m + (t - 1) * dd, d, lane, buf);
    A pcol[D];
    if (active) {
      const P* mt = stage[s % NS];
      A b[L::E], row[D];
      if (!kPrefetch) mru_seg_read<D>(gp == nullptr ? gp : gp + t * dd, d, ln, g);
#pragma unroll
      for (int e = 0; e < L::E; ++e) b[e] = g[e] + c[e];
      if (bwork != nullptr) mru_seg_store<D>(bwork[s % 2], ln, b);
      mru_row_gather<D>(b, ln, row);
      mru_mul_t<D>(row, mt, ln, c);
      if (bwork == nullptr) {
        mru_row_gather<D>(u, ln, row);
        mru_mul_t<D>(row, mt, ln, u);
      } else if (kPrefetch) {
        mru_prev_col<D>(s0, prefix, t, d, ln, pcol);  // in flight across the barrier
      }
      if (kPrefetch && more) mru_seg_read<D>(gp == nullptr ? gp : gp + (t - 1) * dd, d, ln, g);
    }
    if (NS == 1) __syncthreads();
    if (more) mru_stage<D>(stage[(s + 1) % NS], lane, buf);
    __syncthreads();
    if (active && bwork != nullptr) {
      A dm[L::E];
      if (!kPrefetch) mru_prev_col<D>(s0, prefix, t, d, ln, pcol);
      mru_mul<D>(pcol, bwork[s % 2], ln, dm);
      mru_seg_write<D>(gm + t * dd, d, ln, dm);
    }
  }
}

template <typename scalar_t, int D>
__global__ void __launch_bounds__(32 * MruConfig<scalar_t, D>::kBwdWarps)
    mru_scan_backward_kernel(int64_t T, int d, const scalar_t* __restrict__ m, const acc_t<scalar_t>* __restrict__ s0,
                             const scalar_t* __restrict__ prefix, const scalar_t* __restrict__ gp,
                             const acc_t<scalar_t>* __restrict__ gs1, scalar_t* __restrict__ gm,
                             acc_t<scalar_t>* __restrict__ gs0) {
  using A = acc_t<scalar_t>;
  using L = MruLayout<D>;
  using P = MruPack<A, L::V>;
  constexpr int W = MruConfig<scalar_t, D>::kBwdWarps, NS = MruConfig<scalar_t, D>::kStages;
  static_assert((1 + W * (NS + 2)) * D * D * sizeof(A) <= kMruSmemBytes, "shared memory");
  __shared__ P carry[L::NP];         // C at the end of the round (the gradient flowing in from later steps)
  __shared__ P work[W][2][L::NP];    // (U, L) of each chunk in phases 1-2; B_t, double-buffered, in phase 3
  __shared__ P stage[W][NS][L::NP];  // the next M of each warp
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const MruLane<D> ln(lane);
  const int64_t dd = static_cast<int64_t>(d) * d, seq = blockIdx.x;
  m += seq * T * dd;
  prefix += seq * T * dd;
  gm += seq * T * dd;
  if (gp != nullptr) gp += seq * T * dd;
  s0 += seq * dd;
  const int64_t C = T < W * kMruChunk ? (T + W - 1) / W : kMruChunk;
  const int64_t rounds = (T + W * C - 1) / (W * C);

  mru_block_read<D, A>(carry, gs1 == nullptr ? gs1 : gs1 + seq * dd, d);
  __syncthreads();
  for (int64_t r = rounds - 1; r >= 0; --r) {
    const int64_t t0 = (r * W + warp) * C;
    const int64_t len = T - t0 < 0 ? 0 : (T - t0 < C ? T - t0 : C);
    A u[L::E], c[L::E];
    // 1. the chunk's map C -> C U + L (the last warp starts L from the carry, so that the scan includes it)
    mru_fill_diag<D>(ln, u, A(1));
    if (warp == W - 1) {
      mru_seg_load<D>(carry, ln, c);
    } else {
      mru_fill_diag<D>(ln, c, A(0));
    }
    mru_backward_chunk<scalar_t, D>(m, s0, prefix, gp, gm, t0, len, C, d, lane, ln, stage[warp],
                                    static_cast<P(*)[L::NP]>(nullptr), u, c);
    mru_seg_store<D>(work[warp][0], ln, u);
    mru_seg_store<D>(work[warp][1], ln, c);
    __syncthreads();
    // 2. suffix scan: (U, L)[w] <- (U, L)[w] after (U, L)[w + off]: U <- U' U, L <- L' U + L
    for (int off = 1; off < W; off <<= 1) {
      const bool update = warp + off < W;
      A nu[L::E], nl[L::E];
      if (update) {
        A row[D], own[L::E];
        mru_row_load<D>(work[warp + off][0], ln.i, row);
        mru_mul<D>(row, work[warp][0], ln, nu);
        mru_row_load<D>(work[warp + off][1], ln.i, row);
        mru_mul<D>(row, work[warp][0], ln, nl);
        mru_seg_load<D>(work[warp][1], ln, own);
#pragma unroll
        for (int e = 0; e < L::E; ++e) nl[e] += own[e];
      }
      __syncthreads();
      if (update) {
        mru_seg_store<D>(work[warp][0], ln, nu);
        mru_seg_store<D>(work[warp][1], ln, nl);
      }
      __syncthreads();
    }
    // 3. the chunk again from its carry-in, storing dM
    mru_seg_load<D>(warp == W - 1 ? carry : work[warp + 1][1], ln, c);
    __syncthreads();
    mru_block_copy<D>(carry, work[0][1]);  // the next round's carry; read after the barriers below
    mru_backward_chunk<scalar_t, D>(m, s0, prefix, gp, gm, t0, len, C, d, lane, ln, stage[warp], work[warp], u, c);
  }
  __syncthreads();
  mru_block_write<D>(gs0 + seq * dd, carry, d);
}

template <typename F>
inline cudaError_t mru_dispatch_cuda_d(int d, F&& fn) {
  if (d <= 4) return fn(std::integral_constant<int, 4>());
  if (d <= 8) return fn(std::integral_constant<int, 8>());
  if (d <= 16) return fn(std::integral_constant<int, 16>());
  if (d <= 32) return fn(std::integral_constant<int, 32>());
  return cudaErrorInvalidValue;
}

// BH sequences of T steps of d x d matrices (d <= 32): one block per sequence.
template <typename scalar_t>
cudaError_t mru_scan_forward_cuda(int64_t BH, int64_t T, int d, const scalar_t* m, const acc_t<scalar_t>* s0,
                                  scalar_t* prefix, acc_t<scalar_t>* s1, cudaStream_t stream) {
  if (BH < 1 || BH > 2147483647 || T < 1 || d < 1) return cudaErrorInvalidValue;
  return mru_dispatch_cuda_d(d, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    const int threads = 32 * MruConfig<scalar_t, D>::kFwdWarps;
    LRNN_LAUNCH(static_cast<unsigned>(BH), threads, 0, stream, mru_scan_forward_kernel<scalar_t, D>)(T, d, m, s0,
                                                                                                     prefix, s1);
    return cudaGetLastError();
  });
}

// gp (dL/dprefix) and gs1 (dL/dS1) may be null: that output does not reach the loss.
template <typename scalar_t>
cudaError_t mru_scan_backward_cuda(int64_t BH, int64_t T, int d, const scalar_t* m, const acc_t<scalar_t>* s0,
                                   const scalar_t* prefix, const scalar_t* gp, const acc_t<scalar_t>* gs1, scalar_t* gm,
                                   acc_t<scalar_t>* gs0, cudaStream_t stream) {
  if (BH < 1 || BH > 2147483647 || T < 1 || d < 1) return cudaErrorInvalidValue;
  return mru_dispatch_cuda_d(d, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    const int threads = 32 * MruConfig<scalar_t, D>::kBwdWarps;
    LRNN_LAUNCH(static_cast<unsigned>(BH), threads, 0, stream, mru_scan_backward_kernel<scalar_t, D>)(
        T, d, m, s0, prefix, gp, gs1, gm, gs0);
    return cudaGetLastError();
  });
}

}  // namespace lrnn
