// TimeX: RWKV-v2's causal depthwise 1-D convolution with a kernel as long as the context.
//   out[b, c, t] = eps + sum_{d=0..t} w[c, L-1-d] * x[b, c, t-d]       (w [C, L], x and out [B, C, T], T <= L)
// Lag d reads column L-1-d, so for T < L the last T columns are used (the original passed all L columns and read
// wrong weights whenever T != L; see the reference). Backward:
//   gx[b, c, u] = sum_{t>=u} g[b, c, t] * w[c, L-1-(t-u)],   gw[c, L-1-d] = sum_b sum_{t>=d} g[b, c, t] * x[b, c, t-d]
// and the first L-T columns of gw are zero. O(T^2) per row, as the original.
#pragma once

#include <vector>

#include "common.h"

namespace lrnn {

#ifndef __CUDA_ARCH__
// Every inner loop below is an axpy over contiguous memory (reversed copies make the indices ascend), so it
// vectorises without reassociating any sum.
template <typename scalar_t>
void timex_forward_cpu(int64_t B, int64_t C, int64_t T, int64_t L, const scalar_t* w, const scalar_t* x,
                       acc_t<scalar_t> eps, scalar_t* out) {
  using A = acc_t<scalar_t>;
  parallel_for(B * C, [&](int64_t row) {
    const int64_t c = row % C;
    std::vector<A> wr(T), acc(T, A(0));
    for (int64_t d = 0; d < T; ++d) wr[d] = load<A>(w, c * L + L - 1 - d);
    for (int64_t u = 0; u < T; ++u) {
      const A xu = load<A>(x, row * T + u);
      A* o = acc.data() + u;
      const A* wd = wr.data();
      for (int64_t d = 0; d < T - u; ++d) o[d] += xu * wd[d];
    }
    for (int64_t t = 0; t < T; ++t) store(out, row * T + t, acc[t] + eps);
  });
}

template <typename scalar_t>
void timex_backward_cpu(int64_t B, int64_t C, int64_t T, int64_t L, const scalar_t* w, const scalar_t* x,
                        const scalar_t* g, scalar_t* gw, scalar_t* gx) {
  using A = acc_t<scalar_t>;
  parallel_for(C, [&](int64_t c) {
    // wrev[i] = weight of lag T-1-i; xrev likewise reversed per row.
    std::vector<A> wrev(T), xrev(T), gr(T), gxr(T), gwr(T, A(0));
    for (int64_t i = 0; i < T; ++i) wrev[i] = load<A>(w, c * L + L - T + i);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t row = b * C + c;
      for (int64_t i = 0; i < T; ++i) {
        gr[i] = load<A>(g, row * T + i);
        xrev[i] = load<A>(x, row * T + T - 1 - i);
        gxr[i] = A(0);
      }
      for (int64_t t = 0; t < T; ++t) {
        const A gt = gr[t];
        const A* wt = wrev.data() + T - 1 - t;  // wt[u] = weight of lag t-u
        const A* xt = xrev.data() + T - 1 - t;  // xt[d] = x[t-d]
        A* gxo = gxr.data();
        A* gwo = gwr.data();
        for (int64_t u = 0; u <= t; ++u) gxo[u] += gt * wt[u];
        for (int64_t d = 0; d <= t; ++d) gwo[d] += gt * xt[d];
      }
      for (int64_t u = 0; u < T; ++u) store(gx, row * T + u, gxr[u]);
    }
    for (int64_t col = 0; col < L; ++col) {
      const int64_t d = L - 1 - col;
      store(gw, c * L + col, d < T ? gwr[d] : A(0));
    }
  });
}
#endif

}  // namespace lrnn
