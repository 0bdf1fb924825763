"""The tolerance table: every comparison in the tests takes its rtol/atol from here.

Backends against the NumPy reference: the reference computes distances in float64 with the
direct form and casts to the input's dtype, and every backend reports exact distances, so
they agree to a few units of the output's rounding. Against scikit-learn, whose float64
euclidean uses the expanded form, the agreement is looser (its own cancellation).
"""

import numpy as np

# (rtol, atol) for distances, by dtype.
BACKEND_VS_REFERENCE = {np.float32: (2e-6, 1e-6), np.float64: (1e-12, 1e-12)}
REFERENCE_VS_SKLEARN = {np.float32: (1e-6, 1e-6), np.float64: (1e-9, 1e-9)}
# Two float64 distances closer than this (relative) are a tie: either index is right.
TIE_RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def distance_tol(table, dtype):
    rtol, atol = table[np.dtype(dtype).type]
    return {"rtol": rtol, "atol": atol}

# KMeans from the same initial centres (DESIGN.md): inertia rtol by dtype.
KMEANS_INERTIA_RTOL = {np.float32: 1e-4, np.float64: 1e-5}
KMEANS_CENTERS_RTOL = {np.float32: 1e-4, np.float64: 1e-7}

# GaussianMixture (DESIGN.md). The backends compute in float64 and return X's dtype, so they
# agree with the NumPy reference to float64 rounding (numba: rtol 1e-10), and in float32 to one
# float32 rounding of the output -- except the cpu backend's float32 E-step distances and full
# scatter, computed in float32 (GMM_FLOAT32_Q_RTOL, GMM_FLOAT32_SCATTER_RTOL below): on these
# tests' shapes (d <= 8, unit-scale data) their error stays within this float32 entry too
# (measured up to 0.15 of it), and the bound tests cover large d and offset data. Against
# scikit-learn: float64 is the same formula (a few ulps); in float32 scikit-learn computes in float32 (E[x^2] - mean^2 for
# "diag"/"spherical"/"tied" cancels), so parameters agree to rtol 1e-4 with an atol.
# (rtol, atol) by dtype.
GMM_BACKEND_VS_REFERENCE = {np.float32: (2e-6, 2e-5), np.float64: (1e-10, 1e-10)}
GMM_REFERENCE_VS_SKLEARN = {np.float32: (1e-4, 1e-3), np.float64: (1e-9, 1e-9)}
# Fits from the same initial parameters: lower_bound_ and lower_bounds_ (rtol), parameters
# (rtol, atol). In float32 scikit-learn's own rounding moves the lower bound by ~1e-5 along
# slow EM paths (random initialisations).
GMM_LOWER_BOUND_RTOL = {np.float32: 1e-4, np.float64: 1e-5}
GMM_PARAMETERS_TOL = {np.float32: (1e-4, 1e-4), np.float64: (1e-4, 1e-10)}


# The cpu backend's float32 E-step computes the squared Mahalanobis distances q in float32 (the
# rest in float64), on rows and means centred at m0 = the mean of the component means:
# x' = float(x - m0), mu' = mu - m0. Each q is a sum of d squares of terms each rounded a few
# times (x', the factor or scale rounded to float32, the FMA chain of x' @ P over d terms, mu' @ P
# rounded once, the difference, the square), so the standard bound is
#     |delta q| <= gamma_{d+c} * M,  gamma_m = m u / (1 - m u),  u = 2^-24,
# with M = ||x' P||^2 + ||mu' P||^2 (full, tied) or sum_j ((|x'_j| + |mu'_j|) s_j)^2 (diag,
# spherical): relative to the data's spread about m0, not to their distance from the origin
# (uncentred, M would hold |x|^2 |P|^2: at an offset of 1000 with unit spread, 1e6 times more).
# Observed worst cases (tests' shapes, d = 1 to 128, offsets 0 and 1000): |delta q| / (u M) up
# to ~6 at d = 1 and ~12 at d = 128 (rounding errors partly cancel: ~sqrt(d) growth). The
# tolerance is the worst-case form (d + 8) u, which holds every observed case with a margin of
# at least 1.5 (d = 1) and ~10 (d = 128). The log-probabilities' error is half of q's.
def GMM_FLOAT32_Q_RTOL(n_features):
    return (n_features + 8) * 2.0**-24


