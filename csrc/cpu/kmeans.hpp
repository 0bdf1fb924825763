// k-means kernels of fastlatent's CPU module (the assignment is the fused argmin in distances).
//
// Row-major, C-contiguous arrays; the caller owns all memory. One overload per dtype. Each
// function checks its own preconditions and throws std::invalid_argument naming the op.
#pragma once

#include <cstdint>

namespace fastlatent::cpu {

// Weighted per-cluster sums and weights, the M-step of Lloyd's algorithm:
//   sums[k, :] = sum over i with labels[i] == k of sample_weight[i] * X[i, :]
//   weights[k] = sum over i with labels[i] == k of sample_weight[i]
//   [in]  X              [n_samples x n_features]
//   [in]  sample_weight  [n_samples]
//   [in]  labels         [n_samples], each in [0, n_clusters)
//   [out] sums           [n_clusters x n_features], float64
//   [out] weights        [n_clusters], float64
// Every sum is accumulated in float64 in row order, so the result does not depend on the
// number of threads.
void kmeans_update(const float* X, const float* sample_weight, const int32_t* labels,
                   int64_t n_samples, int64_t n_features, int64_t n_clusters, double* sums,
                   double* weights);
void kmeans_update(const double* X, const double* sample_weight, const int32_t* labels,
                   int64_t n_samples, int64_t n_features, int64_t n_clusters, double* sums,
                   double* weights);

}  // namespace fastlatent::cpu
