// Matrix products with float32 activations and weights streamed in their storage format, for decoding on CPU:
// y = x @ dequant(w), x [M, K] float32 rows (one per sequence when decoding, so M is small), w [K, N] as nn.Linear
// stores it ([in, out]) in float32, bfloat16, float16 or int8, float32 accumulation. int8 weights are symmetric per
// output column: dequant(w)[k, n] = q[k, n] * scale[n]; the kernel sums x * q and multiplies by scale[n] once.
//
// Memory, not arithmetic, bounds a product with few rows: every weight is read once per call, and the aim is to
// stream them at the machine's bandwidth. The weights are cut into tiles of KB rows by NB columns, shared over the
// thread pool; a tile streams kWmRows weight rows at a time (that many sequential streams in flight), converts each
// vector of weights to float32 once and multiplies it into every row of x. Each column's sum over a tile is a chain
// of multiply-adds in ascending k; tiles along k leave partial sums, and the last tile of a column block to finish
// adds them in ascending order. KB and NB depend on K and N only, so the result of every row depends neither on
// the thread count nor on the other rows of x (M is processed kWmMaxRows rows at a time with the same tiles).
// Several independent products can share one pass over the thread pool (weight_matmuls): the RWKV-v2 step does.
//
// The transposed product y = x @ dequant(w)^T with w [N, K] (an embedding matrix [vocab, dim] that is also the
// output head, whose int8 scale is per row of w) is a dot product of each row of w with each row of x:
// weight_matmul_nt, each row of w read once, by one thread, so its results too depend neither on the thread count
// nor on the other rows of x.
//
// Also the int8 quantiser: scale[n] = max_k |w[k, n]| / 127, q = round(w / scale) (halves to even, as paddle.round),
// in float32 divisions, so its results are exactly those of the pure-Paddle reference.
#ifndef LRNN_KERNELS_WEIGHT_MATMUL_TYPES_H  // the storage types: one for every instruction-set copy
#define LRNN_KERNELS_WEIGHT_MATMUL_TYPES_H

#include <atomic>
#include <initializer_list>
#include <memory>
#include <vector>

#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// In a namespace of their own, like every type the kernels of several instruction sets share (cpu_isa.h).
namespace lrnn {
namespace types {

// 16-bit weights by their bits (the bindings pass Paddle's bfloat16 and float16 storage as these).
struct bf16_bits {
  uint16_t bits;
};
struct f16_bits {
  uint16_t bits;
};

enum class WeightFormat { f32, bf16, f16, i8 };

// One product y[m, :] = x[m, :] @ dequant(w) for m < M: w [K, N] in `format`, scale [N] for i8 (else null), x rows
// K floats apart, y rows N floats apart.
struct WeightProduct {
  const void* w;
  WeightFormat format;
  int64_t K, N;
  const float* scale;
  const float* x;
  float* y;
};

// A weight in its storage format, as a model holds it (the fused decoding steps' matrices and embedding): its
// elements, their format, and for i8 the scales (per column of a [K, N] matrix, per row of an embedding).
struct WeightRef {
  const void* w;
  WeightFormat format;
  const float* scale;
};

}  // namespace types
using types::bf16_bits;
using types::f16_bits;
using types::WeightFormat;
using types::WeightProduct;
using types::WeightRef;
}  // namespace lrnn

#endif  // LRNN_KERNELS_WEIGHT_MATMUL_TYPES_H

#ifndef LRNN_KERNELS_WEIGHT_MATMUL_H  // (cpu_isa_variants.h undefines it to compile the kernels again)
#define LRNN_KERNELS_WEIGHT_MATMUL_H

LRNN_ISA_BEGIN

