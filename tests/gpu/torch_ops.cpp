// Torch binding of every operator in custom_ops/kernels for the GPU test harness (tests/gpu/check.py, bench.py):
// the CPU kernels (kernels/*.h) and, when built with LRNN_WITH_CUDA, the CUDA kernels through launchers.h. Torch is
// only the carrier of tensors here: no Paddle on the GPU machine. Tensors on a CUDA device run the CUDA kernels on
// the stream passed in (torch.cuda.current_stream().cuda_stream), CPU tensors the CPU kernels.
//
// Built by tests/gpu/ext.py in three ways: "cuda" (with torch_ops_cuda.cu, nvcc), "cpu" (CPU kernels only), and
// "emulated" (with torch_ops_emulated.cpp: the CUDA kernels under the CPU emulation, run on CPU tensors while
// set_emulated_device(true)).
#include <torch/extension.h>

#include <limits>
#include <string>
#include <vector>

#include "kernels/gla.h"
#include "kernels/mru_scan.h"
#include "kernels/timex.h"
#include "kernels/wkv.h"
#include "launchers.h"

namespace {

using at::Tensor;

bool g_poison = false;    // fill every output with NaN before a kernel writes it (unwritten elements stay NaN)
bool g_emulated = false;  // emulated build: CPU tensors go to the (emulated) CUDA kernels

bool use_device_kernels(const Tensor& t) {
#ifdef LRNN_TORCH_EMULATION
  if (g_emulated) return true;
#endif
  return t.is_cuda();
}

int dtype_code(at::ScalarType s) {
  switch (s) {
    case at::kFloat:
      return lrnn_gpu::kFloat32;
    case at::kDouble:
      return lrnn_gpu::kFloat64;
    case at::kHalf:
      return lrnn_gpu::kFloat16;
    case at::kBFloat16:
      return lrnn_gpu::kBFloat16;
    default:
      TORCH_CHECK(false, "expected float32, float64, float16 or bfloat16, got ", s);
  }
  return -1;
}

at::ScalarType acc_of(at::ScalarType s) { return s == at::kDouble ? at::kDouble : at::kFloat; }

Tensor alloc(at::IntArrayRef shape, at::ScalarType dtype, const Tensor& like) {
  Tensor t = at::empty(shape, like.options().dtype(dtype));
  if (g_poison) t.fill_(std::numeric_limits<double>::quiet_NaN());
  return t;
}

void check(const Tensor& t, const char* op, const char* name, at::IntArrayRef shape, at::ScalarType dtype,
           const Tensor& like) {
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " has shape ", t.sizes(), ", expected ", shape);
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), ", expected ", like.device());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

void* stream_ptr(int64_t stream) { return reinterpret_cast<void*>(static_cast<intptr_t>(stream)); }

void check_cuda(int err, const char* op) {
  TORCH_CHECK(err == 0, op, ": CUDA error ", err, ": ", lrnn_gpu::error_string(err));
}

[[noreturn]] void no_cuda(const char* op) {
  TORCH_CHECK(false, op, ": this build of the harness has no CUDA kernels");
  throw;  // unreachable
}

template <typename T>
const T* ptr_or_null(const c10::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}
const void* void_or_null(const c10::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr() : nullptr;
}

// Runs body.template operator()<data_t>() with data_t the CPU storage type of `dtype`.
template <typename F>
void dispatch_cpu(at::ScalarType dtype, F&& body) {
  switch (dtype) {
    case at::kFloat:
      body(static_cast<float*>(nullptr));
      break;
    case at::kDouble:
      body(static_cast<double*>(nullptr));
      break;
    case at::kHalf:
      body(static_cast<at::Half*>(nullptr));
      break;
    case at::kBFloat16:
      body(static_cast<at::BFloat16*>(nullptr));
      break;
    default:
      TORCH_CHECK(false, "expected float32, float64, float16 or bfloat16, got ", dtype);
  }
}

// ----- WKV (kernels/wkv.h, wkv.cuh) ----------------------------------------------------------------------------------
int64_t wkv_chunks(int64_t T) { return (T + lrnn::kWkvChunk - 1) / lrnn::kWkvChunk; }

