// One RWKV-v2 decoding step (T = 1) for a small batch on CPU: the whole network in one call, so that a
// generated token costs one pass over the weights instead of about 150 framework operators. The matrix-vector
// products stream every weight once (weight_matmul.h's products, the independent ones of a layer in one pass over
// the thread pool); the rest (layer norms, token-shift
// mixes, the WKV update, gates, the copy head) is elementwise work on the calling thread.
//
// The specification is the eager step of paddle_lrnn (layers/rwkv2.py, models/rwkv2/modeling.py): post-LN blocks
// x = ln1(x); x = ln2(x + att(x)); x = x + ffn(x), token shift mix prev + (x - prev) * mu, time-mix
// k = min(K xx, k_clamp), v = V xx, out = O(sigmoid(R xx) * wkv) with the WKV step of wkv.h, channel-mix
// sigmoid(R xx) * V relu(K xx)^2, then ln_out, the head, and the copy bonus (q . k_u) / D on the logit of token u for
// the last ctx_len tokens u (the current one included).
// Layouts: Linear weights [in, out]; wkv state [L, B, 3, C] (aa, bb, pp); shift states [L, B, C]; copy-head memory
// keys [B, M, D] and ids [B, M]. The matrices and the embedding are read in their storage format (float32,
// bfloat16, float16, or int8 with per-column scales: WeightRef) and widened to float32 as they stream; every other
// weight, the activations, the sums and the state are float32.
#ifndef LRNN_KERNELS_RWKV2_STEP_WEIGHTS_H  // the weights' layout: one type for every instruction-set copy
#define LRNN_KERNELS_RWKV2_STEP_WEIGHTS_H

#include <vector>

#include "weight_matmul.h"

// In a namespace of their own, like every type the kernels of several instruction sets share (cpu_isa.h).
namespace lrnn {
namespace types {

struct Rwkv2TimeMixWeights {
  const float *decay, *first, *mix;  // decay: time_decay (w = e^decay)
  WeightRef key, value, receptance, output;
};

struct Rwkv2ChannelMixWeights {
  const float* mix;
  WeightRef key, receptance, value;  // key [C, 4C], value [4C, C]
};

struct Rwkv2BlockWeights {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  bool pre_ffn;  // block 0 of the "RWKV-ffnPre" variant: the channel-mix `pre` stands where the time-mix would
  Rwkv2TimeMixWeights att;
  Rwkv2ChannelMixWeights pre, ffn;
};

struct Rwkv2StepWeights {
  int64_t C, V, D, ctx_len;
  float k_clamp, eps, ln_eps;  // RWKV_K_CLAMP, RWKV_K_EPS, the LayerNorms' epsilon
  WeightRef emb, head, head_q, head_k;
  const float *ln_out_w, *ln_out_b;
  std::vector<Rwkv2BlockWeights> blocks;
};

}  // namespace types
using types::Rwkv2BlockWeights;
using types::Rwkv2ChannelMixWeights;
using types::Rwkv2StepWeights;
using types::Rwkv2TimeMixWeights;
}  // namespace lrnn

#endif  // LRNN_KERNELS_RWKV2_STEP_WEIGHTS_H

#ifndef LRNN_KERNELS_RWKV2_STEP_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_RWKV2_STEP_H

#include "weight_matmul.h"
#include "wkv.h"

LRNN_ISA_BEGIN

// y[b, :] = x[b, :] @ w for b < B, w [in, out]; x rows are `in` floats apart, y rows `out` floats apart.
inline WeightProduct step_product(const WeightRef& w, int64_t in, int64_t out, const float* x, float* y) {
  return {w.w, w.format, in, out, w.scale, x, y};
}

inline void step_layer_norm(int64_t B, int64_t C, const float* x, const float* w, const float* b, float eps, float* y) {
  for (int64_t r = 0; r < B; ++r, x += C, y += C) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += x[c];
    mean /= C;
    for (int64_t c = 0; c < C; ++c) var += (x[c] - mean) * (x[c] - mean);
    const float m = static_cast<float>(mean), inv = static_cast<float>(1.0 / std::sqrt(var / C + eps));
    for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * inv * w[c] + b[c];
  }
}