#ifndef __CUDA_ARCH__
// WmVec: float32 lanes of the widest vectors the target has, with the weight formats' conversions to them.
// madd(acc, w, s) = acc + w * s, fused where the target has FMA.
#if LRNN_ISA_LEVEL >= 2
struct WmVec {
  static constexpr int kLanes = 16;
  __m512 v;
  static WmVec zero() { return {_mm512_setzero_ps()}; }
  static WmVec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  static WmVec madd(WmVec acc, WmVec w, float s) { return {_mm512_fmadd_ps(w.v, _mm512_set1_ps(s), acc.v)}; }
  static WmVec fma(WmVec acc, WmVec a, WmVec b) { return {_mm512_fmadd_ps(a.v, b.v, acc.v)}; }
  static WmVec add(WmVec a, WmVec b) { return {_mm512_add_ps(a.v, b.v)}; }
  static WmVec from(const float* p) { return load(p); }
  static WmVec from(const bf16_bits* p) {  // bfloat16 is the top half of a float32
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(h, 16))};
  }
  static WmVec from(const f16_bits* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
  }
  static WmVec from(const int8_t* p) {
    return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))};
  }
};
#elif LRNN_ISA_LEVEL == 1
struct WmVec {
  static constexpr int kLanes = 8;
  __m256 v;
  static WmVec zero() { return {_mm256_setzero_ps()}; }
  static WmVec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  static WmVec madd(WmVec acc, WmVec w, float s) { return {_mm256_fmadd_ps(w.v, _mm256_set1_ps(s), acc.v)}; }
  static WmVec fma(WmVec acc, WmVec a, WmVec b) { return {_mm256_fmadd_ps(a.v, b.v, acc.v)}; }
  static WmVec add(WmVec a, WmVec b) { return {_mm256_add_ps(a.v, b.v)}; }
  static WmVec from(const float* p) { return load(p); }
  static WmVec from(const bf16_bits* p) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(h, 16))};
  }
  static WmVec from(const f16_bits* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
  }
  static WmVec from(const int8_t* p) {
    return {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))))};
  }
};
#elif defined(__SSE2__)
struct WmVec {  // x86-64 baseline: no FMA (multiply, then add) and no half-precision conversion instruction
  static constexpr int kLanes = 4;
  __m128 v;
  static WmVec zero() { return {_mm_setzero_ps()}; }
  static WmVec load(const float* p) { return {_mm_loadu_ps(p)}; }
  void store(float* p) const { _mm_storeu_ps(p, v); }
  static WmVec madd(WmVec acc, WmVec w, float s) { return {_mm_add_ps(acc.v, _mm_mul_ps(w.v, _mm_set1_ps(s)))}; }
  static WmVec fma(WmVec acc, WmVec a, WmVec b) { return {_mm_add_ps(acc.v, _mm_mul_ps(a.v, b.v))}; }
  static WmVec add(WmVec a, WmVec b) { return {_mm_add_ps(a.v, b.v)}; }
  static WmVec from(const float* p) { return load(p); }
  static __m128i load4x16(const void* p) {  // four 16-bit values, zero-extended to 32 bits
    return _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), _mm_setzero_si128());
  }
  static WmVec from(const bf16_bits* p) { return {_mm_castsi128_ps(_mm_slli_epi32(load4x16(p), 16))}; }
  static WmVec from(const f16_bits* p) {
    // Exponent and mantissa shifted into a float32's place and scaled by 2^112 (exact for normal and subnormal
    // halves alike); infinities and NaNs get the all-ones exponent; then the sign.
    const __m128i h = load4x16(p), em = _mm_and_si128(h, _mm_set1_epi32(0x7fff));
    const __m128 finite =
        _mm_mul_ps(_mm_castsi128_ps(_mm_slli_epi32(em, 13)), _mm_castsi128_ps(_mm_set1_epi32(0x77800000)));
    const __m128i special = _mm_cmpgt_epi32(em, _mm_set1_epi32(0x7bff));
    const __m128i inf_nan = _mm_or_si128(_mm_slli_epi32(em, 13), _mm_set1_epi32(0x7f800000));
    const __m128i bits =
        _mm_or_si128(_mm_and_si128(special, inf_nan), _mm_andnot_si128(special, _mm_castps_si128(finite)));
    return {_mm_castsi128_ps(_mm_or_si128(bits, _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x8000)), 16)))};
  }
  static WmVec from(const int8_t* p) {
    int32_t four;
    std::memcpy(&four, p, 4);
    const __m128i b = _mm_cvtsi32_si128(four);
    const __m128i w = _mm_unpacklo_epi16(_mm_unpacklo_epi8(b, b), _mm_unpacklo_epi8(b, b));  // byte i in all of lane i
    return {_mm_cvtepi32_ps(_mm_srai_epi32(w, 24))};
  }
};
#else
struct WmVec {  // other architectures: one lane, plain C++ (the compiler may still vectorise around it)
  static constexpr int kLanes = 1;
  float v;
  static WmVec zero() { return {0.0f}; }
  static WmVec load(const float* p) { return {*p}; }
  void store(float* p) const { *p = v; }
  static WmVec madd(WmVec acc, WmVec w, float s) { return {acc.v + w.v * s}; }
  static WmVec fma(WmVec acc, WmVec a, WmVec b) { return {acc.v + a.v * b.v}; }
  static WmVec add(WmVec a, WmVec b) { return {a.v + b.v}; }
  static WmVec from(const float* p) { return load(p); }
  static WmVec from(const bf16_bits* p) {
    const uint32_t bits = static_cast<uint32_t>(p->bits) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return {f};
  }
  static WmVec from(const f16_bits* p) { return {static_cast<float>(*reinterpret_cast<const _Float16*>(p))}; }
  static WmVec from(const int8_t* p) { return {static_cast<float>(*p)}; }
};
#endif

