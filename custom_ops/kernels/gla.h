// GLA: the gated outer-product recurrence of HGRN2 in GLA form. Per batch b and head h, with row vectors q_t, k_t,
// g_t of K, v_t, o_t of V, and the state S [K, V] (K-first):
//   S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   o_t = scale q_t S_t,   g_t <= 0 the log forget gate.
// Layouts: q, k, g [B, T, H, K]; v, o [B, T, H, V]; states [B, H, K, V] in the accumulator type.
//
// Reverse mode (do_t, gS_T the cotangents of o_t and of the final state; dS_t the gradient w.r.t. S_t):
//   dS_T = gS_T + scale q_T^T do_T,   dS_t = diag(exp(g_{t+1})) dS_{t+1} + scale q_t^T do_t,
//   gS_0 = diag(exp(g_1)) dS_1,   dq_t = scale do_t S_t^T,   dk_t = v_t dS_t^T,   dv_t = k_t dS_t,
//   dg_t = exp(g_t) * rowsum(dS_t * S_{t-1}) = sum_{s >= t} (q_s * dq_s - k_s * dk_s) + rowsum(gS_T * S_T).
// The last form follows from exp(g_t) S_{t-1} = S_t - k_t^T v_t and rowsum(dS_t * S_t) = q_t * dq_t + dg_{t+1}
// (products * elementwise, rowsum over V). It needs no state history: a forward re-sweep gives dq, a reverse sweep
// gives dk, dv and dg.
//
// This header holds the per-element math (shared by the CPU and CUDA kernels) and the CPU kernels.
#ifndef LRNN_KERNELS_GLA_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_GLA_H

#include <vector>

#include "common.h"

LRNN_ISA_BEGIN

// Offset of row t of head h of batch b in a [B, T, H, n] tensor.
LRNN_HD int64_t gla_row(int64_t b, int64_t t, int64_t h, int64_t T, int64_t H, int64_t n) {
  return ((b * T + t) * H + h) * n;
}

// One state element through one token: decay, then add k v.
template <typename A>
LRNN_HD A gla_update(A s, A decay, A kk, A vv) {
  return decay * s + kk * vv;
}

// One element of dS_t from dS_{t+1}: decay_next = exp(g_{t+1}) (1 for the last token), sq = scale q_t[k].
template <typename A>
LRNN_HD A gla_grad_update(A ds, A decay_next, A sq, A dov) {
  return decay_next * ds + sq * dov;
}

// The term of token t in the reverse running sum that gives dg (see above).
template <typename A>
LRNN_HD A gla_dg_term(A q, A dq, A k, A dk) {
  return q * dq - k * dk;
}

#ifndef __CUDA_ARCH__
namespace gla_cpu {

template <typename A, typename T>
inline void load_row(A* __restrict__ out, const T* p, int64_t off, int64_t n, A mul = A(1)) {
  for (int64_t i = 0; i < n; ++i) out[i] = mul * load<A>(p, off + i);
}

}  // namespace gla_cpu

// One task per (batch, head): the state [K, V] stays in cache while the task walks the sequence. The inner loops run
// over V, contiguous, and vectorise.
template <typename scalar_t>
void gla_forward_cpu(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* q, const scalar_t* k,
                     const scalar_t* v, const scalar_t* g, const acc_t<scalar_t>* s0, acc_t<scalar_t> scale,
                     scalar_t* o, acc_t<scalar_t>* s1) {
  using A = acc_t<scalar_t>;
  parallel_for(
      B * H,
      [&](int64_t task) {
        const int64_t b = task / H, h = task % H;
        std::vector<A> buf(K * V + 3 * K + 2 * V);
        A* __restrict__ S = buf.data();
        A* __restrict__ qa = S + K * V;
        A* __restrict__ ka = qa + K;
        A* __restrict__ da = ka + K;
        A* __restrict__ va = da + K;
        A* __restrict__ oa = va + V;
        std::copy(s0 + task * K * V, s0 + (task + 1) * K * V, S);
        for (int64_t t = 0; t < T; ++t) {
          const int64_t rk = gla_row(b, t, h, T, H, K), rv = gla_row(b, t, h, T, H, V);
          gla_cpu::load_row(qa, q, rk, K, scale);
          gla_cpu::load_row(ka, k, rk, K);
          gla_cpu::load_row(da, g, rk, K);
          for (int64_t i = 0; i < K; ++i) da[i] = lrnn_exp(da[i]);
          gla_cpu::load_row(va, v, rv, V);
          for (int64_t j = 0; j < V; ++j) oa[j] = A(0);
          for (int64_t i = 0; i < K; ++i) {
            A* __restrict__ srow = S + i * V;
            const A d = da[i], kk = ka[i], qq = qa[i];
            for (int64_t j = 0; j < V; ++j) {
              const A s = gla_update(srow[j], d, kk, va[j]);
              srow[j] = s;
              oa[j] += qq * s;
            }
          }
          for (int64_t j = 0; j < V; ++j) store(o, rv + j, oa[j]);
        }
        std::copy(S, S + K * V, s1 + task * K * V);
      },
      4.0 * B * H * T * K * V);
}