// Token shift: prev + (x - prev) * mu, the previous token's row from `prev`.
inline void step_mix(int64_t B, int64_t C, const float* x, const float* prev, const float* mu, float* out) {
  for (int64_t r = 0; r < B; ++r)
    for (int64_t c = 0; c < C; ++c) out[r * C + c] = prev[r * C + c] + (x[r * C + c] - prev[r * C + c]) * mu[c];
}

inline float step_sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Buffers of one step, kept between calls on the same thread.
struct Rwkv2StepScratch {
  std::vector<float> cur, x, xx, k, v, r, y, h, q, hk, scores;

  static Rwkv2StepScratch& of_this_thread() {
    static thread_local Rwkv2StepScratch s;
    return s;
  }
};

// Channel-mix of the normalised rows `x` with the previous token's rows `prev`; adds its output to `acc`.
inline void step_channel_mix(const Rwkv2ChannelMixWeights& f, int64_t B, int64_t C, const float* x, const float* prev,
                             float* acc, Rwkv2StepScratch& s) {
  step_mix(B, C, x, prev, f.mix, s.xx.data());
  weight_matmuls({step_product(f.key, C, 4 * C, s.xx.data(), s.h.data()),
                  step_product(f.receptance, C, C, s.xx.data(), s.r.data())},
                 B);
  for (int64_t i = 0; i < 4 * B * C; ++i) s.h[i] = s.h[i] > 0 ? s.h[i] * s.h[i] : 0.0f;
  weight_matmuls({step_product(f.value, 4 * C, C, s.h.data(), s.v.data())}, B);
  for (int64_t i = 0; i < B * C; ++i) acc[i] += step_sigmoid(s.r[i]) * s.v[i];
}

// Time-mix: adds its output to `acc` and advances the WKV state [B, 3, C] in place.
inline void step_time_mix(const Rwkv2StepWeights& m, const Rwkv2TimeMixWeights& a, int64_t B, const float* x,
                          const float* prev, float* wkv, float* acc, Rwkv2StepScratch& s) {
  const int64_t C = m.C;
  step_mix(B, C, x, prev, a.mix, s.xx.data());
  weight_matmuls({step_product(a.key, C, C, s.xx.data(), s.k.data()),
                  step_product(a.value, C, C, s.xx.data(), s.v.data()),
                  step_product(a.receptance, C, C, s.xx.data(), s.r.data())},
                 B);
  for (int64_t b = 0; b < B; ++b) {
    float *aa = wkv + b * 3 * C, *bb = aa + C, *pp = bb + C;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = b * C + c;
      const float k = std::min(s.k[i], m.k_clamp), w = std::exp(a.decay[c]);
      float p, e2, den;
      const float y = wkv_output(aa[c], bb[c], pp[c], a.first[c], k, s.v[i], m.eps, p, e2, den);
      wkv_update(aa[c], bb[c], pp[c], w, k, s.v[i]);
      s.y[i] = step_sigmoid(s.r[i]) * y;
    }
  }
  weight_matmuls({step_product(a.output, C, C, s.y.data(), s.k.data())}, B);
  for (int64_t i = 0; i < B * C; ++i) acc[i] += s.k[i];
}

