// kmeans_update: weighted per-cluster sums and weights (the M-step of Lloyd's algorithm).
//
// Layout: X [n x d] row-major, labels [n] int32, sums [k x d] and weights [k] in float64.
// Parallel over blocks of columns, never over rows: each thread owns whole columns of `sums`,
// scans every row in order and adds its columns of that row. So each sum is accumulated in
// row order whatever the thread count (labels then agree between 1 and N threads), and
// threads never write the same memory. The first block also accumulates `weights`.
// Cost: n*d multiply-adds; reads n*d*sizeof(T) + n*(4 + sizeof(T)) bytes once per column
// block, which is memory-bound: a fraction of one assignment pass (2*n*k*d flops).
//
// kmeans_distances: each row's squared distance to its own centre, one row per iteration of
// a static parallel loop, with the tile engine's exact sums (so the k-means step's bits).
// Cost: 3*n*d flops in double, X read once.
#include "cpu/kmeans.hpp"
#include "cpu/parallel.hpp"
#include "cpu/tile_engine.hpp"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace fastlatent::cpu {
namespace {

// 16 doubles of sums per cluster and thread: two cache lines, no false sharing between
// threads, and enough blocks for a few threads at d >= 64.
constexpr int64_t kColumnBlock = 16;

void check_labels(const char* op, const int32_t* labels, int64_t n_samples, int64_t n_clusters) {
  for (int64_t i = 0; i < n_samples; ++i)
    if (labels[i] < 0 || labels[i] >= n_clusters)
      throw std::invalid_argument(std::string(op) + ": labels[" + std::to_string(i) + "] = " +
                                  std::to_string(labels[i]) + " is not in [0, " +
                                  std::to_string(n_clusters) + ")");
}

void check_shape(const char* op, int64_t n_samples, int64_t n_features, int64_t n_clusters) {
  if (n_samples < 0 || n_features < 1 || n_clusters < 1)
    throw std::invalid_argument(std::string(op) + ": bad shape (n_samples=" +
                                std::to_string(n_samples) + ", n_features=" +
                                std::to_string(n_features) + ", n_clusters=" +
                                std::to_string(n_clusters) + ")");
}

template <class T>
void kmeans_distances_impl(const T* X, const T* centers, const int32_t* labels,
                           int64_t n_samples, int64_t n_features, int64_t n_clusters,
                           T* distances) {
  const char* op = "kmeans_distances";
  check_shape(op, n_samples, n_features, n_clusters);
  check_labels(op, labels, n_samples, n_clusters);
#pragma omp parallel for schedule(static) num_threads(detail::threads_for(double(n_samples) * double(n_features)))
  for (int64_t i = 0; i < n_samples; ++i) {
    const T* x = X + i * n_features;
    const T* c = centers + int64_t(labels[i]) * n_features;
    // One centre: the engine's single-row path (one FMA chain), which the step takes then.
    const double squared = n_clusters == 1
                               ? detail::single_row_distance(x, c, n_features)
                               : detail::reduce_pair<detail::SquaredDifference>(x, c, n_features);
    distances[i] = T(std::max(squared, 0.0));
  }
}

template <class T>
void kmeans_update_impl(const T* X, const T* sample_weight, const int32_t* labels,
                        int64_t n_samples, int64_t n_features, int64_t n_clusters,
                        double* sums, double* weights) {
  const char* op = "kmeans_update";
  check_shape(op, n_samples, n_features, n_clusters);
  check_labels(op, labels, n_samples, n_clusters);

  std::fill(sums, sums + n_clusters * n_features, 0.0);
  std::fill(weights, weights + n_clusters, 0.0);
  const int64_t n_blocks = (n_features + kColumnBlock - 1) / kColumnBlock;

#pragma omp parallel for schedule(static) num_threads(detail::threads_for(double(n_samples) * double(n_features)))
  for (int64_t block = 0; block < n_blocks; ++block) {
    const int64_t begin = block * kColumnBlock;
    const int64_t end = std::min(n_features, begin + kColumnBlock);
    for (int64_t i = 0; i < n_samples; ++i) {
      const double w = static_cast<double>(sample_weight[i]);
      const T* row = X + i * n_features;
      double* sum = sums + static_cast<int64_t>(labels[i]) * n_features;
      for (int64_t j = begin; j < end; ++j) sum[j] += w * static_cast<double>(row[j]);
      if (block == 0) weights[labels[i]] += w;
    }
  }
}

}  // namespace

void kmeans_distances(const float* X, const float* centers, const int32_t* labels,
                      int64_t n_samples, int64_t n_features, int64_t n_clusters,
                      float* distances) {
  kmeans_distances_impl(X, centers, labels, n_samples, n_features, n_clusters, distances);
}

void kmeans_distances(const double* X, const double* centers, const int32_t* labels,
                      int64_t n_samples, int64_t n_features, int64_t n_clusters,
                      double* distances) {
  kmeans_distances_impl(X, centers, labels, n_samples, n_features, n_clusters, distances);
}

void kmeans_update(const float* X, const float* sample_weight, const int32_t* labels,
                   int64_t n_samples, int64_t n_features, int64_t n_clusters, double* sums,
                   double* weights) {
  kmeans_update_impl(X, sample_weight, labels, n_samples, n_features, n_clusters, sums, weights);
}

void kmeans_update(const double* X, const double* sample_weight, const int32_t* labels,
                   int64_t n_samples, int64_t n_features, int64_t n_clusters, double* sums,
                   double* weights) {
  kmeans_update_impl(X, sample_weight, labels, n_samples, n_features, n_clusters, sums, weights);
}

}  // namespace fastlatent::cpu
