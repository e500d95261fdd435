// CPU emulation of the subset of CUDA that custom_ops/kernels/*.cuh use, so that the unmodified kernels compile with
// g++ and run on CPU threads (tests/cuda_emu/build.py compiles them, tests/test_cuda_emulated_<op>.py check them).
// Included by custom_ops/kernels/common.cuh when LRNN_CUDA_EMULATION is defined; never by a real CUDA build.
//
// Execution model. A launch runs the grid's blocks one after another; each block's threads are real OS threads (a
// pool, reused across blocks and launches), so __shared__ variables can simply be `static` and a block's threads
// really run concurrently. __syncthreads() is a barrier over the block's live threads; warp intrinsics exchange
// values through a per-warp buffer and barrier. A thread that returns stops counting in barriers (as on the GPU).
// Launches are serialised; "device" memory is host memory.
//
// Stricter than a GPU on purpose:
//   - a missing barrier is a real data race between OS threads (a wrong or flaky answer);
//   - schedules (lrnn_emu::config().schedule): `parallel` (default) runs a block's threads concurrently as OS
//     threads; `forward`, `reverse` and `random` run exactly one thread at a time, switching only at synchronisation
//     points, lowest thread first / highest first / at random, and also run the blocks in that order (as fibers on
//     the launching thread, about ten times faster; as OS threads taking turns in sanitizer builds). A kernel
//     without races gives bit-identical results under all of them; comparing them finds races and inter-block
//     dependencies deterministically;
//   - deadlocks (a barrier some live thread never reaches) are detected exactly, not by timeout; __syncthreads()
//     reached from different source lines in one phase, warp intrinsics whose lanes disagree on the mask or the
//     intrinsic, and lanes that call with a mask not naming themselves are reported. Such errors, and invalid launch
//     configurations (block > 1024 threads, grid.y/z > 65535, dynamic shared memory over its limit), make
//     cudaGetLastError() return an error; the message is in lrnn_emu::last_message();
//   - dynamic shared memory is filled with 0xFF bytes (NaN for floating types) before every block; reading a lane
//     that takes no part in a shuffle gives the same poison.
//
// Not emulated: timing, occupancy and register limits (__launch_bounds__ is ignored), memory spaces (a pointer to
// "device" memory is a host pointer, so host code could dereference it), static __shared__ poisoning (a static
// keeps the previous block's values), blocks running concurrently (so cross-block spin waits deadlock), cooperative
// groups, cluster/TMA/wgmma/async copies, textures, streams and events (everything is synchronous), dynamic
// parallelism. Device math uses the host's libm (expf is glibc's, not CUDA's 2-ulp version; __expf is expf).
// __CUDA_ARCH__ is defined as LRNN_EMU_ARCH (default 800), so kernels take their sm_80 code paths.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <ucontext.h>

// The serial schedules run a block's threads as fibers (ucontext) on the launching thread: the same semantics as
// one OS thread at a time, at a fraction of the switching cost. Sanitizers do not follow swapcontext, so their
// builds use OS threads for every schedule.
#ifndef LRNN_EMU_FIBERS
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LRNN_EMU_FIBERS 0
#else
#define LRNN_EMU_FIBERS 1
#endif
#endif

#ifndef LRNN_EMU_ARCH
#define LRNN_EMU_ARCH 800
#endif
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ LRNN_EMU_ARCH
#endif

// ---------------------------------------------------------------------------------------------------------------------
// Qualifiers and attributes
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static  // one block at a time, so one instance per kernel instantiation is right
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is a g++ keyword already.

// Dynamic shared memory (the launch's smem bytes, 16-byte aligned, poisoned per block):
//   LRNN_DYNAMIC_SHARED(float, buf);   // float* buf; common.cuh defines the CUDA form
#define LRNN_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::lrnn_emu::detail::tl_dyn_smem)

// ---------------------------------------------------------------------------------------------------------------------
// Vector types, dim3 and the built-in variables
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

#define LRNN_EMU_VEC2(name, T, al)            \
  struct __align__(al) name {                 \
    T x, y;                                   \
  };                                          \
  inline name make_##name(T x, T y) { return name{x, y}; }
#define LRNN_EMU_VEC3(name, T)                \
  struct name {                               \
    T x, y, z;                                \
  };                                          \
  inline name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define LRNN_EMU_VEC4(name, T, al)            \
  struct __align__(al) name {                 \
    T x, y, z, w;                             \
  };                                          \
  inline name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }
LRNN_EMU_VEC2(float2, float, 8)
LRNN_EMU_VEC3(float3, float)
LRNN_EMU_VEC4(float4, float, 16)
LRNN_EMU_VEC2(double2, double, 16)
LRNN_EMU_VEC2(int2, int, 8)
LRNN_EMU_VEC3(int3, int)
LRNN_EMU_VEC4(int4, int, 16)
LRNN_EMU_VEC2(uint2, unsigned, 8)
LRNN_EMU_VEC4(uint4, unsigned, 16)
LRNN_EMU_VEC2(longlong2, long long, 16)
LRNN_EMU_VEC2(ulonglong2, unsigned long long, 16)
LRNN_EMU_VEC2(short2, short, 4)
LRNN_EMU_VEC4(short4, short, 8)
LRNN_EMU_VEC2(ushort2, unsigned short, 4)
LRNN_EMU_VEC4(ushort4, unsigned short, 8)
LRNN_EMU_VEC4(char4, signed char, 4)
LRNN_EMU_VEC4(uchar4, unsigned char, 4)
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
#undef LRNN_EMU_VEC2
#undef LRNN_EMU_VEC3
#undef LRNN_EMU_VEC4

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------------------------------------
// Runtime API subset
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
};
typedef cudaError_t cudaError;
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, sharedMemPerMultiprocessor;
  int warpSize, maxThreadsPerBlock, maxThreadsPerMultiProcessor, multiProcessorCount, major, minor, l2CacheSize;
  int maxThreadsDim[3], maxGridSize[3], regsPerBlock;
};

