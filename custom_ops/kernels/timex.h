// TimeX: RWKV-v2's causal depthwise 1-D convolution, with a per-channel kernel of L lags (w [C, L], x and out
// [B, C, T]). With D = min(T, L) lags in use:
//   out[b, c, t] = eps + sum_{d=0..min(t, D-1)} w[c, L-1-d] * x[b, c, t-d]
// Lag d reads column L-1-d, so for T < L the last T columns are used (the original passed all L columns and read
// wrong weights whenever T != L; see the reference). The original has L = ctx_len >= T; a kernel shorter than the
// sequence (T > L) is the ordinary causal depthwise convolution (HGRN2's short convolution). Backward:
//   gx[b, c, u] = sum_{t=u..u+D-1} g[b, c, t] * w[c, L-1-(t-u)],   gw[c, L-1-d] = sum_b sum_{t>=d} g[b, c, t] * x[b, c,
//   t-d]
// and the first L-D columns of gw are zero. O(T * D) per row.
#ifndef LRNN_KERNELS_TIMEX_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_TIMEX_H

#include <vector>

#include "common.h"

LRNN_ISA_BEGIN

#ifndef __CUDA_ARCH__
// Every inner loop below is an axpy over contiguous memory (reversed copies make the indices ascend), so it
// vectorises without reassociating any sum.
template <typename scalar_t>
void timex_forward_cpu(int64_t B, int64_t C, int64_t T, int64_t L, const scalar_t* w, const scalar_t* x,
                       acc_t<scalar_t> eps, scalar_t* out) {
  using A = acc_t<scalar_t>;
  parallel_for(
      B * C,
      [&](int64_t row) {
        const int64_t c = row % C, D = std::min(T, L);
        std::vector<A> wr(D), acc(T, A(0));
        for (int64_t d = 0; d < D; ++d) wr[d] = load<A>(w, c * L + L - 1 - d);
        for (int64_t u = 0; u < T; ++u) {
          const A xu = load<A>(x, row * T + u);
          A* o = acc.data() + u;
          const A* wd = wr.data();
          const int64_t n = std::min(T - u, D);
          for (int64_t d = 0; d < n; ++d) o[d] += xu * wd[d];
        }
        for (int64_t t = 0; t < T; ++t) store(out, row * T + t, acc[t] + eps);
      },
      1.0 * B * C * T * std::min(T, L));
}

template <typename scalar_t>
void timex_backward_cpu(int64_t B, int64_t C, int64_t T, int64_t L, const scalar_t* w, const scalar_t* x,
                        const scalar_t* g, scalar_t* gw, scalar_t* gx) {
  using A = acc_t<scalar_t>;
  const int64_t D = std::min(T, L);
  parallel_for(
      C,
      [&](int64_t c) {
        // wrev[i] = weight of lag D-1-i; xrev[i] = x[T-1-i] per row.
        std::vector<A> wrev(D), xrev(T), gr(T), gxr(T), gwr(D, A(0));
        for (int64_t i = 0; i < D; ++i) wrev[i] = load<A>(w, c * L + L - D + i);
        for (int64_t b = 0; b < B; ++b) {
          const int64_t row = b * C + c;
          for (int64_t i = 0; i < T; ++i) {
            gr[i] = load<A>(g, row * T + i);
            xrev[i] = load<A>(x, row * T + T - 1 - i);
            gxr[i] = A(0);
          }
          for (int64_t t = 0; t < T; ++t) {
            const A gt = gr[t];
            const int64_t u0 = std::max<int64_t>(0, t - D + 1), nd = std::min(t + 1, D);
            const A* wt = wrev.data() + (D - 1 - t + u0);  // wt[j] = weight of lag t-(u0+j)
            const A* xt = xrev.data() + (T - 1 - t);       // xt[d] = x[t-d]
            A* gxo = gxr.data() + u0;
            A* gwo = gwr.data();
            for (int64_t j = 0; j <= t - u0; ++j) gxo[j] += gt * wt[j];
            for (int64_t d = 0; d < nd; ++d) gwo[d] += gt * xt[d];
          }
          for (int64_t u = 0; u < T; ++u) store(gx, row * T + u, gxr[u]);
        }
        for (int64_t col = 0; col < L; ++col) {
          const int64_t d = L - 1 - col;
          store(gw, c * L + col, d < D ? gwr[d] : A(0));
        }
      },
      2.0 * B * C * T * D);
}
#endif

LRNN_ISA_END

#endif  // LRNN_KERNELS_TIMEX_H
