// Framework-free helpers shared by every kernel: accumulator types, exp, and (host only) element access and a
// parallel loop. Nothing here knows Paddle or torch; storage types only need conversions to and from float.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#ifndef __CUDA_ARCH__
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>
#endif

#ifdef __CUDACC__
#define LRNN_HD __host__ __device__ __forceinline__
#else
#define LRNN_HD inline
#endif

// The kernels of every other header live in lrnn::LRNN_ISA: lrnn::isa_baseline (an inline namespace, so that
// lrnn::name finds them) in every translation unit, and again in lrnn::isa_avx2 / lrnn::isa_avx512, compiled for
// those instruction sets, where a binding includes cpu_isa_variants.h (cpu_isa.h says why and how).
#ifndef LRNN_ISA
#define LRNN_ISA isa_baseline
#define LRNN_ISA_INLINE inline
// The instruction set a copy may use in intrinsics: what the compiler flags allow here, set by cpu_isa_variants.h
// for its copies (in C++, gcc's `#pragma GCC target` changes code generation but not macros such as __AVX2__).
// 0: x86-64 (SSE2), 1: x86-64-v3 (AVX2, FMA, F16C), 2: x86-64-v4 (AVX-512 F/BW/DQ/VL).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define LRNN_ISA_LEVEL 2
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define LRNN_ISA_LEVEL 1
#else
#define LRNN_ISA_LEVEL 0
#endif
#endif
#define LRNN_ISA_BEGIN \
  namespace lrnn {     \
  LRNN_ISA_INLINE namespace LRNN_ISA {
#define LRNN_ISA_END \
  }                  \
  }

namespace lrnn {

// Accumulate in float for every storage type except double (double is kept for gradient checks).
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};
template <typename T>
using acc_t = typename Acc<T>::type;

// exp that gcc vectorises inside plain loops (glibc's expf does not): Cody-Waite reduction and the Cephes degree-6
// polynomial, about 2 ulp. Below -87.3 it returns exactly 0 and above 88.7 it saturates at a finite value, so
// that 0 * vexp(x) is never NaN.
inline float vexp_host(float x) {
  const float xc = std::min(std::max(x, -87.3f), 88.7f);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
  const float n = (xc * 1.44269504088896341f + magic) - magic;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, sizeof(bits));
  bits += static_cast<int32_t>(n) << 23;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return x < -87.3f ? 0.0f : out;
}

LRNN_HD float lrnn_exp(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  return vexp_host(x);
#endif
}
LRNN_HD double lrnn_exp(double x) { return exp(x); }

template <typename A>
LRNN_HD A lrnn_max(A a, A b) {
  return a > b ? a : b;
}

// Most negative finite value: the log-space "empty" marker, so that differences of markers stay finite.
template <typename A>
LRNN_HD A neg_big() {
  return static_cast<A>(-1e38);
}

#ifndef __CUDA_ARCH__
template <typename A, typename T>
inline A load(const T* p, int64_t i) {
  return static_cast<A>(static_cast<float>(p[i]));
}
template <typename A>
inline A load(const double* p, int64_t i) {
  return static_cast<A>(p[i]);
}
template <typename T, typename A>
inline void store(T* p, int64_t i, A x) {
  p[i] = T(static_cast<float>(x));
}
template <typename A>
inline void store(double* p, int64_t i, A x) {
  p[i] = static_cast<double>(x);
}

// Threads for the CPU kernels: PADDLE_LRNN_NUM_THREADS if set, else every processor this process may use.
// Paddle sets OMP_NUM_THREADS=1 at import for its own operators; the recurrences here parallelise over
// independent sequences and channels, so they take the cores unless told otherwise.
inline int num_threads() {
  static const int n = [] {
    const char* env = std::getenv("PADDLE_LRNN_NUM_THREADS");
    const int requested = env ? std::atoi(env) : 0;
    if (requested > 0) return requested;
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? std::max(1, CPU_COUNT(&set)) : 1;
  }();
  return n;
}

// A pool of num_threads() - 1 workers that sleep on a condition variable between jobs. OpenMP's default of
// spinning at barriers made a busy two-core machine run the kernels 3-5x slower with two threads than with one;
// sleeping workers cost a wake-up (tens of microseconds) instead. The caller takes tasks too and waits only for
// tasks a worker has begun, never for a worker to wake: on a loaded machine a worker may not run for milliseconds,
// and the caller then simply does the whole job. One job at a time; a call made while the pool is busy, from inside
// a job, or in a forked child runs serially.
class ThreadPool {
 public:
  static ThreadPool& instance() {
    static ThreadPool pool(num_threads());
    return pool;
  }

  void run(int64_t n, const std::function<void(int64_t)>& fn) {
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (workers_.empty() || n < 2 || n > kIndexMask || in_worker() || getpid() != pid_ || !busy.owns_lock()) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    uint64_t tag;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      n_ = n;
      finished_.store(0);
      tag = (++generation_ & kTagMask) << kIndexBits;
      next_.store(tag);
    }
    wake_.notify_all();
    drain(tag, &fn, n);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return finished_.load() == n; });
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

 private:
  // next_ holds the job's tag (its generation) above the index of the next unclaimed task, so that a worker that
  // wakes after its job has ended fails to claim anything from the next one.
  static constexpr int kIndexBits = 32;
  static constexpr int64_t kIndexMask = (int64_t(1) << kIndexBits) - 1;
  static constexpr uint64_t kTagMask = (uint64_t(1) << (64 - kIndexBits)) - 1;

  explicit ThreadPool(int threads) : pid_(getpid()) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  static bool& in_worker() {
    static thread_local bool flag = false;
    return flag;
  }

  // Claims and runs tasks of the job tagged `tag` until none is left. *fn is only touched after a claim succeeds:
  // the job cannot end, nor *fn go away, while a claimed task has not finished.
  void drain(uint64_t tag, const std::function<void(int64_t)>* fn, int64_t n) {
    uint64_t cur = next_.load();
    while ((cur & ~uint64_t(kIndexMask)) == tag && static_cast<int64_t>(cur & kIndexMask) < n) {
      if (!next_.compare_exchange_weak(cur, cur + 1)) continue;
      (*fn)(static_cast<int64_t>(cur & kIndexMask));
      if (finished_.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
      cur = next_.load();
    }
  }

  void work() {
    in_worker() = true;
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t)>* job;
      int64_t n;
      uint64_t tag;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
        n = n_;
        tag = (seen & kTagMask) << kIndexBits;
      }
      drain(tag, job, n);
    }
  }

  const pid_t pid_;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t n_ = 0;
  std::atomic<uint64_t> next_{0};
  std::atomic<int64_t> finished_{0};
  uint64_t generation_ = 0;
  bool stop_ = false;
};

// Runs fn(i) for i in [0, n) on the thread pool. `work` is a rough count of the operations the whole loop does:
// below about 2^16 a wake-up costs more than it saves, so small loops (one decoding step) run on this thread.
template <typename F>
inline void parallel_for(int64_t n, F fn, double work = 1e18) {
  if (work < 65536.0 || n < 2) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  ThreadPool::instance().run(n, std::function<void(int64_t)>(fn));
}
#endif

}  // namespace lrnn
