// Distances between the rows of X (n_x x D) and Y (n_y x D) on the GPU: the full matrix
// (pairwise_distances), the nearest row of Y (pairwise_distances_argmin_min) and the k nearest
// rows of Y (kneighbors). Inputs and outputs are C-contiguous row-major device arrays, float32 or
// float64; indices are int64. Metrics: euclidean, sqeuclidean, cosine, manhattan.
//
// Tiling (all three ops share `tile_products`): a block of 256 threads owns a BM x BN tile of
// (X row, Y row) pairs and loops over the D columns in chunks of BK = 16, staging the two chunks
// in shared memory (transposed, so that a thread reads its 4 consecutive rows with one vector
// load). Each thread accumulates a TM x TN register tile with FMAs.
//   float argmin       : BM = BN = 128, TM = TN = 8
//   float pairwise     : BM = 128, BN = 64, TM = 8, TN = 4 (its float64 accumulators)
//   double / kneighbors: BM = BN = 64, TM = TN = 4
//
// pairwise_distances: direct form (the terms are non-negative, so there is no cancellation):
//   sum (x-y)^2 (sqrt for euclidean), sum |x-y|; cosine = 0.5 * |x/|x| - y/|y||^2, which equals
//   1 - cos without its cancellation for close vectors, and 1 when either vector is zero
//   (scikit-learn's convention). float64 input: accumulated in float64. float32 input: two-level
//   sums, each staged chunk of BK = 16 features summed in float32, then added to a float64
//   accumulator (one double add per chunk per pair); the sqrt / cosine step is in float64 and
//   the result is rounded to float32 once. Relative error of a sum of squares: about
//   (BK + 2) u32 (float32 differences, squares and chunk sums) plus D/BK u64, instead of D u32
//   for a float32 sum; half that for euclidean, plus the final rounding. (Cosine still works on
//   rows normalised and rounded to float32, so its error is set by that rounding.)
//   Cost: 3 n_x n_y D flops (+ n_x n_y D/16 float64 adds); bytes (n_x + n_y) D s from DRAM (Y
//   is re-read from L2), n_x n_y s written (s = sizeof(T)).
//
// argmin_min and kneighbors ("exact" mode) fuse distance and selection:
//   1. screen (working precision): key_j = |y_j|^2 - 2 x.y_j, an FMA per pair (for cosine x and
//      y_j are normalised first, for manhattan key_j = sum |x - y_j|). Per row keep the k+1
//      best (key, index): argmin keeps best and second best in registers, kneighbors a max-heap
//      of k+1 entries per row in a global workspace.
//   2. refine (float64, direct form, one warp per row): if the gap between the (k+1)-th and the
//      k-th key exceeds twice the key error bound e, the k chosen rows are the exact k nearest;
//      their exact distances are computed and sorted by (distance, index). Otherwise (ties,
//      duplicates, near ties) the whole row is recomputed exactly and selected.
//   Error bound (is_ambiguous): with unit roundoff u, the FMA dot product of D terms obeys
//   |fl(x.y) - x.y| <= gamma_D sum|x_k y_k| <= gamma_D |x||y| <= gamma_D (|x|^2 + |y|^2) / 2
//   (Cauchy-Schwarz, gamma_D = D u / (1 - D u)); rounding |y|^2 to T adds u |y|^2 and the final
//   FMA adds u |key| <= u (2 |y|^2 + |x|^2). Hence |key - exact key| <= (D + 3)(1 + O(Du)) u
//   (|x|^2 + |y|^2); we use e = 2 (D + 8) (u (|x|^2 + max_j |y_j|^2) + subnormal) for safety
//   (for cosine the normalisation errors add < 16 u with |x|^2 = |y|^2 ~ 1). For manhattan the
//   D non-negative terms give |key - exact| <= (D + 1) u key, so e = 2 (D + 8) (u key_{k+1} +
//   subnormal). If key_{k+1} - key_k > 2 e, every row outside the chosen set is strictly
//   farther than every row inside it, in exact arithmetic.
//   Cost: 2 n_x n_y D flops (screen) + 2 n_x k D (refine); bytes (n_x + n_y) D s + n_x D s
//   (refine re-reads X) + n_x k (s + 8) written; kneighbors adds the heap traffic (an accepted
//   candidate moves ~log2(k+1) entries of s + 4 bytes), mostly in L1/L2.
//
// All products of a row index by a column count are int64 (10M x 256 > 2^31). Kernels read
// only inside their inputs: staged tiles are zero-padded at the edges of X, Y and D.