# The cpu backend's "full" M-step for float32 X (gmm_full_scatter) sums the weighted scatter
# S = sum_i r_i (x_i - mu)(x_i - mu)^T in float32 over each block of B rows, then adds the blocks
# (and the threads) in float64. D = float(x - mu) and W = float(r (x - mu)) are each rounded
# once from float64 (relative error u = 2^-24 each), each entry of a block is an FMA chain of B
# products (gamma_B), and the float64 additions cost O(2^-53). So, per entry,
#     |delta S_ab| <= ((1 + u)^2 (1 + gamma_B) - 1) M_ab + O(2^-53) ~ (B + 2) u M_ab,
#     M_ab = sum_i r_i |x_ia - mu_a| |x_ib - mu_b|,
# relative to the spread about each component's own mean (the difference is taken in float64
# before the rounding), not to the data's distance from the origin. Tolerance (B + 3) u, with B
# the kernel's float32 rows per block (cpu/mixture.cpp, full_scatter_impl): min(64,
# row_block(d)), row_block(d) = clamp(4096 // d, 8, 256) rounded down to a multiple of 4: B = 64
# for d <= 64, 32 at d = 128, so at most 67 u = 4.0e-6. Observed worst (tests' shapes, offsets 0
# and 1000): ~2 u (a block's rounding errors partly cancel). Summing all the rows in float32
# instead would make B = n: the test with 200,000 rows shows such a sum breaking this bound.
def GMM_FLOAT32_SCATTER_RTOL(n_features):
    row_block = min(max(4096 // max(n_features, 1), 8), 256) // 4 * 4
    return (min(64, row_block) + 3) * 2.0**-24


def gmm_tol(table, dtype):
    rtol, atol = table[np.dtype(dtype).type]
    return {"rtol": rtol, "atol": atol}

# Silhouette. Sums of distances per cluster: every backend computes in float64; the CPU kernel
# uses the GEMM form |x|^2 + |y|^2 - 2 x.y on centred rows, whose rounding (~D u |x|^2 per
# squared distance) is relative 1e-15 on spread-out data and up to ~1e-9 of a sum where many
# points nearly coincide far from the origin (tested). Silhouette values against
# scikit-learn: the rtol 1e-6 in float64, with an atol for values near zero; in
# float32 scikit-learn sums float32 distances (~1e-7 absolute here).
SILHOUETTE_SUMS_RTOL = 1e-8
SILHOUETTE_VS_SKLEARN = {np.float32: (1e-5, 1e-6), np.float64: (1e-6, 1e-7)}

# fastlatent.dask against the single-machine estimators: outputs computed from the two fits'
# parameters (which agree to KMEANS_CENTERS_RTOL / GMM_PARAMETERS_TOL, the blocks' float64
# sums being added in another order): transform distances, predict_proba, score_samples.
# (rtol, atol) by dtype.
DASK_OUTPUTS_TOL = {np.float32: (1e-4, 1e-5), np.float64: (1e-7, 1e-9)}


# Soft nearest neighbour loss (rtol, with atol = rtol * the largest |reference| value, since
# gradients mix terms of very different sizes and many entries are ~0). Backends against the
# NumPy reference: float64 kernels differ only by summation order and the online log-sum-exp
# (observed ~1e-13; 1e-10 leaves room for larger B). float32 kernels compute distances and
# exponentials in float32, so w_ij carries a relative error of about (d_ij / T) * 2^-24: up to
# ~1e-4 at d/T ~ 2000 in the tests; 1e-3 is the float32 target. Against the torch
# autograd B x B reference (the published formula): the 1e-5 (float64), 1e-3 (float32).
# Finite differences (central, step 1e-6, float64): truncation and rounding ~1e-7 relative.
SNNL_BACKEND_VS_REFERENCE_RTOL = {np.float32: 1e-3, np.float64: 1e-10}
SNNL_REFERENCE_VS_TORCH_RTOL = {np.float32: 1e-3, np.float64: 1e-5}
SNNL_FINITE_DIFFERENCE_RTOL = 1e-5


# Hierarchical clustering (linkage). Every backend computes in float64 whatever X's dtype (as
# SciPy does). Ward heights come from centroids here and from the Lance-Williams update in
# SciPy: the two roundings differ by a few float64 ulps per merge, compounded along the tree;
# average/complete/single use the same arithmetic as SciPy's and agree to the last bits, but
# native backends may sum a distance in another order. (rtol, atol) for merge heights.
LINKAGE_HEIGHT_TOL = (1e-9, 1e-12)