constexpr int kWmRows = 8;          // weight rows streamed at once
constexpr int64_t kWmMaxRows = 16;  // rows of x per pass over the weights
constexpr int64_t kWmColBlock = 1024, kWmMinRowBlock = 128, kWmTargetTiles = 16;

// Tiles: NB = min(N, kWmColBlock) columns (a multiple of every target's lanes when it is not all of N), and along
// k as many blocks as bring the tile count to kWmTargetTiles, each at least kWmMinRowBlock rows (a multiple of
// kWmRows), so that even one matrix of a small model keeps two to sixteen threads busy.
struct WmTiling {
  int64_t nb, ncb, kb, nkb;
  WmTiling(int64_t K, int64_t N) {
    nb = std::min(N, kWmColBlock);
    ncb = (N + nb - 1) / nb;
    const int64_t want = std::max<int64_t>(1, (kWmTargetTiles + ncb - 1) / ncb);
    const int64_t most = std::max<int64_t>(1, K / kWmMinRowBlock);
    const int64_t blocks = std::min(want, most);
    kb = ((K + blocks - 1) / blocks + kWmRows - 1) / kWmRows * kWmRows;
    nkb = (K + kb - 1) / kb;
  }
};

// acc[m, j] += sum_{k in [k0, k0 + R)} x[m, k] * w[k, j] for j < L (one vector), m < M; x rows ldx apart, acc rows
// ldacc apart, w rows ldw apart.
template <int R, typename W>
__attribute__((always_inline)) inline void wm_vector(int64_t M, const float* x, int64_t ldx, const W* w, int64_t ldw,
                                                     float* acc, int64_t ldacc) {
  WmVec wr[R];
  for (int i = 0; i < R; ++i) wr[i] = WmVec::from(w + i * ldw);
  for (int64_t m = 0; m < M; ++m) {
    const float* xm = x + m * ldx;
    WmVec a = WmVec::load(acc + m * ldacc);
    for (int i = 0; i < R; ++i) a = WmVec::madd(a, wr[i], xm[i]);
    a.store(acc + m * ldacc);
  }
}

// The same for the last n < L columns, through zero-padded copies, so that they get exactly the arithmetic of the
// other columns.
template <int R, typename W>
inline void wm_vector_tail(int64_t M, const float* x, int64_t ldx, const W* w, int64_t ldw, float* acc, int64_t ldacc,
                           int64_t n) {
  constexpr int L = WmVec::kLanes;
  W wpad[R * L];
  float apad[kWmMaxRows * L];
  std::memset(static_cast<void*>(wpad), 0, sizeof(wpad));
  std::memset(apad, 0, sizeof(apad));
  for (int i = 0; i < R; ++i) std::memcpy(static_cast<void*>(wpad + i * L), w + i * ldw, n * sizeof(W));
  for (int64_t m = 0; m < M; ++m) std::memcpy(apad + m * L, acc + m * ldacc, n * sizeof(float));
  wm_vector<R>(M, x, ldx, wpad, L, apad, L);
  for (int64_t m = 0; m < M; ++m) std::memcpy(acc + m * ldacc, apad + m * L, n * sizeof(float));
}