#include "cuda/distances.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace fastlatent::cuda {
namespace {

using index_t = std::int64_t;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;
// Temporary memory a kneighbors call may take for its heaps (the screening heaps of k+1 entries
// per row and the per-warp refine buffers of k entries): above it, fewer blocks run at once.
constexpr std::size_t kWorkspaceBudgetBytes = std::size_t(256) << 20;
// Refine kernels: 4 warps per block, one warp per row of X.
constexpr int kRefineThreads = 128;
constexpr int kRefineWarps = kRefineThreads / kWarpSize;
// kneighbors refine: at most this many warps (each with its own k-entry buffer) at once; a few
// times the number of warps an H100 holds resident.
constexpr index_t kMaxRefineWarps = 16384;

// ------------------------------------------------------------------------------------------
// Numeric helpers
// ------------------------------------------------------------------------------------------

template <typename T>
struct Precision;
template <>
struct Precision<float> {
  static constexpr double unit_roundoff = 5.9604644775390625e-08;       // 2^-24
  static constexpr double smallest_subnormal = 1.4012984643248171e-45;  // 2^-149
  static constexpr double largest = 3.4028234663852886e+38;
};
template <>
struct Precision<double> {
  static constexpr double unit_roundoff = 1.1102230246251565e-16;        // 2^-53
  static constexpr double smallest_subnormal = 4.9406564584124654e-324;  // 2^-1074
  static constexpr double largest = 1.7976931348623157e+308;
};

__device__ __forceinline__ float fma_t(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_t(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float abs_t(float a) { return fabsf(a); }
__device__ __forceinline__ double abs_t(double a) { return fabs(a); }

template <typename T>
__device__ __forceinline__ T infinity_t() {
  return std::numeric_limits<T>::infinity();
}

// Four consecutive values from 16-byte aligned shared memory.
__device__ __forceinline__ void load4(const float* p, float* out) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
__device__ __forceinline__ void load4(const double* p, double* out) {
  const double2 v0 = reinterpret_cast<const double2*>(p)[0];
  const double2 v1 = reinterpret_cast<const double2*>(p)[1];
  out[0] = v0.x;
  out[1] = v0.y;
  out[2] = v1.x;
  out[3] = v1.y;
}

// Sum over the warp; every lane gets the same (bitwise) value, since a + b == b + a.
__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// (key, index) order: smaller key first, then smaller index.
template <typename K, typename I>
__device__ __forceinline__ bool ranks_before(K key_a, I index_a, K key_b, I index_b) {
  return key_a < key_b || (key_a == key_b && index_a < index_b);
}

// Cosine works on normalised rows; a zero row has scale 0 (and stays zero).
template <typename T>
__device__ __forceinline__ T scaled(T v, double scale) {
  return static_cast<T>(static_cast<double>(v) * scale);
}

// ------------------------------------------------------------------------------------------
// Exact (float64, direct form) distances, as the NumPy reference computes them
// ------------------------------------------------------------------------------------------

template <Metric M>
__device__ __forceinline__ double exact_term(double a, double b, double acc) {
  if constexpr (M == Metric::cosine) {
    return __fma_rn(a, b, acc);  // dot product; the norms come separately
  } else if constexpr (M == Metric::manhattan) {
    return acc + fabs(a - b);
  } else {
    const double d = a - b;
    return __fma_rn(d, d, acc);
  }
}

template <Metric M>
__device__ __forceinline__ double exact_finish(double acc, double x_norm, double y_norm) {
  if constexpr (M == Metric::euclidean) {
    return sqrt(acc);
  } else if constexpr (M == Metric::cosine) {
    if (x_norm == 0.0 || y_norm == 0.0) return 1.0;  // similarity 0 with a zero vector
    const double d = 1.0 - acc / (x_norm * y_norm);
    return fmin(fmax(d, 0.0), 2.0);
  } else {
    return acc;
  }
}

// One thread, one pair.
template <typename T, Metric M>
__device__ double exact_distance_thread(const T* __restrict__ x, const T* __restrict__ y, index_t n_features,
                                        double x_norm, double y_norm) {
  double acc = 0.0;
  for (index_t d = 0; d < n_features; ++d) acc = exact_term<M>(static_cast<double>(x[d]), static_cast<double>(y[d]), acc);
  return exact_finish<M>(acc, x_norm, y_norm);
}

// One warp, one pair (lanes over the features); every lane gets the result.
template <typename T, Metric M>
__device__ double exact_distance_warp(const T* __restrict__ x, const T* __restrict__ y, index_t n_features,
                                      double x_norm, double y_norm, int lane) {
  double acc = 0.0;
  for (index_t d = lane; d < n_features; d += kWarpSize)
    acc = exact_term<M>(static_cast<double>(x[d]), static_cast<double>(y[d]), acc);
  return exact_finish<M>(warp_sum(acc), x_norm, y_norm);
}

// |x|^2 in float64, lanes over the features; every lane gets the result.
template <typename T>
__device__ double squared_norm_warp(const T* __restrict__ x, index_t n_features, int lane) {
  double acc = 0.0;
  for (index_t d = lane; d < n_features; d += kWarpSize) {
    const double v = static_cast<double>(x[d]);
    acc = __fma_rn(v, v, acc);
  }
  return warp_sum(acc);
}

// Whether the screening keys may have chosen a wrong set: see the header comment. `kth_key`
// and `next_key` are the k-th and (k+1)-th smallest keys of the row; NaN or overflow also
// answer true, so that such rows are recomputed exactly.
template <typename T, Metric M>
__device__ bool is_ambiguous(double kth_key, double next_key, double x_squared_norm, double max_y_key_norm,
                             index_t n_features) {
  if (M == Metric::cosine && x_squared_norm == 0.0) return true;  // all distances are 1
  double magnitude;
  if constexpr (M == Metric::manhattan) {
    magnitude = next_key;
  } else if constexpr (M == Metric::cosine) {
    magnitude = 1.0 + max_y_key_norm;  // x and y_j are normalised
  } else {
    magnitude = x_squared_norm + max_y_key_norm;
  }
  // Keys are bounded by 2 * magnitude (or by magnitude for manhattan): stay far from overflow.
  if (!(magnitude <= Precision<T>::largest / 16.0)) return true;
  const double error = 2.0 * (static_cast<double>(n_features) + 8.0) *
                       (Precision<T>::unit_roundoff * magnitude + Precision<T>::smallest_subnormal);
  return !(next_key - kth_key > 2.0 * error);
}

// ------------------------------------------------------------------------------------------
// Heaps of (key, index), the worst entry on top; entries `stride` apart
// ------------------------------------------------------------------------------------------

// Adds (key, id) to a heap of `size` entries (room for one more).
template <typename K, typename I>
__device__ void heap_push(K* keys, I* ids, index_t stride, index_t size, K key, I id) {
  index_t h = size;
  while (h > 0) {
    const index_t parent = (h - 1) / 2;
    const K parent_key = keys[parent * stride];
    const I parent_id = ids[parent * stride];
    if (!ranks_before(parent_key, parent_id, key, id)) break;  // parent is already worse
    keys[h * stride] = parent_key;
    ids[h * stride] = parent_id;
    h = parent;
  }
  keys[h * stride] = key;
  ids[h * stride] = id;
}

// Replaces the top (worst) entry of a heap of `size` >= 1 entries by (key, id).
template <typename K, typename I>
__device__ void heap_replace_top(K* keys, I* ids, index_t stride, index_t size, K key, I id) {
  index_t h = 0;
  for (;;) {
    index_t child = 2 * h + 1;
    if (child >= size) break;
    K child_key = keys[child * stride];
    I child_id = ids[child * stride];
    if (child + 1 < size) {
      const K right_key = keys[(child + 1) * stride];
      const I right_id = ids[(child + 1) * stride];
      if (ranks_before(child_key, child_id, right_key, right_id)) {  // take the worse child
        child += 1;
        child_key = right_key;
        child_id = right_id;
      }
    }
    if (!ranks_before(key, id, child_key, child_id)) break;
    keys[h * stride] = child_key;
    ids[h * stride] = child_id;
    h = child;
  }
  keys[h * stride] = key;
  ids[h * stride] = id;
}

// ------------------------------------------------------------------------------------------
// The shared tile: register-tiled products of a BM-row tile of X and a BN-row tile of Y
// ------------------------------------------------------------------------------------------

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct TileShape {
  static constexpr int BM = BM_;  // rows of X per block
  static constexpr int BN = BN_;  // rows of Y per step
  static constexpr int BK = BK_;  // features staged at once
  static constexpr int TM = TM_;  // rows of X per thread
  static constexpr int TN = TN_;  // rows of Y per thread
  static constexpr int THREADS_X = BN / TN;
  static constexpr int THREADS_Y = BM / TM;
  static constexpr int THREADS = THREADS_X * THREADS_Y;
  // Row padding of the staged (transposed) tiles: keeps rows 16-byte aligned and spreads the
  // transposing stores over the banks.
  static constexpr int PAD = 4;
  static_assert(TM % 4 == 0 && TN % 4 == 0, "threads read their rows 4 at a time");
  static_assert(BM % TM == 0 && BN % TN == 0, "tiles split evenly");
  // Thread (tx, ty) owns rows ty*4 .. ty*4+3 of each group of THREADS_Y*4 rows (so that a warp's
  // vector loads cover consecutive addresses), and likewise for columns.
  __device__ static __forceinline__ int row_of(int i, int ty) { return (i / 4) * (THREADS_Y * 4) + ty * 4 + (i % 4); }
  __device__ static __forceinline__ int col_of(int j, int tx) { return (j / 4) * (THREADS_X * 4) + tx * 4 + (j % 4); }
};

template <typename T>
struct MainTile;  // pairwise_distances and argmin
template <>
struct MainTile<float> {
  using type = TileShape<128, 128, 16, 8, 8>;
};
template <>
struct MainTile<double> {
  using type = TileShape<64, 64, 16, 4, 4>;  // 8x8 doubles would need too many registers
};
using KnnTile = TileShape<64, 64, 16, 4, 4>;  // kneighbors: the key tile fits in shared memory

// pairwise_distances: float sums each staged chunk in float and adds it to a float64 tile, so
// a thread holds 8x4 pairs (32 float + 32 double accumulators, ~175 registers; 8x8 would spill
// at 255); double keeps the main tile.
template <typename T>
struct PairwiseTile;
template <>
struct PairwiseTile<float> {
  using type = TileShape<128, 64, 16, 8, 4>;
};
template <>
struct PairwiseTile<double> {
  using type = MainTile<double>::type;
};

constexpr int kTileThreads = 256;  // every tile shape above
static_assert(MainTile<float>::type::THREADS == kTileThreads && MainTile<double>::type::THREADS == kTileThreads &&
                  KnnTile::THREADS == kTileThreads && PairwiseTile<float>::type::THREADS == kTileThreads &&
                  PairwiseTile<double>::type::THREADS == kTileThreads,
              "__launch_bounds__ assume 256 threads");

template <typename T, class S>
struct alignas(16) StagedTiles {
  T x[S::BK][S::BM + S::PAD];  // x[k][m] = X[row0 + m, k0 + k]
  T y[S::BK][S::BN + S::PAD];  // y[k][n] = Y[col0 + n, k0 + k]
};

enum class TileOp { dot, squared_difference, absolute_difference };

template <TileOp OP, typename T>
__device__ __forceinline__ T accumulate(T acc, T a, T b) {
  if constexpr (OP == TileOp::dot) {
    return fma_t(a, b, acc);
  } else if constexpr (OP == TileOp::squared_difference) {
    const T d = a - b;
    return fma_t(d, d, acc);
  } else {
    return acc + abs_t(a - b);
  }
}

// Stages rows row0 .. row0+ROWS-1, features k0 .. k0+BK-1 of A (n_rows x n_features),
// transposed, zero outside A (zero pairs add nothing to any of the three accumulations).
template <int ROWS, int LD, int BK, int THREADS, bool kScaled, typename T>
__device__ __forceinline__ void stage_rows(T (*dst)[LD], const T* __restrict__ A, index_t n_rows, index_t n_features,
                                           index_t row0, index_t k0, const double* __restrict__ scale, int tid) {
  constexpr int kElements = ROWS * BK;
  constexpr int kSteps = (kElements + THREADS - 1) / THREADS;
#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    const int e = step * THREADS + tid;
    if (kElements % THREADS != 0 && e >= kElements) break;
    const int m = e / BK;
    const int k = e % BK;  // consecutive threads read consecutive features of a row
    const index_t row = row0 + m;
    const index_t feature = k0 + k;
    T v = T(0);
    if (row < n_rows && feature < n_features) {
      v = A[row * n_features + feature];
      if constexpr (kScaled) v = scaled(v, scale[row]);
    }
    dst[k][m] = v;
  }
}

// acc[i][j] += sum over the BK staged features of OP(x[.][row_of(i)], y[.][col_of(j)]).
template <TileOp OP, typename T, class S>
__device__ __forceinline__ void chunk_products(const StagedTiles<T, S>& staged, int tx, int ty,
                                               T (&acc)[S::TM][S::TN]) {
#pragma unroll
  for (int k = 0; k < S::BK; ++k) {
    T a[S::TM];
    T b[S::TN];
#pragma unroll
    for (int g = 0; g < S::TM / 4; ++g) load4(&staged.x[k][g * S::THREADS_Y * 4 + ty * 4], a + 4 * g);
#pragma unroll
    for (int g = 0; g < S::TN / 4; ++g) load4(&staged.y[k][g * S::THREADS_X * 4 + tx * 4], b + 4 * g);
#pragma unroll
    for (int i = 0; i < S::TM; ++i)
#pragma unroll
      for (int j = 0; j < S::TN; ++j) acc[i][j] = accumulate<OP>(acc[i][j], a[i], b[j]);
  }
}

// acc[i][j] = sum over features of OP(X[row0 + row_of(i)], Y[col0 + col_of(j)]), accumulated in
// T. Every thread of the block must call it (it synchronises the block); it ends with a
// __syncthreads, so the caller may reuse the staging memory right after.
template <TileOp OP, bool kScaled, typename T, class S>
__device__ __forceinline__ void tile_products(const T* __restrict__ X, const T* __restrict__ Y, index_t n_x,
                                              index_t n_y, index_t n_features, index_t row0, index_t col0,
                                              const double* __restrict__ x_scale,
                                              const double* __restrict__ y_scale, StagedTiles<T, S>& staged,
                                              T (&acc)[S::TM][S::TN]) {
  const int tid = threadIdx.x;
  const int tx = tid % S::THREADS_X;
  const int ty = tid / S::THREADS_X;
#pragma unroll
  for (int i = 0; i < S::TM; ++i)
#pragma unroll
    for (int j = 0; j < S::TN; ++j) acc[i][j] = T(0);

  for (index_t k0 = 0; k0 < n_features; k0 += S::BK) {
    stage_rows<S::BM, S::BM + S::PAD, S::BK, S::THREADS, kScaled>(staged.x, X, n_x, n_features, row0, k0, x_scale, tid);
    stage_rows<S::BN, S::BN + S::PAD, S::BK, S::THREADS, kScaled>(staged.y, Y, n_y, n_features, col0, k0, y_scale, tid);
    __syncthreads();
    chunk_products<OP>(staged, tx, ty, acc);
    __syncthreads();
  }
}

// Same sums as tile_products, in two levels: each staged chunk of BK features is accumulated in
// T (from zero), then added to the float64 acc. The error is that of a BK-term sum in T plus
// a D/BK-term sum in float64, instead of a D-term sum in T.
template <TileOp OP, bool kScaled, typename T, class S>
__device__ __forceinline__ void tile_products_two_level(const T* __restrict__ X, const T* __restrict__ Y,
                                                        index_t n_x, index_t n_y, index_t n_features, index_t row0,
                                                        index_t col0, const double* __restrict__ x_scale,
                                                        const double* __restrict__ y_scale,
                                                        StagedTiles<T, S>& staged, double (&acc)[S::TM][S::TN]) {
  const int tid = threadIdx.x;
  const int tx = tid % S::THREADS_X;
  const int ty = tid / S::THREADS_X;
#pragma unroll
  for (int i = 0; i < S::TM; ++i)
#pragma unroll
    for (int j = 0; j < S::TN; ++j) acc[i][j] = 0.0;

  for (index_t k0 = 0; k0 < n_features; k0 += S::BK) {
    stage_rows<S::BM, S::BM + S::PAD, S::BK, S::THREADS, kScaled>(staged.x, X, n_x, n_features, row0, k0, x_scale, tid);
    stage_rows<S::BN, S::BN + S::PAD, S::BK, S::THREADS, kScaled>(staged.y, Y, n_y, n_features, col0, k0, y_scale, tid);
    __syncthreads();
    T part[S::TM][S::TN];
#pragma unroll
    for (int i = 0; i < S::TM; ++i)
#pragma unroll
      for (int j = 0; j < S::TN; ++j) part[i][j] = T(0);
    chunk_products<OP>(staged, tx, ty, part);
    __syncthreads();  // the adds below need no shared memory: release the staging tiles first
#pragma unroll
    for (int i = 0; i < S::TM; ++i)
#pragma unroll
      for (int j = 0; j < S::TN; ++j) acc[i][j] += static_cast<double>(part[i][j]);
  }
}

template <Metric M>
constexpr TileOp screening_op() {
  return M == Metric::manhattan ? TileOp::absolute_difference : TileOp::dot;
}

// Screening key from the tile accumulator: |y|^2 - 2 x.y, or the manhattan sum itself.
template <Metric M, typename T>
__device__ __forceinline__ T screening_key(T acc, const T* __restrict__ y_key_norm, index_t col) {
  if constexpr (M == Metric::manhattan) {
    return acc;
  } else {
    return fma_t(T(-2), acc, y_key_norm[col]);
  }
}

// ------------------------------------------------------------------------------------------
// Kernels
// ------------------------------------------------------------------------------------------

// Per row of A (one warp per row), in float64: the norm (cosine's exact path), the scale
// 1/|a| (0 for a zero row) that normalises it for cosine screening, and the screening key norm
// |a|^2 (cosine: |a/|a||^2 of the rounded normalised row, 1 for a zero row so that its key is
// that of similarity 0) with its maximum over the rows. Null outputs are skipped.
template <typename T, Metric M>
__global__ void row_norms_kernel(const T* __restrict__ A, index_t n_rows, index_t n_features,
                                 double* __restrict__ norm, double* __restrict__ scale,
                                 T* __restrict__ key_norm, unsigned long long* __restrict__ max_key_norm_bits) {
  const index_t row = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= n_rows) return;  // the whole warp leaves together
  const T* a = A + row * n_features;
  const double squared = squared_norm_warp(a, n_features, lane);
  const double row_scale = squared > 0.0 ? 1.0 / sqrt(squared) : 0.0;
  T row_key_norm = static_cast<T>(squared);
  if constexpr (M == Metric::cosine) {
    double acc = 0.0;
    for (index_t d = lane; d < n_features; d += kWarpSize) {
      const double v = static_cast<double>(scaled(a[d], row_scale));
      acc = __fma_rn(v, v, acc);
    }
    acc = warp_sum(acc);
    row_key_norm = squared > 0.0 ? static_cast<T>(acc) : T(1);
  }
  if (lane == 0) {
    if (norm != nullptr) norm[row] = sqrt(squared);
    if (scale != nullptr) scale[row] = row_scale;
    if (key_norm != nullptr) key_norm[row] = row_key_norm;
    // Non-negative doubles order like their bit patterns.
    if (max_key_norm_bits != nullptr)
      atomicMax(max_key_norm_bits,
                static_cast<unsigned long long>(__double_as_longlong(static_cast<double>(row_key_norm))));
  }
}

// out = distances, one BM x BN tile per block; tiles numbered row-major (Y sweeps fastest, so
// consecutive blocks share their X tile in L2). Sums and the final step are in float64 for
// both types (two-level sums for float: see tile_products_two_level), rounded to T once.
template <typename T, Metric M>
__global__ void __launch_bounds__(kTileThreads)
    pairwise_distances_kernel(const T* __restrict__ X, const T* __restrict__ Y, T* __restrict__ out, index_t n_x,
                              index_t n_y, index_t n_features, const double* __restrict__ x_scale,
                              const double* __restrict__ y_scale, index_t n_col_tiles) {
  using S = typename PairwiseTile<T>::type;
  constexpr TileOp OP = M == Metric::manhattan ? TileOp::absolute_difference : TileOp::squared_difference;
  constexpr bool kScaled = M == Metric::cosine;
  __shared__ StagedTiles<T, S> staged;

  const index_t tile = blockIdx.x;
  const index_t row0 = (tile / n_col_tiles) * S::BM;
  const index_t col0 = (tile % n_col_tiles) * S::BN;
  double acc[S::TM][S::TN];
  if constexpr (std::is_same_v<T, float>) {
    tile_products_two_level<OP, kScaled, T, S>(X, Y, n_x, n_y, n_features, row0, col0, x_scale, y_scale, staged,
                                               acc);
  } else {
    static_assert(std::is_same_v<T, double>, "float or double");
    tile_products<OP, kScaled, T, S>(X, Y, n_x, n_y, n_features, row0, col0, x_scale, y_scale, staged, acc);
  }

  const int tx = threadIdx.x % S::THREADS_X;
  const int ty = threadIdx.x / S::THREADS_X;
#pragma unroll
  for (int i = 0; i < S::TM; ++i) {
    const index_t row = row0 + S::row_of(i, ty);
    if (row >= n_x) continue;
#pragma unroll
    for (int j = 0; j < S::TN; ++j) {
      const index_t col = col0 + S::col_of(j, tx);
      if (col >= n_y) continue;
      double d = acc[i][j];
      if constexpr (M == Metric::euclidean) {
        d = sqrt(d);
      } else if constexpr (M == Metric::cosine) {
        d = (x_scale[row] == 0.0 || y_scale[col] == 0.0) ? 1.0 : fmin(fmax(0.5 * d, 0.0), 2.0);
      }
      out[row * n_y + col] = static_cast<T>(d);
    }
  }
}

// Argmin screening: per row of X the best key with its index and the second best key.
// Each thread keeps its own best/second for its TM rows over all its columns (visited in
// increasing index, so a strict < keeps the lowest index among equal keys); the THREADS_X = 16
// threads sharing rows (16 consecutive lanes) merge at the end with shuffles.
template <typename T, Metric M>
__global__ void __launch_bounds__(kTileThreads)
    argmin_screen_kernel(const T* __restrict__ X, const T* __restrict__ Y, index_t n_x, index_t n_y,
                         index_t n_features, const double* __restrict__ x_scale, const double* __restrict__ y_scale,
                         const T* __restrict__ y_key_norm, std::int64_t* __restrict__ best_index,
                         T* __restrict__ best_key, T* __restrict__ second_key) {
  using S = typename MainTile<T>::type;
  static_assert(S::THREADS_X == 16, "rows are merged across 16 lanes");
  constexpr bool kScaled = M == Metric::cosine;
  __shared__ StagedTiles<T, S> staged;

  const int tx = threadIdx.x % S::THREADS_X;
  const int ty = threadIdx.x / S::THREADS_X;
  const index_t row0 = static_cast<index_t>(blockIdx.x) * S::BM;

  T best[S::TM];
  T second[S::TM];
  index_t best_col[S::TM];
#pragma unroll
  for (int i = 0; i < S::TM; ++i) {
    best[i] = infinity_t<T>();
    second[i] = infinity_t<T>();
    best_col[i] = n_y;  // "none", after every real index
  }

  for (index_t col0 = 0; col0 < n_y; col0 += S::BN) {
    T acc[S::TM][S::TN];
    tile_products<screening_op<M>(), kScaled, T, S>(X, Y, n_x, n_y, n_features, row0, col0, x_scale, y_scale,
                                                    staged, acc);
#pragma unroll
    for (int j = 0; j < S::TN; ++j) {
      const index_t col = col0 + S::col_of(j, tx);
      if (col >= n_y) continue;
#pragma unroll
      for (int i = 0; i < S::TM; ++i) {
        const T key = screening_key<M>(acc[i][j], y_key_norm, col);
        if (key < best[i]) {
          second[i] = best[i];
          best[i] = key;
          best_col[i] = col;
        } else if (key < second[i]) {
          second[i] = key;
        }
      }
    }
  }

#pragma unroll
  for (int offset = S::THREADS_X / 2; offset > 0; offset >>= 1) {
#pragma unroll
    for (int i = 0; i < S::TM; ++i) {
      const T other_best = __shfl_xor_sync(kFullMask, best[i], offset);
      const T other_second = __shfl_xor_sync(kFullMask, second[i], offset);
      const index_t other_col = __shfl_xor_sync(kFullMask, static_cast<long long>(best_col[i]), offset);
      if (ranks_before(other_best, other_col, best[i], best_col[i])) {
        second[i] = best[i] < other_second ? best[i] : other_second;
        best[i] = other_best;
        best_col[i] = other_col;
      } else {
        second[i] = other_best < second[i] ? other_best : second[i];
      }
    }
  }
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < S::TM; ++i) {
      const index_t row = row0 + S::row_of(i, ty);
      if (row < n_x) {
        // A row whose keys are all NaN keeps index n_y: clamp it (such a row is ambiguous and
        // recomputed; the clamp only keeps the refine kernel inside Y).
        best_index[row] = best_col[i] < n_y ? best_col[i] : 0;
        best_key[row] = best[i];
        second_key[row] = second[i];
      }
    }
  }
}

