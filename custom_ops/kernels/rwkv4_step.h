// One RWKV-4 decoding step (T = 1) for a small batch on CPU: the whole network in one call, so that a
// generated token costs one pass over the weights instead of about 40 framework operators per block. It shares the
// RWKV-v2 step's parts (rwkv2_step.h): the matrix-vector products of weight_matmul.h that stream every weight once
// over the thread pool, the layer norm, the token-shift mix, the WKV update of wkv.h.
//
// The specification is the eager step of paddle_lrnn (layers/rwkv4.py, models/rwkv4/modeling.py): x = ln0(emb) in
// block 0, then pre-LN blocks x = x + att(ln1(x)); x = x + ffn(ln2(x)); token-shift mixes prev + (x - prev) * mu with
// one mu per projection; time-mix k = K xk, v = V xv, out = O(sigmoid(R xr) * wkv) (w = e^time_decay,
// u = time_first, no epsilon); channel-mix sigmoid(R xr) * V relu(K xk)^2; then ln_out and the head.
// Layouts: Linear weights [in, out]; wkv state [L, B, 3, A] (aa, bb, pp); shift states [L, B, C]. Matrices and
// embedding in their storage format (WeightRef), everything else float32, as in the RWKV-v2 step.
#ifndef LRNN_KERNELS_RWKV4_STEP_WEIGHTS_H  // the weights' layout: one type for every instruction-set copy
#define LRNN_KERNELS_RWKV4_STEP_WEIGHTS_H

#include <vector>

#include "weight_matmul.h"

// In a namespace of their own, like every type the kernels of several instruction sets share (cpu_isa.h).
namespace lrnn {
namespace types {

struct Rwkv4TimeMixWeights {
  const float *decay, *first, *mix_k, *mix_v, *mix_r;
  WeightRef key, value, receptance, output;  // key [C, A]
};

struct Rwkv4ChannelMixWeights {
  const float *mix_k, *mix_r;
  WeightRef key, receptance, value;  // key [C, F], value [F, C]
};

struct Rwkv4BlockWeights {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  bool pre_ffn;  // block 0 of the "RWKV-ffnPre" variant: the channel-mix `pre` stands where the time-mix would
  Rwkv4TimeMixWeights att;
  Rwkv4ChannelMixWeights pre, ffn;
};

struct Rwkv4StepWeights {
  int64_t C, V, A, F;  // n_embd, vocabulary, dim_att, dim_ffn
  float ln_eps;
  WeightRef emb, head;
  const float *ln0_w, *ln0_b, *ln_out_w, *ln_out_b;
  std::vector<Rwkv4BlockWeights> blocks;
};

}  // namespace types
using types::Rwkv4BlockWeights;
using types::Rwkv4ChannelMixWeights;
using types::Rwkv4StepWeights;
using types::Rwkv4TimeMixWeights;
}  // namespace lrnn

#endif  // LRNN_KERNELS_RWKV4_STEP_WEIGHTS_H

#ifndef LRNN_KERNELS_RWKV4_STEP_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_RWKV4_STEP_H

#include "rwkv2_step.h"

LRNN_ISA_BEGIN

// Buffers of one step, kept between calls on the same thread.
struct Rwkv4StepScratch {
  std::vector<float> cur, x, xk, xv, xr, k, v, r, y, h;

  static Rwkv4StepScratch& of_this_thread() {
    static thread_local Rwkv4StepScratch s;
    return s;
  }
};

// Channel-mix of the normalised rows `x` with the previous token's rows `prev`; adds its output to `acc`.
inline void rwkv4_channel_mix(const Rwkv4ChannelMixWeights& f, int64_t B, int64_t C, int64_t F, const float* x,
                              const float* prev, float* acc, Rwkv4StepScratch& s) {
  step_mix(B, C, x, prev, f.mix_k, s.xk.data());
  step_mix(B, C, x, prev, f.mix_r, s.xr.data());
  weight_matmuls({step_product(f.key, C, F, s.xk.data(), s.h.data()),
                  step_product(f.receptance, C, C, s.xr.data(), s.r.data())},
                 B);
  for (int64_t i = 0; i < B * F; ++i) s.h[i] = s.h[i] > 0 ? s.h[i] * s.h[i] : 0.0f;
  weight_matmuls({step_product(f.value, F, C, s.h.data(), s.v.data())}, B);
  for (int64_t i = 0; i < B * C; ++i) acc[i] += step_sigmoid(s.r[i]) * s.v[i];
}

