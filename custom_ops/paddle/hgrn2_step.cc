// Paddle binding of the fused HGRN2 decoding step (kernels/hgrn2_step.h): CPU only, forward only (inference; no
// gradient is defined). Weights arrive as one list in the order paddle_lrnn/models/hgrn2/hgrn2_step.py builds, the
// embedding and the matrices in float32, bfloat16, float16 or int8 (an int8 one followed by its scales), everything
// else float32:
//   model.embeddings.weight, model.norm.weight, lm_head.weight (unless tied), then per layer
//   attn_norm.weight, attn.{q_proj, f_proj, i_proj}.weight, attn.{q_conv1d, f_conv1d, i_conv1d}.weight (with short
//   convolutions), attn.g_norm.weight (with elementwise_affine), attn.o_proj.weight, mlp_norm.weight,
//   mlp.{gate_proj, up_proj, down_proj}.weight,
//   and last, with use_lower_bound, the layers' lower bounds beta [L, H * K] (row 0 unused: layer 0 is unbounded).
// The convolution states [L, B, C, W] are given with short convolutions (all three), else none (then returned empty).
#include "kernels/hgrn2_step.h"

#include <string>

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/hgrn2_step.h"
#include "kernels/cpu_isa_variants.h"

using paddle::Tensor;

namespace {
constexpr const char* kOp = "lrnn_hgrn2_step";
}  // namespace

std::vector<Tensor> Hgrn2StepForward(const Tensor& ids, const std::vector<Tensor>& weights, const Tensor& recurrent,
                                     const paddle::optional<Tensor>& conv_q, const paddle::optional<Tensor>& conv_f,
                                     const paddle::optional<Tensor>& conv_i, int num_layers, int num_heads, bool tied,
                                     bool affine, bool lower_bound, float norm_eps, float g_norm_eps) {
  PD_CHECK(ids.shape().size() == 2 && ids.shape()[1] == 1, kOp, ": ids must be [B, 1]");
  PD_CHECK(!weights.empty() && weights[0].shape().size() == 2, kOp,
           ": the first weight must be model.embeddings.weight [V, D]");
  const int64_t B = ids.shape()[0], L = num_layers, H = num_heads, V = weights[0].shape()[0];
  const int64_t D = weights[0].shape()[1];
  PD_CHECK(B >= 1 && L >= 1 && D >= 1 && H >= 1 && D % H == 0, kOp, ": empty batch or model, or ", H,
           " heads for hidden size ", D);
  const bool short_conv = conv_q.is_initialized();  // (the weights then hold the convolutions' filters)
  PD_CHECK(conv_f.is_initialized() == short_conv && conv_i.is_initialized() == short_conv, kOp,
           ": give all three convolution states (conv_q, conv_f, conv_i), or none");

  // The weights first (the widths F = H * K, I and W are read off the first layer's), then the state against them.
  lrnn::Hgrn2StepWeights m;
  lrnn_binding::WeightList w{weights, kOp};
  m.D = D;
  m.V = V;
  m.H = H;
  m.norm_eps = norm_eps;
  m.g_norm_eps = g_norm_eps;
  m.tied = tied;
  m.emb = w.take_weight("model.embeddings.weight", {V, D}, V);
  m.norm = w.take("model.norm.weight", {D});
  if (!tied) m.head = w.take_weight("lm_head.weight", {D, V}, V);
  int64_t F = 0, I = 0, W = 0;
  for (int64_t l = 0; l < L; ++l) {
    lrnn::Hgrn2LayerWeights b{};
    w.prefix = "model.layers." + std::to_string(l) + ".";
    b.attn_norm = w.take("attn_norm.weight", {D});
    if (l == 0) {
      F = w.next_width("attn.q_proj.weight");
      PD_CHECK(F % H == 0, kOp, ": the forget width ", F, " is no multiple of the ", H, " heads");
    }
    b.q_proj = w.take_weight("attn.q_proj.weight", {D, F}, F);
    b.f_proj = w.take_weight("attn.f_proj.weight", {D, F}, F);
    b.i_proj = w.take_weight("attn.i_proj.weight", {D, D}, D);
    if (short_conv) {
      if (l == 0) W = w.next_width("attn.q_conv1d.weight");
      b.q_conv = w.take("attn.q_conv1d.weight", {F, W});
      b.f_conv = w.take("attn.f_conv1d.weight", {F, W});
      b.i_conv = w.take("attn.i_conv1d.weight", {D, W});
    }
    if (affine) b.g_norm = w.take("attn.g_norm.weight", {D});
    b.o_proj = w.take_weight("attn.o_proj.weight", {D, D}, D);
    b.mlp_norm = w.take("mlp_norm.weight", {D});
    if (l == 0) I = w.next_width("mlp.gate_proj.weight");
    b.gate = w.take_weight("mlp.gate_proj.weight", {D, I}, I);
    b.up = w.take_weight("mlp.up_proj.weight", {D, I}, I);
    b.down = w.take_weight("mlp.down_proj.weight", {I, D}, D);
    m.layers.push_back(b);
  }
  w.prefix.clear();
  if (lower_bound) {
    const float* beta = w.take("lower bounds", {L, F});
    for (int64_t l = 1; l < L; ++l) m.layers[l].lower_bound = beta + l * F;
  }
  w.finish(L, "layers");
  m.K = F / H;
  m.F = F;
  m.I = I;
  m.W = W;
  const int64_t Vh = D / H;
  lrnn_binding::check_cpu(ids, kOp, "ids", {B, 1}, paddle::DataType::INT64);
  lrnn_binding::check_cpu(recurrent, kOp, "recurrent state", {L, B, H, m.K, Vh}, paddle::DataType::FLOAT32);
  const Tensor* conv[3] = {};
  if (short_conv) {
    conv[0] = &*conv_q;
    conv[1] = &*conv_f;
    conv[2] = &*conv_i;
    const int64_t widths[3] = {F, F, D};
    const char* names[3] = {"conv_q state", "conv_f state", "conv_i state"};
    for (int j = 0; j < 3; ++j)
      lrnn_binding::check_cpu(*conv[j], kOp, names[j], {L, B, widths[j], W}, paddle::DataType::FLOAT32);
  }
  const int64_t* id = ids.data<int64_t>();
  lrnn_binding::check_ids(id, B, V, kOp, "");

  Tensor logits = paddle::empty({B, 1, V}, paddle::DataType::FLOAT32, ids.place());
  Tensor rec_out = paddle::empty({L, B, H, m.K, Vh}, paddle::DataType::FLOAT32, ids.place());
  std::vector<Tensor> outs = {logits, rec_out};
  const float* conv_in[3] = {};
  float* conv_out[3] = {};
  for (int j = 0; j < 3; ++j) {
    outs.push_back(paddle::empty(short_conv ? conv[j]->shape() : std::vector<int64_t>{0},
                                 paddle::DataType::FLOAT32, ids.place()));
    if (short_conv) {
      conv_in[j] = conv[j]->data<float>();
      conv_out[j] = outs.back().data<float>();
    }
  }
  LRNN_ISA_CALL(hgrn2_step_cpu, m, B, id, recurrent.data<float>(), conv_in, logits.data<float>(),
                rec_out.data<float>(), conv_out);
  return outs;
}

