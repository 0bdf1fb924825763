// Soft nearest neighbour loss of fastlatent's CPU module (csrc/cpu/snnl.cpp): the loss of a batch
// and its exact gradient, streamed over tiles of the B x B distance matrix, never holding it.
// Definition, conventions and the gradient formulas: fastlatent/ops/snnl.py.
#pragma once

#include <cstdint>

namespace fastlatent::cpu {

// The soft nearest neighbour loss of the rows of X with class codes `labels`.
//   [in]  X            [n_samples x n_features], row-major
//   [in]  labels       [n_samples] int64 class codes (equal code = same class)
//   [in]  cosine       cosine distance when true, else squared euclidean
//   [in]  temperature  > 0
//   [in]  eps          >= 0
//   [out] loss         the mean loss (float64)
//   [out] grad         [n_samples x n_features] dL/dX, X's dtype; nullptr: loss only (one pass)
//   [out] grad_temperature  dL/dT (float64); ignored when grad is nullptr
// Requires n_samples >= 2, n_features >= 1; throws std::invalid_argument naming the op.
// The result does not depend on the number of threads.
void snnl_loss_and_grad(const float* X, const int64_t* labels, int64_t n_samples,
                        int64_t n_features, bool cosine, double temperature, double eps,
                        double* loss, float* grad, double* grad_temperature);
void snnl_loss_and_grad(const double* X, const int64_t* labels, int64_t n_samples,
                        int64_t n_features, bool cosine, double temperature, double eps,
                        double* loss, double* grad, double* grad_temperature);

}  // namespace fastlatent::cpu