// acc[m, 0:n] = sum_{k in [k0, k1)} x[m, k] * w[k, c0:c0+n] for M <= kWmMaxRows rows, sweeping kWmRows rows of
// weights at a time over all n columns, the sums kept in acc (in L1 for one or two rows): the order for decoding.
template <typename W>
void wm_rows_sweep(int64_t M, int64_t K, int64_t N, const float* x, const W* w, int64_t k0, int64_t k1, int64_t c0,
                   int64_t n, float* acc, int64_t ldacc) {
  constexpr int L = WmVec::kLanes;
  const int64_t nv = n / L * L;
  for (int64_t m = 0; m < M; ++m) std::fill_n(acc + m * ldacc, n, 0.0f);
  int64_t k = k0;
  for (; k + kWmRows <= k1; k += kWmRows) {
    const W* wk = w + k * N + c0;
    for (int64_t j = 0; j < nv; j += L) wm_vector<kWmRows>(M, x + k, K, wk + j, N, acc + j, ldacc);
    if (nv < n) wm_vector_tail<kWmRows>(M, x + k, K, wk + nv, N, acc + nv, ldacc, n - nv);
  }
  for (; k < k1; ++k) {
    const W* wk = w + k * N + c0;
    for (int64_t j = 0; j < nv; j += L) wm_vector<1>(M, x + k, K, wk + j, N, acc + j, ldacc);
    if (nv < n) wm_vector_tail<1>(M, x + k, K, wk + nv, N, acc + nv, ldacc, n - nv);
  }
}

// The same sums for more rows of x: R rows by a strip of two vectors of columns at a time, the sums in registers
// (with the sums in memory, rows of x beyond two made the sweep bound by the loads and stores of the sums: 5x
// slower at 16 rows). The strips read a band of kWmBand weight rows that wm_blocked_tile has packed strip by strip
// (reading the weights row by row, as memory streams best; read strip by strip from memory, every row of a strip
// was another page and the product ran at a third of the bandwidth). Each column's chain of multiply-adds is the
// one wm_rows_sweep computes, continued from acc between bands, so the results are the same bits whichever order
// runs. Rows [m0, m1) of x, in blocks of R (a last block short of R rows repeats its last row, computed and not
// stored).
constexpr int64_t kWmBand = 64;

template <int R, typename W>
void wm_blocked(int64_t m0, int64_t m1, const float* x, int64_t ldx, const W* pack, int64_t band_rows,
                int64_t strips, bool first, float* acc, int64_t ldacc) {
  constexpr int L = WmVec::kLanes, S = 2 * L;
  for (; m0 < m1; m0 += R) {
    const int64_t rows = std::min<int64_t>(R, m1 - m0);
    const float* xr[R];
    for (int r = 0; r < R; ++r) xr[r] = x + (m0 + std::min<int64_t>(r, rows - 1)) * ldx;
    for (int64_t s = 0; s < strips; ++s) {
      WmVec a[R][2];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < 2; ++v)
          a[r][v] = first || r >= rows ? WmVec::zero() : WmVec::load(acc + (m0 + r) * ldacc + s * S + v * L);
      const W* p = pack + s * kWmBand * S;
      for (int64_t k = 0; k < band_rows; ++k, p += S) {
        const WmVec w0 = WmVec::from(p), w1 = WmVec::from(p + L);
        for (int r = 0; r < R; ++r) {
          a[r][0] = WmVec::madd(a[r][0], w0, xr[r][k]);
          a[r][1] = WmVec::madd(a[r][1], w1, xr[r][k]);
        }
      }
      for (int64_t r = 0; r < rows; ++r)
        for (int v = 0; v < 2; ++v) a[r][v].store(acc + (m0 + r) * ldacc + s * S + v * L);
    }
  }
}

// Blocks of 8 rows (with 32 vector registers) and of 4 over the strips of columns [c0, c0 + strips * 2 L).
template <typename W>
void wm_blocked_tile(int64_t M, int64_t K, int64_t N, const float* x, const W* w, int64_t k0, int64_t k1, int64_t c0,
                     int64_t strips, float* acc, int64_t ldacc) {
  constexpr int S = 2 * WmVec::kLanes;
  static thread_local std::vector<W> pack;  // [strips, kWmBand, S]: one band, strip by strip
  pack.resize(static_cast<size_t>(strips * kWmBand * S));
  const int64_t m8 = WmVec::kLanes >= 16 ? M / 8 * 8 : 0;
  for (int64_t kb = k0; kb < k1; kb += kWmBand) {
    const int64_t band_rows = std::min(kWmBand, k1 - kb);
    for (int64_t k = 0; k < band_rows; ++k) {
      const W* row = w + (kb + k) * N + c0;
      for (int64_t s = 0; s < strips; ++s) std::memcpy(&pack[(s * kWmBand + k) * S], row + s * S, S * sizeof(W));
    }
    wm_blocked<8>(0, m8, x + kb, K, pack.data(), band_rows, strips, kb == k0, acc, ldacc);
    wm_blocked<4>(m8, M, x + kb, K, pack.data(), band_rows, strips, kb == k0, acc, ldacc);
  }
}

