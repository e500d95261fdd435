// CUDA kernels for WKV (math and layouts in wkv.h). One thread per (batch, channel) walks the sequence; each chunk
// of kWkvChunk steps is loaded into registers first so that the loads of a whole chunk are in flight together.
// The backward pass restarts every chunk from its saved state, recomputes the chunk's states into registers and
// walks it in reverse, so it reads k, v and gy once and writes gk, gv once.
#pragma once

#include "common.cuh"
#include "wkv.h"

namespace lrnn {

// Tokens t0 .. t0 + kWkvChunk - 1 of one (batch, channel) column of k and v (base: its token 0) into registers,
// zeros past T.
template <typename scalar_t>
__device__ __forceinline__ void wkv_load_chunk(const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                               int64_t base, int64_t t0, int64_t T, int64_t C,
                                               acc_t<scalar_t> (&kr)[kWkvChunk], acc_t<scalar_t> (&vr)[kWkvChunk]) {
  using A = acc_t<scalar_t>;
#pragma unroll
  for (int s = 0; s < kWkvChunk; ++s) {
    const bool in = t0 + s < T;
    kr[s] = in ? Conv<scalar_t>::to(k[base + (t0 + s) * C]) : A(0);
    vr[s] = in ? Conv<scalar_t>::to(v[base + (t0 + s) * C]) : A(0);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(128)
    wkv_forward_kernel(int64_t B, int64_t T, int64_t C, const acc_t<scalar_t>* __restrict__ w,
                       const acc_t<scalar_t>* __restrict__ u, const scalar_t* __restrict__ k,
                       const scalar_t* __restrict__ v, const acc_t<scalar_t>* __restrict__ s0, acc_t<scalar_t> eps,
                       scalar_t* __restrict__ y, acc_t<scalar_t>* __restrict__ s1, acc_t<scalar_t>* __restrict__ ckpt) {
  using A = acc_t<scalar_t>;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * C) return;
  const int64_t b = idx / C, c = idx - b * C, NC = (T + kWkvChunk - 1) / kWkvChunk;
  A aa = s0[(b * 3 + 0) * C + c], bb = s0[(b * 3 + 1) * C + c], pp = s0[(b * 3 + 2) * C + c];
  const A wc = w[c], uc = u[c];
  const int64_t base = b * T * C + c;
  for (int64_t j = 0; j < NC; ++j) {
    const int64_t t0 = j * kWkvChunk;
    A* ck = ckpt + (b * NC + j) * 3 * C + c;
    ck[0] = aa;
    ck[C] = bb;
    ck[2 * C] = pp;
    A kr[kWkvChunk], vr[kWkvChunk];
    wkv_load_chunk(k, v, base, t0, T, C, kr, vr);
#pragma unroll
    for (int s = 0; s < kWkvChunk; ++s) {
      if (t0 + s < T) {
        A p, e2, den;
        y[base + (t0 + s) * C] = Conv<scalar_t>::from(wkv_output(aa, bb, pp, uc, kr[s], vr[s], eps, p, e2, den));
        wkv_update(aa, bb, pp, wc, kr[s], vr[s]);
      }
    }
  }
  s1[(b * 3 + 0) * C + c] = aa;
  s1[(b * 3 + 1) * C + c] = bb;
  s1[(b * 3 + 2) * C + c] = pp;
}

// gy and gs1 may be null. Per-(batch, channel) partial sums of gw and gu go to part [2, B, C]; a second kernel
// adds them over the batch in a fixed order (deterministic, no atomics).
template <typename scalar_t>
__global__ void __launch_bounds__(128)
    wkv_backward_kernel(int64_t B, int64_t T, int64_t C, const acc_t<scalar_t>* __restrict__ w,
                        const acc_t<scalar_t>* __restrict__ u, const scalar_t* __restrict__ k,
                        const scalar_t* __restrict__ v, const acc_t<scalar_t>* __restrict__ s0,
                        const acc_t<scalar_t>* __restrict__ s1, const acc_t<scalar_t>* __restrict__ ckpt,
                        acc_t<scalar_t> eps, const scalar_t* __restrict__ gy, const acc_t<scalar_t>* __restrict__ gs1,
                        scalar_t* __restrict__ gk, scalar_t* __restrict__ gv, acc_t<scalar_t>* __restrict__ part,
                        acc_t<scalar_t>* __restrict__ gs0) {
  using A = acc_t<scalar_t>;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * C) return;
  const int64_t b = idx / C, c = idx - b * C, NC = (T + kWkvChunk - 1) / kWkvChunk;
  const A wc = w[c], uc = u[c];
  const A aaT = s1[(b * 3 + 0) * C + c], bbT = s1[(b * 3 + 1) * C + c], ppT = s1[(b * 3 + 2) * C + c];
  A ga = gs1 ? gs1[(b * 3 + 0) * C + c] : A(0);
  A gb = gs1 ? gs1[(b * 3 + 1) * C + c] : A(0);
  A q = -ppT;
  const A gmax = gs1 ? gs1[(b * 3 + 2) * C + c] - ga * aaT - gb * bbT : A(0);  // see wkv_backward_cpu
  bool found = false;
  A gwa = 0, gua = 0;
  const int64_t base = b * T * C + c;
  for (int64_t j = NC - 1; j >= 0; --j) {
    const int64_t t0 = j * kWkvChunk;
    const A* ck = ckpt + (b * NC + j) * 3 * C + c;
    A aa = ck[0], bb = ck[C], pp = ck[2 * C];
    A kr[kWkvChunk], vr[kWkvChunk], saa[kWkvChunk], sbb[kWkvChunk], spp[kWkvChunk];
    bool rs[kWkvChunk];
    wkv_load_chunk(k, v, base, t0, T, C, kr, vr);
#pragma unroll
    for (int s = 0; s < kWkvChunk; ++s) {
      saa[s] = aa;
      sbb[s] = bb;
      spp[s] = pp;
      rs[s] = (t0 + s < T) && wkv_update(aa, bb, pp, wc, kr[s], vr[s]);
    }
#pragma unroll
    for (int s = kWkvChunk - 1; s >= 0; --s) {
      const int64_t t = t0 + s;
      if (t < T) {
        A gkk, gvv;
        const A gyv = gy ? Conv<scalar_t>::to(gy[base + t * C]) : A(0);
        wkv_backward_step(saa[s], sbb[s], spp[s], wc, uc, kr[s], vr[s], eps, gyv, ga, gb, q, gkk, gvv, gua, gwa);
        if (!found && rs[s]) {
          gkk += gmax;
          gwa -= static_cast<A>(T - 1 - t) * gmax;
          found = true;
        }
        gk[base + t * C] = Conv<scalar_t>::from(gkk);
        gv[base + t * C] = Conv<scalar_t>::from(gvv);
      }
    }
  }
  const A aa0 = s0[(b * 3 + 0) * C + c], bb0 = s0[(b * 3 + 1) * C + c], pp0 = s0[(b * 3 + 2) * C + c];
  const A e = lrnn_exp(q + pp0);
  gs0[(b * 3 + 0) * C + c] = ga * e;
  gs0[(b * 3 + 1) * C + c] = gb * e;
  gs0[(b * 3 + 2) * C + c] = (ga * aa0 + gb * bb0) * e + (found ? A(0) : gmax);
  if (!found) gwa -= static_cast<A>(T) * gmax;
  part[b * C + c] = gwa;
  part[(B + b) * C + c] = gua;
}

template <typename A>
__global__ void wkv_sum_batch_kernel(int64_t B, int64_t C, const A* __restrict__ part, A* __restrict__ gw,
                                     A* __restrict__ gu) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  A sw = 0, su = 0;
  for (int64_t b = 0; b < B; ++b) {
    sw += part[b * C + c];
    su += part[(B + b) * C + c];
  }
  gw[c] = sw;
  gu[c] = su;
}

