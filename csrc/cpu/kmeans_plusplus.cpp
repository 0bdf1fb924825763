// kmeans_plusplus_step: one greedy k-means++ step (scikit-learn's _kmeans_plusplus loop body) in
// one pass over X: the squared distances from every row to the t candidate rows, their minimum
// with the current closest squared distance, and the weighted potential of every candidate.
//
// Distances are those of pairwise_distances(X, X[candidates], "sqeuclidean") converted to
// float64, bit for bit: the direct form in double, one fused multiply-add chain in feature order
// (the exact path of the tile engine, tile_engine.hpp), clamped at 0 and rounded to X's dtype
// (for float32 X the distance is rounded to float32, then widened again), so the seeding draws
// the same rows as the pairwise path did. The candidates are packed once per call, feature-major
// in double ([d][4 NV], zero lanes past t), and R rows of X pass them together: R x NV
// independent FMA chains of four lanes, one broadcast of x_r[d] per row and feature. Each row is
// finished while in L1: min with closest[i], written to the candidate's column of a t x n
// scratch, and w_i times it added to the thread's partial potential of that candidate.
//
// Threads own contiguous ranges of rows (static partition), so each partial is summed in row
// order; the partials are added in thread order (0.0 + p_0 + p_1 + ...). The potentials, hence
// the chosen candidate on a near tie, depend on the thread count, not on the run; distances and
// new_closest do not depend on it. Cost: 3 n t D flops in double (sub + FMA, padded to a multiple
// of 4 candidates); X read once; t n doubles of scratch written, one column copied out.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/kmeans.hpp"
#include "cpu/tile_engine.hpp"

