// Distance kernels of fastlatent's CPU module: full distance matrix, nearest row, k nearest rows.
//
// Every array is row-major and C-contiguous: X is [n_x x n_features], Y is [n_y x n_features].
// The caller owns all memory; outputs are passed in. One concrete overload per dtype (float,
// double); the templates behind them live in distances.cpp. Each function checks its own
// preconditions and throws std::invalid_argument naming the op and the bad value.
// Ties go to the lower index of Y, as in the NumPy reference backend.
#pragma once

#include <cstdint>
#include <string>

namespace fastlatent::cpu {

enum class Metric { euclidean, sqeuclidean, cosine, manhattan };

// "euclidean", "sqeuclidean", "cosine" or "manhattan"; anything else throws
// std::invalid_argument naming `op` and the metric given.
Metric parse_metric(const std::string& name, const char* op);

// Number of threads an OpenMP parallel region would use (omp_get_max_threads()).
int max_threads();

// out[i, j] = distance(X[i], Y[j]), computed in double in direct form, cast to the dtype.
//   [in]  X    [n_x x n_features]
//   [in]  Y    [n_y x n_features]
//   [out] out  [n_x x n_y]
void pairwise_distances(const float* X, int64_t n_x, const float* Y, int64_t n_y,
                        int64_t n_features, Metric metric, float* out);
void pairwise_distances(const double* X, int64_t n_x, const double* Y, int64_t n_y,
                        int64_t n_features, Metric metric, double* out);

// For each row of X, the index of its nearest row of Y and the distance to it.
//   [in]  X          [n_x x n_features]
//   [in]  Y          [n_y x n_features]
//   [out] indices    [n_x]
//   [out] distances  [n_x]
void pairwise_distances_argmin_min(const float* X, int64_t n_x, const float* Y, int64_t n_y,
                                   int64_t n_features, Metric metric, int64_t* indices,
                                   float* distances);
void pairwise_distances_argmin_min(const double* X, int64_t n_x, const double* Y, int64_t n_y,
                                   int64_t n_features, Metric metric, int64_t* indices,
                                   double* distances);

// For each row of X, its n_neighbors nearest rows of Y, sorted by (distance, index).
//   [in]  X          [n_x x n_features]
//   [in]  Y          [n_y x n_features]
//   [out] distances  [n_x x n_neighbors]
//   [out] indices    [n_x x n_neighbors]
// 1 <= n_neighbors <= n_y.
void kneighbors(const float* X, int64_t n_x, const float* Y, int64_t n_y, int64_t n_features,
                int64_t n_neighbors, Metric metric, float* distances, int64_t* indices);
void kneighbors(const double* X, int64_t n_x, const double* Y, int64_t n_y, int64_t n_features,
                int64_t n_neighbors, Metric metric, double* distances, int64_t* indices);

}  // namespace fastlatent::cpu
