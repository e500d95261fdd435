// WKV: the RWKV time-mix recurrence in linear time, per channel c (all sums along time, decay e^-w per step):
//   y_t = (a_t + e^(u+k_t) v_t) / (b_t + e^(u+k_t) + eps),   a_{t+1} = e^-w a_t + e^k_t v_t,   b_{t+1} = e^-w b_t +
//   e^k_t.
// The state (a, b) is kept in log-scaled form (aa, bb, pp) with a = aa e^pp, b = bb e^pp, pp the running maximum
// exponent, so no exp ever sees a positive argument larger than the inputs allow and any k is safe.
// Layouts: w, u [C]; k, v, y [B, T, C]; state [B, 3, C] (aa, bb, pp); checkpoints [B, ceil(T / kWkvChunk), 3, C]
// hold the state before every kWkvChunk-th step so that the backward pass recomputes only inside a chunk.
//
// This header holds the per-token math (shared by the CPU and CUDA kernels) and the CPU kernels.
#ifndef LRNN_KERNELS_WKV_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_WKV_H

#include <vector>

#include "common.h"

LRNN_ISA_BEGIN

constexpr int kWkvChunk = 16;

// y_t from the state before token t. Also returns the scale p, e2 = e^(u+k-p) and the scaled denominator.
template <typename A>
LRNN_HD A wkv_output(A aa, A bb, A pp, A u, A k, A v, A eps, A& p, A& e2, A& den) {
  const A uk = u + k;
  p = lrnn_max(pp, uk);
  const A e1 = lrnn_exp(pp - p);
  e2 = lrnn_exp(uk - p);
  const A eps_term = lrnn_exp(-p) * eps;  // eps in the linear-space denominator, scaled by e^-p like the rest
  den = e1 * bb + e2 + (eps > A(0) ? eps_term : A(0));
  return (e1 * aa + e2 * v) / den;
}

// Folds token t into the state. Returns whether the new scale came from k_t (a "reset" of the running maximum);
// the backward pass needs the last reset to differentiate pp.
template <typename A>
LRNN_HD bool wkv_update(A& aa, A& bb, A& pp, A w, A k, A v) {
  const A decayed = pp - w;
  const bool reset = k > decayed;
  const A p = reset ? k : decayed;
  const A e1 = lrnn_exp(decayed - p), e2 = lrnn_exp(k - p);
  aa = e1 * aa + e2 * v;
  bb = e1 * bb + e2;
  pp = p;
  return reset;
}

// Reverse-mode step through token t. (ga, gb) e^q is the gradient w.r.t. the linear-space state (a, b) after token
// t; on return it is the gradient w.r.t. the state before token t. Every exponent below is <= 0 (q + k <= 0 and
// pp + q - w <= 0 follow from pp being a running maximum), so nothing overflows.
template <typename A>
LRNN_HD void wkv_backward_step(A aa, A bb, A pp, A w, A u, A k, A v, A eps, A gy, A& ga, A& gb, A& q, A& gk, A& gv,
                               A& gu_acc, A& gw_acc) {
  A p, e2, den;
  const A y = wkv_output(aa, bb, pp, u, k, v, eps, p, e2, den);
  const A gn = gy / den;             // d loss / d (scaled numerator)
  const A eq = lrnn_exp(q + k);      // e^k times the scale of (ga, gb)
  const A gcur = gn * e2 * (v - y);  // through e^(u+k) in the current-token term
  gv = gn * e2 + ga * eq;
  gk = gcur + eq * (ga * v + gb);
  gu_acc += gcur;
  gw_acc -= (aa * ga + bb * gb) * lrnn_exp(pp + q - w);
  const A qn = lrnn_max(-p, q - w);
  const A f1 = lrnn_exp(-p - qn), f2 = lrnn_exp(q - w - qn);
  ga = gn * f1 + ga * f2;
  gb = -gn * y * f1 + gb * f2;
  q = qn;
}

#ifndef __CUDA_ARCH__
constexpr int kWkvCpuBlock = 16;  // channels per CPU task: two 8-float vectors

