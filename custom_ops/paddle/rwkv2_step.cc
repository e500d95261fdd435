// Paddle binding of the fused RWKV-v2 decoding step (kernels/rwkv2_step.h): CPU only, forward only (inference; no
// gradient is defined). Weights arrive as one list in the order paddle_lrnn/models/rwkv2/rwkv2_step.py builds,
// the embedding and the matrices in float32, bfloat16, float16 or int8 (an int8 one followed by its scales),
// everything else float32:
//   emb, ln_out.weight, ln_out.bias, head, head_q, head_k, then per block
//   ln1.weight, ln1.bias, ln2.weight, ln2.bias,
//   att.{time_decay, time_first, time_mix, key, value, receptance, output}  (ffnPre.{time_mix, key, receptance,
//   value} in block 0 when ffn_pre), ffn.{time_mix, key, receptance, value}.
#include "kernels/rwkv2_step.h"

#include <string>

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/rwkv2_step.h"
#include "kernels/cpu_isa_variants.h"

using paddle::Tensor;

namespace {

constexpr const char* kOp = "lrnn_rwkv2_step";

void check_state(const Tensor& t, const char* name, const std::vector<int64_t>& shape, paddle::DataType dtype) {
  lrnn_binding::check_cpu(t, kOp, name, shape, dtype);
}

int64_t memory_after(int64_t M, int64_t ctx_len) { return std::min(M + 1, ctx_len - 1); }

}  // namespace

std::vector<Tensor> Rwkv2StepForward(const Tensor& ids, const std::vector<Tensor>& weights, const Tensor& wkv,
                                     const Tensor& att_shift, const Tensor& ffn_shift,
                                     const paddle::optional<Tensor>& head_keys,
                                     const paddle::optional<Tensor>& head_ids, bool ffn_pre, int ctx_len, float k_clamp,
                                     float eps, float ln_eps) {
  PD_CHECK(ids.shape().size() == 2 && ids.shape()[1] == 1, kOp, ": ids must be [B, 1]");
  PD_CHECK(wkv.shape().size() == 4, kOp, ": the wkv state must be [L, B, 3, C]");
  PD_CHECK(!weights.empty() && weights[0].shape().size() == 2, kOp, ": the first weight must be emb.weight [V, C]");
  PD_CHECK(ctx_len >= 1, kOp, ": ctx_len must be at least 1");
  const int64_t B = ids.shape()[0], L = wkv.shape()[0], V = weights[0].shape()[0], C = weights[0].shape()[1];
  PD_CHECK(B >= 1 && L >= 1 && C >= 1, kOp, ": empty batch, model or state");
  check_state(ids, "ids", {B, 1}, paddle::DataType::INT64);
  check_state(wkv, "wkv state", {L, B, 3, C}, paddle::DataType::FLOAT32);
  check_state(att_shift, "att_shift state", {L, B, C}, paddle::DataType::FLOAT32);
  check_state(ffn_shift, "ffn_shift state", {L, B, C}, paddle::DataType::FLOAT32);

  lrnn::Rwkv2StepWeights m;
  lrnn_binding::WeightList w{weights, kOp};
  m.C = C;
  m.V = V;
  m.ctx_len = ctx_len;
  m.k_clamp = k_clamp;
  m.eps = eps;
  m.ln_eps = ln_eps;
  m.emb = w.take_weight("emb.weight", {V, C}, V);
  m.ln_out_w = w.take("ln_out.weight", {C});
  m.ln_out_b = w.take("ln_out.bias", {C});
  m.head = w.take_weight("head.weight", {C, V}, V);
  PD_CHECK(w.next < weights.size() && weights[w.next].shape().size() == 2, kOp, ": head_q.weight must be [C, D]");
  m.D = weights[w.next].shape()[1];
  m.head_q = w.take_weight("head_q.weight", {C, m.D}, m.D);
  m.head_k = w.take_weight("head_k.weight", {C, m.D}, m.D);
  const auto channel_mix = [&](const std::string& name) {  // "ffn." or "ffnPre."
    lrnn::Rwkv2ChannelMixWeights f;
    f.mix = w.take(name + "time_mix", {1, 1, C});
    f.key = w.take_weight(name + "key.weight", {C, 4 * C}, 4 * C);
    f.receptance = w.take_weight(name + "receptance.weight", {C, C}, C);
    f.value = w.take_weight(name + "value.weight", {4 * C, C}, C);
    return f;
  };
  for (int64_t l = 0; l < L; ++l) {
    lrnn::Rwkv2BlockWeights b{};
    w.prefix = "blocks." + std::to_string(l) + ".";
    b.ln1_w = w.take("ln1.weight", {C});
    b.ln1_b = w.take("ln1.bias", {C});
    b.ln2_w = w.take("ln2.weight", {C});
    b.ln2_b = w.take("ln2.bias", {C});
    b.pre_ffn = ffn_pre && l == 0;
    if (b.pre_ffn) {
      b.pre = channel_mix("ffnPre.");
    } else {
      b.att.decay = w.take("att.time_decay", {C, 1});  // [C, 1] as the original stores them
      b.att.first = w.take("att.time_first", {C, 1});
      b.att.mix = w.take("att.time_mix", {1, 1, C});
      b.att.key = w.take_weight("att.key.weight", {C, C}, C);
      b.att.value = w.take_weight("att.value.weight", {C, C}, C);
      b.att.receptance = w.take_weight("att.receptance.weight", {C, C}, C);
      b.att.output = w.take_weight("att.output.weight", {C, C}, C);
    }
    b.ffn = channel_mix("ffn.");
    m.blocks.push_back(b);
  }
  w.prefix.clear();
  w.finish(L, "blocks");

  PD_CHECK(head_keys.is_initialized() == head_ids.is_initialized(), kOp,
           ": give both head_keys and head_ids, or neither");
  int64_t M = 0;
  const float* mem_keys = nullptr;
  const int64_t* mem_ids = nullptr;
  if (head_keys.is_initialized()) {
    PD_CHECK(head_keys->shape().size() == 3, kOp, ": head_keys must be [B, M, D]");
    M = head_keys->shape()[1];
    check_state(*head_keys, "head_keys", {B, M, m.D}, paddle::DataType::FLOAT32);
    check_state(*head_ids, "head_ids", {B, M}, paddle::DataType::INT64);
    mem_keys = head_keys->data<float>();
    mem_ids = head_ids->data<int64_t>();
    lrnn_binding::check_ids(mem_ids, B * M, V, kOp, "head_ids: ");
  }
  lrnn_binding::check_ids(ids.data<int64_t>(), B, V, kOp, "ids: ");

  const int64_t M_out = memory_after(M, ctx_len);
  Tensor logits = paddle::empty({B, 1, V}, paddle::DataType::FLOAT32, ids.place());
  Tensor wkv_out = paddle::empty({L, B, 3, C}, paddle::DataType::FLOAT32, ids.place());
  Tensor att_out = paddle::empty({L, B, C}, paddle::DataType::FLOAT32, ids.place());
  Tensor ffn_out = paddle::empty({L, B, C}, paddle::DataType::FLOAT32, ids.place());
  Tensor keys_out = paddle::empty({B, M_out, m.D}, paddle::DataType::FLOAT32, ids.place());
  Tensor ids_out = paddle::empty({B, M_out}, paddle::DataType::INT64, ids.place());
  LRNN_ISA_CALL(rwkv2_step_cpu, m, B, ids.data<int64_t>(), wkv.data<float>(), att_shift.data<float>(),
                ffn_shift.data<float>(), M, mem_keys, mem_ids, M_out, logits.data<float>(), wkv_out.data<float>(),
                att_out.data<float>(), ffn_out.data<float>(), keys_out.data<float>(), ids_out.data<int64_t>());
  return {logits, wkv_out, att_out, ffn_out, keys_out, ids_out};
}

