// Shared by the thin Paddle bindings: dtype dispatch and argument checks. The Python wrappers in paddle_lrnn.ops
// give users the friendly errors; these checks keep a kernel from ever reading memory it does not own.
#pragma once

#include <string>
#include <vector>

#include "paddle/extension.h"

#define LRNN_DISPATCH_CASE(enum_type, type, ...) \
  case enum_type: {                              \
    using data_t = type;                         \
    __VA_ARGS__();                               \
    break;                                       \
  }

// Runs the lambda with data_t bound to the storage type of `dtype`: float, double, paddle::float16, paddle::bfloat16.
#define LRNN_DISPATCH_FLOATING(dtype, name, ...)                                                     \
  switch (dtype) {                                                                                   \
    LRNN_DISPATCH_CASE(paddle::DataType::FLOAT32, float, __VA_ARGS__)                                \
    LRNN_DISPATCH_CASE(paddle::DataType::FLOAT64, double, __VA_ARGS__)                               \
    LRNN_DISPATCH_CASE(paddle::DataType::FLOAT16, paddle::float16, __VA_ARGS__)                      \
    LRNN_DISPATCH_CASE(paddle::DataType::BFLOAT16, paddle::bfloat16, __VA_ARGS__)                    \
    default:                                                                                         \
      PD_THROW(name, ": expected float32, float64, float16 or bfloat16 tensors, got another dtype"); \
  }