// go and gs1 may be null (that output does not reach the loss): they count as zeros.
template <typename scalar_t>
void gla_backward_cpu(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const scalar_t* q, const scalar_t* k,
                      const scalar_t* v, const scalar_t* g, const acc_t<scalar_t>* s0, acc_t<scalar_t> scale,
                      const scalar_t* go, const acc_t<scalar_t>* gs1, scalar_t* gq, scalar_t* gk, scalar_t* gv,
                      scalar_t* gg, acc_t<scalar_t>* gs0) {
  using A = acc_t<scalar_t>;
  parallel_for(
      B * H,
      [&](int64_t task) {
        const int64_t b = task / H, h = task % H;
        std::vector<A> buf(2 * K * V + 7 * K + 3 * V + T * K);
        A* __restrict__ S = buf.data();
        A* __restrict__ dS = S + K * V;
        A* __restrict__ qa = dS + K * V;
        A* __restrict__ ka = qa + K;
        A* __restrict__ da = ka + K;
        A* __restrict__ dn = da + K;  // exp(g) of the token after the current one
        A* __restrict__ dqa = dn + K;
        A* __restrict__ dka = dqa + K;
        A* __restrict__ r = dka + K;  // reverse running sum that becomes dg
        A* __restrict__ va = r + K;
        A* __restrict__ doa = va + V;
        A* __restrict__ dva = doa + V;
        A* __restrict__ qdq = dva + V;  // q_t * dq_t for every token, [T, K]
        // Forward re-sweep: S_t and dq_t = scale do_t S_t^T.
        std::copy(s0 + task * K * V, s0 + (task + 1) * K * V, S);
        for (int64_t t = 0; t < T; ++t) {
          const int64_t rk = gla_row(b, t, h, T, H, K), rv = gla_row(b, t, h, T, H, V);
          gla_cpu::load_row(ka, k, rk, K);
          gla_cpu::load_row(da, g, rk, K);
          for (int64_t i = 0; i < K; ++i) da[i] = lrnn_exp(da[i]);
          gla_cpu::load_row(va, v, rv, V);
          if (go) {
            gla_cpu::load_row(doa, go, rv, V, scale);
          } else {
            for (int64_t j = 0; j < V; ++j) doa[j] = A(0);
          }
          for (int64_t i = 0; i < K; ++i) {
            A* __restrict__ srow = S + i * V;
            const A d = da[i], kk = ka[i];
            A acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < V; ++j) {
              const A s = gla_update(srow[j], d, kk, va[j]);
              srow[j] = s;
              acc += doa[j] * s;
            }
            dqa[i] = acc;
          }
          for (int64_t i = 0; i < K; ++i) {
            store(gq, rk + i, dqa[i]);
            qdq[t * K + i] = load<A>(q, rk + i) * dqa[i];
          }
        }
        // S is now S_T: the boundary term rowsum(gS_T * S_T) starts the running sum.
        for (int64_t i = 0; i < K; ++i) {
          A acc = 0;
          if (gs1) {
            const A* gsrow = gs1 + task * K * V + i * V;
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < V; ++j) acc += gsrow[j] * S[i * V + j];
          }
          r[i] = acc;
          dn[i] = A(1);
        }
        if (gs1) {
          std::copy(gs1 + task * K * V, gs1 + (task + 1) * K * V, dS);
        } else {
          std::fill(dS, dS + K * V, A(0));
        }
        // Reverse sweep: dS_t, dk_t, dv_t, dg_t.
        for (int64_t t = T - 1; t >= 0; --t) {
          const int64_t rk = gla_row(b, t, h, T, H, K), rv = gla_row(b, t, h, T, H, V);
          gla_cpu::load_row(qa, q, rk, K, scale);
          gla_cpu::load_row(ka, k, rk, K);
          gla_cpu::load_row(va, v, rv, V);
          if (go) {
            gla_cpu::load_row(doa, go, rv, V);
          } else {
            for (int64_t j = 0; j < V; ++j) doa[j] = A(0);
          }
          for (int64_t j = 0; j < V; ++j) dva[j] = A(0);
          for (int64_t i = 0; i < K; ++i) {
            A* __restrict__ dsrow = dS + i * V;
            const A d = dn[i], sq = qa[i], kk = ka[i];
            A acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < V; ++j) {
              const A ds = gla_grad_update(dsrow[j], d, sq, doa[j]);
              dsrow[j] = ds;
              acc += ds * va[j];
              dva[j] += kk * ds;
            }
            dka[i] = acc;
          }
          gla_cpu::load_row(da, g, rk, K);
          for (int64_t i = 0; i < K; ++i) {
            r[i] += gla_dg_term(qdq[t * K + i], A(1), ka[i], dka[i]);
            store(gk, rk + i, dka[i]);
            store(gg, rk + i, r[i]);
            dn[i] = lrnn_exp(da[i]);
          }
          for (int64_t j = 0; j < V; ++j) store(gv, rv + j, dva[j]);
        }
        A* out = gs0 + task * K * V;
        for (int64_t i = 0; i < K; ++i)
          for (int64_t j = 0; j < V; ++j) out[i * V + j] = dn[i] * dS[i * V + j];
      },
      12.0 * B * H * T * K * V);
}
#endif

LRNN_ISA_END

#endif  // LRNN_KERNELS_GLA_H