// Decoding rows (one or two) sweep the weights; more rows go through the register blocks, and the columns beyond
// the last strip through the sweep.
template <typename W>
void wm_tile(int64_t M, int64_t K, int64_t N, const float* x, const W* w, int64_t k0, int64_t k1, int64_t c0,
             int64_t n, float* acc, int64_t ldacc) {
  if (M <= 2) return wm_rows_sweep(M, K, N, x, w, k0, k1, c0, n, acc, ldacc);
  const int64_t strips = n / (2 * WmVec::kLanes), nb = strips * 2 * WmVec::kLanes;
  if (strips > 0) wm_blocked_tile(M, K, N, x, w, k0, k1, c0, strips, acc, ldacc);
  if (nb < n) wm_rows_sweep(M, K, N, x, w, k0, k1, c0 + nb, n - nb, acc + nb, ldacc);
}

// Sum over the tile's rows [k0, k1) into acc (rows ldacc apart) for the `rows` rows of x from m0.
inline void wm_tile_of(const WeightProduct& p, int64_t rows, int64_t m0, int64_t k0, int64_t k1, int64_t c0,
                       int64_t n, float* acc, int64_t ldacc) {
  const float* x = p.x + m0 * p.K;
  switch (p.format) {
    case WeightFormat::f32:
      return wm_tile(rows, p.K, p.N, x, static_cast<const float*>(p.w), k0, k1, c0, n, acc, ldacc);
    case WeightFormat::bf16:
      return wm_tile(rows, p.K, p.N, x, static_cast<const bf16_bits*>(p.w), k0, k1, c0, n, acc, ldacc);
    case WeightFormat::f16:
      return wm_tile(rows, p.K, p.N, x, static_cast<const f16_bits*>(p.w), k0, k1, c0, n, acc, ldacc);
    case WeightFormat::i8:
      return wm_tile(rows, p.K, p.N, x, static_cast<const int8_t*>(p.w), k0, k1, c0, n, acc, ldacc);
  }
}

// Runs independent products in one pass over the thread pool (one wake-up for all of them), M rows of x each.
inline void weight_matmuls(const WeightProduct* products, int64_t count, int64_t M) {
  struct Tile {
    int64_t product, cb, kb;
  };
  std::vector<WmTiling> tiling;
  std::vector<Tile> tiles;
  std::vector<int64_t> done_at(count), partial_at(count);  // a product's first counter and partial sums
  int64_t counters = 0;
  size_t partials = 0;
  for (int64_t i = 0; i < count; ++i) {
    const WmTiling t(products[i].K, products[i].N);
    tiling.push_back(t);
    for (int64_t kb = 0; kb < t.nkb; ++kb)
      for (int64_t cb = 0; cb < t.ncb; ++cb) tiles.push_back({i, cb, kb});
    done_at[i] = counters;
    counters += t.ncb;
    partial_at[i] = static_cast<int64_t>(partials);
    if (t.nkb > 1) partials += static_cast<size_t>(t.nkb * std::min(M, kWmMaxRows) * products[i].N);
  }
  static thread_local std::vector<float> partial_buf;  // per product [nkb, rows, N] where its tiles split k
  partial_buf.resize(partials);
  float* const partial_base = partial_buf.data();  // (the pool's threads have thread_locals of their own)
  std::unique_ptr<std::atomic<int64_t>[]> done(new std::atomic<int64_t>[counters]);
  for (int64_t m0 = 0; m0 < M; m0 += kWmMaxRows) {
    const int64_t rows = std::min(kWmMaxRows, M - m0);
    double work = 0;
    for (int64_t i = 0; i < count; ++i) work += 2.0 * rows * products[i].K * products[i].N;
    for (int64_t c = 0; c < counters; ++c) done[c].store(0);
    parallel_for(
        static_cast<int64_t>(tiles.size()),
        [&](int64_t index) {
          const Tile& tile = tiles[index];
          const WeightProduct& p = products[tile.product];
          const WmTiling& t = tiling[tile.product];
          const int64_t c0 = tile.cb * t.nb, n = std::min(t.nb, p.N - c0), k0 = tile.kb * t.kb;
          const int64_t k1 = std::min(p.K, k0 + t.kb);
          float* y = p.y + m0 * p.N;
          if (t.nkb == 1) {
            wm_tile_of(p, rows, m0, k0, k1, c0, n, y + c0, p.N);
          } else {
            float* partial = partial_base + partial_at[tile.product];
            wm_tile_of(p, rows, m0, k0, k1, c0, n, partial + tile.kb * rows * p.N + c0, p.N);
            // The last tile of this column block to finish adds the blocks' partial sums in ascending k (the
            // acquire-release count makes the other tiles' sums visible to it).
            if (done[done_at[tile.product] + tile.cb].fetch_add(1, std::memory_order_acq_rel) != t.nkb - 1) return;
            for (int64_t m = 0; m < rows; ++m) {
              float* out = y + m * p.N + c0;
              std::copy_n(partial + m * p.N + c0, n, out);
              for (int64_t b = 1; b < t.nkb; ++b) {
                const float* part = partial + (b * rows + m) * p.N + c0;
                for (int64_t j = 0; j < n; ++j) out[j] += part[j];
              }
            }
          }
          if (p.scale)
            for (int64_t m = 0; m < rows; ++m)
              for (int64_t j = 0; j < n; ++j) y[m * p.N + c0 + j] *= p.scale[c0 + j];
        },
        work);
  }
}