namespace lrnn_emu {

enum class Schedule : int { parallel = 0, forward = 1, reverse = 2, random = 3 };

struct Config {
  Schedule schedule = Schedule::parallel;
  uint64_t seed = 0;        // for Schedule::random
  int multiprocessors = 4;  // what cudaDeviceGetAttribute reports, for kernels that size grids by it
};
inline Config& config() {
  static Config c;
  return c;
}

constexpr size_t kDefaultDynamicSmem = 48 * 1024, kMaxDynamicSmem = 227 * 1024;

namespace detail {

inline thread_local cudaError_t tl_last_error = cudaSuccess;
inline thread_local unsigned char* tl_dyn_smem = nullptr;
inline std::mutex& message_mutex() {
  static std::mutex m;
  return m;
}
inline std::string& message() {
  static std::string s;
  return s;
}
inline void set_error(cudaError_t err, const std::string& msg) {
  tl_last_error = err;
  std::lock_guard<std::mutex> g(message_mutex());
  message() = msg;
  std::fprintf(stderr, "[cuda_emu] %s\n", msg.c_str());
}
inline std::map<const void*, int>& func_smem_limits() {
  static std::map<const void*, int> m;
  return m;
}

// ----- per-block synchronisation ------------------------------------------------------------------------------------
enum WarpOp : int { kSyncwarp = 1, kShfl, kBallot, kReduceAddU, kReduceMinU, kReduceMaxU, kReduceMinI, kReduceMaxI };
enum SyncResult : int { kCount, kAnd, kOr };
enum Blocked : uint8_t { kRunning = 0, kAtBlockBarrier = 1, kAtWarpBarrier = 2 };

struct WarpPhase {
  uint32_t mask = 0, arrived = 0;  // lanes named by the mask, lanes waiting
  int op = 0;
};
// Lanes of one warp may run warp intrinsics in disjoint groups at once (one phase per mask); a lane is in at most one.
struct Warp {
  uint32_t live = 0;  // lanes that exist and have not returned
  std::vector<WarpPhase> phases;
  uint64_t value[32] = {}, result[32] = {};
  uint32_t who[32] = {};  // lanes that took part in the lane's last completed phase
  int src[32] = {};
  std::condition_variable cv;
};

inline thread_local ucontext_t* tl_fiber_ctx = nullptr;  // the running fiber (serial schedules)
inline thread_local ucontext_t* tl_sched_ctx = nullptr;  // the scheduler it yields to
inline void fiber_yield() { swapcontext(tl_fiber_ctx, tl_sched_ctx); }

// All state is guarded by one mutex; `blocked[t]` says whether thread t waits on a barrier that is not complete yet.
struct Block {
  std::mutex m;
  std::condition_variable cv;  // block barrier (parallel schedule)
  Schedule schedule = Schedule::parallel;
  bool fibers = false;  // serial schedule run by the fiber scheduler (Fibers) rather than by OS threads taking turns
  int n = 0, live = 0, waiting = 0, current = -1;
  std::vector<uint8_t> blocked, exited;
  std::vector<std::unique_ptr<std::condition_variable>> turn;  // serial schedules: one per thread
  std::vector<std::unique_ptr<Warp>> warps;
  // block barrier phase
  int arrived = 0, count = 0, result = 0, result_all = 0;
  const char* file = nullptr;
  int line = 0;
  bool broken = false;
  std::string error;
  std::mt19937_64 rng;

  void reset(int threads, Schedule s, uint64_t seed) {
    schedule = s;
    fibers = LRNN_EMU_FIBERS && s != Schedule::parallel;
    n = live = threads;
    waiting = 0;
    current = -1;
    blocked.assign(n, kRunning);
    exited.assign(n, 0);
    if (static_cast<int>(turn.size()) < n) {
      turn.resize(n);
      for (auto& c : turn)
        if (!c) c = std::make_unique<std::condition_variable>();
    }
    const int nw = (n + 31) / 32;
    if (static_cast<int>(warps.size()) < nw) warps.resize(nw);
    for (int w = 0; w < nw; ++w) {
      if (!warps[w]) warps[w] = std::make_unique<Warp>();
      Warp& wp = *warps[w];
      const int lanes = std::min(32, n - 32 * w);
      wp.live = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
      wp.phases.clear();
    }
    arrived = count = result = 0;
    file = nullptr;
    line = 0;
    broken = false;
    error.clear();
    rng.seed(seed);
    if (serial() && !fibers) current = pick_next();
  }
  bool serial() const { return schedule != Schedule::parallel; }

  void fail(const std::string& msg) {
    if (error.empty()) error = msg;
    broken = true;
    cv.notify_all();
    for (auto& w : warps)
      if (w) w->cv.notify_all();
    for (int t = 0; t < n; ++t) turn[t]->notify_all();
  }
  std::string describe_waiters() const {
    int at_block = 0, at_warp = 0;
    for (int t = 0; t < n; ++t) {
      at_block += blocked[t] == kAtBlockBarrier;
      at_warp += blocked[t] == kAtWarpBarrier;
    }
    std::string s = std::to_string(at_block) + " thread(s) wait in __syncthreads";
    if (file) s += " (" + std::string(file) + ":" + std::to_string(line) + ")";
    s += ", " + std::to_string(at_warp) + " in warp intrinsics, " + std::to_string(n - live) + " returned";
    return s;
  }
  void check_deadlock() {
    if (!broken && live > 0 && waiting == live)
      fail("deadlock: every live thread waits on a barrier that cannot complete: " + describe_waiters());
  }

  // Serial schedules: the next thread to run, or -1 if none can.
  bool ready(int t) const { return !exited[t] && blocked[t] == kRunning; }
  int pick_next() {
    if (schedule == Schedule::reverse) {
      for (int t = n - 1; t >= 0; --t)
        if (ready(t)) return t;
      return -1;
    }
    if (schedule == Schedule::random) {
      int count = 0;
      for (int t = 0; t < n; ++t) count += ready(t);
      if (count == 0) return -1;
      int k = std::uniform_int_distribution<int>(0, count - 1)(rng);
      for (int t = 0; t < n; ++t)
        if (ready(t) && k-- == 0) return t;
    }
    for (int t = 0; t < n; ++t)
      if (ready(t)) return t;
    return -1;
  }
  int first_unfinished() const {
    for (int t = 0; t < n; ++t)
      if (!exited[t]) return t;
    return -1;
  }
  void pass_turn() {
    if (!serial() || fibers || broken) return;
    current = pick_next();
    if (current >= 0)
      turn[current]->notify_one();
    else
      check_deadlock();
  }
  // Waits until thread t may run again: its barrier completed (parallel) or it holds the turn (serial).
  void wait(std::unique_lock<std::mutex>& lk, int t, std::condition_variable& cv_par) {
    if (fibers) {  // back to the scheduler, which resumes this fiber once it may run
      lk.unlock();
      fiber_yield();
      lk.lock();
    } else if (serial()) {
      pass_turn();
      turn[t]->wait(lk, [&] { return broken || current == t; });
    } else {
      cv_par.wait(lk, [&] { return broken || blocked[t] == kRunning; });
    }
  }
  void begin(int t) {  // serial schedules: a thread starts when it first gets the turn
    if (!serial() || fibers) return;
    std::unique_lock<std::mutex> lk(m);
    turn[t]->wait(lk, [&] { return broken || current == t; });
  }