std::vector<std::vector<int64_t>> Rwkv2StepInferShape(
    const std::vector<int64_t>& ids, const std::vector<std::vector<int64_t>>& weights, const std::vector<int64_t>& wkv,
    const std::vector<int64_t>& att_shift, const std::vector<int64_t>& ffn_shift,
    const paddle::optional<std::vector<int64_t>>& head_keys, const paddle::optional<std::vector<int64_t>>& head_ids,
    bool ffn_pre, int ctx_len, float k_clamp, float eps, float ln_eps) {
  // head_q.weight [C, D] follows head.weight, or head.weight and its scales [V] when it is int8
  const int64_t B = ids[0], V = weights[0][0], D = weights[weights[4].size() == 1 ? 5 : 4][1];
  const int64_t M_out = memory_after(head_keys ? (*head_keys)[1] : 0, ctx_len);
  return {{B, 1, V}, wkv, att_shift, ffn_shift, {B, M_out, D}, {B, M_out}};
}

std::vector<paddle::DataType> Rwkv2StepInferDtype(const paddle::DataType& ids,
                                                  const std::vector<paddle::DataType>& weights,
                                                  const paddle::DataType& wkv, const paddle::DataType& att_shift,
                                                  const paddle::DataType& ffn_shift,
                                                  const paddle::optional<paddle::DataType>& head_keys,
                                                  const paddle::optional<paddle::DataType>& head_ids) {
  return {wkv, wkv, att_shift, ffn_shift, wkv, ids};
}

PD_BUILD_OP(lrnn_rwkv2_step)
    .Inputs({"Ids", paddle::Vec("Weights"), "Wkv", "AttShift", "FfnShift", paddle::Optional("HeadKeys"),
             paddle::Optional("HeadIds")})
    .Outputs({"Logits", "WkvOut", "AttShiftOut", "FfnShiftOut", "HeadKeysOut", "HeadIdsOut"})
    .Attrs({"ffn_pre: bool", "ctx_len: int", "k_clamp: float", "eps: float", "ln_eps: float"})
    .SetKernelFn(PD_KERNEL(Rwkv2StepForward))
    .SetInferShapeFn(PD_INFER_SHAPE(Rwkv2StepInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Rwkv2StepInferDtype));
