// Soft nearest neighbour loss on the GPU: the two streaming passes over 64 x 64 tiles of the
// B x B distance matrix (contract: csrc/cuda/snnl.cuh; definition and formulas:
// fastlatent/ops/snnl.py). NEVER RUN: written and compiled in a session without a GPU.
//
// One block of 256 threads owns 64 rows and walks all column tiles; a thread owns a 4 x 4
// micro-tile (rows ty*4.., columns tx*4..) of each tile's dot products, accumulated from 8-feature
// slices of z staged in shared memory. Pass 1 keeps, per thread and row, an online log-sum-exp
// (running max, float64 sums of exp(s - max) over same-class and other-class columns); the 16
// partial states of a row are merged at the end in a fixed order. Pass 2 forms G_ij for the tile
// in shared memory, then adds G_tile @ z[tile columns] into the block's own rows of v (float64,
// read-modify-write in global memory: rows belong to one block, so no atomics), and the row sums
// of G and of g_ij s_ij. Deterministic: every sum has a fixed order.
// Cost: 2 B^2 D flops (pass 1), 4 B^2 D (pass 2), B^2 and 2 B^2 exponentials; memory O(B D).
#include "cuda/snnl.cuh"

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace fastlatent::cuda {
namespace {

using index_t = std::int64_t;

constexpr int kTile = 64;      // rows and columns per tile
constexpr int kSlice = 8;      // features staged per step
constexpr int kThreads = 256;  // 16 x 16 threads, 4 x 4 entries each
constexpr int kSide = 16;

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }

template <typename T>
__device__ __forceinline__ T minus_infinity() {
  return -std::numeric_limits<T>::infinity();
}

// acc[a][b] = z_{i0 + ty*4 + a} . z_{j0 + tx*4 + b}; rows and columns past n read as zeros.
template <typename T>
__device__ __forceinline__ void tile_dots(const T* __restrict__ z, index_t n, index_t d, index_t i0,
                                          index_t j0, T (*As)[kTile], T (*Bs)[kTile], T (&acc)[4][4]) {
  const int t = threadIdx.x, ty = t / kSide, tx = t % kSide;
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b) acc[a][b] = T(0);
  for (index_t k0 = 0; k0 < d; k0 += kSlice) {
    // 64 rows x 8 features per operand = 512 values: two per thread and operand.
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int e = t + q * kThreads;
      const int row = e / kSlice, k = e % kSlice;
      const index_t feature = k0 + k;
      const index_t i = i0 + row, j = j0 + row;
      As[k][row] = (i < n && feature < d) ? z[i * d + feature] : T(0);
      Bs[k][row] = (j < n && feature < d) ? z[j * d + feature] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kSlice; ++k) {
      T x[4], y[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) x[a] = As[k][ty * 4 + a];
#pragma unroll
      for (int b = 0; b < 4; ++b) y[b] = Bs[k][tx * 4 + b];
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b) acc[a][b] += x[a] * y[b];
    }
    __syncthreads();
  }
}

