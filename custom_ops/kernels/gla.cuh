// CUDA kernels for GLA (math and layouts in gla.h). Two algorithms; the launchers pick one by T:
//
// Recurrent (T <= kGlaRecurrentMaxT, decoding; and every T for float64): one block per (64-row K tile, 32-column
// V tile, batch*head) keeps its state tile in registers (warp w holds rows 16w..16w+15, lane = column) and walks
// the sequence, staging kGlaRecSteps tokens in shared memory at a time. Sums over K tiles (o, dv) and over V tiles
// (dq, dk) go to per-tile partial buffers that later kernels add in a fixed order.
//
// Chunked (T > kGlaRecurrentMaxT): chunks of kGlaChunk = 64 tokens with chunk-local fp32 gate cumsums G (G_t =
// sum of g over the chunk up to and including t; non-increasing since g <= 0). Per chunk, with h the state before
// it and G_L the cumsum at its last token:
//   o_i   = scale (q_i * e^{G_i}) h + sum_{j <= i} A_ij v_j,   A_ij = scale sum_k q_ik k_jk e^{G_ik - G_jk}
//   h'    = e^{G_L} * h + sum_j (k_j * e^{G_L - G_j})^T v_j
// Every exponent is kept <= 0, so no tile ever overflows whatever the gates: between different 16-token sub-chunks
// (query sub-chunk a > key sub-chunk b) e^{G_i - G_j} = e^{G_i - G_{16a}} e^{G_{16a} - G_{16(b+1)}} e^{G_{16(b+1)} -
// G_j} (three factors <= 1, the middle one per column and sub-chunk pair); inside a sub-chunk the exact pairwise
// difference G_i - G_j is exponentiated per element. A factor that underflows to 0 bounds a true term below 1e-38.
// Forward: cumsum -> chunk states h (sequential over chunks, parallel over tiles) -> scores A -> outputs.
// Backward recomputes the cumsums, the states and A (nothing but o and the final state is kept from the forward),
// and adds dA_ij = scale do_i . v_j, a reverse pass for dH (the gradient w.r.t. the state at each chunk end),
//   dv_j = sum_{i >= j} A_ij do_i + (k_j * e^{G_L - G_j}) dH,
//   dq_i = scale e^{G_i} * (do_i h^T) + sum_{j <= i} dA_ij k_j * e^{G_i - G_j},
//   dk_j = e^{G_L - G_j} * (v_j dH^T) + sum_{i >= j} dA_ij q_i * e^{G_i - G_j},
// and dg from the reverse running sum of q * dq - k * dk over the whole sequence (gla.h), done as chunk-local sums
// plus a suffix over chunk totals. Every sum runs in a fixed order: same inputs give bitwise the same outputs.
//
// Only float accumulation (float, half, bfloat16 storage) takes the chunked path; float64 always runs recurrent.
#pragma once

#include <type_traits>

#include "common.cuh"
#include "gla.h"