namespace fastlatent::cpu {
namespace {

using namespace detail;

constexpr int kLanes = 4;  // doubles per v4df

// acc[r][v] lane l = sum over d of (x_r[d] - y_{4v+l}[d])^2, one FMA chain in feature order.
template <int R, int NV, class T>
inline void candidate_chains(const T* const (&x)[R], const double* y_panel, int64_t n_features,
                             double (&out)[R][NV * kLanes]) {
  v4df c[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = v4df{};
  int64_t d = 0;
  // Four features at a time: one widening load per row, then each lane broadcast in register
  // (a permute), cheaper than a scalar conversion and a broadcast per feature. Same chains.
  for (; d + 4 <= n_features; d += 4) {
    v4df xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = load_as_double(x[r] + d);
#pragma GCC unroll 4
    for (int e = 0; e < 4; ++e) {
      v4df y[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        y[v] = load<v4df>(y_panel + (d + e) * (NV * kLanes) + v * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const v4df xr = __builtin_shuffle(xv[r], v4di{e, e, e, e});
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[r][v] = SquaredDifference::step(c[r][v], xr, y[v]);
      }
    }
  }
  for (; d < n_features; ++d) {
    v4df y[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) y[v] = load<v4df>(y_panel + d * (NV * kLanes) + v * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const v4df xr = splat(double(x[r][d]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = SquaredDifference::step(c[r][v], xr, y[v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      for (int l = 0; l < kLanes; ++l) out[r][v * kLanes + l] = c[r][v][l];
}

// One chunk of up to 4 NV candidates (first = its first candidate): rows [begin, end).
template <int R, int NV, class T>
void chunk_rows(const T* X, const double* sample_weight, const double* closest, int64_t begin,
                int64_t end, int64_t n_features, const double* y_panel, int64_t first,
                int64_t count, int64_t n_samples, double* to_candidates, double* partial) {
  int64_t i = begin;
  auto finish = [&](int64_t row, const double* acc) {
    const double w = sample_weight[row], c = closest[row];
    for (int64_t j = 0; j < count; ++j) {
      // pairwise_distances' value: max(acc, 0) in X's dtype, then float64.
      const double distance = double(T(std::max(acc[j], 0.0)));
      const double m = std::min(c, distance);
      to_candidates[(first + j) * n_samples + row] = m;
      partial[first + j] += w * m;
    }
  };
  for (; i + R <= end; i += R) {
    const T* x[R];
    for (int r = 0; r < R; ++r) x[r] = X + (i + r) * n_features;
    double acc[R][NV * kLanes];
    candidate_chains<R, NV>(x, y_panel, n_features, acc);
    for (int r = 0; r < R; ++r) finish(i + r, acc[r]);
  }
  for (; i < end; ++i) {
    const T* x[1] = {X + i * n_features};
    double acc[1][NV * kLanes];
    candidate_chains<1, NV>(x, y_panel, n_features, acc);
    finish(i, acc[0]);
  }
}

template <class T>
void kmeans_plusplus_step_impl(const T* X, const double* sample_weight, const double* closest,
                               const int64_t* candidates, int64_t n_samples, int64_t n_features,
                               int64_t n_candidates, int64_t* best_position,
                               double* best_potential, double* new_closest) {
  if (n_samples < 1 || n_features < 1 || n_candidates < 1)
    throw std::invalid_argument("kmeans_plusplus_step: bad shape (n_samples=" +
                                std::to_string(n_samples) + ", n_features=" +
                                std::to_string(n_features) + ", n_candidates=" +
                                std::to_string(n_candidates) + ")");
  for (int64_t j = 0; j < n_candidates; ++j)
    if (candidates[j] < 0 || candidates[j] >= n_samples)
      throw std::invalid_argument("kmeans_plusplus_step: candidate " + std::to_string(j) + " is " +
                                  std::to_string(candidates[j]) + ", not in [0, " +
                                  std::to_string(n_samples) + ")");

  // Chunks of 8 candidates (NV = 2), the last one of 4 when at most 4 remain (NV = 1); each
  // packed feature-major in double, zero lanes past the last candidate.
  struct Chunk {
    int64_t first, count;
    int nv;
    size_t offset;
  };
  std::vector<Chunk> chunks;
  size_t packed_size = 0;
  for (int64_t first = 0; first < n_candidates;) {
    const int64_t remaining = n_candidates - first;
    const int nv = remaining > kLanes ? 2 : 1;
    const int64_t count = std::min<int64_t>(remaining, nv * kLanes);
    chunks.push_back({first, count, nv, packed_size});
    packed_size += size_t(nv * kLanes) * size_t(n_features);
    first += count;
  }
  std::vector<double> packed(packed_size, 0.0);
  for (const Chunk& chunk : chunks) {
    const int width = chunk.nv * kLanes;
    for (int64_t j = 0; j < chunk.count; ++j) {
      const T* row = X + candidates[chunk.first + j] * n_features;
      for (int64_t d = 0; d < n_features; ++d)
        packed[chunk.offset + size_t(d) * width + size_t(j)] = double(row[d]);
    }
  }

  std::vector<double> to_candidates(size_t(n_candidates) * size_t(n_samples));
  // Rows per thread: at least a few hundred, so that small inputs do not pay for threads.
  const int max_threads = detail::threads_for(double(n_samples) * double(n_candidates) * double(n_features));
  const int n_threads = int(std::max<int64_t>(1, std::min<int64_t>(max_threads, n_samples / 256)));
  // Per thread, n_candidates partial potentials and 8 spare doubles (no shared cache line).
  const size_t stride = size_t(n_candidates) + 8;
  std::vector<double> partials(size_t(n_threads) * stride, 0.0);

#pragma omp parallel num_threads(n_threads)
  {
    const int thread = omp_get_thread_num();
    const int64_t begin = n_samples * thread / n_threads;
    const int64_t end = n_samples * (thread + 1) / n_threads;
    double* partial = partials.data() + size_t(thread) * stride;
    // Blocks of rows (about 16 KiB of X) so every chunk of candidates reads them from L1.
    const int64_t block = std::max<int64_t>(8, (16 << 10) / (n_features * int64_t(sizeof(T))));
    for (int64_t b = begin; b < end; b += block) {
      const int64_t e = std::min(end, b + block);
      for (const Chunk& chunk : chunks) {
        const double* y = packed.data() + chunk.offset;
        if (chunk.nv == 2)
          chunk_rows<4, 2>(X, sample_weight, closest, b, e, n_features, y, chunk.first,
                           chunk.count, n_samples, to_candidates.data(), partial);
        else
          chunk_rows<8, 1>(X, sample_weight, closest, b, e, n_features, y, chunk.first,
                           chunk.count, n_samples, to_candidates.data(), partial);
      }
    }
  }

  // Thread order; the first strictly smaller potential wins (ties to the lower position).
  int64_t best = 0;
  double best_value = std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n_candidates; ++j) {
    double potential = 0.0;
    for (int t = 0; t < n_threads; ++t) potential += partials[size_t(t) * stride + size_t(j)];
    if (j == 0 || potential < best_value) {
      best = j;
      best_value = potential;
    }
  }
  std::copy_n(to_candidates.data() + size_t(best) * size_t(n_samples), n_samples, new_closest);
  *best_position = best;
  *best_potential = best_value;
}

}  // namespace

void kmeans_plusplus_step(const float* X, const double* sample_weight, const double* closest,
                          const int64_t* candidates, int64_t n_samples, int64_t n_features,
                          int64_t n_candidates, int64_t* best_position, double* best_potential,
                          double* new_closest) {
  kmeans_plusplus_step_impl(X, sample_weight, closest, candidates, n_samples, n_features,
                            n_candidates, best_position, best_potential, new_closest);
}

void kmeans_plusplus_step(const double* X, const double* sample_weight, const double* closest,
                          const int64_t* candidates, int64_t n_samples, int64_t n_features,
                          int64_t n_candidates, int64_t* best_position, double* best_potential,
                          double* new_closest) {
  kmeans_plusplus_step_impl(X, sample_weight, closest, candidates, n_samples, n_features,
                            n_candidates, best_position, best_potential, new_closest);
}

}  // namespace fastlatent::cpu