// One step. ids [B]; wkv/att_shift/ffn_shift: the state in, then (the *_out pointers) the state after the token;
// mem_keys [B, M, D] and mem_ids [B, M] the copy head's memory (M may be 0); keys_out [B, M_out, D] and
// ids_out [B, M_out] receive the last M_out <= M + 1 entries of that memory followed by this token; logits [B, V].
// Token ids must lie in [0, V) (the binding checks).
inline void rwkv2_step_cpu(const Rwkv2StepWeights& m, int64_t B, const int64_t* ids, const float* wkv_in,
                           const float* att_in, const float* ffn_in, int64_t M, const float* mem_keys,
                           const int64_t* mem_ids, int64_t M_out, float* logits, float* wkv_out, float* att_out,
                           float* ffn_out, float* keys_out, int64_t* ids_out) {
  const int64_t C = m.C, V = m.V, D = m.D, L = static_cast<int64_t>(m.blocks.size());
  Rwkv2StepScratch& s = Rwkv2StepScratch::of_this_thread();  // a reference: the pool's threads see this one
  for (auto* v : {&s.cur, &s.x, &s.xx, &s.k, &s.v, &s.r, &s.y}) v->resize(B * C);
  s.h.resize(4 * B * C);
  s.q.resize(B * D);
  s.hk.resize(B * D);
  s.scores.resize(B * (M + 1));
  std::vector<float>& cur = s.cur;
  for (int64_t b = 0; b < B; ++b) wm_embedding_row(m.emb, ids[b], C, cur.data() + b * C);
  std::copy_n(wkv_in, L * B * 3 * C, wkv_out);
  for (int64_t l = 0; l < L; ++l) {
    const Rwkv2BlockWeights& blk = m.blocks[l];
    float *att_new = att_out + l * B * C, *ffn_new = ffn_out + l * B * C;
    step_layer_norm(B, C, cur.data(), blk.ln1_w, blk.ln1_b, m.ln_eps, att_new);
    std::copy_n(att_new, B * C, s.x.data());  // x + att(x) accumulates here
    if (blk.pre_ffn)
      step_channel_mix(blk.pre, B, C, att_new, att_in + l * B * C, s.x.data(), s);
    else
      step_time_mix(m, blk.att, B, att_new, att_in + l * B * C, wkv_out + l * B * 3 * C, s.x.data(), s);
    step_layer_norm(B, C, s.x.data(), blk.ln2_w, blk.ln2_b, m.ln_eps, ffn_new);
    std::copy_n(ffn_new, B * C, cur.data());
    step_channel_mix(blk.ffn, B, C, ffn_new, ffn_in + l * B * C, cur.data(), s);
  }
  step_layer_norm(B, C, cur.data(), m.ln_out_w, m.ln_out_b, m.ln_eps, s.x.data());
  weight_matmuls({step_product(m.head, C, V, s.x.data(), logits), step_product(m.head_q, C, D, s.x.data(), s.q.data()),
                  step_product(m.head_k, C, D, s.x.data(), s.hk.data())},
                 B);
  // Copy head: memory entry j is M - j tokens back, visible while that is below ctx_len; this token always is.
  const int64_t first = std::max<int64_t>(0, M - (m.ctx_len - 1)), visible = M + 1 - first;
  constexpr int64_t kKeysPerTask = 64;
  const int64_t chunks = (visible + kKeysPerTask - 1) / kKeysPerTask;
  parallel_for(
      B * chunks,
      [&](int64_t t) {
        const int64_t b = t / chunks, j0 = first + (t % chunks) * kKeysPerTask;
        const float* q = s.q.data() + b * D;
        for (int64_t j = j0; j < std::min(j0 + kKeysPerTask, M + 1); ++j) {
          const float* key = j < M ? mem_keys + (b * M + j) * D : s.hk.data() + b * D;
          float dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < D; ++d) dot += q[d] * key[d];
          s.scores[b * (M + 1) + j] = dot / static_cast<float>(D);
        }
      },
      2.0 * B * visible * D);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = first; j <= M; ++j)
      logits[b * V + (j < M ? mem_ids[b * M + j] : ids[b])] += s.scores[b * (M + 1) + j];
  if (M_out == 0) return;
  const int64_t kept = M_out - 1;  // the new memory: the last M_out entries of (memory, this token)
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(mem_keys + (b * M + M - kept) * D, kept * D, keys_out + b * M_out * D);
    std::copy_n(mem_ids + b * M + M - kept, kept, ids_out + b * M_out);
    std::copy_n(s.hk.data() + b * D, D, keys_out + (b * M_out + kept) * D);
    ids_out[b * M_out + kept] = ids[b];
  }
}

LRNN_ISA_END

#endif  // LRNN_KERNELS_RWKV2_STEP_H
