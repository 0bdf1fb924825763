// kmeans_step: one Lloyd iteration's work in one pass over X, the assignment (nearest centre,
// squared euclidean) and the weighted per-cluster sums of the update.
//
// The assignment is nearest_sqeuclidean (cpu/tile_engine.hpp), the same screened search as
// pairwise_distances_argmin_min(..., "sqeuclidean"): same labels, same distances, bit for bit.
// Each row is handed to the sink right after its exact re-check, while it is still in L1, and
// the sink adds sample_weight[i] * X[i] (float64) into the calling thread's partial sums
// [k x d] and weights [k]. Threads own contiguous ranges of rows, so each partial is summed in
// row order; the partials are then added in thread order. With one thread the sums are those
// of kmeans_update bit for bit; with more, they differ in the last bits, by the grouping of the
// final reduction, which depends on the thread count (labels and distances do not).
// Without `distances` (null) the exact distance is skipped: the bound then takes |x|^2 from
// the screening copy of the row (screening_norm_bound), and only rows re-checked exactly pay
// for a distance. Labels and sums are the same either way.
// Cost: 2 n k d flops (GEMM, in float32 for float32 and float64 input) + about 4 n d (exact
// distance, norm, sums, in double; 2 n d without distances); X read once. Memory: threads x
// (k d + k) doubles of partials.
#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/kmeans.hpp"
#include "cpu/tile_engine.hpp"

namespace fastlatent::cpu {
namespace {

using namespace detail;

template <class T>
struct KmeansSink {
  const T* sample_weight;
  int64_t n_features, n_clusters;
  int32_t* labels;
  T* distances;
  // Per thread, n_clusters x n_features sums then n_clusters weights, and 8 spare doubles
  // (64 bytes) so that no cache line is written by two threads.
  std::vector<double> partials;
  size_t stride = 0;
  int n_threads = 0;
  bool wants_distances() const { return distances != nullptr; }

  void prepare(int threads) {
    n_threads = threads;
    stride = size_t(n_clusters) * size_t(n_features + 1) + 8;
    partials.assign(size_t(threads) * stride, 0.0);
  }
  const double* sums_of(int thread) const { return partials.data() + size_t(thread) * stride; }
  const double* weights_of(int thread) const {
    return sums_of(thread) + size_t(n_clusters) * size_t(n_features);
  }
  void row(int thread, int64_t i, const T* x, int64_t label, double squared) {
    labels[i] = int32_t(label);
    if (distances) distances[i] = T(std::max(squared, 0.0));
    const double w = double(sample_weight[i]);
    double* sum = partials.data() + size_t(thread) * stride + size_t(label) * size_t(n_features);
    // The same expression as kmeans_update's, so one thread gives the same bits.
    for (int64_t d = 0; d < n_features; ++d) sum[d] += w * static_cast<double>(x[d]);
    partials[size_t(thread) * stride + size_t(n_clusters) * size_t(n_features) + size_t(label)] +=
        w;
  }
  // Thread order: thread 0's partial first, as 0.0 + p0 == p0.
  void reduce(double* out_sums, double* out_weights) const {
    const size_t kd = size_t(n_clusters) * size_t(n_features);
    std::fill(out_sums, out_sums + kd, 0.0);
    std::fill(out_weights, out_weights + n_clusters, 0.0);
    for (int t = 0; t < n_threads; ++t) {
      const double* s = sums_of(t);
      for (size_t e = 0; e < kd; ++e) out_sums[e] += s[e];
      const double* w = weights_of(t);
      for (int64_t k = 0; k < n_clusters; ++k) out_weights[k] += w[k];
    }
  }
};

template <class T>
void kmeans_step_impl(const T* X, const T* sample_weight, const T* centers, int64_t n_samples,
                      int64_t n_features, int64_t n_clusters, int32_t* labels, T* distances,
                      double* sums, double* weights) {
  if (n_samples < 0 || n_features < 1 || n_clusters < 1)
    throw std::invalid_argument("kmeans_step: bad shape (n_samples=" +
                                std::to_string(n_samples) + ", n_features=" +
                                std::to_string(n_features) + ", n_clusters=" +
                                std::to_string(n_clusters) + ")");
  if (n_clusters > int64_t(INT32_MAX))
    throw std::invalid_argument("kmeans_step: n_clusters must fit int32 labels, got " +
                                std::to_string(n_clusters));
  KmeansSink<T> sink{sample_weight, n_features, n_clusters, labels, distances, {}};
  nearest_sqeuclidean(X, n_samples, centers, n_clusters, n_features, Metric::sqeuclidean, sink);
  sink.reduce(sums, weights);
}

}  // namespace

void kmeans_step(const float* X, const float* sample_weight, const float* centers,
                 int64_t n_samples, int64_t n_features, int64_t n_clusters, int32_t* labels,
                 float* distances, double* sums, double* weights) {
  kmeans_step_impl(X, sample_weight, centers, n_samples, n_features, n_clusters, labels,
                   distances, sums, weights);
}

void kmeans_step(const double* X, const double* sample_weight, const double* centers,
                 int64_t n_samples, int64_t n_features, int64_t n_clusters, int32_t* labels,
                 double* distances, double* sums, double* weights) {
  kmeans_step_impl(X, sample_weight, centers, n_samples, n_features, n_clusters, labels,
                   distances, sums, weights);
}

}  // namespace fastlatent::cpu