// Argmin refine, one warp per row: exact distance of the screened best, or, for an ambiguous
// row, the exact argmin over all of Y (lanes over the rows of Y).
template <typename T, Metric M>
__global__ void __launch_bounds__(kRefineThreads)
    argmin_refine_kernel(const T* __restrict__ X, const T* __restrict__ Y, index_t n_x, index_t n_y,
                         index_t n_features, const double* __restrict__ y_norm,
                         const unsigned long long* __restrict__ max_y_key_norm_bits, const T* __restrict__ best_key,
                         const T* __restrict__ second_key, std::int64_t* __restrict__ indices,
                         T* __restrict__ distances) {
  const index_t row = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= n_x) return;  // the whole warp leaves together
  const T* x = X + row * n_features;
  const double x_squared_norm = squared_norm_warp(x, n_features, lane);
  const double x_norm = sqrt(x_squared_norm);

  bool ambiguous = false;
  if (n_y > 1) {
    const double max_y_key_norm =
        M == Metric::manhattan ? 0.0 : __longlong_as_double(static_cast<long long>(*max_y_key_norm_bits));
    ambiguous = is_ambiguous<T, M>(static_cast<double>(best_key[row]), static_cast<double>(second_key[row]),
                                   x_squared_norm, max_y_key_norm, n_features);
  }
  if (!ambiguous) {
    const index_t col = indices[row];
    const double y_col_norm = M == Metric::cosine ? y_norm[col] : 0.0;
    const double d = exact_distance_warp<T, M>(x, Y + col * n_features, n_features, x_norm, y_col_norm, lane);
    if (lane == 0) distances[row] = static_cast<T>(d);
    return;
  }
  double best = std::numeric_limits<double>::infinity();
  index_t best_col = n_y;
  for (index_t col = lane; col < n_y; col += kWarpSize) {  // increasing per lane: strict < keeps the lowest
    const double y_col_norm = M == Metric::cosine ? y_norm[col] : 0.0;
    const double d = exact_distance_thread<T, M>(x, Y + col * n_features, n_features, x_norm, y_col_norm);
    if (d < best || best_col == n_y) {
      best = d;
      best_col = col;
    }
  }
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    const double other = __shfl_xor_sync(kFullMask, best, offset);
    const index_t other_col = __shfl_xor_sync(kFullMask, static_cast<long long>(best_col), offset);
    if (ranks_before(other, other_col, best, best_col)) {
      best = other;
      best_col = other_col;
    }
  }
  if (lane == 0) {
    indices[row] = best_col < n_y ? best_col : 0;
    distances[row] = static_cast<T>(best);
  }
}