namespace lrnn {

constexpr int kGlaRecurrentMaxT = 64;  // T up to this runs the recurrent kernels
constexpr int kGlaRecK = 64, kGlaRecV = 32, kGlaRecThreads = 128;
constexpr int kGlaChunk = 64, kGlaSub = 16, kGlaTile = 32, kGlaThreads = 256;
constexpr int kGlaPad = kGlaChunk + 1;  // row length of [tile][token] shared arrays (no bank conflicts on stores)
constexpr int kGlaTilePad = kGlaTile + 1;
constexpr int kGlaFinThreads = 128;

// Tokens staged per step of the recurrent kernels: their shared arrays must fit 48 KiB for double too.
template <typename A>
struct GlaRecSteps {
  static constexpr int value = sizeof(A) == 8 ? 8 : 16;
};

template <typename scalar_t>
__device__ __forceinline__ acc_t<scalar_t> gla_ld(const scalar_t* p, int64_t i) {
  return Conv<scalar_t>::to(p[i]);
}

// Index of the middle factor of sub-chunk pair (a, b), b < a, in a [6][kGlaTile] array.
__device__ __forceinline__ int gla_pair(int a, int b) { return a * (a - 1) / 2 + b; }

// One step of gla_warp_sum16: lanes whose bit `2 kHalf` is set keep the upper half of the kHalf * 2 live rows and
// send the lower half to their partner, which does the opposite; each keeps the sum.
template <int kHalf, typename A>
__device__ __forceinline__ void gla_butterfly_step(A (&v)[16], int lane) {
  const bool upper = (lane & (2 * kHalf)) != 0;
#pragma unroll
  for (int r = 0; r < kHalf; ++r) {
    const A keep = upper ? v[r + kHalf] : v[r];
    const A send = upper ? v[r] : v[r + kHalf];
    v[r] = keep + __shfl_xor_sync(0xffffffffu, send, 2 * kHalf);
  }
}

// Sums each of the 16 values v[] over the 32 lanes of a warp with 16 shuffles (a transposing butterfly; all lanes
// take part). Returns the sum of row gla_sum16_row(lane); lanes 2m and 2m+1 return the same row.
template <typename A>
__device__ __forceinline__ A gla_warp_sum16(A (&v)[16], int lane) {
  gla_butterfly_step<8>(v, lane);
  gla_butterfly_step<4>(v, lane);
  gla_butterfly_step<2>(v, lane);
  gla_butterfly_step<1>(v, lane);
  return v[0] + __shfl_xor_sync(0xffffffffu, v[0], 1);
}
__device__ __forceinline__ int gla_sum16_row(int lane) {
  return ((lane >> 4) & 1) * 8 + ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2 + ((lane >> 1) & 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Recurrent kernels. Grid: (B * H, ceil(V / 32), ceil(K / 64)); 128 threads.

// A 16-row slice of a state tile into registers: x[r] = src[bh, row0 + r, col], zero past K or V or where src is
// null (no state, no gradient).
template <typename A>
__device__ __forceinline__ void gla_recurrent_load_tile(A (&x)[16], const A* __restrict__ src, int64_t bh, int64_t K,
                                                        int64_t V, int64_t row0, int64_t col) {
#pragma unroll
  for (int r = 0; r < 16; ++r) x[r] = src && row0 + r < K && col < V ? src[(bh * K + row0 + r) * V + col] : A(0);
}

// Where the S tokens a recurrent kernel stages at a time come from: batch b, tokens t0.., head h; the block's K rows
// from k0 and V columns from v0.
struct GlaRecTokens {
  int64_t b, t0, h, T, H, K, V, k0, v0;
};

// Stages S tokens into shared memory. Over the block's K rows: ks = k, ds = e^g and, unless qs is null,
// qs = q_scale * q; over its V columns: vs = v and, unless dos is null, dos = go_scale * go (zero where go is null).
// Positions past T, K or V get a no-op step: zeros and a decay of 1.
template <int S, typename scalar_t>
__device__ __forceinline__ void gla_recurrent_stage(const GlaRecTokens& at, const scalar_t* __restrict__ q,
                                                    acc_t<scalar_t> q_scale, const scalar_t* __restrict__ k,
                                                    const scalar_t* __restrict__ g, const scalar_t* __restrict__ v,
                                                    const scalar_t* __restrict__ go, acc_t<scalar_t> go_scale,
                                                    acc_t<scalar_t> (*qs)[kGlaRecK], acc_t<scalar_t> (*ks)[kGlaRecK],
                                                    acc_t<scalar_t> (*ds)[kGlaRecK], acc_t<scalar_t> (*vs)[kGlaRecV],
                                                    acc_t<scalar_t> (*dos)[kGlaRecV]) {
  using A = acc_t<scalar_t>;
  for (int e = threadIdx.x; e < S * kGlaRecK; e += kGlaRecThreads) {
    const int s = e / kGlaRecK, c = e % kGlaRecK;
    const bool in = at.t0 + s < at.T && at.k0 + c < at.K;
    const int64_t i = in ? gla_row(at.b, at.t0 + s, at.h, at.T, at.H, at.K) + at.k0 + c : 0;
    if (qs) qs[s][c] = in ? q_scale * gla_ld(q, i) : A(0);
    ks[s][c] = in ? gla_ld(k, i) : A(0);
    ds[s][c] = in ? lrnn_exp(gla_ld(g, i)) : A(1);
  }
  for (int e = threadIdx.x; e < S * kGlaRecV; e += kGlaRecThreads) {
    const int s = e / kGlaRecV, c = e % kGlaRecV;
    const bool in = at.t0 + s < at.T && at.v0 + c < at.V;
    const int64_t i = in ? gla_row(at.b, at.t0 + s, at.h, at.T, at.H, at.V) + at.v0 + c : 0;
    vs[s][c] = in ? gla_ld(v, i) : A(0);
    if (dos) dos[s][c] = in && go ? go_scale * gla_ld(go, i) : A(0);
  }
}

// The sums over the block's 4 warps (its 64 K rows) of S staged tokens into part [B, T, H, V] (one K tile's part).
template <int S, typename A>
__device__ __forceinline__ void gla_recurrent_store_warp_sums(const A (*red)[4][kGlaRecV], A* __restrict__ part,
                                                              int64_t b, int64_t t0, int64_t h, int64_t T, int64_t H,
                                                              int64_t V, int64_t v0) {
  for (int e = threadIdx.x; e < S * kGlaRecV; e += kGlaRecThreads) {
    const int s = e / kGlaRecV, c = e % kGlaRecV;
    if (t0 + s < T && v0 + c < V)
      part[gla_row(b, t0 + s, h, T, H, V) + v0 + c] = red[s][0][c] + red[s][1][c] + red[s][2][c] + red[s][3][c];
  }
}

// o_part [ceil(K / 64), B, T, H, V]: the output summed over this block's K rows.
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaRecThreads)
    gla_recurrent_forward_kernel(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ q,
                                 const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                 const scalar_t* __restrict__ g, const acc_t<scalar_t>* __restrict__ s0,
                                 acc_t<scalar_t> scale, acc_t<scalar_t>* __restrict__ o_part,
                                 acc_t<scalar_t>* __restrict__ s1) {
  using A = acc_t<scalar_t>;
  constexpr int S = GlaRecSteps<A>::value;
  __shared__ A qs[S][kGlaRecK], ks[S][kGlaRecK], ds[S][kGlaRecK], vs[S][kGlaRecV], red[S][4][kGlaRecV];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t v0 = static_cast<int64_t>(blockIdx.y) * kGlaRecV, k0 = static_cast<int64_t>(blockIdx.z) * kGlaRecK;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, vv = v0 + lane;
  A st[16];
  gla_recurrent_load_tile(st, s0, bh, K, V, k0 + warp * 16, vv);
  for (int64_t t0 = 0; t0 < T; t0 += S) {
    __syncthreads();
    gla_recurrent_stage<S, scalar_t>({b, t0, h, T, H, K, V, k0, v0}, q, scale, k, g, v, nullptr, A(1), qs, ks, ds, vs,
                                     nullptr);
    __syncthreads();
#pragma unroll
    for (int s = 0; s < S; ++s) {
      A acc = 0;
#pragma unroll
      for (int r = 0; r < 16; ++r) {
        const int c = warp * 16 + r;
        st[r] = gla_update(st[r], ds[s][c], ks[s][c], vs[s][lane]);
        acc += qs[s][c] * st[r];
      }
      red[s][warp][lane] = acc;
    }
    __syncthreads();
    gla_recurrent_store_warp_sums<S>(red, o_part + blockIdx.z * B * T * H * V, b, t0, h, T, H, V, v0);
  }
#pragma unroll
  for (int r = 0; r < 16; ++r) {
    const int64_t kk = k0 + warp * 16 + r;
    if (kk < K && vv < V) s1[(bh * K + kk) * V + vv] = st[r];
  }
}

// Forward re-sweep of the backward pass: dq_part [ceil(V / 32), B, T, H, K] = scale do_t S_t^T over this block's
// V columns. go may be null.
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaRecThreads)
    gla_recurrent_dq_kernel(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ k,
                            const scalar_t* __restrict__ v, const scalar_t* __restrict__ g,
                            const acc_t<scalar_t>* __restrict__ s0, acc_t<scalar_t> scale,
                            const scalar_t* __restrict__ go, acc_t<scalar_t>* __restrict__ dq_part) {
  using A = acc_t<scalar_t>;
  constexpr int S = GlaRecSteps<A>::value;
  __shared__ A ks[S][kGlaRecK], ds[S][kGlaRecK], vs[S][kGlaRecV], dos[S][kGlaRecV];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t v0 = static_cast<int64_t>(blockIdx.y) * kGlaRecV, k0 = static_cast<int64_t>(blockIdx.z) * kGlaRecK;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, vv = v0 + lane;
  const int64_t krow = k0 + warp * 16 + gla_sum16_row(lane);  // the row whose sum this lane returns
  A st[16];
  gla_recurrent_load_tile(st, s0, bh, K, V, k0 + warp * 16, vv);
  for (int64_t t0 = 0; t0 < T; t0 += S) {
    __syncthreads();
    gla_recurrent_stage<S, scalar_t>({b, t0, h, T, H, K, V, k0, v0}, nullptr, A(1), k, g, v, go, scale, nullptr, ks,
                                     ds, vs, dos);
    __syncthreads();
#pragma unroll 1
    for (int s = 0; s < S; ++s) {
      A x[16];
#pragma unroll
      for (int r = 0; r < 16; ++r) {
        const int c = warp * 16 + r;
        st[r] = gla_update(st[r], ds[s][c], ks[s][c], vs[s][lane]);
        x[r] = dos[s][lane] * st[r];
      }
      const A sum = gla_warp_sum16(x, lane);
      if ((lane & 1) == 0 && t0 + s < T && krow < K)
        dq_part[blockIdx.y * B * T * H * K + gla_row(b, t0 + s, h, T, H, K) + krow] = sum;
    }
  }
}

// Reverse sweep: dk_part [ceil(V / 32), B, T, H, K], dv_part [ceil(K / 64), B, T, H, V] (partial sums over this
// block's columns and rows), gs0 = the gradient w.r.t. s0. go and gs1 may be null.
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaRecThreads)
    gla_recurrent_backward_kernel(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ q,
                                  const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                  const scalar_t* __restrict__ g, acc_t<scalar_t> scale,
                                  const scalar_t* __restrict__ go, const acc_t<scalar_t>* __restrict__ gs1,
                                  acc_t<scalar_t>* __restrict__ dk_part, acc_t<scalar_t>* __restrict__ dv_part,
                                  acc_t<scalar_t>* __restrict__ gs0) {
  using A = acc_t<scalar_t>;
  constexpr int S = GlaRecSteps<A>::value;
  __shared__ A qs[S][kGlaRecK], ks[S][kGlaRecK], ds[S][kGlaRecK], vs[S][kGlaRecV], dos[S][kGlaRecV],
      red[S][4][kGlaRecV];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t v0 = static_cast<int64_t>(blockIdx.y) * kGlaRecV, k0 = static_cast<int64_t>(blockIdx.z) * kGlaRecK;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, vv = v0 + lane;
  const int64_t krow = k0 + warp * 16 + gla_sum16_row(lane);
  A dst[16], dn[16];  // dS and the decay of the token after the current one
  gla_recurrent_load_tile(dst, gs1, bh, K, V, k0 + warp * 16, vv);
#pragma unroll
  for (int r = 0; r < 16; ++r) dn[r] = A(1);
  for (int64_t t0 = (T - 1) / S * S; t0 >= 0; t0 -= S) {
    __syncthreads();
    gla_recurrent_stage<S, scalar_t>({b, t0, h, T, H, K, V, k0, v0}, q, scale, k, g, v, go, A(1), qs, ks, ds, vs,
                                     dos);
    __syncthreads();
#pragma unroll 1
    for (int s = S - 1; s >= 0; --s) {
      A x[16];
      A acc = 0;
#pragma unroll
      for (int r = 0; r < 16; ++r) {
        const int c = warp * 16 + r;
        dst[r] = gla_grad_update(dst[r], dn[r], qs[s][c], dos[s][lane]);
        x[r] = dst[r] * vs[s][lane];
        acc += ks[s][c] * dst[r];
        dn[r] = ds[s][c];
      }
      red[s][warp][lane] = acc;
      const A sum = gla_warp_sum16(x, lane);
      if ((lane & 1) == 0 && t0 + s < T && krow < K)
        dk_part[blockIdx.y * B * T * H * K + gla_row(b, t0 + s, h, T, H, K) + krow] = sum;
    }
    __syncthreads();
    gla_recurrent_store_warp_sums<S>(red, dv_part + blockIdx.z * B * T * H * V, b, t0, h, T, H, V, v0);
  }
#pragma unroll
  for (int r = 0; r < 16; ++r) {
    const int64_t kk = k0 + warp * 16 + r;
    if (kk < K && vv < V) gs0[(bh * K + kk) * V + vv] = dn[r] * dst[r];
  }
}

