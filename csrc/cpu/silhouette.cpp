// Per-point sums of distances to every cluster, for the silhouette coefficient.
//
// Layout. The rows arrive grouped by cluster. Each cluster is cut into blocks of at most
// `block_rows` rows (a multiple of MR and NR), so every block lies inside one cluster; each
// block is packed twice, as MR-row panels (the microkernel's X side) and as NR-row panels (its
// Y side), with zero rows past the block's end that every reduction masks out.
//
// Work. A pair of blocks (p, q) is one tile of the distance matrix: its row sums go to
// sums[rows of p, cluster of q] and its column sums to sums[rows of q, cluster of p], so each
// distance is computed once for both of its rows (half the flops of the row-by-row form).
// Diagonal tiles (p, p) give row sums only, with the i == j entry set to zero.
//
// Order. Pairs are scheduled as a round-robin tournament: in each round every block meets at
// most one other block, so no two tasks of a round write the same rows, no atomics are needed,
// and every sum is accumulated in round order whatever the thread count: bitwise reproducible.
#include "cpu/silhouette.hpp"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/tile_engine.hpp"

namespace fastlatent::cpu {
namespace {

using namespace detail;

constexpr int MR = 6;
constexpr int NV = 2;
constexpr int L = 4;  // doubles per vector
constexpr int NR = NV * L;
constexpr int64_t BLOCK_QUANTUM = 24;  // lcm(MR, NR)

struct Block {
  int64_t first_row;  // in X
  int64_t rows;       // valid rows
  int64_t cluster;
  int64_t row_panel;  // first MR panel in the row-packed copy
  int64_t col_panel;  // first NR panel in the column-packed copy
};

// About 96 KiB of packed rows per block, so a block pair stays in L2.
int64_t block_rows_for(int64_t n_features) {
  const int64_t fit = (96 * 1024 / 8) / std::max<int64_t>(n_features, 1);
  return std::clamp<int64_t>(fit / BLOCK_QUANTUM * BLOCK_QUANTUM, BLOCK_QUANTUM, 4 * BLOCK_QUANTUM);
}

inline v4df lane_mask(int64_t valid_lanes) {
  const v4di index = {0, 1, 2, 3};
  const v4di limit = {valid_lanes, valid_lanes, valid_lanes, valid_lanes};
  return (v4df)(index < limit);
}

inline v4df masked(v4df value, v4df mask) { return (v4df)((v4di)value & (v4di)mask); }

inline double horizontal_sum(v4df v) { return (v[0] + v[1]) + (v[2] + v[3]); }

// Distance from the microkernel's accumulator: a dot product (GEMM metrics) or a sum of |.|.
template <Metric M>
inline v4df finish_lanes(v4df acc, v4df row_norm, v4df col_norm) {
  if constexpr (M == Metric::manhattan) {
    return acc;
  } else if constexpr (M == Metric::cosine) {
    return vmin(vmax(splat(1.0) - acc, splat(0.0)), splat(2.0));
  } else {
    const v4df squared = vmax(row_norm + col_norm - splat(2.0) * acc, splat(0.0));
    if constexpr (M == Metric::sqeuclidean) {
      return squared;
    } else {
#if defined(__AVX__)
      return (v4df)_mm256_sqrt_pd((__m256d)squared);
#else
      return v4df{std::sqrt(squared[0]), std::sqrt(squared[1]), std::sqrt(squared[2]),
                  std::sqrt(squared[3])};
#endif
    }
  }
}

template <Metric M>
struct Pass {
  using Op = std::conditional_t<M == Metric::manhattan, AbsoluteDifference, DotProduct>;

  const std::vector<double>& row_packed;
  const std::vector<double>& col_packed;
  const std::vector<double>& row_norms;  // per packed row slot
  const std::vector<double>& col_norms;
  int64_t n_features;
  int64_t n_clusters;
  double* sums;