void wkv_check(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0) {
  TORCH_CHECK(k.dim() == 3, "wkv: k must be [B, T, C]");
  const int64_t B = k.size(0), C = k.size(2);
  const auto acc = acc_of(k.scalar_type());
  check(k, "wkv", "k", k.sizes(), k.scalar_type(), k);
  check(v, "wkv", "v", k.sizes(), k.scalar_type(), k);
  check(w, "wkv", "w", {C}, acc, k);
  check(u, "wkv", "u", {C}, acc, k);
  check(s0, "wkv", "state", {B, 3, C}, acc, k);
}

std::vector<Tensor> wkv_forward(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0,
                                double eps, int64_t stream) {
  wkv_check(w, u, k, v, s0);
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  const auto acc = acc_of(k.scalar_type());
  Tensor y = alloc(k.sizes(), k.scalar_type(), k), s1 = alloc({B, 3, C}, acc, k);
  Tensor ckpt = alloc({B, wkv_chunks(T), 3, C}, acc, k);
  if (use_device_kernels(k)) {
#ifdef LRNN_WITH_CUDA
    check_cuda(lrnn_gpu::wkv_forward(dtype_code(k.scalar_type()), B, T, C, w.data_ptr(), u.data_ptr(), k.data_ptr(),
                                     v.data_ptr(), s0.data_ptr(), eps, y.data_ptr(), s1.data_ptr(), ckpt.data_ptr(),
                                     stream_ptr(stream)),
               "wkv_forward");
#else
    no_cuda("wkv_forward");
#endif
  } else {
    dispatch_cpu(k.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      using A = lrnn::acc_t<S>;
      lrnn::wkv_forward_cpu<S>(B, T, C, w.data_ptr<A>(), u.data_ptr<A>(), k.data_ptr<S>(), v.data_ptr<S>(),
                               s0.data_ptr<A>(), static_cast<A>(eps), y.data_ptr<S>(), s1.data_ptr<A>(),
                               ckpt.data_ptr<A>());
    });
  }
  return {y, s1, ckpt};
}

// gy, gs1: the cotangents of y and of the final state; None when that output does not reach the loss.
std::vector<Tensor> wkv_backward(const Tensor& w, const Tensor& u, const Tensor& k, const Tensor& v, const Tensor& s0,
                                 const Tensor& s1, const Tensor& ckpt, double eps, const c10::optional<Tensor>& gy,
                                 const c10::optional<Tensor>& gs1, int64_t stream) {
  wkv_check(w, u, k, v, s0);
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  const auto acc = acc_of(k.scalar_type());
  check(s1, "wkv backward", "final state", {B, 3, C}, acc, k);
  check(ckpt, "wkv backward", "checkpoints", {B, wkv_chunks(T), 3, C}, acc, k);
  if (gy.has_value() && gy->defined()) check(*gy, "wkv backward", "gy", k.sizes(), k.scalar_type(), k);
  if (gs1.has_value() && gs1->defined()) check(*gs1, "wkv backward", "gs1", {B, 3, C}, acc, k);
  Tensor gk = alloc(k.sizes(), k.scalar_type(), k), gv = alloc(k.sizes(), k.scalar_type(), k);
  Tensor gw = alloc({C}, acc, k), gu = alloc({C}, acc, k), gs0 = alloc({B, 3, C}, acc, k);
  if (use_device_kernels(k)) {
#ifdef LRNN_WITH_CUDA
    Tensor part = alloc({2, B, C}, acc, k);
    check_cuda(lrnn_gpu::wkv_backward(dtype_code(k.scalar_type()), B, T, C, w.data_ptr(), u.data_ptr(), k.data_ptr(),
                                      v.data_ptr(), s0.data_ptr(), s1.data_ptr(), ckpt.data_ptr(), eps,
                                      void_or_null(gy), void_or_null(gs1), gk.data_ptr(), gv.data_ptr(),
                                      gw.data_ptr(), gu.data_ptr(), gs0.data_ptr(), part.data_ptr(),
                                      stream_ptr(stream)),
               "wkv_backward");
#else
    no_cuda("wkv_backward");
#endif
  } else {
    dispatch_cpu(k.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      using A = lrnn::acc_t<S>;
      lrnn::wkv_backward_cpu<S>(B, T, C, w.data_ptr<A>(), u.data_ptr<A>(), k.data_ptr<S>(), v.data_ptr<S>(),
                                s0.data_ptr<A>(), s1.data_ptr<A>(), ckpt.data_ptr<A>(), static_cast<A>(eps),
                                ptr_or_null<S>(gy), ptr_or_null<A>(gs1), gk.data_ptr<S>(), gv.data_ptr<S>(),
                                gw.data_ptr<A>(), gu.data_ptr<A>(), gs0.data_ptr<A>());
    });
  }
  return {gw, gu, gk, gv, gs0};
}

