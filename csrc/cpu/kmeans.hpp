// k-means kernels of fastlatent's CPU module: the update alone, the fused step (assignment
// and update in one pass over X), and the k-means++ seeding step.
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

// The squared euclidean distance of every row to its own centre (scikit-learn's _inertia
// before the weighted sum, and what a Lloyd loop needs when the step skipped its distances):
//   distances[i] = |X[i] - centers[labels[i]]|^2
// summed exactly in float64 in the order of the k-means step's and the argmin's exact path, so
// with the labels of kmeans_step(X, ., centers) these are its distances bit for bit; rounded
// to X's dtype. Does not depend on the number of threads.
//   [in]  X        [n_samples x n_features]
//   [in]  centers  [n_clusters x n_features]
//   [in]  labels   [n_samples], each in [0, n_clusters)
//   [out] distances [n_samples]
void kmeans_distances(const float* X, const float* centers, const int32_t* labels,
                      int64_t n_samples, int64_t n_features, int64_t n_clusters,
                      float* distances);
void kmeans_distances(const double* X, const double* centers, const int32_t* labels,
                      int64_t n_samples, int64_t n_features, int64_t n_clusters,
                      double* distances);

// One Lloyd iteration in one pass over X: the nearest centre of every row and, while the row
// is in cache, its weighted contribution to that centre's sum.
//   [in]  X              [n_samples x n_features]
//   [in]  sample_weight  [n_samples]
//   [in]  centers        [n_clusters x n_features]
//   [out] labels         [n_samples], the nearest centre (squared euclidean), ties to the
//                        lower index: pairwise_distances_argmin_min(X, centers, sqeuclidean)'s
//   [out] distances      [n_samples], the exact squared distance (float64) cast to the dtype,
//                        bit for bit that function's; may be null: then the step skips them
//                        (about 8% of its time at 100,000 x 64, K=16; kmeans_distances gives
//                        the same values later, should they be needed)
//   [out] sums           [n_clusters x n_features], float64, as kmeans_update on `labels`
//   [out] weights        [n_clusters], float64
// Labels and distances do not depend on the number of threads. Sums and weights are summed in
// float64 per thread in row order, then the per-thread partials are added in thread order: with
// one thread they equal kmeans_update's bit for bit, with more they may differ in the last
// bits. Uses threads x (n_clusters x n_features + n_clusters) doubles of scratch.
void kmeans_step(const float* X, const float* sample_weight, const float* centers,
                 int64_t n_samples, int64_t n_features, int64_t n_clusters, int32_t* labels,
                 float* distances, double* sums, double* weights);
void kmeans_step(const double* X, const double* sample_weight, const double* centers,
                 int64_t n_samples, int64_t n_features, int64_t n_clusters, int32_t* labels,
                 double* distances, double* sums, double* weights);

// One greedy k-means++ step (scikit-learn's _kmeans_plusplus) in one pass over X: for each
// candidate row c = candidates[j],
//   potential_j = sum_i sample_weight[i] * min(closest[i], |x_i - x_c|^2)
// and the candidate of least potential (ties to the lower position) is kept.
//   [in]  X              [n_samples x n_features]
//   [in]  sample_weight  [n_samples], float64
//   [in]  closest        [n_samples], float64: squared distance to the nearest chosen centre
//                        (+inf before the first)
//   [in]  candidates     [n_candidates], rows of X, each in [0, n_samples)
//   [out] best_position  the position in `candidates` of the kept candidate
//   [out] best_potential its potential
//   [out] new_closest    [n_samples], float64: min(closest, |x_i - x_best|^2)
// |x_i - x_c|^2 is pairwise_distances(X, X[candidates], sqeuclidean)'s value bit for bit (the
// exact direct form in double, rounded to X's dtype), widened to float64. Potentials are summed
// per thread in row order, then the per-thread partials in thread order: deterministic for a
// given number of threads, which may change their last bits (and so the choice on a near tie).
// Uses n_candidates x n_samples doubles of scratch.
void kmeans_plusplus_step(const float* X, const double* sample_weight, const double* closest,
                          const int64_t* candidates, int64_t n_samples, int64_t n_features,
                          int64_t n_candidates, int64_t* best_position, double* best_potential,
                          double* new_closest);
void kmeans_plusplus_step(const double* X, const double* sample_weight, const double* closest,
                          const int64_t* candidates, int64_t n_samples, int64_t n_features,
                          int64_t n_candidates, int64_t* best_position, double* best_potential,
                          double* new_closest);

}  // namespace fastlatent::cpu
