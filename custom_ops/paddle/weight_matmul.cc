// Paddle binding of the weight-only matrix product and the int8 quantiser (kernels/weight_matmul.h): CPU only,
// forward only (inference; no gradient is defined). x is [..., K], its leading dimensions the rows (no reshape on
// the way in or out: a decoding step calls this for every matrix); weight [K, N], or [N, K] with transpose_weight
// (an embedding that is also the output head). paddle_lrnn/ops/weight_matmul.py checks the arguments; the checks
// here only keep a kernel from reading memory it does not own.
#include "kernels/weight_matmul.h"

#include "binding.h"

// the kernels again for AVX2 and AVX-512, run by LRNN_ISA_CALL when the processor has them
#define LRNN_ISA_KERNELS "kernels/weight_matmul.h"
#include "kernels/cpu_isa_variants.h"

using paddle::DataType;
using paddle::Tensor;

namespace {

constexpr const char* kMatmul = "lrnn_weight_matmul";
constexpr const char* kQuantize = "lrnn_quantize_int8";

}  // namespace

std::vector<Tensor> WeightMatmulForward(const Tensor& x, const Tensor& w, const paddle::optional<Tensor>& scale,
                                        bool transpose_weight) {
  PD_CHECK(!x.shape().empty() && w.shape().size() == 2, kMatmul, ": x must be [..., K] and weight [K, N]");
  std::vector<int64_t> y_shape = x.shape();
  const int64_t K = y_shape.back(), M = K > 0 ? x.numel() / K : 0, N = w.shape()[transpose_weight ? 0 : 1];
  y_shape.back() = N;
  lrnn_binding::check_cpu(x, kMatmul, "x", x.shape(), DataType::FLOAT32);
  const std::vector<int64_t> w_shape = transpose_weight ? std::vector<int64_t>{N, K} : std::vector<int64_t>{K, N};
  lrnn_binding::check_cpu(w, kMatmul, "weight", w_shape, w.dtype());
  const bool int8 = w.dtype() == DataType::INT8;
  PD_CHECK(int8 == scale.is_initialized(), kMatmul, ": a scale goes with int8 weights and only with them");
  PD_CHECK(w.dtype() != DataType::FLOAT32, kMatmul, ": weight must be bfloat16, float16 or int8");
  const float* s = nullptr;
  if (int8) {
    lrnn_binding::check_cpu(*scale, kMatmul, "scale", {N}, DataType::FLOAT32);
    s = scale->data<float>();
  }
  Tensor y = paddle::empty(y_shape, DataType::FLOAT32, x.place());
  const lrnn::WeightRef ref = lrnn_binding::weight_ref(w, s);
  const lrnn::WeightProduct product{ref.w, ref.format, K, N, ref.scale, x.data<float>(), y.data<float>()};
  if (transpose_weight)
    LRNN_ISA_CALL(weight_matmul_nt, product, M);
  else
    LRNN_ISA_CALL(weight_matmuls, &product, 1, M);
  return {y};
}

std::vector<std::vector<int64_t>> WeightMatmulInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                                         const paddle::optional<std::vector<int64_t>>& scale,
                                                         bool transpose_weight) {
  std::vector<int64_t> y = x;
  y.back() = w[transpose_weight ? 0 : 1];
  return {y};
}

std::vector<DataType> WeightMatmulInferDtype(const DataType& x, const DataType& w,
                                             const paddle::optional<DataType>& scale) {
  return {DataType::FLOAT32};
}

PD_BUILD_OP(lrnn_weight_matmul)
    .Inputs({"X", "W", paddle::Optional("Scale")})
    .Outputs({"Y"})
    .Attrs({"transpose_weight: bool"})
    .SetKernelFn(PD_KERNEL(WeightMatmulForward))
    .SetInferShapeFn(PD_INFER_SHAPE(WeightMatmulInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(WeightMatmulInferDtype));

std::vector<Tensor> QuantizeInt8Forward(const Tensor& w) {
  PD_CHECK(w.shape().size() == 2, kQuantize, ": weight must be [K, N]");
  lrnn_binding::check_cpu(w, kQuantize, "weight", w.shape(), w.dtype());
  const int64_t K = w.shape()[0], N = w.shape()[1];
  Tensor q = paddle::empty({K, N}, DataType::INT8, w.place());
  Tensor scale = paddle::empty({N}, DataType::FLOAT32, w.place());
  bool finite = false;
  switch (w.dtype()) {  // exact float32 arithmetic: the baseline copy gives the same bits as any other
    case DataType::FLOAT32:
      finite = lrnn::quantize_int8_cpu(K, N, w.data<float>(), q.data<int8_t>(), scale.data<float>());
      break;
    case DataType::BFLOAT16:
      finite = lrnn::quantize_int8_cpu(K, N, w.data<paddle::bfloat16>(), q.data<int8_t>(), scale.data<float>());
      break;
    case DataType::FLOAT16:
      finite = lrnn::quantize_int8_cpu(K, N, w.data<paddle::float16>(), q.data<int8_t>(), scale.data<float>());
      break;
    default:
      PD_THROW(kQuantize, ": weight must be float32, bfloat16 or float16");
  }
  PD_CHECK(finite, kQuantize, ": weight holds infinite or NaN values");
  return {q, scale};
}

std::vector<std::vector<int64_t>> QuantizeInt8InferShape(const std::vector<int64_t>& w) { return {w, {w[1]}}; }

std::vector<DataType> QuantizeInt8InferDtype(const DataType& w) { return {DataType::INT8, DataType::FLOAT32}; }

PD_BUILD_OP(lrnn_quantize_int8)
    .Inputs({"W"})
    .Outputs({"Q", "Scale"})
    .SetKernelFn(PD_KERNEL(QuantizeInt8Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(QuantizeInt8InferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(QuantizeInt8InferDtype));
