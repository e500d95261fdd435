// Paddle binding of the fused RWKV-4 decoding step (kernels/rwkv4_step.h): CPU only, forward only (inference; no
// gradient is defined). Weights arrive as one list in the order paddle_lrnn/models/rwkv4/rwkv4_step.py builds, the
// embedding and the matrices in float32, bfloat16, float16 or int8 (an int8 one followed by its scales), everything
// else float32:
//   emb, blocks.0.ln0.weight, blocks.0.ln0.bias, ln_out.weight, ln_out.bias, head, then per block
//   ln1.weight, ln1.bias, ln2.weight, ln2.bias,
//   att.{time_decay, time_first, time_mix_k, time_mix_v, time_mix_r, key, value, receptance, output}
//   (ffnPre.{time_mix_k, time_mix_r, key, receptance, value} in block 0 when ffn_pre),
//   ffn.{time_mix_k, time_mix_r, key, receptance, value}.
#include "kernels/rwkv4_step.h"

#include <string>

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/rwkv4_step.h"
#include "kernels/cpu_isa_variants.h"

using paddle::Tensor;

namespace {

constexpr const char* kOp = "lrnn_rwkv4_step";

void check_state(const Tensor& t, const char* name, const std::vector<int64_t>& shape, paddle::DataType dtype) {
  lrnn_binding::check_cpu(t, kOp, name, shape, dtype);
}

}  // namespace

std::vector<Tensor> Rwkv4StepForward(const Tensor& ids, const std::vector<Tensor>& weights, const Tensor& wkv,
                                     const Tensor& att_shift, const Tensor& ffn_shift, bool ffn_pre, float ln_eps) {
  PD_CHECK(ids.shape().size() == 2 && ids.shape()[1] == 1, kOp, ": ids must be [B, 1]");
  PD_CHECK(wkv.shape().size() == 4, kOp, ": the wkv state must be [L, B, 3, A]");
  PD_CHECK(!weights.empty() && weights[0].shape().size() == 2, kOp, ": the first weight must be emb.weight [V, C]");
  const int64_t B = ids.shape()[0], L = wkv.shape()[0], A = wkv.shape()[3];
  const int64_t V = weights[0].shape()[0], C = weights[0].shape()[1];
  PD_CHECK(B >= 1 && L >= 1 && C >= 1 && A >= 1, kOp, ": empty batch, model or state");
  check_state(ids, "ids", {B, 1}, paddle::DataType::INT64);
  check_state(wkv, "wkv state", {L, B, 3, A}, paddle::DataType::FLOAT32);
  check_state(att_shift, "att_shift state", {L, B, C}, paddle::DataType::FLOAT32);
  check_state(ffn_shift, "ffn_shift state", {L, B, C}, paddle::DataType::FLOAT32);

  lrnn::Rwkv4StepWeights m;
  lrnn_binding::WeightList w{weights, kOp};
  m.C = C;
  m.V = V;
  m.A = A;
  m.ln_eps = ln_eps;
  m.emb = w.take_weight("emb.weight", {V, C}, V);
  m.ln0_w = w.take("blocks.0.ln0.weight", {C});
  m.ln0_b = w.take("blocks.0.ln0.bias", {C});
  m.ln_out_w = w.take("ln_out.weight", {C});
  m.ln_out_b = w.take("ln_out.bias", {C});
  m.head = w.take_weight("head.weight", {C, V}, V);
  m.F = 0;  // dim_ffn: from the first channel-mix's key
  const auto channel_mix = [&](const std::string& name) {  // "ffn." or "ffnPre."
    lrnn::Rwkv4ChannelMixWeights f;
    f.mix_k = w.take(name + "time_mix_k", {1, 1, C});
    f.mix_r = w.take(name + "time_mix_r", {1, 1, C});
    if (m.F == 0) m.F = w.next_width(name + "key.weight");
    f.key = w.take_weight(name + "key.weight", {C, m.F}, m.F);
    f.receptance = w.take_weight(name + "receptance.weight", {C, C}, C);
    f.value = w.take_weight(name + "value.weight", {m.F, C}, C);
    return f;
  };
  for (int64_t l = 0; l < L; ++l) {
    lrnn::Rwkv4BlockWeights b{};
    w.prefix = "blocks." + std::to_string(l) + ".";
    b.ln1_w = w.take("ln1.weight", {C});
    b.ln1_b = w.take("ln1.bias", {C});
    b.ln2_w = w.take("ln2.weight", {C});
    b.ln2_b = w.take("ln2.bias", {C});
    b.pre_ffn = ffn_pre && l == 0;
    if (b.pre_ffn) {
      b.pre = channel_mix("ffnPre.");
    } else {
      b.att.decay = w.take("att.time_decay", {A});
      b.att.first = w.take("att.time_first", {A});
      b.att.mix_k = w.take("att.time_mix_k", {1, 1, C});
      b.att.mix_v = w.take("att.time_mix_v", {1, 1, C});
      b.att.mix_r = w.take("att.time_mix_r", {1, 1, C});
      b.att.key = w.take_weight("att.key.weight", {C, A}, A);
      b.att.value = w.take_weight("att.value.weight", {C, A}, A);
      b.att.receptance = w.take_weight("att.receptance.weight", {C, A}, A);
      b.att.output = w.take_weight("att.output.weight", {A, C}, C);
    }
    b.ffn = channel_mix("ffn.");
    m.blocks.push_back(b);
  }
  w.prefix.clear();
  w.finish(L, "blocks");
  const int64_t* id = ids.data<int64_t>();
  lrnn_binding::check_ids(id, B, V, kOp, "");

  Tensor logits = paddle::empty({B, 1, V}, paddle::DataType::FLOAT32, ids.place());
  Tensor wkv_out = paddle::empty({L, B, 3, A}, paddle::DataType::FLOAT32, ids.place());
  Tensor att_out = paddle::empty({L, B, C}, paddle::DataType::FLOAT32, ids.place());
  Tensor ffn_out = paddle::empty({L, B, C}, paddle::DataType::FLOAT32, ids.place());
  LRNN_ISA_CALL(rwkv4_step_cpu, m, B, id, wkv.data<float>(), att_shift.data<float>(), ffn_shift.data<float>(),
                logits.data<float>(), wkv_out.data<float>(), att_out.data<float>(), ffn_out.data<float>());
  return {logits, wkv_out, att_out, ffn_out};
}