  void release_block() {
    result = count;
    result_all = count == arrived;
    arrived = count = 0;
    file = nullptr;
    for (int t = 0; t < n; ++t)
      if (blocked[t] == kAtBlockBarrier) {
        blocked[t] = kRunning;
        --waiting;
      }
    if (!serial()) cv.notify_all();
  }
  // Completes phase `ph` of warp w: computes the result of every lane that arrived.
  void release_warp(int w, size_t ph) {
    Warp& wp = *warps[w];
    const WarpPhase phase = wp.phases[ph];
    wp.phases.erase(wp.phases.begin() + static_cast<std::ptrdiff_t>(ph));
    const uint32_t got = phase.arrived;
    uint64_t ballot = 0, sum = 0;
    uint32_t umin = 0xffffffffu, umax = 0;
    int32_t imin = std::numeric_limits<int32_t>::max(), imax = std::numeric_limits<int32_t>::min();
    for (int l = 0; l < 32; ++l)
      if (got >> l & 1) {
        const uint32_t v32 = static_cast<uint32_t>(wp.value[l]);
        ballot |= static_cast<uint64_t>(wp.value[l] != 0) << l;
        sum += v32;
        umin = std::min(umin, v32);
        umax = std::max(umax, v32);
        imin = std::min(imin, static_cast<int32_t>(v32));
        imax = std::max(imax, static_cast<int32_t>(v32));
      }
    for (int l = 0; l < 32; ++l) {
      if (!(got >> l & 1)) continue;
      uint64_t r = 0;
      switch (phase.op) {
        case kShfl: {
          const int s = wp.src[l];
          r = s == l ? wp.value[l] : (got >> s & 1) ? wp.value[s] : ~uint64_t(0);  // poison: not taking part
          break;
        }
        case kBallot:
          r = ballot;
          break;
        case kReduceAddU:
          r = static_cast<uint32_t>(sum);
          break;
        case kReduceMinU:
          r = umin;
          break;
        case kReduceMaxU:
          r = umax;
          break;
        case kReduceMinI:
          r = static_cast<uint32_t>(imin);
          break;
        case kReduceMaxI:
          r = static_cast<uint32_t>(imax);
          break;
        default:
          break;
      }
      wp.result[l] = r;
      wp.who[l] = got;
      const int t = 32 * w + l;
      if (blocked[t] == kAtWarpBarrier) {
        blocked[t] = kRunning;
        --waiting;
      }
    }
    if (!serial()) wp.cv.notify_all();
  }
  // Releases every phase of warp w whose live named lanes have all arrived.
  void try_release_warp(int w) {
    Warp& wp = *warps[w];
    for (size_t ph = 0; ph < wp.phases.size();) {
      const uint32_t need = wp.phases[ph].mask & wp.live;
      if ((wp.phases[ph].arrived & need) == need)
        release_warp(w, ph);
      else
        ++ph;
    }
  }

  // __syncthreads and friends: returns how many threads passed pred != 0 (kCount), whether all did (kAnd) or any.
  int sync_block(int t, const char* f, int l, int pred, SyncResult what) {
    std::unique_lock<std::mutex> lk(m);
    if (broken) return 0;
    if (arrived == 0) {
      file = f;
      line = l;
    } else if (line != l || std::strcmp(file, f) != 0) {
      fail("__syncthreads at " + std::string(f) + ":" + std::to_string(l) + " meets __syncthreads at " +
           std::string(file) + ":" + std::to_string(line) + " in one phase (divergent barrier)");
      return 0;
    }
    ++arrived;
    count += pred != 0;
    if (arrived == live) {
      release_block();
      if (serial()) wait(lk, t, cv);  // give other threads their turn
    } else {
      blocked[t] = kAtBlockBarrier;
      ++waiting;
      check_deadlock();
      wait(lk, t, cv);
    }
    if (broken) return 0;
    return what == kCount ? result : what == kAnd ? result_all : result > 0;
  }

  // Every warp-level intrinsic: lane t offers `value` (and a source lane for shuffles) and gets its result.
  uint64_t warp_op(int t, int op, uint32_t mask, uint64_t value, int src, uint32_t* participants) {
    std::unique_lock<std::mutex> lk(m);
    const int w = t / 32, lane = t % 32;
    Warp& wp = *warps[w];
    if (broken) return value;
    if (!(mask >> lane & 1)) {
      fail("warp intrinsic called by lane " + std::to_string(lane) + " of warp " + std::to_string(w) +
           " with a mask (" + hex(mask) + ") that does not name it");
      return value;
    }
    if (src < 0) {
      fail("shuffle width is not a power of two <= 32");
      return value;
    }
    size_t ph = 0;
    for (; ph < wp.phases.size(); ++ph) {
      const WarpPhase& p = wp.phases[ph];
      if (p.mask == mask) {
        if (p.op != op) {
          fail("lanes of warp " + std::to_string(w) + " meet in different warp intrinsics (mask " + hex(mask) + ")");
          return value;
        }
        break;
      }
      if (p.mask & mask) {
        fail("lanes of warp " + std::to_string(w) + " use overlapping but different masks " + hex(p.mask) + " and " +
             hex(mask));
        return value;
      }
    }
    if (ph == wp.phases.size()) wp.phases.push_back(WarpPhase{mask, 0, op});
    wp.value[lane] = value;
    wp.src[lane] = src;
    wp.phases[ph].arrived |= 1u << lane;
    blocked[t] = kAtWarpBarrier;
    ++waiting;
    try_release_warp(w);
    if (blocked[t] == kAtWarpBarrier) check_deadlock();
    if (blocked[t] == kRunning && !serial()) return finish_warp_op(lane, wp, participants);
    wait(lk, t, wp.cv);
    if (broken) return value;
    return finish_warp_op(lane, wp, participants);
  }
  uint64_t finish_warp_op(int lane, const Warp& wp, uint32_t* participants) const {
    if (participants) *participants = wp.who[lane];
    return wp.result[lane];
  }
  static std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "0x%08x", v);
    return buf;
  }
  void report(const std::string& msg) {
    std::lock_guard<std::mutex> g(m);
    fail(msg);
  }

