// CUDA kernels for TimeX (math in timex.h). Each block computes a tile of kTimexTile outputs of one row; the
// inputs it needs are staged through shared memory one tile at a time: a tile of the summed sequence and the
// 2 * kTimexTile lag weights (or, for gw, shifted inputs) that pair with it. Lags outside [0, T) are staged as
// zeros, which is what makes the sums causal. Threads take outputs tid, tid + 64, ... so that the shared-memory
// reads of a warp are consecutive.
#pragma once

#include "common.cuh"
#include "timex.h"

namespace lrnn {

constexpr int kTimexTile = 256, kTimexThreads = 64, kTimexPer = kTimexTile / kTimexThreads;

// acc[p] += sum_j seq[j] * win[base_p -/+ j] over one staged tile: kBackward selects win index increasing in j
// (sums over later positions) instead of decreasing (sums over earlier positions).
template <bool kBackward, typename A>
__device__ __forceinline__ void timex_tile_accumulate(const A* seq, const A* win, A (&acc)[kTimexPer]) {
  const int tid = threadIdx.x;
#pragma unroll 4
  for (int j = 0; j < kTimexTile; ++j) {
    const A s = seq[j];
#pragma unroll
    for (int p = 0; p < kTimexPer; ++p) {
      const int o = tid + p * kTimexThreads;
      acc[p] += s * win[kBackward ? j - o + kTimexTile - 1 : o - j + kTimexTile - 1];
    }
  }
}

// out[row, t] for t in this block's tile. Grid: (B*C, ceil(T / kTimexTile)).
template <typename scalar_t>
__global__ void __launch_bounds__(kTimexThreads)
    timex_forward_kernel(int64_t C, int64_t T, int64_t L, const scalar_t* __restrict__ w,
                         const scalar_t* __restrict__ x, acc_t<scalar_t> eps, scalar_t* __restrict__ out) {
  using A = acc_t<scalar_t>;
  __shared__ A seq[kTimexTile];
  __shared__ A win[2 * kTimexTile];
  const int64_t row = blockIdx.x, c = row % C, o_base = static_cast<int64_t>(blockIdx.y) * kTimexTile;
  const scalar_t* xr = x + row * T;
  const scalar_t* wr = w + c * L;
  const int64_t D = T < L ? T : L;
  A acc[kTimexPer] = {};
  // Inputs that reach this tile: u in [o_base - D + 1, o_base + tile), visited one aligned tile at a time.
  const int64_t first = o_base - D + 1 > 0 ? (o_base - D + 1) / kTimexTile * kTimexTile : 0;
  for (int64_t i0 = first; i0 < T && i0 < o_base + kTimexTile; i0 += kTimexTile) {
    const int64_t lag0 = o_base - i0 - kTimexTile + 1;  // lag held by win[0]
    __syncthreads();
    for (int i = threadIdx.x; i < kTimexTile; i += kTimexThreads)
      seq[i] = i0 + i < T ? Conv<scalar_t>::to(xr[i0 + i]) : A(0);
    for (int i = threadIdx.x; i < 2 * kTimexTile; i += kTimexThreads) {
      const int64_t d = lag0 + i;
      win[i] = d >= 0 && d < D ? Conv<scalar_t>::to(wr[L - 1 - d]) : A(0);
    }
    __syncthreads();
    timex_tile_accumulate<false>(seq, win, acc);
  }
#pragma unroll
  for (int p = 0; p < kTimexPer; ++p) {
    const int64_t t = o_base + threadIdx.x + p * kTimexThreads;
    if (t < T) out[row * T + t] = Conv<scalar_t>::from(acc[p] + eps);
  }
}

// gx[row, u] for u in this block's tile: sum over t >= u of g[row, t] * w[c, L-1-(t-u)]. Grid: (B*C, ceil(T/tile)).
template <typename scalar_t>
__global__ void __launch_bounds__(kTimexThreads)
    timex_backward_x_kernel(int64_t C, int64_t T, int64_t L, const scalar_t* __restrict__ w,
                            const scalar_t* __restrict__ g, scalar_t* __restrict__ gx) {
  using A = acc_t<scalar_t>;
  __shared__ A seq[kTimexTile];
  __shared__ A win[2 * kTimexTile];
  const int64_t row = blockIdx.x, c = row % C, o_base = static_cast<int64_t>(blockIdx.y) * kTimexTile;
  const scalar_t* gr = g + row * T;
  const scalar_t* wr = w + c * L;
  const int64_t D = T < L ? T : L;
  A acc[kTimexPer] = {};
  // Outputs t that this tile's inputs reach: t in [o_base, o_base + tile + D - 1).
  for (int64_t i0 = o_base; i0 < T && i0 < o_base + kTimexTile + D - 1; i0 += kTimexTile) {
    const int64_t lag0 = i0 - o_base - kTimexTile + 1;
    __syncthreads();
    for (int i = threadIdx.x; i < kTimexTile; i += kTimexThreads)
      seq[i] = i0 + i < T ? Conv<scalar_t>::to(gr[i0 + i]) : A(0);
    for (int i = threadIdx.x; i < 2 * kTimexTile; i += kTimexThreads) {
      const int64_t d = lag0 + i;
      win[i] = d >= 0 && d < D ? Conv<scalar_t>::to(wr[L - 1 - d]) : A(0);
    }
    __syncthreads();
    timex_tile_accumulate<true>(seq, win, acc);
  }
#pragma unroll
  for (int p = 0; p < kTimexPer; ++p) {
    const int64_t u = o_base + threadIdx.x + p * kTimexThreads;
    if (u < T) gx[row * T + u] = Conv<scalar_t>::from(acc[p]);
  }
}

// gw[c, L-1-d] for lags d in this block's tile, summed over the batch in a fixed order; lags >= D get 0.
// Grid: (C, ceil(L / tile)).
template <typename scalar_t>
__global__ void __launch_bounds__(kTimexThreads)
    timex_backward_w_kernel(int64_t B, int64_t C, int64_t T, int64_t L, const scalar_t* __restrict__ x,
                            const scalar_t* __restrict__ g, scalar_t* __restrict__ gw) {
  using A = acc_t<scalar_t>;
  __shared__ A seq[kTimexTile];
  __shared__ A win[2 * kTimexTile];
  const int64_t c = blockIdx.x, o_base = static_cast<int64_t>(blockIdx.y) * kTimexTile;
  const int64_t D = T < L ? T : L;
  A acc[kTimexPer] = {};
  for (int64_t b = 0; b < B && o_base < D; ++b) {
    const scalar_t* gr = g + (b * C + c) * T;
    const scalar_t* xr = x + (b * C + c) * T;
    for (int64_t i0 = o_base; i0 < T; i0 += kTimexTile) {
      const int64_t x0 = i0 - o_base - kTimexTile + 1;  // position of x held by win[0]
      __syncthreads();
      for (int i = threadIdx.x; i < kTimexTile; i += kTimexThreads)
        seq[i] = i0 + i < T ? Conv<scalar_t>::to(gr[i0 + i]) : A(0);
      for (int i = threadIdx.x; i < 2 * kTimexTile; i += kTimexThreads) {
        const int64_t s = x0 + i;
        win[i] = s >= 0 && s < T ? Conv<scalar_t>::to(xr[s]) : A(0);
      }
      __syncthreads();
      timex_tile_accumulate<true>(seq, win, acc);
    }
  }
#pragma unroll
  for (int p = 0; p < kTimexPer; ++p) {
    const int64_t d = o_base + threadIdx.x + p * kTimexThreads;
    if (d < L) gw[c * L + L - 1 - d] = Conv<scalar_t>::from(d < D ? acc[p] : A(0));
  }
}

template <typename scalar_t>
cudaError_t timex_forward_cuda(int64_t B, int64_t C, int64_t T, int64_t L, const scalar_t* w, const scalar_t* x,
                               acc_t<scalar_t> eps, scalar_t* out, cudaStream_t stream) {
  if (B * C * T == 0) return cudaSuccess;  // nothing to compute, and a grid of 0 blocks is a launch error
  const dim3 grid(static_cast<unsigned>(B * C), static_cast<unsigned>(ceil_div(T, kTimexTile)));
  LRNN_LAUNCH(grid, kTimexThreads, 0, stream, timex_forward_kernel<scalar_t>)(C, T, L, w, x, eps, out);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t timex_backward_cuda(int64_t B, int64_t C, int64_t T, int64_t L, const scalar_t* w, const scalar_t* x,
                                const scalar_t* g, scalar_t* gw, scalar_t* gx, cudaStream_t stream) {
  if (C * L == 0) return cudaSuccess;
  if (B * T > 0) {  // with an empty batch gx is empty and gw is all zeros (the kernel below writes them)
    const dim3 grid_x(static_cast<unsigned>(B * C), static_cast<unsigned>(ceil_div(T, kTimexTile)));
    LRNN_LAUNCH(grid_x, kTimexThreads, 0, stream, timex_backward_x_kernel<scalar_t>)(C, T, L, w, g, gx);
  }
  const dim3 grid_w(static_cast<unsigned>(C), static_cast<unsigned>(ceil_div(L, kTimexTile)));
  LRNN_LAUNCH(grid_w, kTimexThreads, 0, stream, timex_backward_w_kernel<scalar_t>)(B, C, T, L, x, g, gw);
  return cudaGetLastError();
}

}  // namespace lrnn