// out[i] = sum over p of part[p * n + i], in order.
template <typename scalar_t>
__global__ void gla_sum_parts_kernel(int64_t P, int64_t n, const acc_t<scalar_t>* __restrict__ part,
                                     scalar_t* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  acc_t<scalar_t> s = 0;
  for (int64_t p = 0; p < P; ++p) s += part[p * n + i];
  out[i] = Conv<scalar_t>::from(s);
}

// ---------------------------------------------------------------------------------------------------------------
// dq, dk and dg from the partial sums of dq and dk, for both algorithms. dg_t = rowsum(gS_T * S_T) + sum_{s >= t}
// (q_s dq_s - k_s dk_s) as chunk-local reverse sums (stage 1), a suffix over chunk totals (stage 2) and their sum
// (stage 3). Chunks of kGlaChunk tokens; P partial buffers of n = B*T*H*K elements each.

// Stage 1, one thread per (b, chunk, h, k): writes gq, gk; leaves the chunk-local reverse sum in dq_part[0] and the
// chunk total in tot [B*H, NT, K].
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaFinThreads)
    gla_dg_local_kernel(int64_t B, int64_t T, int64_t H, int64_t K, int64_t P, const scalar_t* __restrict__ q,
                        const scalar_t* __restrict__ k, acc_t<scalar_t>* __restrict__ dq_part,
                        const acc_t<scalar_t>* __restrict__ dk_part, scalar_t* __restrict__ gq,
                        scalar_t* __restrict__ gk, acc_t<scalar_t>* __restrict__ tot) {
  using A = acc_t<scalar_t>;
  const int64_t NT = (T + kGlaChunk - 1) / kGlaChunk, n_el = B * T * H * K;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * NT * H * K) return;
  const int64_t kk = idx % K, h = idx / K % H, c = idx / (K * H) % NT, b = idx / (K * H * NT);
  const int64_t t_end = c * kGlaChunk + kGlaChunk < T ? c * kGlaChunk + kGlaChunk : T;
  A r = 0;
  for (int64_t t = t_end - 1; t >= c * kGlaChunk; --t) {
    const int64_t i = gla_row(b, t, h, T, H, K) + kk;
    A dq = 0, dk = 0;
    for (int64_t p = 0; p < P; ++p) {
      dq += dq_part[p * n_el + i];
      dk += dk_part[p * n_el + i];
    }
    r += gla_dg_term(gla_ld(q, i), dq, gla_ld(k, i), dk);
    gq[i] = Conv<scalar_t>::from(dq);
    gk[i] = Conv<scalar_t>::from(dk);
    dq_part[i] = r;
  }
  tot[((b * H + h) * NT + c) * K + kk] = r;
}

// Stage 2, one thread per (b, h, k): replaces the chunk totals by the sum over all later chunks plus the final-state
// term rowsum(gS_T * S_T). gs1 may be null.
template <typename A>
__global__ void __launch_bounds__(kGlaFinThreads)
    gla_dg_suffix_kernel(int64_t BH, int64_t T, int64_t K, int64_t V, const A* __restrict__ gs1,
                         const A* __restrict__ s1, A* __restrict__ tot) {
  const int64_t NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= BH * K) return;
  const int64_t bh = idx / K, kk = idx % K;
  A r = 0;
  if (gs1)
    for (int64_t j = 0; j < V; ++j) r += gs1[(bh * K + kk) * V + j] * s1[(bh * K + kk) * V + j];
  for (int64_t c = NT - 1; c >= 0; --c) {
    A* p = tot + (bh * NT + c) * K + kk;
    const A chunk = *p;
    *p = r;
    r += chunk;
  }
}

// Stage 3, one thread per element: gg = local reverse sum + suffix of its chunk.
template <typename scalar_t>
__global__ void gla_dg_final_kernel(int64_t B, int64_t T, int64_t H, int64_t K,
                                    const acc_t<scalar_t>* __restrict__ local, const acc_t<scalar_t>* __restrict__ tot,
                                    scalar_t* __restrict__ gg) {
  const int64_t NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * T * H * K) return;
  const int64_t kk = i % K, h = i / K % H, t = i / (K * H) % T, b = i / (K * H * T);
  gg[i] = Conv<scalar_t>::from(local[i] + tot[((b * H + h) * NT + t / kGlaChunk) * K + kk]);
}