  void exit(int t) {
    std::unique_lock<std::mutex> lk(m);
    exited[t] = 1;
    --live;
    warps[t / 32]->live &= ~(1u << (t % 32));
    if (!broken) {
      try_release_warp(t / 32);
      if (arrived > 0 && arrived == live) release_block();
      check_deadlock();
    }
    if (serial() && !fibers && current == t) pass_turn();
  }
};

inline thread_local Block* tl_block = nullptr;
inline thread_local int tl_tid = 0;

inline Block& block() {
  if (!tl_block) {
    std::fprintf(stderr, "[cuda_emu] a device intrinsic was called outside a kernel launch\n");
    std::abort();
  }
  return *tl_block;
}

// ----- the thread pool ----------------------------------------------------------------------------------------------
class Pool {
 public:
  // Runs fn(i) for i in [0, n) on n pool threads and waits for all of them.
  template <typename F>
  void run(int n, F& fn) {
    std::unique_lock<std::mutex> lk(m_);
    while (static_cast<int>(workers_.size()) < n) {
      workers_.push_back(std::make_unique<Worker>());
      const int i = static_cast<int>(workers_.size()) - 1;
      workers_[i]->thread = std::thread([this, i] { loop(i); });
      workers_[i]->thread.detach();  // the pool lives as long as the process
    }
    job_ = [](void* ctx, int i) { (*static_cast<F*>(ctx))(i); };
    ctx_ = &fn;
    pending_ = n;
    for (int i = 0; i < n; ++i) {
      workers_[i]->go = true;
      workers_[i]->cv.notify_one();
    }
    done_.wait(lk, [&] { return pending_ == 0; });
  }

 private:
  struct Worker {
    std::thread thread;
    std::condition_variable cv;
    bool go = false;
  };
  void loop(int i) {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      Worker& me = *workers_[i];
      me.cv.wait(lk, [&] { return me.go; });
      me.go = false;
      void (*job)(void*, int) = job_;
      void* ctx = ctx_;
      lk.unlock();
      job(ctx, i);
      lk.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }
  std::mutex m_;
  std::condition_variable done_;
  std::vector<std::unique_ptr<Worker>> workers_;
  void (*job_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  int pending_ = 0;
};
inline Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: its threads outlive static destruction
  return *p;
}
// Runs a block's threads as fibers on the calling thread, one at a time, switching at synchronisation points in the
// block's serial policy (Block::pick_next); a fiber yields through Block::wait.
class Fibers {
 public:
  template <typename Body, typename SetLocals>
  void run(Block& blk, int n, Body& body, SetLocals& set_locals) {
    ensure(n);
    for (int t = 0; t < n; ++t) {
      getcontext(&ctx_[t]);
      ctx_[t].uc_stack.ss_sp = stacks_[t];
      ctx_[t].uc_stack.ss_size = kStack;
      ctx_[t].uc_link = &sched_;
      makecontext(&ctx_[t], &Fibers::trampoline, 0);
    }
    start_ = [](void* b, int t) { (*static_cast<Body*>(b))(t); };
    body_ = &body;
    for (;;) {
      int next;
      {
        std::lock_guard<std::mutex> g(blk.m);
        next = blk.broken ? blk.first_unfinished() : blk.pick_next();
        if (next < 0 && blk.live > 0) {  // nobody can run: a deadlock (reported), then let everyone finish
          blk.check_deadlock();
          next = blk.first_unfinished();
        }
      }
      if (next < 0) break;
      set_locals(next);
      starting_ = next;
      tl_fiber_ctx = &ctx_[next];
      tl_sched_ctx = &sched_;
      swapcontext(&sched_, &ctx_[next]);
    }
    tl_fiber_ctx = tl_sched_ctx = nullptr;
  }

 private:
  static constexpr size_t kStack = 512 * 1024, kGuard = 4096;
  static void trampoline();
  void ensure(int n) {
    while (static_cast<int>(stacks_.size()) < n) {  // reserved, committed as touched; a guard page below each
      void* p = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
      if (p == MAP_FAILED) {
        std::fprintf(stderr, "[cuda_emu] cannot map a fiber stack\n");
        std::abort();
      }
      mprotect(p, kGuard, PROT_NONE);
      stacks_.push_back(static_cast<char*>(p) + kGuard);
    }
    if (static_cast<int>(ctx_.size()) < n) ctx_.resize(n);
  }
  std::vector<char*> stacks_;
  std::vector<ucontext_t> ctx_;
  ucontext_t sched_;
  void (*start_)(void*, int) = nullptr;
  void* body_ = nullptr;
  int starting_ = 0;
};
inline Fibers& fibers() {
  static Fibers* f = new Fibers;  // used under launch_mutex
  return *f;
}
inline void Fibers::trampoline() {
  Fibers& f = fibers();
  f.start_(f.body_, f.starting_);  // returning resumes the scheduler (uc_link)
}

inline Block& block_storage() {  // one block runs at a time (under launch_mutex)
  static Block* b = new Block;
  return *b;
}
inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