// ----- TimeX (kernels/timex.h, timex.cuh) ----------------------------------------------------------------------------
void timex_check(const Tensor& w, const Tensor& x) {
  TORCH_CHECK(x.dim() == 3 && w.dim() == 2, "timex: x must be [B, C, T] and w [C, L]");
  TORCH_CHECK(x.size(2) >= 1 && x.size(2) <= w.size(1), "timex: need 1 <= T <= L");
  check(x, "timex", "x", x.sizes(), x.scalar_type(), x);
  check(w, "timex", "w", {x.size(1), w.size(1)}, x.scalar_type(), x);
}

Tensor timex_forward(const Tensor& w, const Tensor& x, double eps, int64_t stream) {
  timex_check(w, x);
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), L = w.size(1);
  Tensor out = alloc(x.sizes(), x.scalar_type(), x);
  if (use_device_kernels(x)) {
#ifdef LRNN_WITH_CUDA
    check_cuda(lrnn_gpu::timex_forward(dtype_code(x.scalar_type()), B, C, T, L, w.data_ptr(), x.data_ptr(), eps,
                                       out.data_ptr(), stream_ptr(stream)),
               "timex_forward");
#else
    no_cuda("timex_forward");
#endif
  } else {
    dispatch_cpu(x.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      lrnn::timex_forward_cpu<S>(B, C, T, L, w.data_ptr<S>(), x.data_ptr<S>(), static_cast<lrnn::acc_t<S>>(eps),
                                 out.data_ptr<S>());
    });
  }
  return out;
}

std::vector<Tensor> timex_backward(const Tensor& w, const Tensor& x, const Tensor& g, int64_t stream) {
  timex_check(w, x);
  check(g, "timex backward", "g", x.sizes(), x.scalar_type(), x);
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), L = w.size(1);
  Tensor gw = alloc(w.sizes(), x.scalar_type(), x), gx = alloc(x.sizes(), x.scalar_type(), x);
  if (use_device_kernels(x)) {
#ifdef LRNN_WITH_CUDA
    check_cuda(lrnn_gpu::timex_backward(dtype_code(x.scalar_type()), B, C, T, L, w.data_ptr(), x.data_ptr(),
                                        g.data_ptr(), gw.data_ptr(), gx.data_ptr(), stream_ptr(stream)),
               "timex_backward");
#else
    no_cuda("timex_backward");
#endif
  } else {
    dispatch_cpu(x.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      lrnn::timex_backward_cpu<S>(B, C, T, L, w.data_ptr<S>(), x.data_ptr<S>(), g.data_ptr<S>(), gw.data_ptr<S>(),
                                  gx.data_ptr<S>());
    });
  }
  return {gw, gx};
}

// ----- GLA (kernels/gla.h, gla.cuh) ----------------------------------------------------------------------------------
void gla_check(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0) {
  TORCH_CHECK(q.dim() == 4 && v.dim() == 4, "gla: q, k, g must be [B, T, H, K] and v [B, T, H, V]");
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
  TORCH_CHECK(B > 0 && T > 0 && H > 0 && K > 0 && V > 0, "gla: every dimension must be at least 1");
  check(q, "gla", "q", q.sizes(), q.scalar_type(), q);
  check(k, "gla", "k", q.sizes(), q.scalar_type(), q);
  check(g, "gla", "g", q.sizes(), q.scalar_type(), q);
  check(v, "gla", "v", {B, T, H, V}, q.scalar_type(), q);
  check(s0, "gla", "state", {B, H, K, V}, acc_of(q.scalar_type()), q);
}