inline void weight_matmuls(std::initializer_list<WeightProduct> products, int64_t M) {
  weight_matmuls(products.begin(), static_cast<int64_t>(products.size()), M);
}

// The sum of a vector's lanes, in lane order.
inline float wm_lane_sum(WmVec a) {
  float lanes[WmVec::kLanes];
  a.store(lanes);
  float sum = 0.0f;
  for (int i = 0; i < WmVec::kLanes; ++i) sum += lanes[i];
  return sum;
}

// n weights from p, widened to float32 into out (zero-padded copies for a tail shorter than a vector, so that every
// element is converted by the same instructions).
template <typename W>
inline void wm_widen(const W* p, int64_t n, float* out) {
  constexpr int L = WmVec::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) WmVec::from(p + i).store(out + i);
  if (i < n) {
    W pad[L];
    float wide[L];
    std::memset(static_cast<void*>(pad), 0, sizeof(pad));
    std::memcpy(static_cast<void*>(pad), p + i, (n - i) * sizeof(W));
    WmVec::from(pad).store(wide);
    std::copy_n(wide, n - i, out + i);
  }
}

// Row `row` of an embedding [rows, n] in its storage format, widened to float32 (times the row's scale for i8).
inline void wm_embedding_row(const WeightRef& e, int64_t row, int64_t n, float* out) {
  switch (e.format) {
    case WeightFormat::f32:
      std::copy_n(static_cast<const float*>(e.w) + row * n, n, out);
      return;
    case WeightFormat::bf16:
      return wm_widen(static_cast<const bf16_bits*>(e.w) + row * n, n, out);
    case WeightFormat::f16:
      return wm_widen(static_cast<const f16_bits*>(e.w) + row * n, n, out);
    case WeightFormat::i8:
      wm_widen(static_cast<const int8_t*>(e.w) + row * n, n, out);
      for (int64_t i = 0; i < n; ++i) out[i] *= e.scale[row];
      return;
  }
}

// y[m * ldy] = sum_k x[m, k] * w[k] for m < M (x rows K floats apart) and one row w [K] of a transposed weight: kWmDot
// rows of x at a time, each with two vector sums over alternate vectors of k, added lane by lane in order, then
// the last K % (2 L) products in ascending k. Every row's arithmetic is the same whatever M is.
constexpr int64_t kWmDot = 4;