template <typename T>
uint64_t to_bits(const T& v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp intrinsics take values of <= 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace detail

// The last error message of the emulation (launch configuration, deadlock, divergence), for test reports.
inline std::string last_message() {
  std::lock_guard<std::mutex> g(detail::message_mutex());
  return detail::message();
}

// launch(grid, block, smem, kernel)(args...): runs the kernel on every block and returns when all are done.
template <typename... P>
class Launcher {
 public:
  Launcher(dim3 grid, dim3 block, size_t smem, void (*kernel)(P...), const char* name)
      : grid_(grid), block_(block), smem_(smem), kernel_(kernel), name_(name ? name : "kernel") {}

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    run(params);
  }

 private:
  template <typename Tuple>
  void run(Tuple& params) const {
    const std::string where = std::string(name_) + " <<<(" + std::to_string(grid_.x) + "," +
                              std::to_string(grid_.y) + "," + std::to_string(grid_.z) + "), (" +
                              std::to_string(block_.x) + "," + std::to_string(block_.y) + "," +
                              std::to_string(block_.z) + "), " + std::to_string(smem_) + ">>>";
    const uint64_t threads = uint64_t(block_.x) * block_.y * block_.z;
    if (threads == 0 || threads > 1024 || block_.x > 1024 || block_.y > 1024 || block_.z > 64 || grid_.x == 0 ||
        grid_.y == 0 || grid_.z == 0 || grid_.x > 2147483647u || grid_.y > 65535 || grid_.z > 65535) {
      detail::set_error(cudaErrorInvalidConfiguration, where + ": invalid launch configuration");
      return;
    }
    size_t smem_limit = kDefaultDynamicSmem;
    {
      auto& lim = detail::func_smem_limits();
      auto it = lim.find(reinterpret_cast<const void*>(kernel_));
      if (it != lim.end()) smem_limit = static_cast<size_t>(it->second);
    }
    if (smem_ > smem_limit) {
      detail::set_error(cudaErrorInvalidValue, where + ": " + std::to_string(smem_) +
                                                   " bytes of dynamic shared memory exceed the kernel's limit of " +
                                                   std::to_string(smem_limit) + " (cudaFuncSetAttribute raises it)");
      return;
    }
    std::lock_guard<std::mutex> serialise(detail::launch_mutex());
    const Config cfg = config();
    const uint64_t nblocks = uint64_t(grid_.x) * grid_.y * grid_.z;
    std::vector<uint64_t> order;
    if (cfg.schedule == Schedule::random) {
      order.resize(nblocks);
      std::iota(order.begin(), order.end(), uint64_t(0));
      std::mt19937_64 rng(cfg.seed * 7919 + 1);
      std::shuffle(order.begin(), order.end(), rng);
    }
    std::vector<unsigned char> smem(smem_ + 16);
    unsigned char* smem_ptr =
        smem.data() + ((16 - reinterpret_cast<uintptr_t>(smem.data()) % 16) % 16);  // 16-byte aligned
    detail::Block& blk = detail::block_storage();
    const int n = static_cast<int>(threads);
    for (uint64_t i = 0; i < nblocks; ++i) {
      const uint64_t b = cfg.schedule == Schedule::reverse  ? nblocks - 1 - i
                         : cfg.schedule == Schedule::random ? order[i]
                                                            : i;
      const uint3 bidx{static_cast<unsigned>(b % grid_.x), static_cast<unsigned>(b / grid_.x % grid_.y),
                       static_cast<unsigned>(b / (uint64_t(grid_.x) * grid_.y))};
      std::memset(smem_ptr, 0xff, smem_);
      blk.reset(n, cfg.schedule, cfg.seed * 1000003 + b);
      auto set_locals = [&](int t) {
        threadIdx = uint3{t % block_.x, t / block_.x % block_.y, t / (block_.x * block_.y)};
        blockIdx = bidx;
        blockDim = block_;
        gridDim = grid_;
        detail::tl_block = &blk;
        detail::tl_tid = t;
        detail::tl_dyn_smem = smem_ptr;
      };
      auto body = [&](int t) {
        set_locals(t);
        blk.begin(t);
        if (!blk.broken) std::apply(kernel_, params);  // each thread copies the arguments, as on the GPU
        blk.exit(t);
        detail::tl_block = nullptr;
        detail::tl_dyn_smem = nullptr;
      };
      if (blk.fibers)
        detail::fibers().run(blk, n, body, set_locals);
      else
        detail::pool().run(n, body);
      if (!blk.error.empty()) {
        detail::set_error(cudaErrorLaunchFailure, where + ", block (" + std::to_string(bidx.x) + "," +
                                                      std::to_string(bidx.y) + "," + std::to_string(bidx.z) +
                                                      "): " + blk.error);
        return;
      }
    }
  }

  dim3 grid_, block_;
  size_t smem_;
  void (*kernel_)(P...);
  const char* name_;
};

template <typename... P>
Launcher<P...> launch(dim3 grid, dim3 block, size_t smem, void (*kernel)(P...), const char* name = nullptr) {
  return Launcher<P...>(grid, block, smem, kernel, name);
}

}  // namespace lrnn_emu

// ----- runtime API functions -----------------------------------------------------------------------------------------
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = lrnn_emu::detail::tl_last_error;
  lrnn_emu::detail::tl_last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return lrnn_emu::detail::tl_last_error; }
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDeviceFunction:
      return "invalid device function";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (emulation: see lrnn_emu::last_message())";
    case cudaErrorNotSupported:
      return "operation not supported";
  }
  return "unknown error";
}
inline const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaError"; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = 1024;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(lrnn_emu::kDefaultDynamicSmem);
      break;
    case cudaDevAttrWarpSize:
      *value = 32;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = lrnn_emu::config().multiprocessors;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = LRNN_EMU_ARCH / 100;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = LRNN_EMU_ARCH % 100 / 10;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(lrnn_emu::kMaxDynamicSmem);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "lrnn CPU emulation (sm_%d)", LRNN_EMU_ARCH / 10);
  p->totalGlobalMem = size_t(1) << 34;
  p->sharedMemPerBlock = lrnn_emu::kDefaultDynamicSmem;
  p->sharedMemPerBlockOptin = lrnn_emu::kMaxDynamicSmem;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsPerMultiProcessor = 2048;
  p->multiProcessorCount = lrnn_emu::config().multiprocessors;
  p->major = LRNN_EMU_ARCH / 100;
  p->minor = LRNN_EMU_ARCH % 100 / 10;
  p->l2CacheSize = 50 << 20;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->regsPerBlock = 65536;
  return cudaSuccess;
}
inline cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > lrnn_emu::kMaxDynamicSmem) return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> g(lrnn_emu::detail::launch_mutex());
    lrnn_emu::detail::func_smem_limits()[func] = value;
  }
  return cudaSuccess;
}
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*func)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <typename T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int v, size_t n) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) { return cudaMemset(p, v, n); }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t = nullptr) {
  return cudaMemcpy(d, s, n, k);
}
template <typename T>
cudaError_t cudaMemcpyToSymbol(T& symbol, const void* src, size_t n, size_t offset = 0,
                               cudaMemcpyKind = cudaMemcpyHostToDevice) {
  std::memcpy(reinterpret_cast<char*>(&symbol) + offset, src, n);
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------------------------------
// Synchronisation and warp intrinsics
#define LRNN_EMU_SYNC(pred, what) \
  ::lrnn_emu::detail::block().sync_block(::lrnn_emu::detail::tl_tid, __FILE__, __LINE__, (pred) != 0, what)
#define __syncthreads() (void)LRNN_EMU_SYNC(0, ::lrnn_emu::detail::kCount)
#define __syncthreads_count(pred) LRNN_EMU_SYNC(pred, ::lrnn_emu::detail::kCount)
#define __syncthreads_and(pred) LRNN_EMU_SYNC(pred, ::lrnn_emu::detail::kAnd)
#define __syncthreads_or(pred) LRNN_EMU_SYNC(pred, ::lrnn_emu::detail::kOr)

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::lrnn_emu::detail::block().warp_op(::lrnn_emu::detail::tl_tid, ::lrnn_emu::detail::kSyncwarp, mask, 0, 0, nullptr);
}
inline unsigned __activemask() {
  auto& b = ::lrnn_emu::detail::block();
  std::lock_guard<std::mutex> g(b.m);
  return b.warps[::lrnn_emu::detail::tl_tid / 32]->live;
}

