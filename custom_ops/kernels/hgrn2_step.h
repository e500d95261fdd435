// One HGRN2 decoding step (T = 1) for a small batch on CPU: the whole network in one call, so that a generated
// token costs one pass over the weights instead of about 50 framework operators per layer. The matrix-vector
// products stream every weight once (weight_matmul.h, the independent ones of a sub-layer in one pass over the
// thread pool); the recurrence is gla.h's kernel (T = 1, one task per batch row and head); the rest (norms, short
// convolutions, gates) is elementwise work on the calling thread.
//
// The specification is the eager step of paddle_lrnn (layers/hgrn2.py, layers/mlp.py, layers/conv.py, norms.py,
// models/hgrn2/modeling.py): pre-norm layers h = x + attn(rms(x)); x = h + mlp(rms(h)) with
//   q, f, i = projections of rms(x) (then each through its short convolution, with use_short_conv)
//   g = logsigmoid(f), bounded after layer 0 (use_lower_bound): g = logaddexp(log beta, log1p(-beta) + g)
//   S = diag(exp(g)) S + (-expm1(g))^T i, o = K^-0.5 silu(q) S per head; attn = o_proj(rms(o, g_norm, g_norm_eps))
//   mlp = down(silu(gate) * up); then the final RMSNorm and the head (lm_head, or the embedding transposed if tied).
// Layouts: Linear weights [in, out]; recurrent state [L, B, H, K, V] (K-first); convolution states [L, B, C, W], the
// last W inputs oldest first, filters [C, W]. Matrices and embedding in their storage format (WeightRef),
// everything else float32.
#ifndef LRNN_KERNELS_HGRN2_STEP_WEIGHTS_H  // the weights' layout: one type for every instruction-set copy
#define LRNN_KERNELS_HGRN2_STEP_WEIGHTS_H

#include <vector>

#include "weight_matmul.h"

// In a namespace of their own, like every type the kernels of several instruction sets share (cpu_isa.h).
namespace lrnn {
namespace types {

struct Hgrn2LayerWeights {
  const float *attn_norm, *mlp_norm;
  const float *q_conv, *f_conv, *i_conv;  // [C, W] (null without short convolutions)
  const float* g_norm;                    // null without elementwise_affine
  const float* lower_bound;               // beta [F] (null in layer 0 and without use_lower_bound)
  WeightRef q_proj, f_proj, i_proj, o_proj, gate, up, down;
};

struct Hgrn2StepWeights {
  int64_t D, V, H, K, F, I, W;  // hidden, vocabulary, heads, key channels per head, H * K, MLP width, conv taps
  float norm_eps, g_norm_eps;
  bool tied;  // the head is the embedding, transposed
  WeightRef emb, head;
  const float* norm;
  std::vector<Hgrn2LayerWeights> layers;
};

}  // namespace types
using types::Hgrn2LayerWeights;
using types::Hgrn2StepWeights;
}  // namespace lrnn

#endif  // LRNN_KERNELS_HGRN2_STEP_WEIGHTS_H

#ifndef LRNN_KERNELS_HGRN2_STEP_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_HGRN2_STEP_H

#include "gla.h"
#include "rwkv2_step.h"  // step_product, step_sigmoid

LRNN_ISA_BEGIN

// Buffers of one step, kept between calls on the same thread.
struct Hgrn2StepScratch {
  std::vector<float> cur, x, q, f, i, k, o, y, gate, up;

  static Hgrn2StepScratch& of_this_thread() {
    static thread_local Hgrn2StepScratch s;
    return s;
  }
};

// y = x / sqrt(mean(x^2) + eps) * w (w null: no scale), per row of C.
inline void step_rms_norm(int64_t B, int64_t C, const float* x, const float* w, float eps, float* y) {
  for (int64_t r = 0; r < B; ++r, x += C, y += C) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / C) + eps);
    for (int64_t c = 0; c < C; ++c) y[c] = w ? x[c] * inv * w[c] : x[c] * inv;
  }
}

// One token through a short convolution, in place on x [B, C]: the cache [B, C, W] (oldest first) gains x and drops
// its oldest input (cache_in -> cache_out), and x becomes sum_j filter[c, j] * cache_out[b, c, j].
inline void step_short_conv(int64_t B, int64_t C, int64_t W, const float* filter, const float* cache_in, float* x,
                            float* cache_out) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const float* in = cache_in + (b * C + c) * W;
      float* out = cache_out + (b * C + c) * W;
      std::copy(in + 1, in + W, out);
      out[W - 1] = x[b * C + c];
      float sum = 0.0f;
      for (int64_t j = 0; j < W; ++j) sum += filter[c * W + j] * out[j];
      x[b * C + c] = sum;
    }
}

// q <- silu(q); f <- g, the (bounded) log forget gate; k = -expm1(g). beta [F] or null.
inline void hgrn2_gates(int64_t B, int64_t F, const float* beta, float* q, float* f, float* k) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < F; ++c) {
      const int64_t n = b * F + c;
      q[n] = q[n] * step_sigmoid(q[n]);
      float g = std::min(f[n], 0.0f) - std::log1p(std::exp(-std::fabs(f[n])));  // logsigmoid, exact near 0
      if (beta) {  // logaddexp(log beta, log1p(-beta) + g): beta + (1 - beta) sigmoid(f) in log space
        const float a = std::log(beta[c]), e = std::log1p(-beta[c]) + g;
        const float m = std::max(a, e);
        g = m + std::log1p(std::exp(std::min(a, e) - m));
      }
      f[n] = g;
      k[n] = -std::expm1(g);
    }
}