// s_ij = -d_ij / T from a dot product; -inf when j == i or either index is past n.
template <typename T>
__device__ __forceinline__ T exponent(T dot, const T* __restrict__ squared, index_t n, index_t i, index_t j,
                                      bool cosine, T inverse_temperature) {
  if (i >= n || j >= n || i == j) return minus_infinity<T>();
  T distance = cosine ? T(1) - dot : squared[i] + squared[j] - T(2) * dot;
  distance = distance > T(0) ? distance : T(0);
  return -distance * inverse_temperature;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    snnl_row_stats_kernel(const T* __restrict__ z, const T* __restrict__ squared,
                          const std::int32_t* __restrict__ labels, index_t n, index_t d, bool cosine,
                          T inverse_temperature, double* __restrict__ row_max, double* __restrict__ same_sum,
                          double* __restrict__ other_sum) {
  __shared__ T As[kSlice][kTile];
  __shared__ T Bs[kSlice][kTile];
  __shared__ double part_max[kTile][kSide], part_same[kTile][kSide], part_other[kTile][kSide];
  const int t = threadIdx.x, ty = t / kSide, tx = t % kSide;
  const index_t i0 = index_t(blockIdx.x) * kTile;
  double m[4], same[4], other[4];
  std::int32_t yi[4];
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    m[a] = -std::numeric_limits<double>::infinity();
    same[a] = other[a] = 0.0;
    const index_t i = i0 + ty * 4 + a;
    yi[a] = i < n ? labels[i] : -1;
  }
  for (index_t j0 = 0; j0 < n; j0 += kTile) {
    T acc[4][4];
    tile_dots(z, n, d, i0, j0, As, Bs, acc);
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const index_t j = j0 + tx * 4 + b;
      const std::int32_t yj = j < n ? labels[j] : -2;
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const index_t i = i0 + ty * 4 + a;
        const T s = exponent(acc[a][b], squared, n, i, j, cosine, inverse_temperature);
        if (s == minus_infinity<T>()) continue;
        if (double(s) > m[a]) {
          const double rescale = exp(m[a] - double(s));  // 0 on the first term
          same[a] *= rescale;
          other[a] *= rescale;
          m[a] = double(s);
        }
        const double e = double(exp_t(T(double(s) - m[a])));
        if (yj == yi[a]) same[a] += e; else other[a] += e;
      }
    }
  }
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    part_max[ty * 4 + a][tx] = m[a];
    part_same[ty * 4 + a][tx] = same[a];
    part_other[ty * 4 + a][tx] = other[a];
  }
  __syncthreads();
  if (t < kTile && i0 + t < n) {
    double top = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < kSide; ++k) top = fmax(top, part_max[t][k]);
    double s_total = 0.0, o_total = 0.0;
    for (int k = 0; k < kSide; ++k) {
      if (part_max[t][k] == -std::numeric_limits<double>::infinity()) continue;
      const double rescale = exp(part_max[t][k] - top);
      s_total += part_same[t][k] * rescale;
      o_total += part_other[t][k] * rescale;
    }
    row_max[i0 + t] = top;
    same_sum[i0 + t] = s_total;
    other_sum[i0 + t] = o_total;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    snnl_gradient_kernel(const T* __restrict__ z, const T* __restrict__ squared,
                         const std::int32_t* __restrict__ labels, index_t n, index_t d, bool cosine,
                         T inverse_temperature, const double* __restrict__ log_denominator,
                         const double* __restrict__ pick, const double* __restrict__ one_minus_pick,
                         const double* __restrict__ scale, double* __restrict__ v, double* __restrict__ row_sum,
                         double* __restrict__ s_sum) {
  __shared__ T As[kSlice][kTile];
  __shared__ T Bs[kSlice][kTile];
  __shared__ alignas(8) T G[kTile][kTile + 1];
  __shared__ double col_stats[4][kTile];  // log(eps + A_j), p_j, 1 - p_j, c_j of the tile's columns
  const int t = threadIdx.x, ty = t / kSide, tx = t % kSide;
  const index_t i0 = index_t(blockIdx.x) * kTile;
  double g_total[4], gs_total[4];
  T ld_i[4], p_i[4], r_i[4], c_i[4];
  std::int32_t yi[4];
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    g_total[a] = gs_total[a] = 0.0;
    const index_t i = i0 + ty * 4 + a;
    const bool valid = i < n;
    yi[a] = valid ? labels[i] : -1;
    ld_i[a] = valid ? T(log_denominator[i]) : T(0);
    p_i[a] = valid ? T(pick[i]) : T(0);
    r_i[a] = valid ? T(one_minus_pick[i]) : T(0);
    c_i[a] = valid ? T(scale[i]) : T(0);
  }
  for (index_t j0 = 0; j0 < n; j0 += kTile) {
    if (t < kTile) {
      const index_t j = j0 + t;
      const bool valid = j < n;
      col_stats[0][t] = valid ? log_denominator[j] : 0.0;
      col_stats[1][t] = valid ? pick[j] : 0.0;
      col_stats[2][t] = valid ? one_minus_pick[j] : 0.0;
      col_stats[3][t] = valid ? scale[j] : 0.0;
    }
    T acc[4][4];
    tile_dots(z, n, d, i0, j0, As, Bs, acc);  // its __syncthreads also publish col_stats
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const int column = tx * 4 + b;
      const index_t j = j0 + column;
      const std::int32_t yj = j < n ? labels[j] : -2;
      const T ld_j = T(col_stats[0][column]), p_j = T(col_stats[1][column]);
      const T r_j = T(col_stats[2][column]), c_j = T(col_stats[3][column]);
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const index_t i = i0 + ty * 4 + a;
        const T s = exponent(acc[a][b], squared, n, i, j, cosine, inverse_temperature);
        T g = T(0);
        if (s != minus_infinity<T>()) {
          const bool same = yj == yi[a];  // p - [same] is p, or -(1 - p)
          const T g_ij = c_i[a] * exp_t(s - ld_i[a]) * (same ? -r_i[a] : p_i[a]);
          const T g_ji = c_j * exp_t(s - ld_j) * (same ? -r_j : p_j);
          g = g_ij + g_ji;
          g_total[a] += double(g);
          gs_total[a] += double(g_ij) * double(s);
        }
        G[ty * 4 + a][column] = g;
      }
    }
    __syncthreads();
    // v[rows] += G @ z[j0 : j0 + 64]: thread (ty, tx) takes its 4 rows and features tx, tx+16, ...
    const int width = int(n - j0 < kTile ? n - j0 : kTile);
    for (index_t f = tx; f < d; f += kSide) {
      T sum[4] = {T(0), T(0), T(0), T(0)};
      for (int jj = 0; jj < width; ++jj) {
        const T zj = z[(j0 + jj) * d + f];
#pragma unroll
        for (int a = 0; a < 4; ++a) sum[a] += G[ty * 4 + a][jj] * zj;
      }
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const index_t i = i0 + ty * 4 + a;
        if (i < n) v[i * d + f] += double(sum[a]);
      }
    }
    __syncthreads();  // G and col_stats are rewritten by the next tile
  }
  // Row sums: the 16 partials of each row, in a fixed order (G's storage is free now).
  static_assert(sizeof(T) * kTile * (kTile + 1) >= sizeof(double) * 2 * kTile * kSide,
                "G is reused for the row-sum reduction");
  double* part = reinterpret_cast<double*>(&G[0][0]);  // 2 x 64 x 16 doubles; G is 8-aligned
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    part[(ty * 4 + a) * kSide + tx] = g_total[a];
    part[kTile * kSide + (ty * 4 + a) * kSide + tx] = gs_total[a];
  }
  __syncthreads();
  if (t < kTile && i0 + t < n) {
    double g_sum = 0.0, gs_sum = 0.0;
    for (int k = 0; k < kSide; ++k) {
      g_sum += part[t * kSide + k];
      gs_sum += part[kTile * kSide + t * kSide + k];
    }
    row_sum[i0 + t] = g_sum;
    s_sum[i0 + t] = gs_sum;
  }
}

