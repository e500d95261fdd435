// Kernels that exercise the emulation itself, for tests/test_cuda_emulator.py: indexing, shuffles, votes, barriers,
// the errors it must report, dynamic shared memory, atomics. Each run_* launches one kernel and returns the error.
#include "glue.h"
#include "kernels/common.cuh"

namespace {

// Every thread writes (tx, ty, tz, bx, by, bz, bdx*bdy*bdz, gdx*gdy*gdz) at its global linear index.
__global__ void index_kernel(int* out) {
  const int tpb = blockDim.x * blockDim.y * blockDim.z;
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  int* o = out + 8 * (b * tpb + t);
  o[0] = threadIdx.x;
  o[1] = threadIdx.y;
  o[2] = threadIdx.z;
  o[3] = blockIdx.x;
  o[4] = blockIdx.y;
  o[5] = blockIdx.z;
  o[6] = tpb;
  o[7] = gridDim.x * gridDim.y * gridDim.z;
}
int run_index(int64_t gx, int64_t gy, int64_t gz, int64_t bx, int64_t by, int64_t bz, int32_t* out) {
  LRNN_LAUNCH(dim3(gx, gy, gz), dim3(bx, by, bz), 0, nullptr, index_kernel)(out);
  return cudaGetLastError();
}

// out[((mode * 6 + log2(width)) * n_delta + d) * blockDim.x + t]: lane t's result of shuffling 1000 + t, for the
// modes idx, up, down, xor. outd: a double through __shfl_xor_sync(.., 1).
__global__ void shuffle_kernel(int n_delta, const int* deltas, int* out, double* outd) {
  const int t = threadIdx.x, n = blockDim.x, v = 1000 + t;
  int o = 0;
  for (int mode = 0; mode < 4; ++mode)
    for (int width = 1; width <= 32; width *= 2)
      for (int d = 0; d < n_delta; ++d, ++o) {
        const int b = deltas[d];
        int r = 0;
        if (mode == 0) r = __shfl_sync(0xffffffffu, v, b, width);
        if (mode == 1) r = __shfl_up_sync(0xffffffffu, v, b, width);
        if (mode == 2) r = __shfl_down_sync(0xffffffffu, v, b, width);
        if (mode == 3) r = __shfl_xor_sync(0xffffffffu, v, b, width);
        out[o * n + t] = r;
      }
  outd[t] = __shfl_xor_sync(0xffffffffu, t + 0.25, 1);
}
int run_shuffle(int64_t threads, int64_t n_delta, const int32_t* deltas, int32_t* out, double* outd) {
  LRNN_LAUNCH(1, threads, 0, nullptr, shuffle_kernel)(static_cast<int>(n_delta), deltas, out, outd);
  return cudaGetLastError();
}

// Lanes 0-15 and 16-31 shuffle within their half with disjoint masks, at the same time.
__global__ void half_warp_kernel(int* out) {
  const int t = threadIdx.x;
  const unsigned mask = (t % 32) < 16 ? 0x0000ffffu : 0xffff0000u;
  out[t] = __shfl_xor_sync(mask, 1000 + t, 1);
}
int run_half_warp(int64_t threads, int32_t* out) {
  LRNN_LAUNCH(1, threads, 0, nullptr, half_warp_kernel)(out);
  return cudaGetLastError();
}

// out[t * 8 + i]: ballot, any, all, reduce_add, syncthreads_count, _and, _or, and a reduction through shared memory.
__global__ void vote_kernel(int* out) {
  __shared__ int partial[32];
  const int t = threadIdx.x;
  int* o = out + 8 * t;
  o[0] = static_cast<int>(__ballot_sync(0xffffffffu, t % 3 == 0));
  o[1] = __any_sync(0xffffffffu, t == 5);
  o[2] = __all_sync(0xffffffffu, t < 36);
  o[3] = __reduce_add_sync(0xffffffffu, t);
  o[4] = __syncthreads_count(t % 2);
  o[5] = __syncthreads_and(t < 1000);
  o[6] = __syncthreads_or(t == 17);
  int s = t;
  const int lanes = min(32, static_cast<int>(blockDim.x) - t / 32 * 32);  // the last warp may be partial
  for (int off = 16; off > 0; off /= 2) {
    const int other = __shfl_down_sync(0xffffffffu, s, off);
    if (t % 32 + off < lanes) s += other;  // a lane that does not exist gives no value
  }
  if (t % 32 == 0) partial[t / 32] = s;
  __syncthreads();
  int total = 0;
  for (int w = 0; w < static_cast<int>((blockDim.x + 31) / 32); ++w) total += partial[w];
  o[7] = total;
}
int run_vote(int64_t threads, int32_t* out) {
  LRNN_LAUNCH(1, threads, 0, nullptr, vote_kernel)(out);
  return cudaGetLastError();
}

// Reads a neighbour's shared-memory slot, with or without the barrier between the write and the read.
__global__ void neighbour_kernel(int seed, int with_barrier, int* out) {
  __shared__ int buf[1024];
  const int t = threadIdx.x;
  buf[t] = seed * 10000 + t;
  if (with_barrier) __syncthreads();
  out[blockIdx.x * blockDim.x + t] = buf[(t + 1) % blockDim.x];
}
int run_neighbour(int64_t blocks, int64_t threads, int64_t seed, int64_t with_barrier, int32_t* out) {
  LRNN_LAUNCH(blocks, threads, 0, nullptr, neighbour_kernel)(static_cast<int>(seed), static_cast<int>(with_barrier),
                                                             out);
  return cudaGetLastError();
}

// Block b reads what block b - 1 wrote: a dependency between blocks, which CUDA does not order.
__global__ void chain_kernel(int* data) {
  if (threadIdx.x == 0) data[blockIdx.x + 1] = data[blockIdx.x] + 1;
}
int run_chain(int64_t blocks, int32_t* data) {
  LRNN_LAUNCH(blocks, 32, 0, nullptr, chain_kernel)(data);
  return cudaGetLastError();
}

// Threads past n return before the barrier: legal, they no longer count.
__global__ void early_exit_kernel(int n, int* out) {
  __shared__ int buf[1024];
  const int t = threadIdx.x;
  if (t >= n) return;
  buf[t] = 7 * t;
  __syncthreads();
  out[t] = buf[n - 1 - t];
}
int run_early_exit(int64_t threads, int64_t n, int32_t* out) {
  LRNN_LAUNCH(1, threads, 0, nullptr, early_exit_kernel)(static_cast<int>(n), out);
  return cudaGetLastError();
}

// Errors the emulation must report. kind 0: half a warp waits at __syncthreads, the other half in a shuffle that
// needs the first half (deadlock); 1: two __syncthreads on different lines (divergent); 2: a lane's mask does not
// name it; 3: overlapping masks (or, if one half is done first, a deadlock); 4: a shuffle width of 3.
__global__ void error_kernel(int kind, int* out) {
  const int t = threadIdx.x;
  if (kind == 0) {
    if (t < 16)
      __syncthreads();
    else
      out[t] = __shfl_sync(0xffffffffu, t, 0);
  } else if (kind == 1) {
    if (t % 2) {
      __syncthreads();
    } else {
      __syncthreads();
    }
  } else if (kind == 2) {
    out[t] = __shfl_sync(0x1u, t, 0);
  } else if (kind == 3) {  // either the masks overlap in one phase, or the full mask waits for lanes at the barrier
    out[t] = __shfl_xor_sync(t < 16 ? 0xffffu : 0xffffffffu, t, 1);
    __syncthreads();
  } else if (kind == 4) {
    out[t] = __shfl_xor_sync(0xffffffffu, t, 1, 3);
  }
}
int run_error(int64_t kind, int64_t threads, int32_t* out) {
  LRNN_LAUNCH(1, threads, 0, nullptr, error_kernel)(static_cast<int>(kind), out);
  return cudaGetLastError();
}

// Dynamic shared memory: out[t] = what the slot held before the block wrote it (poison), then a reversed copy.
__global__ void dynamic_smem_kernel(float* before, float* after) {
  LRNN_DYNAMIC_SHARED(float, buf);
  const int t = threadIdx.x, n = blockDim.x;
  before[t] = buf[t];
  __syncthreads();
  buf[t] = static_cast<float>(t);
  __syncthreads();
  after[t] = buf[n - 1 - t];
}
int run_dynamic_smem(int64_t threads, int64_t smem_bytes, int64_t raise_limit, float* before, float* after) {
  if (raise_limit) {
    const cudaError_t e =
        cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes));
    if (e != cudaSuccess) return e;
  }
  LRNN_LAUNCH(1, threads, static_cast<size_t>(smem_bytes), nullptr, dynamic_smem_kernel)(before, after);
  return cudaGetLastError();
}