// ---------------------------------------------------------------------------------------------------------------
// Chunked kernels (float accumulation only). 256 threads as a 16 x 16 grid (ty, tx); a thread owns rows
// ty + 16a of a 64-token chunk (so a is the row's sub-chunk) and columns tx + 16c of a 32-wide tile.

// Chunk-local inclusive cumsum of g in fp32, gc [B, T, H, K]. One thread per (b, chunk, h, k).
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaFinThreads)
    gla_chunk_cumsum_kernel(int64_t B, int64_t T, int64_t H, int64_t K, const scalar_t* __restrict__ g,
                            float* __restrict__ gc) {
  const int64_t NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * NT * H * K) return;
  const int64_t kk = idx % K, h = idx / K % H, c = idx / (K * H) % NT, b = idx / (K * H * NT);
  const int64_t t_end = c * kGlaChunk + kGlaChunk < T ? c * kGlaChunk + kGlaChunk : T;
  float acc = 0;
  for (int64_t t = c * kGlaChunk; t < t_end; ++t) {
    const int64_t i = gla_row(b, t, h, T, H, K) + kk;
    acc += Conv<scalar_t>::to(g[i]);
    gc[i] = acc;
  }
}

// The cumsum at token s of a chunk, tokens past the end reading the last one (so that padded rows add nothing).
__device__ __forceinline__ float gla_gc_at(const float* gc, int64_t b, int64_t t0, int len, int s, int64_t h, int64_t T,
                                           int64_t H, int64_t K, int64_t kk) {
  return gc[gla_row(b, t0 + (s < len ? s : len - 1), h, T, H, K) + kk];
}

// The state pass over chunks. Grid (B*H, ceil(K / 32), ceil(V / 32)).
// Forward (kReverse false; x = k, y = v, init = s0): stores the state BEFORE every chunk in hs [B*H, NT, K, V] and
// the final state in fin (may be null); S <- e^{G_L} * S + sum_j (k_j * e^{G_L - G_j})^T v_j.
// Reverse (x = q, y = do (may be null), init = gS_T (may be null)): stores dH, the gradient w.r.t. the state at the
// END of every chunk, and the gradient w.r.t. s0 in fin; dH <- e^{G_L} * dH + sum_i (scale q_i * e^{G_i})^T do_i.
template <typename scalar_t, bool kReverse>
__global__ void __launch_bounds__(kGlaThreads)
    gla_chunk_state_kernel(int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ x,
                           const scalar_t* __restrict__ y, const float* __restrict__ gc, const float* __restrict__ init,
                           float scale, float* __restrict__ hs, float* __restrict__ fin) {
  static_assert(std::is_same<acc_t<scalar_t>, float>::value, "chunked GLA kernels accumulate in float");
  __shared__ float xs[kGlaChunk][kGlaTile], ys[kGlaChunk][kGlaTile], dec[kGlaTile];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t k0 = static_cast<int64_t>(blockIdx.y) * kGlaTile, v0 = static_cast<int64_t>(blockIdx.z) * kGlaTile;
  float st[2][2];
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int64_t kk = k0 + ty + 16 * a, vv = v0 + tx + 16 * c;
      st[a][c] = init && kk < K && vv < V ? init[(bh * K + kk) * V + vv] : 0.f;
    }
  for (int64_t step = 0; step < NT; ++step) {
    const int64_t n = kReverse ? NT - 1 - step : step, t0 = n * kGlaChunk;
    const int len = static_cast<int>(T - t0 < kGlaChunk ? T - t0 : kGlaChunk);
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int64_t kk = k0 + ty + 16 * a, vv = v0 + tx + 16 * c;
        if (kk < K && vv < V) hs[((bh * NT + n) * K + kk) * V + vv] = st[a][c];
      }
    __syncthreads();
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int s = e / kGlaTile, c = e % kGlaTile;
      const int64_t kk = k0 + c;
      const float gl = kk < K ? gla_gc_at(gc, b, t0, len, kGlaChunk - 1, h, T, H, K, kk) : 0.f;
      float val = 0.f;
      if (s < len && kk < K) {
        const int64_t i = gla_row(b, t0 + s, h, T, H, K) + kk;
        val = kReverse ? scale * gla_ld(x, i) * lrnn_exp(gc[i]) : gla_ld(x, i) * lrnn_exp(gl - gc[i]);
      }
      xs[s][c] = val;
      if (s == 0) dec[c] = lrnn_exp(gl);
    }
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int s = e / kGlaTile, c = e % kGlaTile;
      const bool in = y && s < len && v0 + c < V;
      ys[s][c] = in ? gla_ld(y, gla_row(b, t0 + s, h, T, H, V) + v0 + c) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
      for (int c = 0; c < 2; ++c) st[a][c] *= dec[ty + 16 * a];
#pragma unroll 8
    for (int s = 0; s < kGlaChunk; ++s) {
      const float x0 = xs[s][ty], x1 = xs[s][ty + 16], y0 = ys[s][tx], y1 = ys[s][tx + 16];
      st[0][0] += x0 * y0;
      st[0][1] += x0 * y1;
      st[1][0] += x1 * y0;
      st[1][1] += x1 * y1;
    }
  }
  if (fin) {
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int64_t kk = k0 + ty + 16 * a, vv = v0 + tx + 16 * c;
        if (kk < K && vv < V) fin[(bh * K + kk) * V + vv] = st[a][c];
      }
  }
}

// Stages one K tile of a chunk for the score kernels, column-major: raw[c][s] = x (q or k), gs[c][s] = G (rows past
// the chunk end read its last row); zeros past the chunk end or past K.
template <typename scalar_t>
__device__ __forceinline__ void gla_stage_raw_t(const scalar_t* x, const float* gc, int64_t b, int64_t t0, int len,
                                                int64_t h, int64_t T, int64_t H, int64_t K, int64_t k0,
                                                float (*raw)[kGlaPad], float (*gs)[kGlaPad]) {
  for (int e = threadIdx.x; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
    const int s = e / kGlaTile, c = e % kGlaTile;
    const int64_t kk = k0 + c;
    const bool in = s < len && kk < K;
    raw[c][s] = in ? gla_ld(x, gla_row(b, t0 + s, h, T, H, K) + kk) : 0.f;
    gs[c][s] = kk < K ? gla_gc_at(gc, b, t0, len, s, h, T, H, K, kk) : 0.f;
  }
}

// Stores scale * acc, the thread (ty, tx)'s 4 x 4 entries (rows ty + 16a, columns tx + 16b) of a chunk's 64 x 64
// score matrix, into out [64, 64], with zeros above the diagonal.
__device__ __forceinline__ void gla_store_lower(float* out, const float (&acc)[4][4], float scale, int ty, int tx) {
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int bb = 0; bb < 4; ++bb) {
      const bool keep = bb < a || (bb == a && tx <= ty);
      out[(ty + 16 * a) * kGlaChunk + tx + 16 * bb] = keep ? scale * acc[a][bb] : 0.f;
    }
}