template <typename scalar_t>
void wkv_forward_cpu(int64_t B, int64_t T, int64_t C, const acc_t<scalar_t>* w, const acc_t<scalar_t>* u,
                     const scalar_t* k, const scalar_t* v, const acc_t<scalar_t>* s0, acc_t<scalar_t> eps, scalar_t* y,
                     acc_t<scalar_t>* s1, acc_t<scalar_t>* ckpt) {
  using A = acc_t<scalar_t>;
  const int64_t nblk = (C + kWkvCpuBlock - 1) / kWkvCpuBlock, NC = (T + kWkvChunk - 1) / kWkvChunk;
  parallel_for(
      B * nblk,
      [&](int64_t task) {
        const int64_t b = task / nblk, c0 = (task % nblk) * kWkvCpuBlock;
        const int n = static_cast<int>(std::min<int64_t>(kWkvCpuBlock, C - c0));
        A aa[kWkvCpuBlock], bb[kWkvCpuBlock], pp[kWkvCpuBlock];
        for (int i = 0; i < n; ++i) {
          aa[i] = s0[(b * 3 + 0) * C + c0 + i];
          bb[i] = s0[(b * 3 + 1) * C + c0 + i];
          pp[i] = s0[(b * 3 + 2) * C + c0 + i];
        }
        for (int64_t t = 0; t < T; ++t) {
          if (t % kWkvChunk == 0) {
            A* ck = ckpt + (b * NC + t / kWkvChunk) * 3 * C + c0;
            for (int i = 0; i < n; ++i) {
              ck[i] = aa[i];
              ck[C + i] = bb[i];
              ck[2 * C + i] = pp[i];
            }
          }
          const int64_t row = (b * T + t) * C + c0;
          for (int i = 0; i < n; ++i) {
            const A kk = load<A>(k, row + i), vv = load<A>(v, row + i);
            A p, e2, den;
            store(y, row + i, wkv_output(aa[i], bb[i], pp[i], u[c0 + i], kk, vv, eps, p, e2, den));
            wkv_update(aa[i], bb[i], pp[i], w[c0 + i], kk, vv);
          }
        }
        for (int i = 0; i < n; ++i) {
          s1[(b * 3 + 0) * C + c0 + i] = aa[i];
          s1[(b * 3 + 1) * C + c0 + i] = bb[i];
          s1[(b * 3 + 2) * C + c0 + i] = pp[i];
        }
      },
      30.0 * B * T * C);
}