  // One block pair. row_acc and col_sums are this thread's scratch (block_rows entries).
  void tile(const Block& p, const Block& q, bool diagonal, v4df* row_acc, double* col_sums) const {
    const int64_t row_panels = (p.rows + MR - 1) / MR;
    const int64_t col_panels = (q.rows + NR - 1) / NR;
    for (int64_t r = 0; r < row_panels * MR; ++r) row_acc[r] = v4df{};
    for (int64_t c = 0; c < col_panels; ++c) {
      const int64_t col0 = c * NR;
      const double* y_panel = col_packed.data() + size_t(q.col_panel + c) * NR * size_t(n_features);
      const double* yn = col_norms.data() + (q.col_panel + c) * NR;
      const v4df col_norm[NV] = {load<v4df>(yn), load<v4df>(yn + L)};
      const v4df col_mask[NV] = {lane_mask(q.rows - col0), lane_mask(q.rows - col0 - L)};
      v4df col_acc[NV] = {v4df{}, v4df{}};
      for (int64_t rp = 0; rp < row_panels; ++rp) {
        const int64_t row0 = rp * MR;
        v4df acc[MR][NV];
        microkernel<Op, MR, NV>(
            PackedRows<double, MR>{row_packed.data() + size_t(p.row_panel + rp) * MR * size_t(n_features)},
            y_panel, n_features, acc);
        const double* xn = row_norms.data() + (p.row_panel + rp) * MR;
        const int valid_rows = int(std::min<int64_t>(MR, p.rows - row0));
        const bool touches_diagonal = diagonal && row0 < col0 + NR && col0 < row0 + MR;
        for (int r = 0; r < valid_rows; ++r) {
          v4df d[NV];
          for (int v = 0; v < NV; ++v) {
            d[v] = masked(finish_lanes<M>(acc[r][v], splat(xn[r]), col_norm[v]), col_mask[v]);
            if (touches_diagonal) {
              const int64_t lane = row0 + r - col0 - v * L;  // the lane holding column i, if any
              if (lane >= 0 && lane < L) d[v][lane] = 0.0;
            }
            col_acc[v] += d[v];
          }
          row_acc[row0 + r] += d[0] + d[1];
        }
      }
      if (!diagonal) {
        for (int v = 0; v < NV; ++v)
          for (int l = 0; l < L; ++l) col_sums[col0 + v * L + l] = col_acc[v][l];
      }
    }
    for (int64_t r = 0; r < p.rows; ++r)
      sums[(p.first_row + r) * n_clusters + q.cluster] += horizontal_sum(row_acc[r]);
    if (!diagonal) {
      for (int64_t c = 0; c < q.rows; ++c)
        sums[(q.first_row + c) * n_clusters + p.cluster] += col_sums[c];
    }
  }
};

template <Metric M>
void run(const double* X, int64_t n_features, const int64_t* offsets, int64_t n_clusters,
         double* sums) {
  const int64_t block_rows = block_rows_for(n_features);
  std::vector<Block> blocks;
  int64_t row_panels = 0, col_panels = 0;
  for (int64_t k = 0; k < n_clusters; ++k) {
    for (int64_t start = offsets[k]; start < offsets[k + 1]; start += block_rows) {
      const int64_t rows = std::min(block_rows, offsets[k + 1] - start);
      blocks.push_back({start, rows, k, row_panels, col_panels});
      row_panels += (rows + MR - 1) / MR;
      col_panels += (rows + NR - 1) / NR;
    }
  }
  const int64_t n_blocks = int64_t(blocks.size());
  const bool normalise = M == Metric::cosine;
  std::vector<double> row_packed(size_t(row_panels) * MR * size_t(n_features));
  std::vector<double> col_packed(size_t(col_panels) * NR * size_t(n_features));
  std::vector<double> row_norms(size_t(row_panels) * MR, 0.0);
  std::vector<double> col_norms(size_t(col_panels) * NR, 0.0);
  const int n_threads = threads_for(0.5 * double(offsets[n_clusters]) * double(offsets[n_clusters]) * double(n_features));
  std::vector<v4df> row_acc_all(size_t(n_threads) * size_t(block_rows));
  std::vector<double> col_sums_all(size_t(n_threads) * size_t(block_rows));
  const Pass<M> pass{row_packed, col_packed, row_norms, col_norms, n_features, n_clusters, sums};

  // Rounds of the tournament (circle method): with an even number of slots S, round t pairs
  // slot S-1 with slot t and slot (t+k) mod (S-1) with slot (t-k) mod (S-1), k = 1 .. S/2-1.
  // A slot >= n_blocks is a bye. Every pair of blocks meets in exactly one round.
  const int64_t slots = n_blocks + (n_blocks % 2);
  const int64_t rounds = slots - 1;

#pragma omp parallel num_threads(n_threads)
  {
    const int thread = omp_get_thread_num();
    v4df* row_acc = row_acc_all.data() + size_t(thread) * size_t(block_rows);
    double* col_sums = col_sums_all.data() + size_t(thread) * size_t(block_rows);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const Block& block = blocks[size_t(b)];
      const double* src = X + block.first_row * n_features;
      for (int64_t p = 0; p * MR < block.rows; ++p)
        pack_panel<MR>(src + p * MR * n_features, std::min<int64_t>(MR, block.rows - p * MR),
                       n_features, normalise,
                       row_packed.data() + size_t(block.row_panel + p) * MR * size_t(n_features),
                       row_norms.data() + (block.row_panel + p) * MR);
      for (int64_t p = 0; p * NR < block.rows; ++p)
        pack_panel<NR>(src + p * NR * n_features, std::min<int64_t>(NR, block.rows - p * NR),
                       n_features, normalise,
                       col_packed.data() + size_t(block.col_panel + p) * NR * size_t(n_features),
                       col_norms.data() + (block.col_panel + p) * NR);
    }
    // Diagonal tiles first: each writes only its own rows.
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_blocks; ++b)
      pass.tile(blocks[size_t(b)], blocks[size_t(b)], true, row_acc, col_sums);
    for (int64_t t = 0; t < rounds; ++t) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t k = 0; k < slots / 2; ++k) {
        int64_t a, b;
        if (k == 0) {
          a = t;
          b = slots - 1;
        } else {
          a = (t + k) % rounds;
          b = (t - k + rounds) % rounds;
        }
        if (a >= n_blocks || b >= n_blocks) continue;
        if (a > b) std::swap(a, b);
        pass.tile(blocks[size_t(a)], blocks[size_t(b)], false, row_acc, col_sums);
      }
    }
  }
}

}  // namespace