// Scores of one chunk. Grid (B*H, NT). A [B*H, NT, 64, 64] (row i, column j, zero for j > i):
// A_ij = scale sum_k q_ik k_jk e^{G_ik - G_jk}. With dA non-null also dA_ij = scale do_i . v_j (zero for j > i;
// all zero when go is null).
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaThreads, 2)  // up to 128 registers: without the 2, ptxas caps at 64 and spills
    gla_chunk_scores_kernel(int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ q,
                            const scalar_t* __restrict__ k, const float* __restrict__ gc,
                            const scalar_t* __restrict__ v, const scalar_t* __restrict__ go, float scale,
                            float* __restrict__ A_out, float* __restrict__ dA_out) {
  static_assert(std::is_same<acc_t<scalar_t>, float>::value, "chunked GLA kernels accumulate in float");
  __shared__ float sm[5 * kGlaTile * kGlaPad + 6 * kGlaTile];
  float (*qsub)[kGlaPad] = reinterpret_cast<float (*)[kGlaPad]>(sm);  // q_i e^{G_i - G_16a}
  float (*kb)[kGlaPad] = qsub + kGlaTile;                             // k_j e^{G_16(b+1) - G_j}
  float (*qr)[kGlaPad] = kb + kGlaTile;
  float (*kr)[kGlaPad] = qr + kGlaTile;
  float (*gs)[kGlaPad] = kr + kGlaTile;
  float (*dfac)[kGlaTile] = reinterpret_cast<float (*)[kGlaTile]>(sm + 5 * kGlaTile * kGlaPad);
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, n = blockIdx.y, NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t t0 = n * kGlaChunk;
  const int len = static_cast<int>(T - t0 < kGlaChunk ? T - t0 : kGlaChunk);
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kGlaTile) {
    __syncthreads();
    gla_stage_raw_t(q, gc, b, t0, len, h, T, H, K, k0, qr, gs);
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int s = e / kGlaTile, c = e % kGlaTile;
      const int64_t kk = k0 + c;
      kr[c][s] = s < len && kk < K ? gla_ld(k, gla_row(b, t0 + s, h, T, H, K) + kk) : 0.f;
    }
    __syncthreads();
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int c = e / kGlaChunk, s = e % kGlaChunk, sub = s / kGlaSub;
      qsub[c][s] = qr[c][s] * lrnn_exp(gs[c][s] - gs[c][sub * kGlaSub]);
      kb[c][s] = sub < 3 ? kr[c][s] * lrnn_exp(gs[c][(sub + 1) * kGlaSub] - gs[c][s]) : 0.f;
    }
    for (int e = tid; e < 6 * kGlaTile; e += kGlaThreads) {
      const int p = e / kGlaTile, c = e % kGlaTile;
      const int a = p < 1 ? 1 : p < 3 ? 2 : 3, bb = p - a * (a - 1) / 2;
      dfac[p][c] = lrnn_exp(gs[c][a * kGlaSub] - gs[c][(bb + 1) * kGlaSub]);
    }
    __syncthreads();
#pragma unroll 4
    for (int c = 0; c < kGlaTile; ++c) {
      float qv[4], kv[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        qv[a] = qsub[c][ty + 16 * a];
        kv[a] = kb[c][tx + 16 * a];
      }
#pragma unroll
      for (int a = 1; a < 4; ++a)
#pragma unroll
        for (int bb = 0; bb < a; ++bb) acc[a][bb] += qv[a] * dfac[gla_pair(a, bb)][c] * kv[bb];
      if (tx <= ty) {
#pragma unroll
        for (int a = 0; a < 4; ++a) {
          const int i = ty + 16 * a, j = tx + 16 * a;
          acc[a][a] += qr[c][i] * kr[c][j] * lrnn_exp(gs[c][i] - gs[c][j]);
        }
      }
    }
  }
  gla_store_lower(A_out + (bh * NT + n) * kGlaChunk * kGlaChunk, acc, scale, ty, tx);
  if (!dA_out) return;  // uniform across the block
  float dacc[4][4] = {};
  float (*dot)[kGlaPad] = qsub;
  float (*vt)[kGlaPad] = kb;
  for (int64_t v0 = 0; go && v0 < V; v0 += kGlaTile) {
    __syncthreads();
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int s = e / kGlaTile, c = e % kGlaTile;
      const bool in = s < len && v0 + c < V;
      const int64_t i = in ? gla_row(b, t0 + s, h, T, H, V) + v0 + c : 0;
      dot[c][s] = in ? gla_ld(go, i) : 0.f;
      vt[c][s] = in ? gla_ld(v, i) : 0.f;
    }
    __syncthreads();
#pragma unroll 4
    for (int c = 0; c < kGlaTile; ++c) {
      float dv[4], vv[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        dv[a] = dot[c][ty + 16 * a];
        vv[a] = vt[c][tx + 16 * a];
      }
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int bb = 0; bb <= a; ++bb) dacc[a][bb] += dv[a] * vv[bb];
    }
  }
  gla_store_lower(dA_out + (bh * NT + n) * kGlaChunk * kGlaChunk, dacc, scale, ty, tx);
}

// The multiply-accumulate of the chunked kernels' tile products, one 32-deep slice: acc[a][c] += sum over r of
// x[r][ty + 16a] * y[r][tx + 16c], for the thread (ty, tx) of the 16 x 16 grid, which owns 4 x 2 entries of a
// 64 x 32 result. x is a [reduction index][row] array, y a [reduction index][column] one (with its row pitch).
template <int kYPitch>
__device__ __forceinline__ void gla_tile_mac(float (&acc)[4][2], const float (*x)[kGlaPad], const float (*y)[kYPitch],
                                             int ty, int tx) {
#pragma unroll 8
  for (int r = 0; r < kGlaTile; ++r) {
    const float y0 = y[r][tx], y1 = y[r][tx + 16];
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const float xv = x[r][ty + 16 * a];
      acc[a][0] += xv * y0;
      acc[a][1] += xv * y1;
    }
  }
}

