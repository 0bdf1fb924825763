// Gaussian mixture kernels of fastlatent's CPU module: the per-component log-densities of the
// rows of X, alone or fused with the E-step's log-sum-exp.
//
// Row-major, C-contiguous arrays; the caller owns all memory. One overload per dtype of X; the
// model parameters are float64 whatever X's dtype. Each function checks its own preconditions
// and throws std::invalid_argument naming the op.
// Precision of the E-step (gmm_estimate_log_prob, gmm_e_step):
//   float64 X: everything in float64.
//   float32 X: the squared Mahalanobis distances q (the n k d, and n d^2 for full/tied, part)
//     are computed and accumulated in float32 (8-lane vectors), as scikit-learn computes float32
//     input in float32; everything O(n k) after them (log-determinants, constants, log-sum-exp,
//     log_norm) in float64, as for float64 X. The rows and the means are first centred at m0,
//     the mean of the component means: x' = float(x - m0), mu' = mu - m0 (in float64; for full
//     and tied mu' @ P is computed in float64 and rounded once), so the rounding is relative to
//     the data's spread about m0, not to their distance from the origin:
//       |delta q| <~ (d + c) u32 M,  M = ||x' P||^2 + ||mu' P||^2 (full, tied),
//                                    M = sum_j ((|x'_j| + |mu'_j|) s_j)^2 (diag, spherical),
//     with c a few units (tests/tolerances.py, GMM_FLOAT32_Q_RTOL).
//   The result is stored in X's dtype.
// Precision of the M-step sums:
//   gmm_moments: float64 accumulation for both dtypes (its sums feed the caller's
//     E[x^2] - mean^2 (tied, diag, spherical), whose cancellation would amplify float32
//     accumulation error).
//   gmm_full_scatter, float64 X: float64.
//   gmm_full_scatter, float32 X: D = float(x - mu_c) and W = float(r (x - mu_c)), each rounded
//     once from the float64 difference; W^T D summed in float32 (8-lane FMA chains) over one
//     block of B rows, then added in float64 across blocks and threads. Per entry
//       |delta scatter_ab| <~ (B + 2) u32 sum_i r_i |x_ia - mu_ca| |x_ib - mu_cb|,
//     relative to the spread about the component's mean (no offset effect), B <= 64 rows
//     (32 at d = 128): at most ~4e-6 (tests/tolerances.py, GMM_FLOAT32_SCATTER_RTOL).
#pragma once

#include <cstdint>
#include <string>