// kneighbors screening. Each block takes tiles of 64 rows of X (grid-stride, so that the heaps,
// one slot per block, fit the workspace budget), sweeps Y in tiles of 64 rows, writes the keys
// of the tile to shared memory, and thread r < 64 merges row r's 64 keys into its max-heap of
// cap = k+1 (key, index) entries (global workspace, entry h of row r at h * heap_stride + r).
// Candidates arrive in increasing index, so "key < top key" decides admission with ties to the
// lower index. At the end: indices[row, 0..k-1] = the k best (any order), kth_key / next_key =
// the k-th and (k+1)-th smallest keys. Requires k < n_y.
template <typename T, Metric M>
__global__ void __launch_bounds__(kTileThreads)
    knn_screen_kernel(const T* __restrict__ X, const T* __restrict__ Y, index_t n_x, index_t n_y,
                      index_t n_features, index_t k, const double* __restrict__ x_scale,
                      const double* __restrict__ y_scale, const T* __restrict__ y_key_norm, T* __restrict__ heap_keys,
                      std::int32_t* __restrict__ heap_ids, index_t heap_stride, index_t n_row_tiles,
                      std::int64_t* __restrict__ indices, T* __restrict__ kth_key, T* __restrict__ next_key) {
  using S = KnnTile;
  constexpr bool kScaled = M == Metric::cosine;
  union alignas(16) Shared {
    StagedTiles<T, S> staged;
    T keys[S::BM][S::BN + 1];  // +1: thread r reading keys[r][c] hits distinct banks
  };
  __shared__ Shared shared;

  const int tid = threadIdx.x;
  const int tx = tid % S::THREADS_X;
  const int ty = tid / S::THREADS_X;
  const index_t cap = k + 1;
  T* my_keys = heap_keys + static_cast<index_t>(blockIdx.x) * heap_stride * cap + tid;
  std::int32_t* my_ids = heap_ids + static_cast<index_t>(blockIdx.x) * heap_stride * cap + tid;

  for (index_t tile = blockIdx.x; tile < n_row_tiles; tile += gridDim.x) {
    const index_t row0 = tile * S::BM;
    const index_t row = row0 + tid;
    const bool merges = tid < S::BM && row < n_x;  // then tid < heap_stride = min(BM, n_x)
    index_t size = 0;
    T top_key = infinity_t<T>();

    for (index_t col0 = 0; col0 < n_y; col0 += S::BN) {
      T acc[S::TM][S::TN];
      tile_products<screening_op<M>(), kScaled, T, S>(X, Y, n_x, n_y, n_features, row0, col0, x_scale, y_scale,
                                                      shared.staged, acc);
      // tile_products ended with a barrier: the staging memory may now hold the keys.
#pragma unroll
      for (int j = 0; j < S::TN; ++j) {
        const index_t col = col0 + S::col_of(j, tx);
        const index_t safe_col = col < n_y ? col : n_y - 1;  // keys past Y are never read
#pragma unroll
        for (int i = 0; i < S::TM; ++i) shared.keys[S::row_of(i, ty)][S::col_of(j, tx)] = screening_key<M>(acc[i][j], y_key_norm, safe_col);
      }
      __syncthreads();
      if (merges) {
        const int n_cols = static_cast<int>(n_y - col0 < S::BN ? n_y - col0 : S::BN);
        for (int c = 0; c < n_cols; ++c) {
          const T key = shared.keys[tid][c];
          const std::int32_t id = static_cast<std::int32_t>(col0 + c);
          if (size < cap) {
            heap_push(my_keys, my_ids, heap_stride, size, key, id);
            ++size;
            top_key = my_keys[0];
          } else if (key < top_key) {
            heap_replace_top(my_keys, my_ids, heap_stride, size, key, id);
            top_key = my_keys[0];
          }
        }
      }
      __syncthreads();  // the keys are read before the next tile stages over them
    }

    if (merges) {  // size == cap here, since n_y >= k + 1
      const T next = my_keys[0];
      T kth = my_keys[heap_stride];  // the k-th smallest is the worse child of the top
      if (cap > 2) {
        const T right = my_keys[2 * heap_stride];
        const std::int32_t left_id = my_ids[heap_stride];
        const std::int32_t right_id = my_ids[2 * heap_stride];
        if (ranks_before(kth, left_id, right, right_id)) kth = right;
      }
      for (index_t h = 1; h < cap; ++h) indices[row * k + (h - 1)] = my_ids[h * heap_stride];
      kth_key[row] = kth;
      next_key[row] = next;
    }
  }
}