namespace lrnn_binding {

inline paddle::DataType acc_dtype(paddle::DataType t) {
  return t == paddle::DataType::FLOAT64 ? paddle::DataType::FLOAT64 : paddle::DataType::FLOAT32;
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

inline void check(const paddle::Tensor& t, const char* op, const char* name, const std::vector<int64_t>& shape,
                  paddle::DataType dtype, const paddle::Place& place) {
  PD_CHECK(t.shape() == shape, op, ": ", name, " has shape ", shape_str(t.shape()), ", expected ", shape_str(shape));
  PD_CHECK(t.dtype() == dtype, op, ": ", name, " has the wrong dtype");
  PD_CHECK(t.place() == place, op, ": ", name, " is on another device than the other inputs");
  PD_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// A CPU tensor with the given shape and dtype (the fused decoding steps' inputs).
inline void check_cpu(const paddle::Tensor& t, const char* op, const std::string& name,
                      const std::vector<int64_t>& shape, paddle::DataType dtype) {
  PD_CHECK(t.is_cpu(), op, ": ", name, " must be on the CPU");
  check(t, op, name.c_str(), shape, dtype, t.place());
}

// Token ids a fused decoding step looks up: each in [0, V). `what` ("ids: ", or "" where the op has no other ids)
// begins the message after the op's name.
inline void check_ids(const int64_t* ids, int64_t n, int64_t V, const char* op, const char* what) {
  for (int64_t i = 0; i < n; ++i)
    PD_CHECK(ids[i] >= 0 && ids[i] < V, op, ": ", what, "token id ", ids[i], " is outside the vocabulary [0, ", V,
             ")");
}

#ifdef LRNN_KERNELS_WEIGHT_MATMUL_TYPES_H  // (bindings of kernels that read weights in their storage format)
// A weight tensor as the kernels of weight_matmul.h read it: its bits, their format, the int8 scales (else null).
inline lrnn::WeightRef weight_ref(const paddle::Tensor& w, const float* scale) {
  switch (w.dtype()) {  // Paddle's 16-bit types are their bits
    case paddle::DataType::FLOAT32:
      return {w.data<float>(), lrnn::WeightFormat::f32, nullptr};
    case paddle::DataType::BFLOAT16:
      return {w.data<paddle::bfloat16>(), lrnn::WeightFormat::bf16, nullptr};
    case paddle::DataType::FLOAT16:
      return {w.data<paddle::float16>(), lrnn::WeightFormat::f16, nullptr};
    case paddle::DataType::INT8:
      return {w.data<int8_t>(), lrnn::WeightFormat::i8, scale};
    default:
      PD_THROW("weights must be float32, bfloat16, float16 or int8");
  }
}
#endif

// The CPU weights of a fused decoding step, taken one by one in the order the op documents, each checked
// against the shape it must have; `prefix` ("blocks.<i>.") names the block being read in the errors.
struct WeightList {
  const std::vector<paddle::Tensor>& list;
  const char* op;
  size_t next = 0;
  std::string prefix;

  const paddle::Tensor& next_tensor(const std::string& full) {
    PD_CHECK(next < list.size(), op, ": too few weights (", list.size(), "), missing ", full);
    return list[next++];
  }

  // The second dimension of the next weight, a matrix [in, out] (a width the step reads off its first matrix).
  int64_t next_width(const std::string& name) const {
    PD_CHECK(next < list.size() && list[next].shape().size() == 2, op, ": ", prefix, name,
             " must be a matrix [in, out]");
    return list[next].shape()[1];
  }

  // A float32 weight (a norm, a mix, a decay).
  const float* take(const std::string& name, const std::vector<int64_t>& shape) {
    const std::string full = prefix + name;
    const paddle::Tensor& t = next_tensor(full);
    check_cpu(t, op, full, shape, paddle::DataType::FLOAT32);
    return t.data<float>();
  }

  // After the last weight: the list held no more than the `count` layers or blocks (`what`) take.
  void finish(int64_t count, const char* what) const {
    PD_CHECK(next == list.size(), op, ": ", list.size(), " weights for ", count, " ", what, ", expected ", next);
  }

#ifdef LRNN_KERNELS_WEIGHT_MATMUL_TYPES_H  // (bindings of kernels that read weights in their storage format)
  // A matrix or embedding in its storage format (float32, bfloat16, float16 or int8); an int8 one is followed in
  // the list by its float32 scales, `scales` of them (a matrix [K, N]'s N, an embedding [V, C]'s V).
  lrnn::WeightRef take_weight(const std::string& name, const std::vector<int64_t>& shape, int64_t scales) {
    const std::string full = prefix + name;
    const paddle::Tensor& t = next_tensor(full);
    PD_CHECK(t.dtype() == paddle::DataType::FLOAT32 || t.dtype() == paddle::DataType::BFLOAT16 ||
                 t.dtype() == paddle::DataType::FLOAT16 || t.dtype() == paddle::DataType::INT8,
             op, ": ", full, " must be float32, bfloat16, float16 or int8");
    check_cpu(t, op, full, shape, t.dtype());
    if (t.dtype() != paddle::DataType::INT8) return weight_ref(t, nullptr);
    const paddle::Tensor& s = next_tensor(full + "_scale");
    check_cpu(s, op, full + "_scale", {scales}, paddle::DataType::FLOAT32);
    return weight_ref(t, s.data<float>());
  }
#endif
};

// Pointer of an optional gradient: null when Paddle passes none (the output did not reach the loss).
template <typename T>
const T* grad_ptr(const paddle::Tensor& g) {
  return g.initialized() ? g.data<T>() : nullptr;
}

}  // namespace lrnn_binding

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
// Paddle's half types and CUDA's have the same bits; kernels are written against CUDA's.
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<paddle::float16> {
  using type = __half;
};
template <>
struct CudaType<paddle::bfloat16> {
  using type = __nv_bfloat16;
};
template <typename T>
typename CudaType<T>::type* cuda_ptr(T* p) {
  return reinterpret_cast<typename CudaType<T>::type*>(p);
}
template <typename T>
const typename CudaType<T>::type* cuda_ptr(const T* p) {
  return reinterpret_cast<const typename CudaType<T>::type*>(p);
}
#define LRNN_CUDA_CHECK(expr, op)                                                                 \
  do {                                                                                            \
    cudaError_t err_ = (expr);                                                                    \
    PD_CHECK(err_ == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err_)); \
  } while (0)
#endif
