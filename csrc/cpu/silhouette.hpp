// Silhouette kernel of fastlatent's CPU module: per-point sums of distances to every cluster.
#pragma once

#include <cstdint>

#include "cpu/distances.hpp"

namespace fastlatent::cpu {

// sums[i * n_clusters + k] = sum over rows j != i of cluster k of distance(X[i], X[j]).
//   [in]  X                [n_samples x n_features], rows grouped by cluster: the rows of
//                          cluster k are cluster_offsets[k] .. cluster_offsets[k + 1] - 1
//   [in]  cluster_offsets  [n_clusters + 1], non-decreasing, from 0 to n_samples
//   [out] sums             [n_samples x n_clusters]
// Distances from a GEMM in double (euclidean and sqeuclidean: |x|^2 + |y|^2 - 2 x.y, clipped
// at zero; cosine: 1 - x.y of unit rows, clipped to [0, 2]; manhattan: direct), each pair
// computed once and added to both of its rows. The summation order is fixed, so the result
// does not depend on the number of threads.
void silhouette_cluster_sums(const double* X, int64_t n_samples, int64_t n_features,
                             const int64_t* cluster_offsets, int64_t n_clusters, Metric metric,
                             double* sums);

}  // namespace fastlatent::cpu