namespace lrnn_emu {
namespace detail {
enum ShflMode { kIdx, kUp, kDown, kXor };
// Source lane as PTX shfl.sync computes it (segments of `width` lanes; out-of-segment sources give the own value).
inline int shfl_source(int lane, int mode, int b, int width) {
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) return -1;  // reported by warp_op
  const int segmask = (32 - width) & 31;
  const int clamp = mode == kUp ? 0 : 31;
  const int max_lane = (lane & segmask) | (clamp & ~segmask), min_lane = lane & segmask;
  int j = lane;
  bool ok = false;
  b &= 31;
  switch (mode) {
    case kIdx:
      j = min_lane | (b & ~segmask);
      ok = j <= max_lane;
      break;
    case kUp:
      j = lane - b;
      ok = j >= max_lane;
      break;
    case kDown:
      j = lane + b;
      ok = j <= max_lane;
      break;
    case kXor:
      j = lane ^ b;
      ok = j <= max_lane;
      break;
  }
  return ok ? j : lane;
}
template <typename T>
T shfl(unsigned mask, T var, int mode, int b, int width) {
  const int t = tl_tid, src = shfl_source(t % 32, mode, b, width);
  return from_bits<T>(block().warp_op(t, kShfl, mask, to_bits(var), src, nullptr));
}
inline uint64_t vote(unsigned mask, int op, uint32_t value, uint32_t* participants) {
  return block().warp_op(tl_tid, op, mask, value, 0, participants);
}
}  // namespace detail
}  // namespace lrnn_emu

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return lrnn_emu::detail::shfl(mask, var, lrnn_emu::detail::kIdx, src_lane, width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return lrnn_emu::detail::shfl(mask, var, lrnn_emu::detail::kUp, static_cast<int>(delta), width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return lrnn_emu::detail::shfl(mask, var, lrnn_emu::detail::kDown, static_cast<int>(delta), width);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return lrnn_emu::detail::shfl(mask, var, lrnn_emu::detail::kXor, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(lrnn_emu::detail::vote(mask, lrnn_emu::detail::kBallot, pred != 0, nullptr));
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) {
  uint32_t who = 0;
  const unsigned b =
      static_cast<unsigned>(lrnn_emu::detail::vote(mask, lrnn_emu::detail::kBallot, pred != 0, &who));
  return (b & who) == who;
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
  return static_cast<unsigned>(lrnn_emu::detail::vote(mask, lrnn_emu::detail::kReduceAddU, v, nullptr));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) {
  return static_cast<unsigned>(lrnn_emu::detail::vote(mask, lrnn_emu::detail::kReduceMinU, v, nullptr));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) {
  return static_cast<unsigned>(lrnn_emu::detail::vote(mask, lrnn_emu::detail::kReduceMaxU, v, nullptr));
}
inline int __reduce_add_sync(unsigned mask, int v) {
  return static_cast<int>(__reduce_add_sync(mask, static_cast<unsigned>(v)));
}
inline int __reduce_min_sync(unsigned mask, int v) {
  return static_cast<int32_t>(static_cast<uint32_t>(
      lrnn_emu::detail::vote(mask, lrnn_emu::detail::kReduceMinI, static_cast<uint32_t>(v), nullptr)));
}
inline int __reduce_max_sync(unsigned mask, int v) {
  return static_cast<int32_t>(static_cast<uint32_t>(
      lrnn_emu::detail::vote(mask, lrnn_emu::detail::kReduceMaxI, static_cast<uint32_t>(v), nullptr)));
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) { std::this_thread::yield(); }
inline long long clock64() {
  return static_cast<long long>(std::chrono::steady_clock::now().time_since_epoch().count());
}
inline void __trap() {
  std::fprintf(stderr, "[cuda_emu] __trap() called in a kernel\n");
  std::abort();
}

// ---------------------------------------------------------------------------------------------------------------------
// Loads, stores and atomics ("device" memory is host memory)
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldca(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcs(const T* p) {
  return *p;
}
template <typename T>
inline T __ldlu(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcv(const T* p) {
  return *p;
}
template <typename T>
inline void __stcg(T* p, T v) {
  *p = v;
}
template <typename T>
inline void __stcs(T* p, T v) {
  *p = v;
}
template <typename T>
inline void __stwb(T* p, T v) {
  *p = v;
}
template <typename T>
inline void __stwt(T* p, T v) {
  *p = v;
}

namespace lrnn_emu {
namespace detail {
// Read-modify-write on the bits of *p with a compare-and-swap loop; returns the old value.
template <typename T, typename F>
T atomic_rmw(T* p, F f) {
  using Bits = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
  static_assert(sizeof(T) == sizeof(Bits), "atomics on 2, 4 or 8 bytes");
  Bits* bp = reinterpret_cast<Bits*>(p);
  Bits old_bits = __atomic_load_n(bp, __ATOMIC_RELAXED);
  for (;;) {
    T old_v;
    std::memcpy(&old_v, &old_bits, sizeof(T));
    const T new_v = f(old_v);
    Bits new_bits;
    std::memcpy(&new_bits, &new_v, sizeof(T));
    if (__atomic_compare_exchange_n(bp, &old_bits, new_bits, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return old_v;
  }
}
}  // namespace detail
}  // namespace lrnn_emu

#define LRNN_EMU_INT_ATOMICS(T)                                                                               \
  inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }                     \
  inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }                     \
  inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }                   \
  inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }                     \
  inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }                       \
  inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }                     \
  inline T atomicMin(T* p, T v) {                                                                           \
    return lrnn_emu::detail::atomic_rmw(p, [v](T o) { return o < v ? o : v; });                             \
  }                                                                                                         \
  inline T atomicMax(T* p, T v) {                                                                           \
    return lrnn_emu::detail::atomic_rmw(p, [v](T o) { return o > v ? o : v; });                             \
  }                                                                                                         \
  inline T atomicCAS(T* p, T compare, T v) {                                                                \
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                 \
    return compare;                                                                                         \
  }