// Outputs of one chunk and 32-column V tile: o_i = (scale q_i * e^{G_i}) h + sum_j A_ij v_j.
// Grid (B*H, NT, ceil(V / 32)).
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaThreads)
    gla_chunk_output_kernel(int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ q,
                            const scalar_t* __restrict__ v, const float* __restrict__ gc, const float* __restrict__ hs,
                            const float* __restrict__ A_in, float scale, scalar_t* __restrict__ o) {
  static_assert(std::is_same<acc_t<scalar_t>, float>::value, "chunked GLA kernels accumulate in float");
  __shared__ float xt[kGlaTile][kGlaPad];   // [reduction index][row]
  __shared__ float ym[kGlaTile][kGlaTile];  // [reduction index][column]
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, n = blockIdx.y, NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t v0 = static_cast<int64_t>(blockIdx.z) * kGlaTile, t0 = n * kGlaChunk;
  const int len = static_cast<int>(T - t0 < kGlaChunk ? T - t0 : kGlaChunk);
  const float* hn = hs + (bh * NT + n) * K * V;
  const float* An = A_in + (bh * NT + n) * kGlaChunk * kGlaChunk;
  float acc[4][2] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kGlaTile) {
    __syncthreads();
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int s = e / kGlaTile, c = e % kGlaTile;
      const bool in = s < len && k0 + c < K;
      const int64_t i = in ? gla_row(b, t0 + s, h, T, H, K) + k0 + c : 0;
      xt[c][s] = in ? scale * gla_ld(q, i) * lrnn_exp(gc[i]) : 0.f;
    }
    for (int e = tid; e < kGlaTile * kGlaTile; e += kGlaThreads) {
      const int r = e / kGlaTile, c = e % kGlaTile;
      ym[r][c] = k0 + r < K && v0 + c < V ? hn[(k0 + r) * V + v0 + c] : 0.f;
    }
    __syncthreads();
    gla_tile_mac(acc, xt, ym, ty, tx);
  }
  for (int js = 0; js < kGlaChunk; js += kGlaTile) {
    __syncthreads();
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int i = e / kGlaTile, r = e % kGlaTile;
      xt[r][i] = An[i * kGlaChunk + js + r];
    }
    for (int e = tid; e < kGlaTile * kGlaTile; e += kGlaThreads) {
      const int r = e / kGlaTile, c = e % kGlaTile;
      const bool in = js + r < len && v0 + c < V;
      ym[r][c] = in ? gla_ld(v, gla_row(b, t0 + js + r, h, T, H, V) + v0 + c) : 0.f;
    }
    __syncthreads();
    gla_tile_mac(acc, xt, ym, ty, tx);
  }
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int i = ty + 16 * a;
      const int64_t vv = v0 + tx + 16 * c;
      if (i < len && vv < V) o[gla_row(b, t0 + i, h, T, H, V) + vv] = Conv<scalar_t>::from(acc[a][c]);
    }
}

// dv of one chunk and V tile: dv_j = sum_{i >= j} A_ij do_i + (k_j * e^{G_L - G_j}) dH. go may be null.
// Grid (B*H, NT, ceil(V / 32)).
template <typename scalar_t>
__global__ void __launch_bounds__(kGlaThreads)
    gla_chunk_dv_kernel(int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ k,
                        const float* __restrict__ gc, const float* __restrict__ dhs, const float* __restrict__ A_in,
                        const scalar_t* __restrict__ go, scalar_t* __restrict__ gv) {
  static_assert(std::is_same<acc_t<scalar_t>, float>::value, "chunked GLA kernels accumulate in float");
  __shared__ float xt[kGlaTile][kGlaPad];
  __shared__ float ym[kGlaTile][kGlaTile];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, n = blockIdx.y, NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t v0 = static_cast<int64_t>(blockIdx.z) * kGlaTile, t0 = n * kGlaChunk;
  const int len = static_cast<int>(T - t0 < kGlaChunk ? T - t0 : kGlaChunk);
  const float* dhn = dhs + (bh * NT + n) * K * V;
  const float* An = A_in + (bh * NT + n) * kGlaChunk * kGlaChunk;
  float acc[4][2] = {};
  for (int is = 0; go && is < kGlaChunk; is += kGlaTile) {
    __syncthreads();
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int r = e / kGlaChunk, j = e % kGlaChunk;
      xt[r][j] = An[(is + r) * kGlaChunk + j];
    }
    for (int e = tid; e < kGlaTile * kGlaTile; e += kGlaThreads) {
      const int r = e / kGlaTile, c = e % kGlaTile;
      const bool in = is + r < len && v0 + c < V;
      ym[r][c] = in ? gla_ld(go, gla_row(b, t0 + is + r, h, T, H, V) + v0 + c) : 0.f;
    }
    __syncthreads();
    gla_tile_mac(acc, xt, ym, ty, tx);
  }
  for (int64_t k0 = 0; k0 < K; k0 += kGlaTile) {
    __syncthreads();
    for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
      const int s = e / kGlaTile, c = e % kGlaTile;
      const int64_t kk = k0 + c;
      float val = 0.f;
      if (s < len && kk < K) {
        const int64_t i = gla_row(b, t0 + s, h, T, H, K) + kk;
        val = gla_ld(k, i) * lrnn_exp(gla_gc_at(gc, b, t0, len, kGlaChunk - 1, h, T, H, K, kk) - gc[i]);
      }
      xt[c][s] = val;
    }
    for (int e = tid; e < kGlaTile * kGlaTile; e += kGlaThreads) {
      const int r = e / kGlaTile, c = e % kGlaTile;
      ym[r][c] = k0 + r < K && v0 + c < V ? dhn[(k0 + r) * V + v0 + c] : 0.f;
    }
    __syncthreads();
    gla_tile_mac(acc, xt, ym, ty, tx);
  }
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int j = ty + 16 * a;
      const int64_t vv = v0 + tx + 16 * c;
      if (j < len && vv < V) gv[gla_row(b, t0 + j, h, T, H, V) + vv] = Conv<scalar_t>::from(acc[a][c]);
    }
}