void silhouette_cluster_sums(const double* X, int64_t n_samples, int64_t n_features,
                             const int64_t* cluster_offsets, int64_t n_clusters, Metric metric,
                             double* sums) {
  const std::string op = "silhouette_cluster_sums";
  if (n_samples < 0 || n_features < 1 || n_clusters < 1)
    throw std::invalid_argument(op + ": need n_samples >= 0, n_features >= 1 and n_clusters >= 1");
  if (cluster_offsets[0] != 0 || cluster_offsets[n_clusters] != n_samples)
    throw std::invalid_argument(op + ": cluster offsets must run from 0 to n_samples");
  for (int64_t k = 0; k < n_clusters; ++k)
    if (cluster_offsets[k + 1] < cluster_offsets[k])
      throw std::invalid_argument(op + ": cluster offsets must be non-decreasing");
  std::fill(sums, sums + n_samples * n_clusters, 0.0);
  switch (metric) {
    case Metric::euclidean:
      return run<Metric::euclidean>(X, n_features, cluster_offsets, n_clusters, sums);
    case Metric::sqeuclidean:
      return run<Metric::sqeuclidean>(X, n_features, cluster_offsets, n_clusters, sums);
    case Metric::cosine:
      return run<Metric::cosine>(X, n_features, cluster_offsets, n_clusters, sums);
    case Metric::manhattan:
      return run<Metric::manhattan>(X, n_features, cluster_offsets, n_clusters, sums);
  }
}

}  // namespace fastlatent::cpu