#ifdef LRNN_WITH_CUDA
// The launchers' workspace (accumulator elements) for one direction: 0 forward, 1 backward.
Tensor gla_work(const Tensor& q, const Tensor& v, int direction) {
  int64_t fwd = 0, bwd = 0;
  int chunked = 0;
  check_cuda(lrnn_gpu::gla_workspace(dtype_code(q.scalar_type()), q.size(0), q.size(1), q.size(2), q.size(3),
                                     v.size(3), &fwd, &bwd, &chunked),
             "gla_workspace");
  return alloc({std::max<int64_t>(direction == 0 ? fwd : bwd, 1)}, acc_of(q.scalar_type()), q);  // poisoned too
}
#endif

std::vector<Tensor> gla_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0,
                                double scale, int64_t stream) {
  gla_check(q, k, v, g, s0);
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
  const auto acc = acc_of(q.scalar_type());
  Tensor o = alloc({B, T, H, V}, q.scalar_type(), q), s1 = alloc({B, H, K, V}, acc, q);
  if (use_device_kernels(q)) {
#ifdef LRNN_WITH_CUDA
    Tensor work = gla_work(q, v, 0);
    check_cuda(lrnn_gpu::gla_forward(dtype_code(q.scalar_type()), B, T, H, K, V, q.data_ptr(), k.data_ptr(),
                                     v.data_ptr(), g.data_ptr(), s0.data_ptr(), scale, o.data_ptr(), s1.data_ptr(),
                                     work.data_ptr(), stream_ptr(stream)),
               "gla_forward");
#else
    no_cuda("gla_forward");
#endif
  } else {
    dispatch_cpu(q.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      using A = lrnn::acc_t<S>;
      lrnn::gla_forward_cpu<S>(B, T, H, K, V, q.data_ptr<S>(), k.data_ptr<S>(), v.data_ptr<S>(), g.data_ptr<S>(),
                               s0.data_ptr<A>(), static_cast<A>(scale), o.data_ptr<S>(), s1.data_ptr<A>());
    });
  }
  return {o, s1};
}

// go, gs1: the cotangents of o and of the final state; None when that output does not reach the loss.
std::vector<Tensor> gla_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& s0,
                                 const Tensor& s1, double scale, const c10::optional<Tensor>& go,
                                 const c10::optional<Tensor>& gs1, int64_t stream) {
  gla_check(q, k, v, g, s0);
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
  const auto acc = acc_of(q.scalar_type());
  check(s1, "gla backward", "final state", {B, H, K, V}, acc, q);
  if (go.has_value() && go->defined()) check(*go, "gla backward", "go", v.sizes(), q.scalar_type(), q);
  if (gs1.has_value() && gs1->defined()) check(*gs1, "gla backward", "gs1", {B, H, K, V}, acc, q);
  Tensor gq = alloc(q.sizes(), q.scalar_type(), q), gk = alloc(q.sizes(), q.scalar_type(), q);
  Tensor gv = alloc(v.sizes(), q.scalar_type(), q), gg = alloc(q.sizes(), q.scalar_type(), q);
  Tensor gs0 = alloc({B, H, K, V}, acc, q);
  if (use_device_kernels(q)) {
#ifdef LRNN_WITH_CUDA
    Tensor work = gla_work(q, v, 1);
    check_cuda(lrnn_gpu::gla_backward(dtype_code(q.scalar_type()), B, T, H, K, V, q.data_ptr(), k.data_ptr(),
                                      v.data_ptr(), g.data_ptr(), s0.data_ptr(), s1.data_ptr(), scale,
                                      void_or_null(go), void_or_null(gs1), gq.data_ptr(), gk.data_ptr(),
                                      gv.data_ptr(), gg.data_ptr(), gs0.data_ptr(), work.data_ptr(),
                                      stream_ptr(stream)),
               "gla_backward");
#else
    no_cuda("gla_backward");
#endif
  } else {
    dispatch_cpu(q.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      using A = lrnn::acc_t<S>;
      lrnn::gla_backward_cpu<S>(B, T, H, K, V, q.data_ptr<S>(), k.data_ptr<S>(), v.data_ptr<S>(), g.data_ptr<S>(),
                                s0.data_ptr<A>(), static_cast<A>(scale), ptr_or_null<S>(go), ptr_or_null<A>(gs1),
                                gq.data_ptr<S>(), gk.data_ptr<S>(), gv.data_ptr<S>(), gg.data_ptr<S>(),
                                gs0.data_ptr<A>());
    });
  }
  return {gq, gk, gv, gg, gs0};
}