std::vector<std::vector<int64_t>> Rwkv4StepInferShape(const std::vector<int64_t>& ids,
                                                      const std::vector<std::vector<int64_t>>& weights,
                                                      const std::vector<int64_t>& wkv,
                                                      const std::vector<int64_t>& att_shift,
                                                      const std::vector<int64_t>& ffn_shift, bool ffn_pre,
                                                      float ln_eps) {
  return {{ids[0], 1, weights[0][0]}, wkv, att_shift, ffn_shift};
}

std::vector<paddle::DataType> Rwkv4StepInferDtype(const paddle::DataType& ids,
                                                  const std::vector<paddle::DataType>& weights,
                                                  const paddle::DataType& wkv, const paddle::DataType& att_shift,
                                                  const paddle::DataType& ffn_shift) {
  return {wkv, wkv, att_shift, ffn_shift};
}

PD_BUILD_OP(lrnn_rwkv4_step)
    .Inputs({"Ids", paddle::Vec("Weights"), "Wkv", "AttShift", "FfnShift"})
    .Outputs({"Logits", "WkvOut", "AttShiftOut", "FfnShiftOut"})
    .Attrs({"ffn_pre: bool", "ln_eps: float"})
    .SetKernelFn(PD_KERNEL(Rwkv4StepForward))
    .SetInferShapeFn(PD_INFER_SHAPE(Rwkv4StepInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Rwkv4StepInferDtype));