// dq (kKeys false) or dk (kKeys true) of one chunk and 32-wide K tile, into out [B, T, H, K] (fp32):
//   dq_i = scale e^{G_i} * (do_i h^T) + sum_{j <= i} dA_ij k_j * e^{G_i - G_j}
//   dk_j = e^{G_L - G_j} * (v_j dH^T) + sum_{i >= j} dA_ij q_i * e^{G_i - G_j}
// Grid (B*H, NT, ceil(K / 32)). dq: x = k, y = do (may be null), st = hs; dk: x = q, y = v, st = dH.
template <typename scalar_t, bool kKeys>
__global__ void __launch_bounds__(kGlaThreads)
    gla_chunk_dqk_kernel(int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* __restrict__ x,
                         const scalar_t* __restrict__ y, const float* __restrict__ gc, const float* __restrict__ st,
                         const float* __restrict__ dA_in, float scale, float* __restrict__ out) {
  static_assert(std::is_same<acc_t<scalar_t>, float>::value, "chunked GLA kernels accumulate in float");
  constexpr int kSm = kGlaChunk * kGlaPad + 3 * kGlaChunk * kGlaTilePad + 6 * kGlaTile;
  __shared__ float sm[kSm];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, n = blockIdx.y, NT = (T + kGlaChunk - 1) / kGlaChunk;
  const int64_t k0 = static_cast<int64_t>(blockIdx.z) * kGlaTile, t0 = n * kGlaChunk;
  const int len = static_cast<int>(T - t0 < kGlaChunk ? T - t0 : kGlaChunk);
  const float* stn = st + (bh * NT + n) * K * V;

  // Inter-chunk part: acc[a][c] = sum_v y[row a][v] st[col c][v].
  float acc[4][2] = {};
  {
    float (*yt)[kGlaPad] = reinterpret_cast<float (*)[kGlaPad]>(sm);                               // [v][row]
    float (*sv)[kGlaTilePad] = reinterpret_cast<float (*)[kGlaTilePad]>(sm + kGlaTile * kGlaPad);  // [v][col]
    for (int64_t v0 = 0; y && v0 < V; v0 += kGlaTile) {
      __syncthreads();
      for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
        const int s = e / kGlaTile, c = e % kGlaTile;
        const bool in = s < len && v0 + c < V;
        yt[c][s] = in ? gla_ld(y, gla_row(b, t0 + s, h, T, H, V) + v0 + c) : 0.f;
      }
      for (int e = tid; e < kGlaTile * kGlaTile; e += kGlaThreads) {
        const int r = e / kGlaTile, c = e % kGlaTile;  // r: K column of the tile, c: V index
        sv[c][r] = k0 + r < K && v0 + c < V ? stn[(k0 + r) * V + v0 + c] : 0.f;
      }
      __syncthreads();
      gla_tile_mac(acc, yt, sv, ty, tx);
    }
  }

  // Intra-chunk part.
  float (*da)[kGlaPad] = reinterpret_cast<float (*)[kGlaPad]>(sm);                                  // dA [i][j]
  float (*side)[kGlaTilePad] = reinterpret_cast<float (*)[kGlaTilePad]>(sm + kGlaChunk * kGlaPad);  // re-centred x
  float (*raw)[kGlaTilePad] = side + kGlaChunk;
  float (*gs)[kGlaTilePad] = raw + kGlaChunk;
  float (*dfac)[kGlaTile] =
      reinterpret_cast<float (*)[kGlaTile]>(sm + kGlaChunk * kGlaPad + 3 * kGlaChunk * kGlaTilePad);
  __syncthreads();
  const float* dAn = dA_in + (bh * NT + n) * kGlaChunk * kGlaChunk;
  for (int e = tid; e < kGlaChunk * kGlaChunk; e += kGlaThreads) da[e / kGlaChunk][e % kGlaChunk] = dAn[e];
  for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
    const int s = e / kGlaTile, c = e % kGlaTile;
    const int64_t kk = k0 + c;
    raw[s][c] = s < len && kk < K ? gla_ld(x, gla_row(b, t0 + s, h, T, H, K) + kk) : 0.f;
    gs[s][c] = kk < K ? gla_gc_at(gc, b, t0, len, s, h, T, H, K, kk) : 0.f;
  }
  __syncthreads();
  for (int e = tid; e < kGlaChunk * kGlaTile; e += kGlaThreads) {
    const int s = e / kGlaTile, c = e % kGlaTile, sub = s / kGlaSub;
    if (kKeys) {  // q_i e^{G_i - G_16a}
      side[s][c] = raw[s][c] * lrnn_exp(gs[s][c] - gs[sub * kGlaSub][c]);
    } else {  // k_j e^{G_16(b+1) - G_j}
      side[s][c] = sub < 3 ? raw[s][c] * lrnn_exp(gs[(sub + 1) * kGlaSub][c] - gs[s][c]) : 0.f;
    }
  }
  for (int e = tid; e < 6 * kGlaTile; e += kGlaThreads) {
    const int p = e / kGlaTile, c = e % kGlaTile;
    const int a = p < 1 ? 1 : p < 3 ? 2 : 3, bb = p - a * (a - 1) / 2;
    dfac[p][c] = lrnn_exp(gs[a * kGlaSub][c] - gs[(bb + 1) * kGlaSub][c]);
  }
  __syncthreads();
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int r = ty + 16 * a;  // this thread's row: i for dq, j for dk
#pragma unroll
    for (int c2 = 0; c2 < 2; ++c2) {
      const int c = tx + 16 * c2;
      const int64_t kk = k0 + c;
      float res = 0.f;
      if (!kKeys) {
        float off = 0.f;
        for (int sb = 0; sb < a; ++sb) {
          float inner = 0.f;
#pragma unroll 4
          for (int j = sb * kGlaSub; j < sb * kGlaSub + kGlaSub; ++j) inner += da[r][j] * side[j][c];
          off += dfac[gla_pair(a, sb)][c] * inner;
        }
        res = off * lrnn_exp(gs[r][c] - gs[a * kGlaSub][c]);
        for (int j = a * kGlaSub; j <= r; ++j) res += da[r][j] * raw[j][c] * lrnn_exp(gs[r][c] - gs[j][c]);
        res += scale * lrnn_exp(gs[r][c]) * acc[a][c2];
      } else {
        float off = 0.f;
        for (int si = a + 1; si < 4; ++si) {
          float inner = 0.f;
#pragma unroll 4
          for (int i = si * kGlaSub; i < si * kGlaSub + kGlaSub; ++i) inner += da[i][r] * side[i][c];
          off += dfac[gla_pair(si, a)][c] * inner;
        }
        res = a < 3 ? off * lrnn_exp(gs[(a + 1) * kGlaSub][c] - gs[r][c]) : 0.f;
        for (int i = r; i < a * kGlaSub + kGlaSub; ++i) res += da[i][r] * raw[i][c] * lrnn_exp(gs[i][c] - gs[r][c]);
        res += lrnn_exp(gs[kGlaChunk - 1][c] - gs[r][c]) * acc[a][c2];
      }
      if (r < len && kk < K) out[gla_row(b, t0 + r, h, T, H, K) + kk] = res;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Launchers. Workspaces are raw accumulator buffers of the sizes below (elements), owned by the caller.

template <typename scalar_t>
constexpr bool gla_has_chunked() {
  return std::is_same<acc_t<scalar_t>, float>::value;
}
template <typename scalar_t>
bool gla_use_chunked(int64_t T) {
  return gla_has_chunked<scalar_t>() && T > kGlaRecurrentMaxT;
}

template <typename scalar_t>
int64_t gla_forward_workspace(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
  const int64_t NT = (T + kGlaChunk - 1) / kGlaChunk;
  if (gla_use_chunked<scalar_t>(T))
    return B * T * H * K + B * H * NT * K * V + B * H * NT * kGlaChunk * kGlaChunk;  // gc, hs, A
  return (K + kGlaRecK - 1) / kGlaRecK * B * T * H * V;                              // o parts
}

template <typename scalar_t>
int64_t gla_backward_workspace(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
  const int64_t NT = (T + kGlaChunk - 1) / kGlaChunk, tot = B * H * NT * K;
  if (gla_use_chunked<scalar_t>(T))  // gc, hs, dH, A, dA, dq, dk, chunk totals
    return 3 * B * T * H * K + 2 * B * H * NT * K * V + 2 * B * H * NT * kGlaChunk * kGlaChunk + tot;
  const int64_t NK = (K + kGlaRecK - 1) / kGlaRecK, NV = (V + kGlaRecV - 1) / kGlaRecV;
  return 2 * NV * B * T * H * K + NK * B * T * H * V + tot;  // dq parts, dk parts, dv parts, chunk totals
}

template <typename scalar_t>
cudaError_t gla_forward_cuda(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* q,
                             const scalar_t* k, const scalar_t* v, const scalar_t* g, const acc_t<scalar_t>* s0,
                             acc_t<scalar_t> scale, scalar_t* o, acc_t<scalar_t>* s1, acc_t<scalar_t>* work,
                             cudaStream_t stream) {
  using A = acc_t<scalar_t>;
  const int64_t BH = B * H, NT = (T + kGlaChunk - 1) / kGlaChunk;
  if constexpr (gla_has_chunked<scalar_t>()) {
    if (gla_use_chunked<scalar_t>(T)) {
      float* gc = work;
      float* hs = gc + B * T * H * K;
      float* As = hs + BH * NT * K * V;
      const unsigned nk = static_cast<unsigned>(ceil_div(K, kGlaTile)),
                     nv = static_cast<unsigned>(ceil_div(V, kGlaTile));
      LRNN_LAUNCH(ceil_div(B * NT * H * K, kGlaFinThreads), kGlaFinThreads, 0, stream,
                  gla_chunk_cumsum_kernel<scalar_t>)(B, T, H, K, g, gc);
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), nk, nv), kGlaThreads, 0, stream,
                  gla_chunk_state_kernel<scalar_t, false>)(T, H, K, V, k, v, gc, s0, scale, hs, s1);
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), static_cast<unsigned>(NT)), kGlaThreads, 0, stream,
                  gla_chunk_scores_kernel<scalar_t>)(T, H, K, V, q, k, gc, v, static_cast<const scalar_t*>(nullptr),
                                                     scale, As, static_cast<float*>(nullptr));
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), static_cast<unsigned>(NT), nv), kGlaThreads, 0, stream,
                  gla_chunk_output_kernel<scalar_t>)(T, H, K, V, q, v, gc, hs, As, scale, o);
      return cudaGetLastError();
    }
  }
  const unsigned nk = static_cast<unsigned>(ceil_div(K, kGlaRecK)), nv = static_cast<unsigned>(ceil_div(V, kGlaRecV));
  LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), nv, nk), kGlaRecThreads, 0, stream,
              gla_recurrent_forward_kernel<scalar_t>)(B, T, H, K, V, q, k, v, g, s0, scale, work, s1);
  const int64_t n = B * T * H * V;
  LRNN_LAUNCH(ceil_div(n, kGlaFinThreads), kGlaFinThreads, 0, stream, gla_sum_parts_kernel<scalar_t>)(nk, n, work, o);
  return cudaGetLastError();
}