std::vector<std::vector<int64_t>> Hgrn2StepInferShape(
    const std::vector<int64_t>& ids, const std::vector<std::vector<int64_t>>& weights,
    const std::vector<int64_t>& recurrent, const paddle::optional<std::vector<int64_t>>& conv_q,
    const paddle::optional<std::vector<int64_t>>& conv_f, const paddle::optional<std::vector<int64_t>>& conv_i,
    int num_layers, int num_heads, bool tied, bool affine, bool lower_bound, float norm_eps, float g_norm_eps) {
  const auto shape = [](const paddle::optional<std::vector<int64_t>>& s) {
    return s ? *s : std::vector<int64_t>{0};
  };
  return {{ids[0], 1, weights[0][0]}, recurrent, shape(conv_q), shape(conv_f), shape(conv_i)};
}

std::vector<paddle::DataType> Hgrn2StepInferDtype(const paddle::DataType& ids,
                                                  const std::vector<paddle::DataType>& weights,
                                                  const paddle::DataType& recurrent,
                                                  const paddle::optional<paddle::DataType>& conv_q,
                                                  const paddle::optional<paddle::DataType>& conv_f,
                                                  const paddle::optional<paddle::DataType>& conv_i) {
  return {recurrent, recurrent, recurrent, recurrent, recurrent};
}

PD_BUILD_OP(lrnn_hgrn2_step)
    .Inputs({"Ids", paddle::Vec("Weights"), "Recurrent", paddle::Optional("ConvQ"), paddle::Optional("ConvF"),
             paddle::Optional("ConvI")})
    .Outputs({"Logits", "RecurrentOut", "ConvQOut", "ConvFOut", "ConvIOut"})
    .Attrs({"num_layers: int", "num_heads: int", "tie_word_embeddings: bool", "elementwise_affine: bool",
            "use_lower_bound: bool", "norm_eps: float", "g_norm_eps: float"})
    .SetKernelFn(PD_KERNEL(Hgrn2StepForward))
    .SetInferShapeFn(PD_INFER_SHAPE(Hgrn2StepInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Hgrn2StepInferDtype));