template <typename scalar_t>
cudaError_t wkv_forward_cuda(int64_t B, int64_t T, int64_t C, const acc_t<scalar_t>* w, const acc_t<scalar_t>* u,
                             const scalar_t* k, const scalar_t* v, const acc_t<scalar_t>* s0, acc_t<scalar_t> eps,
                             scalar_t* y, acc_t<scalar_t>* s1, acc_t<scalar_t>* ckpt, cudaStream_t stream) {
  const int threads = 128;
  if (B * C == 0) return cudaSuccess;  // an empty batch: nothing to do, and a grid of 0 blocks is a launch error
  LRNN_LAUNCH(ceil_div(B * C, threads), threads, 0, stream, wkv_forward_kernel<scalar_t>)(B, T, C, w, u, k, v, s0, eps,
                                                                                          y, s1, ckpt);
  return cudaGetLastError();
}

// part: scratch of 2 * B * C accumulator elements.
template <typename scalar_t>
cudaError_t wkv_backward_cuda(int64_t B, int64_t T, int64_t C, const acc_t<scalar_t>* w, const acc_t<scalar_t>* u,
                              const scalar_t* k, const scalar_t* v, const acc_t<scalar_t>* s0,
                              const acc_t<scalar_t>* s1, const acc_t<scalar_t>* ckpt, acc_t<scalar_t> eps,
                              const scalar_t* gy, const acc_t<scalar_t>* gs1, scalar_t* gk, scalar_t* gv,
                              acc_t<scalar_t>* gw, acc_t<scalar_t>* gu, acc_t<scalar_t>* gs0, acc_t<scalar_t>* part,
                              cudaStream_t stream) {
  const int threads = 128;
  if (C == 0) return cudaSuccess;
  if (B > 0) {  // with an empty batch only the (zero) sums over it remain
    LRNN_LAUNCH(ceil_div(B * C, threads), threads, 0, stream, wkv_backward_kernel<scalar_t>)(
        B, T, C, w, u, k, v, s0, s1, ckpt, eps, gy, gs1, gk, gv, part, gs0);
  }
  LRNN_LAUNCH(ceil_div(C, threads), threads, 0, stream, wkv_sum_batch_kernel<acc_t<scalar_t>>)(B, C, part, gw, gu);
  return cudaGetLastError();
}

}  // namespace lrnn