// go and gs1 may be null (that output does not reach the loss).
template <typename scalar_t>
cudaError_t gla_backward_cuda(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* q,
                              const scalar_t* k, const scalar_t* v, const scalar_t* g, const acc_t<scalar_t>* s0,
                              const acc_t<scalar_t>* s1, acc_t<scalar_t> scale, const scalar_t* go,
                              const acc_t<scalar_t>* gs1, scalar_t* gq, scalar_t* gk, scalar_t* gv, scalar_t* gg,
                              acc_t<scalar_t>* gs0, acc_t<scalar_t>* work, cudaStream_t stream) {
  using A = acc_t<scalar_t>;
  const int64_t BH = B * H, NT = (T + kGlaChunk - 1) / kGlaChunk, nel = B * T * H * K;
  A* dq_part = work;
  A* dk_part = nullptr;
  A* tot = nullptr;
  int64_t parts = 1;
  bool done = false;
  if constexpr (gla_has_chunked<scalar_t>()) {
    if (gla_use_chunked<scalar_t>(T)) {
      dk_part = dq_part + nel;
      float* gc = dk_part + nel;
      float* hs = gc + nel;
      float* dhs = hs + BH * NT * K * V;
      float* As = dhs + BH * NT * K * V;
      float* dAs = As + BH * NT * kGlaChunk * kGlaChunk;
      tot = dAs + BH * NT * kGlaChunk * kGlaChunk;
      parts = 1;
      const unsigned nk = static_cast<unsigned>(ceil_div(K, kGlaTile)),
                     nv = static_cast<unsigned>(ceil_div(V, kGlaTile));
      LRNN_LAUNCH(ceil_div(B * NT * H * K, kGlaFinThreads), kGlaFinThreads, 0, stream,
                  gla_chunk_cumsum_kernel<scalar_t>)(B, T, H, K, g, gc);
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), nk, nv), kGlaThreads, 0, stream,
                  gla_chunk_state_kernel<scalar_t, false>)(T, H, K, V, k, v, gc, s0, scale, hs,
                                                           static_cast<float*>(nullptr));
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), nk, nv), kGlaThreads, 0, stream,
                  gla_chunk_state_kernel<scalar_t, true>)(T, H, K, V, q, go, gc, gs1, scale, dhs, gs0);
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), static_cast<unsigned>(NT)), kGlaThreads, 0, stream,
                  gla_chunk_scores_kernel<scalar_t>)(T, H, K, V, q, k, gc, v, go, scale, As, dAs);
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), static_cast<unsigned>(NT), nv), kGlaThreads, 0, stream,
                  gla_chunk_dv_kernel<scalar_t>)(T, H, K, V, k, gc, dhs, As, go, gv);
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), static_cast<unsigned>(NT), nk), kGlaThreads, 0, stream,
                  gla_chunk_dqk_kernel<scalar_t, false>)(T, H, K, V, k, go, gc, hs, dAs, scale, dq_part);
      LRNN_LAUNCH(dim3(static_cast<unsigned>(BH), static_cast<unsigned>(NT), nk), kGlaThreads, 0, stream,
                  gla_chunk_dqk_kernel<scalar_t, true>)(T, H, K, V, q, v, gc, dhs, dAs, scale, dk_part);
      done = true;
    }
  }
  if (!done) {
    const int64_t nk = ceil_div(K, kGlaRecK), nv = ceil_div(V, kGlaRecV);
    dk_part = dq_part + nv * nel;
    A* dv_part = dk_part + nv * nel;
    tot = dv_part + nk * B * T * H * V;
    parts = nv;
    const dim3 grid(static_cast<unsigned>(BH), static_cast<unsigned>(nv), static_cast<unsigned>(nk));
    LRNN_LAUNCH(grid, kGlaRecThreads, 0, stream, gla_recurrent_dq_kernel<scalar_t>)(B, T, H, K, V, k, v, g, s0, scale,
                                                                                    go, dq_part);
    LRNN_LAUNCH(grid, kGlaRecThreads, 0, stream, gla_recurrent_backward_kernel<scalar_t>)(
        B, T, H, K, V, q, k, v, g, scale, go, gs1, dk_part, dv_part, gs0);
    const int64_t n = B * T * H * V;
    LRNN_LAUNCH(ceil_div(n, kGlaFinThreads), kGlaFinThreads, 0, stream, gla_sum_parts_kernel<scalar_t>)(nk, n, dv_part,
                                                                                                        gv);
  }
  LRNN_LAUNCH(ceil_div(B * NT * H * K, kGlaFinThreads), kGlaFinThreads, 0, stream, gla_dg_local_kernel<scalar_t>)(
      B, T, H, K, parts, q, k, dq_part, dk_part, gq, gk, tot);
  LRNN_LAUNCH(ceil_div(BH * K, kGlaFinThreads), kGlaFinThreads, 0, stream, gla_dg_suffix_kernel<A>)(BH, T, K, V, gs1,
                                                                                                    s1, tot);
  LRNN_LAUNCH(ceil_div(nel, kGlaFinThreads), kGlaFinThreads, 0, stream, gla_dg_final_kernel<scalar_t>)(
      B, T, H, K, dq_part, tot, gg);
  return cudaGetLastError();
}

}  // namespace lrnn