// kneighbors refine, one warp per row (grid-stride; warp w owns buffer w of k (value, index)).
// Not ambiguous: exact distances of the k screened candidates (or of all of Y when k == n_y).
// Ambiguous: exact distances to all of Y, lanes over the rows of Y, the k best kept in a heap
// in the buffer by lane 0. Then each (value, index) goes to its rank among the k.
template <typename T, Metric M>
__global__ void __launch_bounds__(kRefineThreads)
    knn_refine_kernel(const T* __restrict__ X, const T* __restrict__ Y, index_t n_x, index_t n_y,
                      index_t n_features, index_t k, const double* __restrict__ y_norm,
                      const unsigned long long* __restrict__ max_y_key_norm_bits, const T* __restrict__ kth_key,
                      const T* __restrict__ next_key, std::int64_t* __restrict__ indices, T* __restrict__ distances,
                      double* __restrict__ buffer_values, std::int64_t* __restrict__ buffer_ids, index_t n_warps) {
  __shared__ double staged_value[kRefineWarps][kWarpSize];
  __shared__ std::int64_t staged_id[kRefineWarps][kWarpSize];
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const index_t global_warp = static_cast<index_t>(blockIdx.x) * kRefineWarps + warp;
  if (global_warp >= n_warps) return;  // the whole warp leaves together
  double* values = buffer_values + global_warp * k;
  std::int64_t* ids = buffer_ids + global_warp * k;
  const bool all_of_y = k == n_y;

  for (index_t row = global_warp; row < n_x; row += n_warps) {
    const T* x = X + row * n_features;
    const double x_squared_norm = squared_norm_warp(x, n_features, lane);
    const double x_norm = sqrt(x_squared_norm);
    bool ambiguous = false;
    if (!all_of_y) {
      const double max_y_key_norm =
          M == Metric::manhattan ? 0.0 : __longlong_as_double(static_cast<long long>(*max_y_key_norm_bits));
      ambiguous = is_ambiguous<T, M>(static_cast<double>(kth_key[row]), static_cast<double>(next_key[row]),
                                     x_squared_norm, max_y_key_norm, n_features);
    }

    if (!ambiguous) {
      for (index_t t = lane; t < k; t += kWarpSize) {
        const index_t col = all_of_y ? t : indices[row * k + t];
        const double y_col_norm = M == Metric::cosine ? y_norm[col] : 0.0;
        values[t] = exact_distance_thread<T, M>(x, Y + col * n_features, n_features, x_norm, y_col_norm);
        ids[t] = col;
      }
    } else {
      index_t size = 0;  // lane 0's heap, broadcast after each round
      double top_value = std::numeric_limits<double>::infinity();
      index_t top_id = n_y;
      for (index_t col0 = 0; col0 < n_y; col0 += kWarpSize) {
        const index_t col = col0 + lane;
        const bool valid = col < n_y;
        double d = 0.0;
        if (valid) {
          const double y_col_norm = M == Metric::cosine ? y_norm[col] : 0.0;
          d = exact_distance_thread<T, M>(x, Y + col * n_features, n_features, x_norm, y_col_norm);
        }
        const bool wanted = valid && (size < k || ranks_before(d, col, top_value, top_id));
        unsigned candidates = __ballot_sync(kFullMask, wanted);
        if (candidates == 0) continue;
        if (wanted) {
          staged_value[warp][lane] = d;
          staged_id[warp][lane] = col;
        }
        __syncwarp();
        if (lane == 0) {
          while (candidates != 0) {  // in increasing index
            const int source = __ffs(candidates) - 1;
            candidates &= candidates - 1;
            const double value = staged_value[warp][source];
            const index_t id = staged_id[warp][source];
            if (size < k) {
              heap_push(values, ids, index_t(1), size, value, id);
              ++size;
            } else if (ranks_before(value, id, values[0], ids[0])) {
              heap_replace_top(values, ids, index_t(1), size, value, id);
            }
          }
          top_value = values[0];
          top_id = ids[0];
        }
        __syncwarp();
        size = __shfl_sync(kFullMask, static_cast<long long>(size), 0);
        top_value = __shfl_sync(kFullMask, top_value, 0);
        top_id = __shfl_sync(kFullMask, static_cast<long long>(top_id), 0);
      }
    }
    __syncwarp();  // the buffer (global memory) is complete and visible to the warp

    for (index_t t = lane; t < k; t += kWarpSize) {
      const double value = values[t];
      const index_t id = ids[t];
      index_t rank = 0;
      for (index_t s = 0; s < k; ++s) rank += ranks_before(values[s], ids[s], value, id) ? 1 : 0;
      distances[row * k + rank] = static_cast<T>(value);
      indices[row * k + rank] = id;
    }
    __syncwarp();  // the buffer is read before the next row overwrites it
  }
}

