// CUDA distance kernels: the host entry points of csrc/cuda/distances.cu.
//
// Plain functions over device pointers and shapes, so that this header includes no CUDA header
// and csrc/bind_cuda.cpp compiles with the host compiler alone. All arrays are C-contiguous,
// row-major, on the current device:
//   x          [in]  n_x x n_features
//   y          [in]  n_y x n_features
//   out        [out] n_x x n_y                      (pairwise_distances)
//   indices    [out] n_x (argmin) or n_x x n_neighbors (kneighbors), int64
//   distances  [out] n_x (argmin) or n_x x n_neighbors (kneighbors)
// `stream` is a cudaStream_t (nullptr: the legacy default stream). Work is enqueued on it and
// not waited for; temporary memory comes from cudaMallocAsync/cudaFreeAsync on the same stream.
//
// Results equal the NumPy reference backend (fastlatent/backends/numpy.py): distances computed
// in float64 by the direct form, ties to the lower index. Errors: std::invalid_argument for bad
// arguments (sizes < 1, n_neighbors outside [1, n_y], n_y >= 2^31, null pointers),
// std::runtime_error naming the op and the CUDA error for any failed CUDA call or launch.
#pragma once

#include <cstdint>
#include <string>

namespace fastlatent::cuda {

enum class Metric { euclidean, sqeuclidean, cosine, manhattan };

// Number of CUDA devices; 0 (never an error) when there is no driver or no device.
int device_count() noexcept;

// Name of the current device, "" when there is none.
std::string device_name();

// out[i, j] = distance(x[i], y[j]).
void pairwise_distances(const float* x, const float* y, float* out, std::int64_t n_x,
                        std::int64_t n_y, std::int64_t n_features, Metric metric, void* stream);
void pairwise_distances(const double* x, const double* y, double* out, std::int64_t n_x,
                        std::int64_t n_y, std::int64_t n_features, Metric metric, void* stream);

// indices[i] = argmin_j distance(x[i], y[j]) (lowest j among equal minima),
// distances[i] = that distance. The n_x x n_y matrix is never formed.
void pairwise_distances_argmin_min(const float* x, const float* y, std::int64_t* indices,
                                   float* distances, std::int64_t n_x, std::int64_t n_y,
                                   std::int64_t n_features, Metric metric, void* stream);
void pairwise_distances_argmin_min(const double* x, const double* y, std::int64_t* indices,
                                   double* distances, std::int64_t n_x, std::int64_t n_y,
                                   std::int64_t n_features, Metric metric, void* stream);

// Row i of (distances, indices): the n_neighbors rows of y nearest to x[i], by increasing
// (distance, index). The n_x x n_y matrix is never formed.
void kneighbors(const float* x, const float* y, float* distances, std::int64_t* indices,
                std::int64_t n_x, std::int64_t n_y, std::int64_t n_features,
                std::int64_t n_neighbors, Metric metric, void* stream);
void kneighbors(const double* x, const double* y, double* distances, std::int64_t* indices,
                std::int64_t n_x, std::int64_t n_y, std::int64_t n_features,
                std::int64_t n_neighbors, Metric metric, void* stream);

}  // namespace fastlatent::cuda
