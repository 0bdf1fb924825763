"""Native CPU backend: the C++/OpenMP kernels of ``fastlatent._cpu`` (csrc/cpu/).

Same contract as ``fastlatent.backends.numpy`` (see its docstring): inputs are validated by
``fastlatent.ops`` (2-D, C-contiguous, finite, non-empty, one dtype, float32 or float64, same
number of columns); outputs have the input's dtype; indices are int64; ties go to the lower
index. The compiled functions take arrays without conversion, so a wrong dtype or layout is a
TypeError rather than a silent copy.

Full distance matrices are computed in the direct form, accumulated in float64. Nearest
neighbours under euclidean, sqeuclidean and cosine are screened with a GEMM in the input's
precision, then the winners are recomputed exactly in float64; a row whose screening margin
is within the proven rounding bound is recomputed whole, so indices equal the reference's.
Importing this module raises ImportError when the compiled module is missing, which the
backend registry reports as "unavailable".
"""

import numpy as np

from fastlatent import _cpu


def pairwise_distances(X, Y, metric):
    return _cpu.pairwise_distances(X, Y, metric)


def pairwise_distances_argmin_min(X, Y, metric):
    return _cpu.pairwise_distances_argmin_min(X, Y, metric)


def kneighbors(X, Y, n_neighbors, metric):
    return _cpu.kneighbors(X, Y, int(n_neighbors), metric)


def kmeans_update(X, sample_weight, labels, n_clusters):
    return _cpu.kmeans_update(X, sample_weight, labels, int(n_clusters))


def kmeans_distances(X, centers, labels):
    return _cpu.kmeans_distances(X, centers, labels)


def kmeans_step(X, sample_weight, centers, with_distances=True):
    return _cpu.kmeans_step(X, sample_weight, centers, with_distances)


def kmeans_plusplus_step(X, sample_weight, closest, candidates):
    best, potential, closest = _cpu.kmeans_plusplus_step(X, sample_weight, closest, candidates)
    return int(best), float(potential), closest


def _gmm_model(means, precisions_cholesky):
    """The mixture parameters as the kernels take them: float64, C-contiguous."""
    return (
        np.ascontiguousarray(means, dtype=np.float64),
        np.ascontiguousarray(precisions_cholesky, dtype=np.float64),
    )


def gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type):
    means, precisions_cholesky = _gmm_model(means, precisions_cholesky)
    return _cpu.gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type)


def gmm_e_step(X, weights, means, precisions_cholesky, covariance_type, responsibilities=False):
    means, precisions_cholesky = _gmm_model(means, precisions_cholesky)
    with np.errstate(divide="ignore"):  # a zero weight is a log-weight of -inf
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    log_resp, log_norm = _cpu.gmm_e_step(
        X, log_weights, means, precisions_cholesky, covariance_type, responsibilities
    )
    return np.float64(log_norm.sum() / X.shape[0]), log_resp


def gmm_e_step_responsibilities(X, weights, means, precisions_cholesky, covariance_type):
    """The E-step returning exp(log_resp), from the log-sum-exp's own exponentials."""
    return gmm_e_step(X, weights, means, precisions_cholesky, covariance_type, responsibilities=True)


def gmm_responsibilities(log_resp):
    return _cpu.gmm_responsibilities(np.ascontiguousarray(log_resp))


def gmm_m_step(X, resp, reg_covar, covariance_type):
    resp = np.ascontiguousarray(resp, dtype=X.dtype)
    nk, sums, extra = _cpu.gmm_moments(X, resp, covariance_type)
    nk += 10 * np.finfo(X.dtype).eps
    means = sums / nk[:, None]
    diagonal = np.arange(X.shape[1])
    if covariance_type == "full":
        covariances = _cpu.gmm_full_scatter(X, resp, means)
        covariances /= nk[:, None, None]
        covariances[:, diagonal, diagonal] += reg_covar
    elif covariance_type == "tied":
        covariances = (extra - (nk * means.T) @ means) / nk.sum()
        covariances[diagonal, diagonal] += reg_covar
    else:
        covariances = extra / nk[:, None] - means**2 + reg_covar
        if covariance_type == "spherical":
            covariances = covariances.mean(axis=1)
    return nk.astype(X.dtype), means.astype(X.dtype), covariances.astype(X.dtype)


def describe():
    return f"native C++ / OpenMP, {_cpu.max_threads()} threads"


def silhouette_cluster_sums(X, labels, n_clusters, metric):
    """The kernel takes float64 rows grouped by cluster: sort (stable), and for the GEMM form
    of euclidean distances centre the data first (distances do not change; |x|^2 shrinks,
    and with it the rounding of |x|^2 + |y|^2 - 2 x.y)."""
    order = np.argsort(labels, kind="stable")
    grouped = X[order].astype(np.float64)  # a new array either way
    if metric in ("euclidean", "sqeuclidean"):
        grouped -= grouped.mean(axis=0)
    offsets = np.zeros(int(n_clusters) + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=int(n_clusters)), out=offsets[1:])
    sums = np.empty((X.shape[0], int(n_clusters)), dtype=np.float64)
    sums[order] = _cpu.silhouette_cluster_sums(grouped, offsets, metric)
    return sums


# ---- soft nearest neighbour loss (csrc/cpu/snnl.cpp) ----
def snnl_loss_and_grad(X, labels, temperature, metric, eps, gradient):
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    loss, grad, grad_temperature = _cpu.snnl_loss_and_grad(
        X, labels, float(temperature), metric, float(eps), bool(gradient)
    )
    return np.float64(loss), grad, (None if grad_temperature is None else np.float64(grad_temperature))


def linkage(X, method, metric):
    return _cpu.linkage(X, method, metric)