// ------------------------------------------------------------------------------------------
// Host side
// ------------------------------------------------------------------------------------------

void check_cuda(cudaError_t status, const char* op, const char* what) {
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so that later calls start clean
    throw std::runtime_error(std::string(op) + ": CUDA error in " + what + ": " + cudaGetErrorString(status));
  }
}

void check_launch(const char* op, const char* kernel) { check_cuda(cudaGetLastError(), op, kernel); }

void check_arguments(const char* op, const void* x, const void* y, const void* out_a, const void* out_b,
                     index_t n_x, index_t n_y, index_t n_features) {
  const auto fail = [op](const std::string& what) { throw std::invalid_argument(std::string(op) + ": " + what); };
  if (n_x < 1) fail("n_x must be >= 1, got " + std::to_string(n_x));
  if (n_y < 1) fail("n_y must be >= 1, got " + std::to_string(n_y));
  if (n_features < 1) fail("n_features must be >= 1, got " + std::to_string(n_features));
  if (n_y > std::numeric_limits<std::int32_t>::max())
    fail("n_y must be < 2^31, got " + std::to_string(n_y));
  if (x == nullptr || y == nullptr || out_a == nullptr || out_b == nullptr) fail("null device pointer");
}

unsigned int grid_size(index_t blocks, const char* op) {
  if (blocks < 1 || blocks > std::numeric_limits<std::int32_t>::max())
    throw std::invalid_argument(std::string(op) + ": problem too large for one launch (" +
                                std::to_string(blocks) + " blocks)");
  return static_cast<unsigned int>(blocks);
}

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// One cudaMallocAsync for all temporaries of a call, carved in 256-byte aligned pieces; freed
// on the stream when the call returns (or throws).
class Workspace {
 public:
  // Reserves `count` elements of U; returns the offset to pass to get().
  template <typename U>
  std::size_t reserve(std::size_t count) {
    const std::size_t offset = bytes_;
    bytes_ += (count * sizeof(U) + 255) / 256 * 256;
    return offset;
  }
  void allocate(cudaStream_t stream, const char* op) {
    stream_ = stream;
    op_ = op;
    if (bytes_ > 0) check_cuda(cudaMallocAsync(&base_, bytes_, stream), op, "cudaMallocAsync");
  }
  template <typename U>
  U* get(std::size_t offset) const {
    return reinterpret_cast<U*>(static_cast<unsigned char*>(base_) + offset);
  }
  void release() {
    void* base = base_;
    base_ = nullptr;
    if (base != nullptr) check_cuda(cudaFreeAsync(base, stream_), op_, "cudaFreeAsync");
  }
  ~Workspace() {
    if (base_ != nullptr) (void)cudaFreeAsync(base_, stream_);  // error path: already throwing
  }