// Which algorithm the CUDA launchers run for q's dtype and length: "chunked" or "recurrent".
std::string gla_cuda_path(const Tensor& q) {
  TORCH_CHECK(q.dim() == 4, "gla: q must be [B, T, H, K]");
#ifdef LRNN_WITH_CUDA
  int64_t fwd = 0, bwd = 0;
  int chunked = 0;
  check_cuda(lrnn_gpu::gla_workspace(dtype_code(q.scalar_type()), 1, q.size(1), 1, 1, 1, &fwd, &bwd, &chunked),
             "gla_workspace");
  return chunked ? "chunked" : "recurrent";
#else
  no_cuda("gla_cuda_path");
#endif
}

// ----- MRU scan (kernels/mru_scan.h, mru_scan.cuh) -------------------------------------------------------------------
void mru_check(const Tensor& m, const Tensor& s0) {
  TORCH_CHECK(m.dim() == 5 && m.size(3) == m.size(4), "mru_scan: m must be [B, H, T, d, d]");
  TORCH_CHECK(m.size(0) > 0 && m.size(1) > 0 && m.size(2) > 0 && m.size(3) > 0, "mru_scan: m must not be empty");
  check(m, "mru_scan", "m", m.sizes(), m.scalar_type(), m);
  check(s0, "mru_scan", "state", {m.size(0), m.size(1), m.size(3), m.size(3)}, acc_of(m.scalar_type()), m);
}

std::vector<Tensor> mru_scan_forward(const Tensor& m, const Tensor& s0, int64_t stream) {
  mru_check(m, s0);
  const int64_t BH = m.size(0) * m.size(1), T = m.size(2);
  const int d = static_cast<int>(m.size(3));
  Tensor prefix = alloc(m.sizes(), m.scalar_type(), m), s1 = alloc(s0.sizes(), s0.scalar_type(), m);
  if (use_device_kernels(m)) {
#ifdef LRNN_WITH_CUDA
    TORCH_CHECK(d <= lrnn::kMruMaxCudaD, "mru_scan: the CUDA kernels support d <= 32, got ", d);
    check_cuda(lrnn_gpu::mru_scan_forward(dtype_code(m.scalar_type()), BH, T, d, m.data_ptr(), s0.data_ptr(),
                                          prefix.data_ptr(), s1.data_ptr(), stream_ptr(stream)),
               "mru_scan_forward");
#else
    no_cuda("mru_scan_forward");
#endif
  } else {
    dispatch_cpu(m.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      using A = lrnn::acc_t<S>;
      lrnn::mru_scan_forward_cpu<S>(BH, T, d, m.data_ptr<S>(), s0.data_ptr<A>(), prefix.data_ptr<S>(),
                                    s1.data_ptr<A>());
    });
  }
  return {prefix, s1};
}