namespace fastlatent::cpu {

enum class CovarianceType { Full, Tied, Diag, Spherical };

// "full", "tied", "diag" or "spherical"; anything else throws std::invalid_argument naming `op`.
CovarianceType parse_covariance_type(const std::string& name, const char* op);

// scikit-learn's _estimate_log_gaussian_prob: for each row x of X and each component c,
//   log N(x | mu_c, Sigma_c) = -0.5 * (d log(2 pi) + q) + sum log diag(P_c),
// with P_c the precision Cholesky factor (precision = P_c P_c^T) and q the squared Mahalanobis
// distance:
//   full, tied:  q = || x @ P_c - mu_c @ P_c ||^2           (the reference's formula; float32
//                                                            X: on the centred x' and mu')
//   diag:        q = sum_j ((x_j - mu_cj) * P_cj)^2         (direct form, exact, >= 0)
//   spherical:   q = sum_j (x_j - mu_cj)^2 * P_c^2          (direct form, exact, >= 0)
// The log-determinant term is sum_j log P_cjj (full), sum_j log P_jj (tied), sum_j log P_cj
// (diag), d log P_c (spherical).
//   [in]  X                    [n_samples x n_features]
//   [in]  means                [n_components x n_features], float64
//   [in]  precisions_cholesky  float64: full [n_components x d x d], tied [d x d],
//                              diag [n_components x d], spherical [n_components]
//   [out] log_prob             [n_samples x n_components], X's dtype
// The result does not depend on the number of threads.
void gmm_estimate_log_prob(const float* X, const double* means, const double* precisions_cholesky,
                           int64_t n_samples, int64_t n_features, int64_t n_components,
                           CovarianceType covariance_type, float* log_prob);
void gmm_estimate_log_prob(const double* X, const double* means, const double* precisions_cholesky,
                           int64_t n_samples, int64_t n_features, int64_t n_components,
                           CovarianceType covariance_type, double* log_prob);

// The E-step on the same log-densities, fused (the densities never leave the cache):
//   w_c = log_prob[i, c] + log_weights[c]
//   log_norm[i] = logsumexp_c w_c   (scipy's: max + log sum exp(w - max); -inf if all are -inf)
//   log_resp[i, c] = w_c - log_norm[i]
//   [in]  log_weights  [n_components], float64; -inf for a zero weight
//   [out] log_resp     [n_samples x n_components], X's dtype; with `responsibilities` the
//                      responsibilities exp(log_resp) instead, as exp(w_c - max_c w_c) / sum_c'
//                      exp(w_c' - max_c w_c) from the log-sum-exp's own exponentials (one
//                      division, where exp(log_resp) takes another exp per entry)
//   [out] log_norm     [n_samples], float64
// Other arguments as gmm_estimate_log_prob. The result does not depend on the number of threads.
void gmm_e_step(const float* X, const double* log_weights, const double* means,
                const double* precisions_cholesky, int64_t n_samples, int64_t n_features,
                int64_t n_components, CovarianceType covariance_type, float* log_resp,
                double* log_norm, bool responsibilities = false);
void gmm_e_step(const double* X, const double* log_weights, const double* means,
                const double* precisions_cholesky, int64_t n_samples, int64_t n_features,
                int64_t n_components, CovarianceType covariance_type, double* log_resp,
                double* log_norm, bool responsibilities = false);

// The responsibilities from the log-responsibilities: resp[e] = exp(log_resp[e]), e < n, in
// float64 (a vectorised exp within a few ulps of std::exp), stored in the input's dtype.
void gmm_responsibilities(const float* log_resp, float* resp, int64_t n);
void gmm_responsibilities(const double* log_resp, double* resp, int64_t n);

// The M-step's sums over the rows (scikit-learn's _estimate_gaussian_parameters before the
// divisions, which the caller does on these k x d^2 numbers):
//   nk[c]      = sum_i resp[i, c]
//   sums[c, :] = sum_i resp[i, c] X[i, :]
//   extra:  tied       [d x d]  X^T X
//           diag, spherical [k x d]  sum_i resp[i, c] X[i, :]^2
//           full       unused (may be null): see gmm_full_scatter
//   [in]  X     [n_samples x n_features]
//   [in]  resp  [n_samples x n_components], X's dtype
//   [out] nk [n_components], sums [n_components x n_features], extra: all float64
// Summed in float64 per thread in row order, then the per-thread partials in thread order: the
// last bits may depend on the number of threads.
void gmm_moments(const float* X, const float* resp, int64_t n_samples, int64_t n_features,
                 int64_t n_components, CovarianceType covariance_type, double* nk, double* sums,
                 double* extra);
void gmm_moments(const double* X, const double* resp, int64_t n_samples, int64_t n_features,
                 int64_t n_components, CovarianceType covariance_type, double* nk, double* sums,
                 double* extra);

// The weighted scatter matrices of the "full" M-step:
//   scatter[c] = sum_i resp[i, c] (X[i] - means[c]) (X[i] - means[c])^T
//   [in]  means    [n_components x n_features], float64
//   [out] scatter  [n_components x n_features x n_features], float64, symmetric
// Summed per block of rows (float64 X: in float64; float32 X: in float32, see the precision
// contract above), the blocks per thread in row order in float64, then the per-thread partials
// in thread order: the last bits may depend on the number of threads.
void gmm_full_scatter(const float* X, const float* resp, const double* means, int64_t n_samples,
                      int64_t n_features, int64_t n_components, double* scatter);
void gmm_full_scatter(const double* X, const double* resp, const double* means,
                      int64_t n_samples, int64_t n_features, int64_t n_components,
                      double* scatter);

}  // namespace fastlatent::cpu