 private:
  std::size_t bytes_ = 0;
  void* base_ = nullptr;
  cudaStream_t stream_ = nullptr;
  const char* op_ = "";
};

constexpr int kNormThreads = 256;  // row_norms_kernel: 8 warps, one row each

template <typename T, Metric M>
void launch_row_norms(const T* A, index_t n_rows, index_t n_features, double* norm, double* scale, T* key_norm,
                      unsigned long long* max_key_norm_bits, cudaStream_t stream, const char* op) {
  const unsigned int grid = grid_size(ceil_div(n_rows, kNormThreads / kWarpSize), op);
  row_norms_kernel<T, M><<<grid, kNormThreads, 0, stream>>>(A, n_rows, n_features, norm, scale, key_norm,
                                                            max_key_norm_bits);
  check_launch(op, "row_norms_kernel");
}

template <typename T, Metric M>
void pairwise_distances_impl(const T* x, const T* y, T* out, index_t n_x, index_t n_y, index_t n_features,
                             cudaStream_t stream) {
  constexpr const char* op = "pairwise_distances";
  using S = typename PairwiseTile<T>::type;
  Workspace workspace;
  std::size_t x_scale_at = 0, y_scale_at = 0;
  if (M == Metric::cosine) {
    x_scale_at = workspace.reserve<double>(n_x);
    y_scale_at = workspace.reserve<double>(n_y);
  }
  workspace.allocate(stream, op);
  double* x_scale = nullptr;
  double* y_scale = nullptr;
  if (M == Metric::cosine) {
    x_scale = workspace.get<double>(x_scale_at);
    y_scale = workspace.get<double>(y_scale_at);
    launch_row_norms<T, M>(x, n_x, n_features, nullptr, x_scale, nullptr, nullptr, stream, op);
    launch_row_norms<T, M>(y, n_y, n_features, nullptr, y_scale, nullptr, nullptr, stream, op);
  }
  const index_t n_col_tiles = ceil_div(n_y, S::BN);
  const unsigned int grid = grid_size(ceil_div(n_x, S::BM) * n_col_tiles, op);
  pairwise_distances_kernel<T, M><<<grid, S::THREADS, 0, stream>>>(x, y, out, n_x, n_y, n_features, x_scale,
                                                                   y_scale, n_col_tiles);
  check_launch(op, "pairwise_distances_kernel");
  workspace.release();
}

// Screening inputs shared by argmin and kneighbors: Y's key norms and their maximum, the
// cosine scales of X and Y, and Y's float64 norms (cosine's exact path).
template <typename T, Metric M>
struct ScreeningInputs {
  std::size_t x_scale_at = 0, y_scale_at = 0, y_norm_at = 0, y_key_norm_at = 0, max_bits_at = 0;
  double* x_scale = nullptr;
  double* y_scale = nullptr;
  double* y_norm = nullptr;
  T* y_key_norm = nullptr;
  unsigned long long* max_key_norm_bits = nullptr;

  void reserve(Workspace& workspace, index_t n_x, index_t n_y, bool screen) {
    if (M == Metric::cosine) {
      y_norm_at = workspace.reserve<double>(n_y);
      if (screen) {
        x_scale_at = workspace.reserve<double>(n_x);
        y_scale_at = workspace.reserve<double>(n_y);
      }
    }
    if (M != Metric::manhattan && screen) {
      y_key_norm_at = workspace.reserve<T>(n_y);
      max_bits_at = workspace.reserve<unsigned long long>(1);
    }
  }

  void compute(Workspace& workspace, const T* x, const T* y, index_t n_x, index_t n_y, index_t n_features,
               bool screen, cudaStream_t stream, const char* op) {
    if (M == Metric::cosine) {
      y_norm = workspace.get<double>(y_norm_at);
      if (screen) {
        x_scale = workspace.get<double>(x_scale_at);
        y_scale = workspace.get<double>(y_scale_at);
      }
    }
    if (M != Metric::manhattan && screen) {
      y_key_norm = workspace.get<T>(y_key_norm_at);
      max_key_norm_bits = workspace.get<unsigned long long>(max_bits_at);
      check_cuda(cudaMemsetAsync(max_key_norm_bits, 0, sizeof(unsigned long long), stream), op, "cudaMemsetAsync");
    }
    if (M == Metric::cosine || (M != Metric::manhattan && screen)) {
      launch_row_norms<T, M>(y, n_y, n_features, y_norm, y_scale, y_key_norm, max_key_norm_bits, stream, op);
    }
    if (M == Metric::cosine && screen) {
      launch_row_norms<T, M>(x, n_x, n_features, nullptr, x_scale, nullptr, nullptr, stream, op);
    }
  }
};

template <typename T, Metric M>
void argmin_min_impl(const T* x, const T* y, std::int64_t* indices, T* distances, index_t n_x, index_t n_y,
                     index_t n_features, cudaStream_t stream) {
  constexpr const char* op = "pairwise_distances_argmin_min";
  using S = typename MainTile<T>::type;
  Workspace workspace;
  ScreeningInputs<T, M> inputs;
  inputs.reserve(workspace, n_x, n_y, true);
  const std::size_t best_key_at = workspace.reserve<T>(n_x);
  const std::size_t second_key_at = workspace.reserve<T>(n_x);
  workspace.allocate(stream, op);
  inputs.compute(workspace, x, y, n_x, n_y, n_features, true, stream, op);
  T* best_key = workspace.get<T>(best_key_at);
  T* second_key = workspace.get<T>(second_key_at);

  argmin_screen_kernel<T, M><<<grid_size(ceil_div(n_x, S::BM), op), S::THREADS, 0, stream>>>(
      x, y, n_x, n_y, n_features, inputs.x_scale, inputs.y_scale, inputs.y_key_norm, indices, best_key, second_key);
  check_launch(op, "argmin_screen_kernel");
  argmin_refine_kernel<T, M><<<grid_size(ceil_div(n_x, kRefineWarps), op), kRefineThreads, 0, stream>>>(
      x, y, n_x, n_y, n_features, inputs.y_norm, inputs.max_key_norm_bits, best_key, second_key, indices, distances);
  check_launch(op, "argmin_refine_kernel");
  workspace.release();
}