// A launch with a given configuration (to check the configuration errors).
__global__ void empty_kernel() {}
int run_config(int64_t gx, int64_t gy, int64_t gz, int64_t bx, int64_t by, int64_t bz) {
  LRNN_LAUNCH(dim3(gx, gy, gz), dim3(bx, by, bz), 0, nullptr, empty_kernel)();
  return cudaGetLastError();
}

// Atomics from every thread of every block.
__global__ void atomic_kernel(float* fsum, double* dsum, int* count, int* mx, unsigned long long* bits, __half* hsum) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(fsum, 0.5f);
  atomicAdd(dsum, 0.25);
  atomicAdd(count, 1);
  atomicMax(mx, g);
  atomicOr(bits, 1ull << (g % 64));
  atomicAdd(hsum, __float2half(1.0f));
}
int run_atomic(int64_t blocks, int64_t threads, float* fsum, double* dsum, int32_t* count, int32_t* mx,
               uint64_t* bits, uint16_t* hsum) {
  LRNN_LAUNCH(blocks, threads, 0, nullptr, atomic_kernel)(fsum, dsum, count, mx,
                                                          reinterpret_cast<unsigned long long*>(bits),
                                                          reinterpret_cast<__half*>(hsum));
  return cudaGetLastError();
}

// An out-of-bounds write one element past the end (the Arena's guard zone must see it).
__global__ void oob_kernel(int n, float* out) {
  const int t = threadIdx.x;
  if (t <= n) out[t] = 1.0f;
}
int run_oob(int64_t n, float* out) {
  LRNN_LAUNCH(1, 64, 0, nullptr, oob_kernel)(static_cast<int>(n), out);
  return cudaGetLastError();
}

}  // namespace

LRNN_EMU_EXPORT_AS(selftest_index, run_index)
LRNN_EMU_EXPORT_AS(selftest_shuffle, run_shuffle)
LRNN_EMU_EXPORT_AS(selftest_half_warp, run_half_warp)
LRNN_EMU_EXPORT_AS(selftest_vote, run_vote)
LRNN_EMU_EXPORT_AS(selftest_neighbour, run_neighbour)
LRNN_EMU_EXPORT_AS(selftest_chain, run_chain)
LRNN_EMU_EXPORT_AS(selftest_early_exit, run_early_exit)
LRNN_EMU_EXPORT_AS(selftest_error, run_error)
LRNN_EMU_EXPORT_AS(selftest_dynamic_smem, run_dynamic_smem)
LRNN_EMU_EXPORT_AS(selftest_config, run_config)
LRNN_EMU_EXPORT_AS(selftest_atomic, run_atomic)
LRNN_EMU_EXPORT_AS(selftest_oob, run_oob)
