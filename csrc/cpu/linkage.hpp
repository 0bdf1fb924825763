// Hierarchical clustering (linkage) kernels of fastlatent's CPU module.
//
// X is [n x n_features] row-major, C-contiguous; the output Z is [(n - 1) x 4] float64 in SciPy's
// linkage format: row i merges clusters Z[i, 0] and Z[i, 1] (leaves 0..n-1, row i makes cluster
// n + i) at height Z[i, 2] into a cluster of Z[i, 3] rows, rows sorted by height (stable).
// Columns 0 and 1 are in merge order: single linkage (the side already in Prim's tree, the
// joining side), as SciPy's Prim makes them before sorting and scikit-learn reports them; the
// other methods (smaller id, larger id). All arithmetic is in double whatever the input dtype.
// Same algorithms and tie-breaking as SciPy (see linkage.cpp), so merges agree up to ties.
#pragma once

#include <cstdint>
#include <string>

#include "cpu/distances.hpp"

namespace fastlatent::cpu {

enum class LinkageMethod { ward, complete, average, single };

// "ward", "complete", "average" or "single"; anything else throws std::invalid_argument.
LinkageMethod parse_linkage_method(const std::string& name, const char* op);

// The linkage matrix of X.
//   [in]  X  [n x n_features]
//   [out] Z  [(n - 1) x 4]
// n >= 2. Ward needs metric euclidean. Memory: Ward and single O(n * n_features) doubles;
// complete and average a condensed matrix of n(n-1)/2 doubles (std::bad_alloc when it does not
// fit: the Python layer checks the memory available first).
void linkage(const float* X, int64_t n, int64_t n_features, LinkageMethod method, Metric metric,
             double* Z);
void linkage(const double* X, int64_t n, int64_t n_features, LinkageMethod method,
             Metric metric, double* Z);

}  // namespace fastlatent::cpu