template <typename T, Metric M>
void kneighbors_impl(const T* x, const T* y, T* distances, std::int64_t* indices, index_t n_x, index_t n_y,
                     index_t n_features, index_t k, cudaStream_t stream) {
  constexpr const char* op = "kneighbors";
  using S = KnnTile;
  const bool screen = k < n_y;  // k == n_y: every row of Y is a neighbour, computed exactly
  Workspace workspace;
  ScreeningInputs<T, M> inputs;
  inputs.reserve(workspace, n_x, n_y, screen);

  // Screening heaps: one slot of heap_stride x (k+1) entries per resident block.
  const index_t n_row_tiles = ceil_div(n_x, S::BM);
  const index_t heap_stride = std::min<index_t>(S::BM, n_x);
  const std::size_t heap_entry_bytes = sizeof(T) + sizeof(std::int32_t);
  index_t screen_blocks = 0;
  std::size_t heap_keys_at = 0, heap_ids_at = 0, kth_at = 0, next_at = 0;
  if (screen) {
    const std::size_t slot_bytes = static_cast<std::size_t>(heap_stride) * static_cast<std::size_t>(k + 1) * heap_entry_bytes;
    screen_blocks = std::min<index_t>(n_row_tiles, std::max<index_t>(1, static_cast<index_t>(kWorkspaceBudgetBytes / slot_bytes)));
    const std::size_t entries = static_cast<std::size_t>(screen_blocks) * heap_stride * static_cast<std::size_t>(k + 1);
    heap_keys_at = workspace.reserve<T>(entries);
    heap_ids_at = workspace.reserve<std::int32_t>(entries);
    kth_at = workspace.reserve<T>(n_x);
    next_at = workspace.reserve<T>(n_x);
  }
  // Refine buffers: k (value, index) per warp.
  const std::size_t buffer_bytes = static_cast<std::size_t>(k) * (sizeof(double) + sizeof(std::int64_t));
  const index_t refine_warps =
      std::min<index_t>({n_x, kMaxRefineWarps, std::max<index_t>(1, static_cast<index_t>(kWorkspaceBudgetBytes / buffer_bytes))});
  const std::size_t buffer_values_at = workspace.reserve<double>(static_cast<std::size_t>(refine_warps) * k);
  const std::size_t buffer_ids_at = workspace.reserve<std::int64_t>(static_cast<std::size_t>(refine_warps) * k);

  workspace.allocate(stream, op);
  inputs.compute(workspace, x, y, n_x, n_y, n_features, screen, stream, op);
  T* kth_key = nullptr;
  T* next_key = nullptr;
  if (screen) {
    kth_key = workspace.get<T>(kth_at);
    next_key = workspace.get<T>(next_at);
    knn_screen_kernel<T, M><<<grid_size(screen_blocks, op), S::THREADS, 0, stream>>>(
        x, y, n_x, n_y, n_features, k, inputs.x_scale, inputs.y_scale, inputs.y_key_norm,
        workspace.get<T>(heap_keys_at), workspace.get<std::int32_t>(heap_ids_at), heap_stride, n_row_tiles, indices,
        kth_key, next_key);
    check_launch(op, "knn_screen_kernel");
  }
  knn_refine_kernel<T, M><<<grid_size(ceil_div(refine_warps, kRefineWarps), op), kRefineThreads, 0, stream>>>(
      x, y, n_x, n_y, n_features, k, inputs.y_norm, inputs.max_key_norm_bits, kth_key, next_key, indices, distances,
      workspace.get<double>(buffer_values_at), workspace.get<std::int64_t>(buffer_ids_at), refine_warps);
  check_launch(op, "knn_refine_kernel");
  workspace.release();
}

template <typename F>
void dispatch_metric(Metric metric, const char* op, F&& f) {
  switch (metric) {
    case Metric::euclidean:
      return f(std::integral_constant<Metric, Metric::euclidean>{});
    case Metric::sqeuclidean:
      return f(std::integral_constant<Metric, Metric::sqeuclidean>{});
    case Metric::cosine:
      return f(std::integral_constant<Metric, Metric::cosine>{});
    case Metric::manhattan:
      return f(std::integral_constant<Metric, Metric::manhattan>{});
  }
  throw std::invalid_argument(std::string(op) + ": unknown metric " + std::to_string(static_cast<int>(metric)));
}

template <typename T>
void pairwise_distances_entry(const T* x, const T* y, T* out, index_t n_x, index_t n_y, index_t n_features,
                              Metric metric, void* stream) {
  constexpr const char* op = "pairwise_distances";
  check_arguments(op, x, y, out, out, n_x, n_y, n_features);
  dispatch_metric(metric, op, [&](auto m) {
    pairwise_distances_impl<T, decltype(m)::value>(x, y, out, n_x, n_y, n_features,
                                                   static_cast<cudaStream_t>(stream));
  });
}

template <typename T>
void argmin_min_entry(const T* x, const T* y, std::int64_t* indices, T* distances, index_t n_x, index_t n_y,
                      index_t n_features, Metric metric, void* stream) {
  constexpr const char* op = "pairwise_distances_argmin_min";
  check_arguments(op, x, y, indices, distances, n_x, n_y, n_features);
  dispatch_metric(metric, op, [&](auto m) {
    argmin_min_impl<T, decltype(m)::value>(x, y, indices, distances, n_x, n_y, n_features,
                                           static_cast<cudaStream_t>(stream));
  });
}

template <typename T>
void kneighbors_entry(const T* x, const T* y, T* distances, std::int64_t* indices, index_t n_x, index_t n_y,
                      index_t n_features, index_t n_neighbors, Metric metric, void* stream) {
  constexpr const char* op = "kneighbors";
  check_arguments(op, x, y, distances, indices, n_x, n_y, n_features);
  if (n_neighbors < 1 || n_neighbors > n_y)
    throw std::invalid_argument(std::string(op) + ": n_neighbors must be in [1, n_y] = [1, " + std::to_string(n_y) +
                                "], got " + std::to_string(n_neighbors));
  dispatch_metric(metric, op, [&](auto m) {
    kneighbors_impl<T, decltype(m)::value>(x, y, distances, indices, n_x, n_y, n_features, n_neighbors,
                                           static_cast<cudaStream_t>(stream));
  });
}

}  // namespace

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::string device_name() {
  if (device_count() == 0) return "";
  int device = 0;
  cudaDeviceProp properties{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&properties, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return properties.name;
}

void pairwise_distances(const float* x, const float* y, float* out, std::int64_t n_x, std::int64_t n_y,
                        std::int64_t n_features, Metric metric, void* stream) {
  pairwise_distances_entry(x, y, out, n_x, n_y, n_features, metric, stream);
}
void pairwise_distances(const double* x, const double* y, double* out, std::int64_t n_x, std::int64_t n_y,
                        std::int64_t n_features, Metric metric, void* stream) {
  pairwise_distances_entry(x, y, out, n_x, n_y, n_features, metric, stream);
}

void pairwise_distances_argmin_min(const float* x, const float* y, std::int64_t* indices, float* distances,
                                   std::int64_t n_x, std::int64_t n_y, std::int64_t n_features, Metric metric,
                                   void* stream) {
  argmin_min_entry(x, y, indices, distances, n_x, n_y, n_features, metric, stream);
}
void pairwise_distances_argmin_min(const double* x, const double* y, std::int64_t* indices, double* distances,
                                   std::int64_t n_x, std::int64_t n_y, std::int64_t n_features, Metric metric,
                                   void* stream) {
  argmin_min_entry(x, y, indices, distances, n_x, n_y, n_features, metric, stream);
}

void kneighbors(const float* x, const float* y, float* distances, std::int64_t* indices, std::int64_t n_x,
                std::int64_t n_y, std::int64_t n_features, std::int64_t n_neighbors, Metric metric, void* stream) {
  kneighbors_entry(x, y, distances, indices, n_x, n_y, n_features, n_neighbors, metric, stream);
}
void kneighbors(const double* x, const double* y, double* distances, std::int64_t* indices, std::int64_t n_x,
                std::int64_t n_y, std::int64_t n_features, std::int64_t n_neighbors, Metric metric, void* stream) {
  kneighbors_entry(x, y, distances, indices, n_x, n_y, n_features, n_neighbors, metric, stream);
}

}  // namespace fastlatent::cuda