template <typename W>
void wm_dot(int64_t M, int64_t K, const float* x, const W* w, float* y, int64_t ldy) {
  constexpr int L = WmVec::kLanes;
  const int64_t kv = K / (2 * L) * (2 * L);
  for (int64_t m0 = 0; m0 < M; m0 += kWmDot) {
    const int64_t rows = std::min(kWmDot, M - m0);
    WmVec a[kWmDot][2];
    for (int r = 0; r < kWmDot; ++r) a[r][0] = a[r][1] = WmVec::zero();
    for (int64_t k = 0; k < kv; k += 2 * L) {
      const WmVec w0 = WmVec::from(w + k), w1 = WmVec::from(w + k + L);
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + (m0 + r) * K + k;
        a[r][0] = WmVec::fma(a[r][0], w0, WmVec::load(xr));
        a[r][1] = WmVec::fma(a[r][1], w1, WmVec::load(xr + L));
      }
    }
    float tail[2 * L];
    if (kv < K) wm_widen(w + kv, K - kv, tail);
    for (int64_t r = 0; r < rows; ++r) {
      float sum = wm_lane_sum(WmVec::add(a[r][0], a[r][1]));
      const float* xr = x + (m0 + r) * K;
      for (int64_t k = kv; k < K; ++k) sum += xr[k] * tail[k - kv];
      y[(m0 + r) * ldy] = sum;
    }
  }
}

// y[m, n] = sum_k x[m, k] * dequant(w)[n, k]: the product with the transpose of w [N, K] (p.K, p.N as for
// weight_matmuls; p.scale per row of w for i8), blocks of kWmDotBlock rows of w shared over the thread pool.
constexpr int64_t kWmDotBlock = 32;

inline void weight_matmul_nt(const WeightProduct& p, int64_t M) {
  const int64_t K = p.K, N = p.N, blocks = (N + kWmDotBlock - 1) / kWmDotBlock;
  parallel_for(
      blocks,
      [&](int64_t b) {
        for (int64_t n = b * kWmDotBlock; n < std::min(N, (b + 1) * kWmDotBlock); ++n) {
          switch (p.format) {
            case WeightFormat::f32:
              wm_dot(M, K, p.x, static_cast<const float*>(p.w) + n * K, p.y + n, N);
              break;
            case WeightFormat::bf16:
              wm_dot(M, K, p.x, static_cast<const bf16_bits*>(p.w) + n * K, p.y + n, N);
              break;
            case WeightFormat::f16:
              wm_dot(M, K, p.x, static_cast<const f16_bits*>(p.w) + n * K, p.y + n, N);
              break;
            case WeightFormat::i8:
              wm_dot(M, K, p.x, static_cast<const int8_t*>(p.w) + n * K, p.y + n, N);
              break;
          }
          if (p.scale)
            for (int64_t m = 0; m < M; ++m) p.y[m * N + n] *= p.scale[n];
        }
      },
      2.0 * M * K * N);
}

// Per-column int8 quantisation of w [K, N] (T: float, or a 16-bit type convertible to float): q [K, N],
// scale [N]. Returns false, leaving q and scale unspecified, if w holds a non-finite value.
template <typename T>
bool quantize_int8_cpu(int64_t K, int64_t N, const T* w, int8_t* q, float* scale) {
  const int64_t nb = std::min<int64_t>(N, 256), ncb = (N + nb - 1) / nb;
  std::atomic<bool> finite{true};
  parallel_for(
      ncb,
      [&](int64_t cb) {
        const int64_t c0 = cb * nb, n = std::min(nb, N - c0);
        float amax[256] = {};
        for (int64_t k = 0; k < K; ++k)
          for (int64_t j = 0; j < n; ++j) {
            const float a = std::fabs(load<float>(w, k * N + c0 + j));
            amax[j] = a > amax[j] || a != a ? a : amax[j];  // (a NaN stays, for the check below)
          }
        bool ok = true;
        for (int64_t j = 0; j < n; ++j) {
          ok = ok && std::isfinite(amax[j]);
          scale[c0 + j] = amax[j] / 127.0f;
        }
        if (!ok) {
          finite.store(false);
          return;
        }
        for (int64_t k = 0; k < K; ++k)
          for (int64_t j = 0; j < n; ++j) {
            const float s = scale[c0 + j];
            // s == 0: a column of zeros, whose q is 0 (the reference's where(scale > 0, ...))
            const float r = s > 0.0f ? std::nearbyint(load<float>(w, k * N + c0 + j) / s) : 0.0f;
            q[k * N + c0 + j] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, r)));
          }
      },
      2.0 * K * N);
  return finite.load();
}
#endif

LRNN_ISA_END

#endif  // LRNN_KERNELS_WEIGHT_MATMUL_H