// Time-mix: adds its output to `acc` and advances the WKV state [B, 3, A] in place.
inline void rwkv4_time_mix(const Rwkv4TimeMixWeights& a, int64_t B, int64_t C, int64_t A, const float* x,
                           const float* prev, float* wkv, float* acc, Rwkv4StepScratch& s) {
  step_mix(B, C, x, prev, a.mix_k, s.xk.data());
  step_mix(B, C, x, prev, a.mix_v, s.xv.data());
  step_mix(B, C, x, prev, a.mix_r, s.xr.data());
  weight_matmuls({step_product(a.key, C, A, s.xk.data(), s.k.data()),
                  step_product(a.value, C, A, s.xv.data(), s.v.data()),
                  step_product(a.receptance, C, A, s.xr.data(), s.r.data())},
                 B);
  for (int64_t b = 0; b < B; ++b) {
    float *aa = wkv + b * 3 * A, *bb = aa + A, *pp = bb + A;
    for (int64_t c = 0; c < A; ++c) {
      const int64_t i = b * A + c;
      float p, e2, den;
      const float y = wkv_output(aa[c], bb[c], pp[c], a.first[c], s.k[i], s.v[i], 0.0f, p, e2, den);
      wkv_update(aa[c], bb[c], pp[c], std::exp(a.decay[c]), s.k[i], s.v[i]);
      s.y[i] = step_sigmoid(s.r[i]) * y;
    }
  }
  weight_matmuls({step_product(a.output, A, C, s.y.data(), s.x.data())}, B);
  for (int64_t i = 0; i < B * C; ++i) acc[i] += s.x[i];
}

// One step. ids [B] (in [0, V): the binding checks); wkv/att_shift/ffn_shift: the state in, then (the *_out
// pointers) the state after the token; logits [B, V].
inline void rwkv4_step_cpu(const Rwkv4StepWeights& m, int64_t B, const int64_t* ids, const float* wkv_in,
                           const float* att_in, const float* ffn_in, float* logits, float* wkv_out, float* att_out,
                           float* ffn_out) {
  const int64_t C = m.C, A = m.A, F = m.F, L = static_cast<int64_t>(m.blocks.size());
  Rwkv4StepScratch& s = Rwkv4StepScratch::of_this_thread();  // a reference: the pool's threads see this one
  for (auto* v : {&s.cur, &s.x, &s.xk, &s.xv, &s.xr}) v->resize(B * C);
  for (auto* v : {&s.k, &s.v, &s.r, &s.y}) v->resize(B * std::max(A, C));
  s.h.resize(B * F);
  for (int64_t b = 0; b < B; ++b) wm_embedding_row(m.emb, ids[b], C, s.x.data() + b * C);
  step_layer_norm(B, C, s.x.data(), m.ln0_w, m.ln0_b, m.ln_eps, s.cur.data());
  std::copy_n(wkv_in, L * B * 3 * A, wkv_out);
  for (int64_t l = 0; l < L; ++l) {
    const Rwkv4BlockWeights& blk = m.blocks[l];
    float *att_new = att_out + l * B * C, *ffn_new = ffn_out + l * B * C;
    step_layer_norm(B, C, s.cur.data(), blk.ln1_w, blk.ln1_b, m.ln_eps, att_new);
    if (blk.pre_ffn)
      rwkv4_channel_mix(blk.pre, B, C, F, att_new, att_in + l * B * C, s.cur.data(), s);
    else
      rwkv4_time_mix(blk.att, B, C, A, att_new, att_in + l * B * C, wkv_out + l * B * 3 * A, s.cur.data(), s);
    step_layer_norm(B, C, s.cur.data(), blk.ln2_w, blk.ln2_b, m.ln_eps, ffn_new);
    rwkv4_channel_mix(blk.ffn, B, C, F, ffn_new, ffn_in + l * B * C, s.cur.data(), s);
  }
  step_layer_norm(B, C, s.cur.data(), m.ln_out_w, m.ln_out_b, m.ln_eps, s.x.data());
  weight_matmuls({step_product(m.head, C, m.V, s.x.data(), logits)}, B);
}

LRNN_ISA_END

#endif  // LRNN_KERNELS_RWKV4_STEP_H
