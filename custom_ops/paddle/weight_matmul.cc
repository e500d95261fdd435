// Paddle binding of the weight-only matrix product and the int8 quantiser (kernels/weight_matmul.h): CPU only,
// forward only (inference; no gradient is defined). x is [..., K], its leading dimensions the rows (no reshape on
// the way in or out: a decoding step calls this for every matrix). paddle_lrnn/ops/weight_matmul.py checks the
// arguments; the checks here only keep a kernel from reading memory it does not own.
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

std::vector<Tensor> WeightMatmulForward(const Tensor& x, const Tensor& w, const paddle::optional<Tensor>& scale) {
  PD_CHECK(!x.shape().empty() && w.shape().size() == 2, kMatmul, ": x must be [..., K] and weight [K, N]");
  std::vector<int64_t> y_shape = x.shape();
  const int64_t K = y_shape.back(), M = K > 0 ? x.numel() / K : 0, N = w.shape()[1];
  y_shape.back() = N;
  lrnn_binding::check_cpu(x, kMatmul, "x", x.shape(), DataType::FLOAT32);
  lrnn_binding::check_cpu(w, kMatmul, "weight", {K, N}, w.dtype());
  const bool int8 = w.dtype() == DataType::INT8;
  PD_CHECK(int8 == scale.is_initialized(), kMatmul, ": a scale goes with int8 weights and only with them");
  const float* s = nullptr;
  if (int8) {
    lrnn_binding::check_cpu(*scale, kMatmul, "scale", {N}, DataType::FLOAT32);
    s = scale->data<float>();
  }
  Tensor y = paddle::empty(y_shape, DataType::FLOAT32, x.place());
  lrnn::WeightProduct product{nullptr, lrnn::WeightFormat::bf16, K, N, s, x.data<float>(), y.data<float>()};
  switch (w.dtype()) {  // Paddle's 16-bit types are their bits
    case DataType::BFLOAT16:
      product.w = w.data<paddle::bfloat16>();
      break;
    case DataType::FLOAT16:
      product.format = lrnn::WeightFormat::f16;
      product.w = w.data<paddle::float16>();
      break;
    case DataType::INT8:
      product.format = lrnn::WeightFormat::i8;
      product.w = w.data<int8_t>();
      break;
    default:
      PD_THROW(kMatmul, ": weight must be bfloat16, float16 or int8");
  }
  LRNN_ISA_CALL(weight_matmuls, &product, 1, M);
  return {y};
}

std::vector<std::vector<int64_t>> WeightMatmulInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                                         const paddle::optional<std::vector<int64_t>>& scale) {
  std::vector<int64_t> y = x;
  y.back() = w[1];
  return {y};
}

std::vector<DataType> WeightMatmulInferDtype(const DataType& x, const DataType& w,
                                             const paddle::optional<DataType>& scale) {
  return {DataType::FLOAT32};
}

PD_BUILD_OP(lrnn_weight_matmul)
    .Inputs({"X", "W", paddle::Optional("Scale")})
    .Outputs({"Y"})
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