LRNN_EMU_INT_ATOMICS(int)
LRNN_EMU_INT_ATOMICS(unsigned)
LRNN_EMU_INT_ATOMICS(unsigned long long)
LRNN_EMU_INT_ATOMICS(long long)
#undef LRNN_EMU_INT_ATOMICS
inline unsigned atomicInc(unsigned* p, unsigned limit) {
  return lrnn_emu::detail::atomic_rmw(p, [limit](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned* p, unsigned limit) {
  return lrnn_emu::detail::atomic_rmw(p, [limit](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}
inline float atomicAdd(float* p, float v) {
  return lrnn_emu::detail::atomic_rmw(p, [v](float o) { return o + v; });
}
inline double atomicAdd(double* p, double v) {
  return lrnn_emu::detail::atomic_rmw(p, [v](double o) { return o + v; });
}
inline float atomicExch(float* p, float v) {
  return lrnn_emu::detail::atomic_rmw(p, [v](float) { return v; });
}
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd

// ---------------------------------------------------------------------------------------------------------------------
// Device math that host libm lacks or spells differently
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0
inline int __float2int_rn(float x) { return static_cast<int>(nearbyintf(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float2int_rd(float x) { return static_cast<int>(floorf(x)); }
inline int __float2int_ru(float x) { return static_cast<int>(ceilf(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline int __float_as_int(float x) { return lrnn_emu::detail::from_bits<int>(lrnn_emu::detail::to_bits(x)); }
inline unsigned __float_as_uint(float x) {
  return lrnn_emu::detail::from_bits<unsigned>(lrnn_emu::detail::to_bits(x));
}
inline float __int_as_float(int x) { return lrnn_emu::detail::from_bits<float>(lrnn_emu::detail::to_bits(x)); }
inline float __uint_as_float(unsigned x) {
  return lrnn_emu::detail::from_bits<float>(lrnn_emu::detail::to_bits(x));
}
inline long long __double_as_longlong(double x) {
  return lrnn_emu::detail::from_bits<long long>(lrnn_emu::detail::to_bits(x));
}
inline double __longlong_as_double(long long x) {
  return lrnn_emu::detail::from_bits<double>(lrnn_emu::detail::to_bits(x));
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline int __mul24(int a, int b) { return a * b; }
inline unsigned __umul24(unsigned a, unsigned b) { return a * b; }
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
// CUDA's global min/max for any pair of arithmetic types (the usual arithmetic conversions apply).
template <typename A, typename B,
          typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value, int>::type = 0>
inline typename std::common_type<A, B>::type min(A a, B b) {
  using C = typename std::common_type<A, B>::type;
  return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
}
template <typename A, typename B,
          typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value, int>::type = 0>
inline typename std::common_type<A, B>::type max(A a, B b) {
  using C = typename std::common_type<A, B>::type;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}

// ---------------------------------------------------------------------------------------------------------------------
// __half and __nv_bfloat16: storage types with CUDA's conversions, bit-exact (round to nearest even; NaN becomes the
// canonical 0x7fff as cvt.rn.f16.f32 / cvt.rn.bf16.f32 give). Arithmetic goes through float and rounds once, which
// for +, -, *, / equals the hardware's correctly rounded half arithmetic.
namespace lrnn_emu {
namespace detail {
inline uint16_t float_to_half_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return 0x7fff;                     // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (ax >= 0x38800000u)                                   // normal half: rebias, round at bit 13
    return static_cast<uint16_t>(sign | ((ax - 0x38000000u + 0xfffu + ((ax >> 13) & 1u)) >> 13));
  float a;
  std::memcpy(&a, &ax, 4);
  return static_cast<uint16_t>(sign | static_cast<uint32_t>(nearbyintf(a * 16777216.0f)));  // units of 2^-24
}
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  uint32_t x;
  if (e == 0) {
    float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
    std::memcpy(&x, &v, 4);
    x |= sign;
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline uint16_t float_to_bfloat16_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline uint16_t float_to_bfloat16_rz(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  return static_cast<uint16_t>(x >> 16);
}
inline float bfloat16_to_float(uint16_t b) {
  const uint32_t x = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
// double -> float rounding to odd, so that a following rounding to a narrower format is a single correct rounding.
inline float double_to_float_odd(double d) {
  if (std::isnan(d) || std::isinf(d)) return static_cast<float>(d);
  if (std::fabs(d) > 3.4028234663852886e38) return d > 0 ? 3.4028234663852886e38f : -3.4028234663852886e38f;
  float f = static_cast<float>(d);
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  if (static_cast<double>(f) != d) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    x |= 1u;
    std::memcpy(&f, &x, 4);
  }
  return f;
}
}  // namespace detail
}  // namespace lrnn_emu

struct __half_raw {
  unsigned short x;
};
struct __nv_bfloat16_raw {
  unsigned short x;
};

#define LRNN_EMU_HALF_TYPE(H, RAW, TO_BITS, TO_FLOAT)                                                      \
  struct __align__(2) H {                                                                                  \
    unsigned short __x;                                                                                    \
    H() = default;                                                                                         \
    constexpr H(const RAW& r) : __x(r.x) {}                                                                \
    H(float f) : __x(TO_BITS(f)) {}                                                                        \
    H(double d) : __x(TO_BITS(lrnn_emu::detail::double_to_float_odd(d))) {}                               \
    H(int i) : __x(TO_BITS(static_cast<float>(i))) {}                                                      \
    H(unsigned i) : __x(TO_BITS(static_cast<float>(i))) {}                                                 \
    H(long long i) : __x(TO_BITS(static_cast<float>(i))) {}                                                \
    H(unsigned long long i) : __x(TO_BITS(static_cast<float>(i))) {}                                       \
    H(short i) : __x(TO_BITS(static_cast<float>(i))) {}                                                    \
    H(unsigned short i) : __x(TO_BITS(static_cast<float>(i))) {}                                           \
    operator RAW() const { return RAW{__x}; }                                                              \
    operator float() const { return TO_FLOAT(__x); }                                                       \
    H& operator=(const RAW& r) {                                                                           \
      __x = r.x;                                                                                           \
      return *this;                                                                                        \
    }                                                                                                      \
    H& operator+=(const H& o) { return *this = H(float(*this) + float(o)); }                               \
    H& operator-=(const H& o) { return *this = H(float(*this) - float(o)); }                               \
    H& operator*=(const H& o) { return *this = H(float(*this) * float(o)); }                               \
    H& operator/=(const H& o) { return *this = H(float(*this) / float(o)); }                               \
    H& operator++() { return *this += H(1.0f); }                                                           \
    H& operator--() { return *this -= H(1.0f); }                                                           \
  };                                                                                                       \
  inline H operator+(const H& a, const H& b) { return H(float(a) + float(b)); }                           \
  inline H operator-(const H& a, const H& b) { return H(float(a) - float(b)); }                           \
  inline H operator*(const H& a, const H& b) { return H(float(a) * float(b)); }                           \
  inline H operator/(const H& a, const H& b) { return H(float(a) / float(b)); }                           \
  inline H operator-(const H& a) {                                                                         \
    H r = a;                                                                                               \
    r.__x ^= 0x8000u;                                                                                      \
    return r;                                                                                              \
  }                                                                                                        \
  inline H operator+(const H& a) { return a; }                                                             \
  inline bool operator==(const H& a, const H& b) { return float(a) == float(b); }                          \
  inline bool operator!=(const H& a, const H& b) { return float(a) != float(b); }                          \
  inline bool operator<(const H& a, const H& b) { return float(a) < float(b); }                            \
  inline bool operator>(const H& a, const H& b) { return float(a) > float(b); }                            \
  inline bool operator<=(const H& a, const H& b) { return float(a) <= float(b); }                          \
  inline bool operator>=(const H& a, const H& b) { return float(a) >= float(b); }                          \
  inline H __hadd(H a, H b) { return a + b; }                                                              \
  inline H __hsub(H a, H b) { return a - b; }                                                              \
  inline H __hmul(H a, H b) { return a * b; }                                                              \
  inline H __hdiv(H a, H b) { return a / b; }                                                              \
  inline H __hfma(H a, H b, H c) { return H(std::fma(double(float(a)), double(float(b)), double(float(c)))); } \
  inline H __hneg(H a) { return -a; }                                                                      \
  inline H __habs(H a) {                                                                                   \
    a.__x &= 0x7fffu;                                                                                      \
    return a;                                                                                              \
  }                                                                                                        \
  inline H __hmax(H a, H b) { return float(a) > float(b) || std::isnan(float(b)) ? a : b; }               \
  inline H __hmin(H a, H b) { return float(a) < float(b) || std::isnan(float(b)) ? a : b; }               \
  inline bool __hisnan(H a) { return std::isnan(float(a)); }                                               \
  inline int __hisinf(H a) { return std::isinf(float(a)) ? (float(a) > 0 ? 1 : -1) : 0; }                 \
  inline bool __heq(H a, H b) { return a == b; }                                                           \
  inline bool __hne(H a, H b) { return a != b; }                                                           \
  inline bool __hlt(H a, H b) { return a < b; }                                                            \
  inline bool __hgt(H a, H b) { return a > b; }                                                            \
  inline bool __hle(H a, H b) { return a <= b; }                                                           \
  inline bool __hge(H a, H b) { return a >= b; }

LRNN_EMU_HALF_TYPE(__half, __half_raw, lrnn_emu::detail::float_to_half_rn, lrnn_emu::detail::half_to_float)
LRNN_EMU_HALF_TYPE(__nv_bfloat16, __nv_bfloat16_raw, lrnn_emu::detail::float_to_bfloat16_rn,
                   lrnn_emu::detail::bfloat16_to_float)
#undef LRNN_EMU_HALF_TYPE

inline float __half2float(__half h) { return float(h); }
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half __double2half(double d) { return __half(d); }
inline __half __int2half_rn(int i) { return __half(i); }
inline int __half2int_rz(__half h) { return static_cast<int>(float(h)); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __ushort_as_half(unsigned short x) { return __half(__half_raw{x}); }
inline __half __short_as_half(short x) { return __half(__half_raw{static_cast<unsigned short>(x)}); }

inline float __bfloat162float(__nv_bfloat16 b) { return float(b); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) {
  return __nv_bfloat16(__nv_bfloat16_raw{lrnn_emu::detail::float_to_bfloat16_rz(f)});
}
inline __nv_bfloat16 __double2bfloat16(double d) { return __nv_bfloat16(d); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline short __bfloat16_as_short(__nv_bfloat16 b) { return static_cast<short>(b.__x); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return __nv_bfloat16(__nv_bfloat16_raw{x}); }
inline __nv_bfloat16 __short_as_bfloat16(short x) {
  return __nv_bfloat16(__nv_bfloat16_raw{static_cast<unsigned short>(x)});
}

struct __align__(4) __half2 {
  __half x, y;
};
struct __align__(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
inline __half2 __half2half2(__half a) { return __half2{a, a}; }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__half(a), __half(b)}; }
inline __half2 __float2half2_rn(float a) { return __half2{__half(a), __half(a)}; }
inline __half2 __float22half2_rn(float2 f) { return __half2{__half(f.x), __half(f.y)}; }
inline float2 __half22float2(__half2 h) { return float2{float(h.x), float(h.y)}; }
inline float __low2float(__half2 h) { return float(h.x); }
inline float __high2float(__half2 h) { return float(h.y); }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline __half2 __hadd2(__half2 a, __half2 b) { return __half2{a.x + b.x, a.y + b.y}; }
inline __half2 __hmul2(__half2 a, __half2 b) { return __half2{a.x * b.x, a.y * b.y}; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162{a, b}; }
inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 a) { return __nv_bfloat162{a, a}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__nv_bfloat16(a), __nv_bfloat16(b)};
}
inline __nv_bfloat162 __float2bfloat162_rn(float a) { return __nv_bfloat162{__nv_bfloat16(a), __nv_bfloat16(a)}; }
inline __nv_bfloat162 __float22bfloat162_rn(float2 f) {
  return __nv_bfloat162{__nv_bfloat16(f.x), __nv_bfloat16(f.y)};
}
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return float2{float(h.x), float(h.y)}; }
inline float __low2float(__nv_bfloat162 h) { return float(h.x); }
inline float __high2float(__nv_bfloat162 h) { return float(h.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 h) { return h.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 h) { return h.y; }
inline __nv_bfloat162 __hadd2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162{a.x + b.x, a.y + b.y}; }
inline __nv_bfloat162 __hmul2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162{a.x * b.x, a.y * b.y}; }

inline __half atomicAdd(__half* p, __half v) {
  return lrnn_emu::detail::atomic_rmw(p, [v](__half o) { return o + v; });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* p, __nv_bfloat16 v) {
  return lrnn_emu::detail::atomic_rmw(p, [v](__nv_bfloat16 o) { return o + v; });
}
inline __half2 atomicAdd(__half2* p, __half2 v) {
  return lrnn_emu::detail::atomic_rmw(p, [v](__half2 o) { return __hadd2(o, v); });
}

typedef __half half;
typedef __half2 half2;
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;
