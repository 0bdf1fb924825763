// CUDA kernels of the soft nearest neighbour loss (csrc/cuda/snnl.cu): the two streaming passes
// over tiles of the B x B distance matrix, which is never held. NEVER RUN: written in a session
// with no GPU; compiled only. fastlatent/backends/cuda.py calls them from
// `snnl_loss_and_grad_kernel`, which is not the backend's default until tested on a GPU.
//
// Plain functions over device pointers (C-contiguous, current device) and shapes; `stream` is a
// cudaStream_t (nullptr: the legacy default stream); work is enqueued, not waited for.
//   z         [in]  n x d, X's dtype: centred rows (squared euclidean) or unit rows (cosine)
//   squared   [in]  n, X's dtype: |z_i|^2
//   labels    [in]  n, int32 class codes
// Pass 1, per row i over j != i with s_ij = -d_ij / T (d from the expanded form, clipped at 0):
//   row_max [out] n float64: m_i = max_j s_ij;  same_sum, other_sum [out] n float64: sums of
//   exp(s_ij - m_i) over same-class / other-class j.
// Pass 2, from the row statistics log_denominator = log(eps + A_i), pick = p_i,
// one_minus_pick = 1 - p_i, scale = c_i = 1 / (B (eps + p_i)) (all n float64):
//   v [out] n x d float64: sum_j G_ij z_j;  row_sum [out] n float64: sum_j G_ij;
//   s_sum [out] n float64: sum_j g_ij s_ij;  G_ij = g_ij + g_ji, g_ij = c_i q_ij (p_i - [same]).
// The caller (Python, CuPy) finishes: the loss, log(eps + A_i), p_i, and the gradient
// -(2/T)(row_sum z - v) or (v - u (u.v)) / (T |x|), dL/dT = -sum(s_sum) / T.
// Errors: std::invalid_argument for bad sizes, std::runtime_error naming the op and the CUDA error.
#pragma once

#include <cstdint>

namespace fastlatent::cuda {

void snnl_row_stats(const float* z, const float* squared, const std::int32_t* labels, std::int64_t n,
                    std::int64_t d, bool cosine, double temperature, double* row_max, double* same_sum,
                    double* other_sum, void* stream);
void snnl_row_stats(const double* z, const double* squared, const std::int32_t* labels, std::int64_t n,
                    std::int64_t d, bool cosine, double temperature, double* row_max, double* same_sum,
                    double* other_sum, void* stream);

void snnl_gradient_sums(const float* z, const float* squared, const std::int32_t* labels, std::int64_t n,
                        std::int64_t d, bool cosine, double temperature, const double* log_denominator,
                        const double* pick, const double* one_minus_pick, const double* scale, double* v,
                        double* row_sum, double* s_sum, void* stream);
void snnl_gradient_sums(const double* z, const double* squared, const std::int32_t* labels, std::int64_t n,
                        std::int64_t d, bool cosine, double temperature, const double* log_denominator,
                        const double* pick, const double* one_minus_pick, const double* scale, double* v,
                        double* row_sum, double* s_sum, void* stream);

}  // namespace fastlatent::cuda