// gp, gs1: the cotangents of the prefixes and of the final state; None when that output does not reach the loss.
std::vector<Tensor> mru_scan_backward(const Tensor& m, const Tensor& s0, const Tensor& prefix,
                                      const c10::optional<Tensor>& gp, const c10::optional<Tensor>& gs1,
                                      int64_t stream) {
  mru_check(m, s0);
  const int64_t BH = m.size(0) * m.size(1), T = m.size(2);
  const int d = static_cast<int>(m.size(3));
  check(prefix, "mru_scan backward", "prefix", m.sizes(), m.scalar_type(), m);
  if (gp.has_value() && gp->defined()) check(*gp, "mru_scan backward", "gp", m.sizes(), m.scalar_type(), m);
  if (gs1.has_value() && gs1->defined()) check(*gs1, "mru_scan backward", "gs1", s0.sizes(), s0.scalar_type(), m);
  Tensor gm = alloc(m.sizes(), m.scalar_type(), m), gs0 = alloc(s0.sizes(), s0.scalar_type(), m);
  if (use_device_kernels(m)) {
#ifdef LRNN_WITH_CUDA
    TORCH_CHECK(d <= lrnn::kMruMaxCudaD, "mru_scan: the CUDA kernels support d <= 32, got ", d);
    check_cuda(lrnn_gpu::mru_scan_backward(dtype_code(m.scalar_type()), BH, T, d, m.data_ptr(), s0.data_ptr(),
                                           prefix.data_ptr(), void_or_null(gp), void_or_null(gs1), gm.data_ptr(),
                                           gs0.data_ptr(), stream_ptr(stream)),
               "mru_scan_backward");
#else
    no_cuda("mru_scan_backward");
#endif
  } else {
    dispatch_cpu(m.scalar_type(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      using A = lrnn::acc_t<S>;
      lrnn::mru_scan_backward_cpu<S>(BH, T, d, m.data_ptr<S>(), s0.data_ptr<A>(), prefix.data_ptr<S>(),
                                     ptr_or_null<S>(gp), ptr_or_null<A>(gs1), gm.data_ptr<S>(), gs0.data_ptr<A>());
    });
  }
  return {gm, gs0};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "paddle_lrnn kernels (custom_ops/kernels) for the torch GPU test harness";
  m.def("wkv_forward", &wkv_forward, "WKV forward: (y, state, checkpoints)", py::arg("w"), py::arg("u"), py::arg("k"),
        py::arg("v"), py::arg("s0"), py::arg("eps"), py::arg("stream") = 0);
  m.def("wkv_backward", &wkv_backward, "WKV backward: (gw, gu, gk, gv, gs0)", py::arg("w"), py::arg("u"),
        py::arg("k"), py::arg("v"), py::arg("s0"), py::arg("s1"), py::arg("ckpt"), py::arg("eps"), py::arg("gy"),
        py::arg("gs1"), py::arg("stream") = 0);
  m.def("timex_forward", &timex_forward, "TimeX forward", py::arg("w"), py::arg("x"), py::arg("eps"),
        py::arg("stream") = 0);
  m.def("timex_backward", &timex_backward, "TimeX backward: (gw, gx)", py::arg("w"), py::arg("x"), py::arg("g"),
        py::arg("stream") = 0);
  m.def("gla_forward", &gla_forward, "GLA forward: (o, state)", py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("g"), py::arg("s0"), py::arg("scale"), py::arg("stream") = 0);
  m.def("gla_backward", &gla_backward, "GLA backward: (gq, gk, gv, gg, gs0)", py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("g"), py::arg("s0"), py::arg("s1"), py::arg("scale"), py::arg("go"), py::arg("gs1"),
        py::arg("stream") = 0);
  m.def("gla_cuda_path", &gla_cuda_path, "the CUDA algorithm for q's dtype and length: chunked or recurrent",
        py::arg("q"));
  m.def("mru_scan_forward", &mru_scan_forward, "MRU scan forward: (prefix, state)", py::arg("m"), py::arg("s0"),
        py::arg("stream") = 0);
  m.def("mru_scan_backward", &mru_scan_backward, "MRU scan backward: (gm, gs0)", py::arg("m"), py::arg("s0"),
        py::arg("prefix"), py::arg("gp"), py::arg("gs1"), py::arg("stream") = 0);
  m.def("set_poison", [](bool on) { g_poison = on; }, "fill outputs with NaN before the kernels write them");
  m.def("set_emulated_device", [](bool on) { g_emulated = on; },
        "emulated build: run the (emulated) CUDA kernels on CPU tensors");
#ifdef LRNN_TORCH_EMULATION
  m.def("set_emulation_schedule", &lrnn_gpu::set_emulation_schedule,
        "emulated build: 0 parallel, 1 forward, 2 reverse, 3 random (tests/cuda_emu/README.md)", py::arg("schedule"),
        py::arg("seed") = 0);
#endif
#ifdef LRNN_WITH_CUDA
  m.attr("has_cuda_kernels") = true;
#else
  m.attr("has_cuda_kernels") = false;
#endif
#ifdef LRNN_TORCH_EMULATION
  m.attr("emulated") = true;
#else
  m.attr("emulated") = false;
#endif
}