// The token mixer of one layer on the normalised rows x: adds its output to acc, advances the recurrent state
// [B, H, K, V] (rec_in -> rec_out) and the convolution caches (conv_in[3] -> conv_out[3], each [B, C, W]).
inline void hgrn2_attention(const Hgrn2StepWeights& m, const Hgrn2LayerWeights& w, int64_t B, const float* x,
                            const float* rec_in, float* rec_out, const float* const* conv_in, float* const* conv_out,
                            float* acc, Hgrn2StepScratch& s) {
  const int64_t D = m.D, F = m.F;
  weight_matmuls({step_product(w.q_proj, D, F, x, s.q.data()), step_product(w.f_proj, D, F, x, s.f.data()),
                  step_product(w.i_proj, D, D, x, s.i.data())},
                 B);
  if (w.q_conv) {
    step_short_conv(B, F, m.W, w.q_conv, conv_in[0], s.q.data(), conv_out[0]);
    step_short_conv(B, F, m.W, w.f_conv, conv_in[1], s.f.data(), conv_out[1]);
    step_short_conv(B, D, m.W, w.i_conv, conv_in[2], s.i.data(), conv_out[2]);
  }
  hgrn2_gates(B, F, w.lower_bound, s.q.data(), s.f.data(), s.k.data());
  gla_forward_cpu<float>(B, 1, m.H, m.K, D / m.H, s.q.data(), s.k.data(), s.i.data(), s.f.data(), rec_in,
                         1.0f / std::sqrt(static_cast<float>(m.K)), s.o.data(), rec_out);
  step_rms_norm(B, D, s.o.data(), w.g_norm, m.g_norm_eps, s.o.data());
  weight_matmuls({step_product(w.o_proj, D, D, s.o.data(), s.y.data())}, B);
  for (int64_t n = 0; n < B * D; ++n) acc[n] += s.y[n];
}

// The SwiGLU MLP on the normalised rows x; adds its output to acc.
inline void hgrn2_mlp(const Hgrn2StepWeights& m, const Hgrn2LayerWeights& w, int64_t B, const float* x, float* acc,
                      Hgrn2StepScratch& s) {
  const int64_t D = m.D, I = m.I;
  weight_matmuls({step_product(w.gate, D, I, x, s.gate.data()), step_product(w.up, D, I, x, s.up.data())}, B);
  for (int64_t n = 0; n < B * I; ++n) s.gate[n] = s.gate[n] * step_sigmoid(s.gate[n]) * s.up[n];
  weight_matmuls({step_product(w.down, I, D, s.gate.data(), s.y.data())}, B);
  for (int64_t n = 0; n < B * D; ++n) acc[n] += s.y[n];
}

// One step. ids [B] (in [0, V): the binding checks); rec_in [L, B, H, K, V] and, with short convolutions,
// conv_in[3] [L, B, C, W] (q, f, i): the state before the token; *_out the state after it; logits [B, V].
inline void hgrn2_step_cpu(const Hgrn2StepWeights& m, int64_t B, const int64_t* ids, const float* rec_in,
                           const float* const* conv_in, float* logits, float* rec_out, float* const* conv_out) {
  const int64_t D = m.D, F = m.F, L = static_cast<int64_t>(m.layers.size());
  const int64_t rec_size = B * m.H * m.K * (D / m.H), conv_size[3] = {B * F * m.W, B * F * m.W, B * D * m.W};
  Hgrn2StepScratch& s = Hgrn2StepScratch::of_this_thread();  // a reference: the pool's threads see this one
  for (auto* v : {&s.cur, &s.x, &s.i, &s.o, &s.y}) v->resize(B * D);
  for (auto* v : {&s.q, &s.f, &s.k}) v->resize(B * F);
  for (auto* v : {&s.gate, &s.up}) v->resize(B * m.I);
  for (int64_t b = 0; b < B; ++b) wm_embedding_row(m.emb, ids[b], D, s.cur.data() + b * D);
  for (int64_t l = 0; l < L; ++l) {
    const Hgrn2LayerWeights& w = m.layers[l];
    const float* cin[3] = {};
    float* cout[3] = {};
    if (w.q_conv)
      for (int j = 0; j < 3; ++j) {
        cin[j] = conv_in[j] + l * conv_size[j];
        cout[j] = conv_out[j] + l * conv_size[j];
      }
    step_rms_norm(B, D, s.cur.data(), w.attn_norm, m.norm_eps, s.x.data());
    hgrn2_attention(m, w, B, s.x.data(), rec_in + l * rec_size, rec_out + l * rec_size, cin, cout, s.cur.data(), s);
    step_rms_norm(B, D, s.cur.data(), w.mlp_norm, m.norm_eps, s.x.data());
    hgrn2_mlp(m, w, B, s.x.data(), s.cur.data(), s);
  }
  step_rms_norm(B, D, s.cur.data(), m.norm, m.norm_eps, s.x.data());
  const WeightProduct head = step_product(m.tied ? m.emb : m.head, D, m.V, s.x.data(), logits);
  if (m.tied)
    weight_matmul_nt(head, B);
  else
    weight_matmuls({head}, B);
}

LRNN_ISA_END

#endif  // LRNN_KERNELS_HGRN2_STEP_H