// gy and gs1 may be null (the output, or the final state, does not reach the loss). gw and gu are summed over the
// batch here, in a fixed order, so results do not depend on the thread count.
template <typename scalar_t>
void wkv_backward_cpu(int64_t B, int64_t T, int64_t C, const acc_t<scalar_t>* w, const acc_t<scalar_t>* u,
                      const scalar_t* k, const scalar_t* v, const acc_t<scalar_t>* s0, const acc_t<scalar_t>* s1,
                      const acc_t<scalar_t>* ckpt, acc_t<scalar_t> eps, const scalar_t* gy, const acc_t<scalar_t>* gs1,
                      scalar_t* gk, scalar_t* gv, acc_t<scalar_t>* gw, acc_t<scalar_t>* gu, acc_t<scalar_t>* gs0) {
  using A = acc_t<scalar_t>;
  const int64_t nblk = (C + kWkvCpuBlock - 1) / kWkvCpuBlock, NC = (T + kWkvChunk - 1) / kWkvChunk;
  std::vector<A> gw_part(B * C), gu_part(B * C);
  parallel_for(
      B * nblk,
      [&](int64_t task) {
        const int64_t b = task / nblk, c0 = (task % nblk) * kWkvCpuBlock;
        const int n = static_cast<int>(std::min<int64_t>(kWkvCpuBlock, C - c0));
        A ga[kWkvCpuBlock], gb[kWkvCpuBlock], q[kWkvCpuBlock], gmax[kWkvCpuBlock], gwa[kWkvCpuBlock], gua[kWkvCpuBlock];
        bool found[kWkvCpuBlock];
        A saa[kWkvChunk][kWkvCpuBlock], sbb[kWkvChunk][kWkvCpuBlock], spp[kWkvChunk][kWkvCpuBlock];
        bool reset[kWkvChunk][kWkvCpuBlock];
        for (int i = 0; i < n; ++i) {
          const int64_t c = c0 + i;
          const A aaT = s1[(b * 3 + 0) * C + c], bbT = s1[(b * 3 + 1) * C + c], ppT = s1[(b * 3 + 2) * C + c];
          ga[i] = gs1 ? gs1[(b * 3 + 0) * C + c] : A(0);
          gb[i] = gs1 ? gs1[(b * 3 + 1) * C + c] : A(0);
          q[i] = -ppT;
          // pp_T itself is a piecewise-linear function of (k, w, pp_0): the part of its gradient not already carried
          // by (aa, bb) goes to whichever input set the final maximum.
          gmax[i] = gs1 ? gs1[(b * 3 + 2) * C + c] - ga[i] * aaT - gb[i] * bbT : A(0);
          found[i] = false;
          gwa[i] = gua[i] = A(0);
        }
        for (int64_t j = NC - 1; j >= 0; --j) {
          const int64_t t0 = j * kWkvChunk, len = std::min<int64_t>(kWkvChunk, T - t0);
          const A* ck = ckpt + (b * NC + j) * 3 * C + c0;
          A aa[kWkvCpuBlock], bb[kWkvCpuBlock], pp[kWkvCpuBlock];
          for (int i = 0; i < n; ++i) {
            aa[i] = ck[i];
            bb[i] = ck[C + i];
            pp[i] = ck[2 * C + i];
          }
          for (int64_t s = 0; s < len; ++s) {
            const int64_t row = (b * T + t0 + s) * C + c0;
            for (int i = 0; i < n; ++i) {
              saa[s][i] = aa[i];
              sbb[s][i] = bb[i];
              spp[s][i] = pp[i];
              reset[s][i] = wkv_update(aa[i], bb[i], pp[i], w[c0 + i], load<A>(k, row + i), load<A>(v, row + i));
            }
          }
          for (int64_t s = len - 1; s >= 0; --s) {
            const int64_t t = t0 + s, row = (b * T + t) * C + c0;
            for (int i = 0; i < n; ++i) {
              A gkk, gvv;
              wkv_backward_step(saa[s][i], sbb[s][i], spp[s][i], w[c0 + i], u[c0 + i], load<A>(k, row + i),
                                load<A>(v, row + i), eps, gy ? load<A>(gy, row + i) : A(0), ga[i], gb[i], q[i], gkk,
                                gvv, gua[i], gwa[i]);
              const bool last_reset = !found[i] && reset[s][i];
              gkk += last_reset ? gmax[i] : A(0);
              gwa[i] -= last_reset ? static_cast<A>(T - 1 - t) * gmax[i] : A(0);
              found[i] = found[i] || last_reset;
              store(gk, row + i, gkk);
              store(gv, row + i, gvv);
            }
          }
        }
        for (int i = 0; i < n; ++i) {
          const int64_t c = c0 + i;
          const A aa0 = s0[(b * 3 + 0) * C + c], bb0 = s0[(b * 3 + 1) * C + c], pp0 = s0[(b * 3 + 2) * C + c];
          const A e = lrnn_exp(q[i] + pp0);
          gs0[(b * 3 + 0) * C + c] = ga[i] * e;
          gs0[(b * 3 + 1) * C + c] = gb[i] * e;
          gs0[(b * 3 + 2) * C + c] = (ga[i] * aa0 + gb[i] * bb0) * e + (found[i] ? A(0) : gmax[i]);
          if (!found[i]) gwa[i] -= static_cast<A>(T) * gmax[i];
          gw_part[b * C + c] = gwa[i];
          gu_part[b * C + c] = gua[i];
        }
      },
      60.0 * B * T * C);
  for (int64_t c = 0; c < C; ++c) {
    A sw = 0, su = 0;
    for (int64_t b = 0; b < B; ++b) {
      sw += gw_part[b * C + c];
      su += gu_part[b * C + c];
    }
    gw[c] = sw;
    gu[c] = su;
  }
}
#endif

LRNN_ISA_END

#endif  // LRNN_KERNELS_WKV_H