void check_cuda(cudaError_t status, const char* op, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(op) + ": " + what + " failed: " + cudaGetErrorString(status));
}

void check_sizes(const char* op, index_t n, index_t d, double temperature) {
  if (n < 2) throw std::invalid_argument(std::string(op) + ": n must be >= 2, got " + std::to_string(n));
  if (d < 1) throw std::invalid_argument(std::string(op) + ": d must be >= 1, got " + std::to_string(d));
  if (!(temperature > 0.0))
    throw std::invalid_argument(std::string(op) + ": temperature must be > 0, got " + std::to_string(temperature));
  if ((n + kTile - 1) / kTile > index_t(std::numeric_limits<int>::max()))
    throw std::invalid_argument(std::string(op) + ": n too large, got " + std::to_string(n));
}

template <typename T>
void row_stats(const T* z, const T* squared, const std::int32_t* labels, index_t n, index_t d, bool cosine,
               double temperature, double* row_max, double* same_sum, double* other_sum, void* stream) {
  constexpr const char* op = "snnl_row_stats";
  check_sizes(op, n, d, temperature);
  const unsigned blocks = unsigned((n + kTile - 1) / kTile);
  snnl_row_stats_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      z, squared, labels, n, d, cosine, T(1.0 / temperature), row_max, same_sum, other_sum);
  check_cuda(cudaGetLastError(), op, "snnl_row_stats_kernel launch");
}

template <typename T>
void gradient_sums(const T* z, const T* squared, const std::int32_t* labels, index_t n, index_t d, bool cosine,
                   double temperature, const double* log_denominator, const double* pick,
                   const double* one_minus_pick, const double* scale, double* v, double* row_sum, double* s_sum,
                   void* stream) {
  constexpr const char* op = "snnl_gradient_sums";
  check_sizes(op, n, d, temperature);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  check_cuda(cudaMemsetAsync(v, 0, sizeof(double) * std::size_t(n) * std::size_t(d), s), op, "cudaMemsetAsync");
  const unsigned blocks = unsigned((n + kTile - 1) / kTile);
  snnl_gradient_kernel<T><<<blocks, kThreads, 0, s>>>(z, squared, labels, n, d, cosine, T(1.0 / temperature),
                                                       log_denominator, pick, one_minus_pick, scale, v, row_sum,
                                                       s_sum);
  check_cuda(cudaGetLastError(), op, "snnl_gradient_kernel launch");
}

}  // namespace

void snnl_row_stats(const float* z, const float* squared, const std::int32_t* labels, std::int64_t n,
                    std::int64_t d, bool cosine, double temperature, double* row_max, double* same_sum,
                    double* other_sum, void* stream) {
  row_stats(z, squared, labels, n, d, cosine, temperature, row_max, same_sum, other_sum, stream);
}
void snnl_row_stats(const double* z, const double* squared, const std::int32_t* labels, std::int64_t n,
                    std::int64_t d, bool cosine, double temperature, double* row_max, double* same_sum,
                    double* other_sum, void* stream) {
  row_stats(z, squared, labels, n, d, cosine, temperature, row_max, same_sum, other_sum, stream);
}

void snnl_gradient_sums(const float* z, const float* squared, const std::int32_t* labels, std::int64_t n,
                        std::int64_t d, bool cosine, double temperature, const double* log_denominator,
                        const double* pick, const double* one_minus_pick, const double* scale, double* v,
                        double* row_sum, double* s_sum, void* stream) {
  gradient_sums(z, squared, labels, n, d, cosine, temperature, log_denominator, pick, one_minus_pick, scale, v,
                row_sum, s_sum, stream);
}
void snnl_gradient_sums(const double* z, const double* squared, const std::int32_t* labels, std::int64_t n,
                        std::int64_t d, bool cosine, double temperature, const double* log_denominator,
                        const double* pick, const double* one_minus_pick, const double* scale, double* v,
                        double* row_sum, double* s_sum, void* stream) {
  gradient_sums(z, squared, labels, n, d, cosine, temperature, log_denominator, pick, one_minus_pick, scale, v,
                row_sum, s_sum, stream);
}

}  // namespace fastlatent::cuda
