"""NumPy backend: the readable reference for every op.

Every other backend is tested against these functions, and these against scikit-learn.
Distances are computed in float64 with SciPy's ``cdist`` (direct form, no cancellation) and
cast back to the input's dtype. Work is done in row chunks so that the temporary float64
block stays near ``_CHUNK_ELEMENTS`` elements, whatever the shapes.

Backend contract (the same in every backend module):
inputs are validated by ``fastlatent.ops``: 2-D, C-contiguous, finite, non-empty, one dtype
(float32 or float64) for X and Y, the same number of columns; ``metric`` is one of
``METRICS``. Outputs have the input's dtype; indices are int64. Ties go to the lower index.
"""

import numpy as np
from scipy.spatial.distance import cdist

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")
_CHUNK_ELEMENTS = 1 << 22


def _distance_block(X, Y, metric):
    """Exact distances between the rows of X and Y, in float64."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if metric == "cosine":
        # A zero vector has cosine similarity 0 with everything (scikit-learn's convention).
        Xn = X / _safe_norms(X)[:, None]
        Yn = Y / _safe_norms(Y)[:, None]
        return np.clip(1.0 - Xn @ Yn.T, 0.0, 2.0)
    return cdist(X, Y, "cityblock" if metric == "manhattan" else metric)


def _safe_norms(A):
    norms = np.sqrt(np.einsum("ij,ij->i", A, A))
    norms[norms == 0.0] = 1.0
    return norms


def _row_chunks(n_rows, n_cols):
    step = max(1, _CHUNK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def pairwise_distances(X, Y, metric):
    out = np.empty((X.shape[0], Y.shape[0]), dtype=X.dtype)
    for rows in _row_chunks(X.shape[0], Y.shape[0]):
        out[rows] = _distance_block(X[rows], Y, metric)
    return out


def pairwise_distances_argmin_min(X, Y, metric):
    indices = np.empty(X.shape[0], dtype=np.int64)
    distances = np.empty(X.shape[0], dtype=X.dtype)
    for rows in _row_chunks(X.shape[0], Y.shape[0]):
        block = _distance_block(X[rows], Y, metric)
        indices[rows] = np.argmin(block, axis=1)  # first index among equal minima
        distances[rows] = block[np.arange(block.shape[0]), indices[rows]]
    return indices, distances


def kneighbors(X, Y, n_neighbors, metric):
    distances = np.empty((X.shape[0], n_neighbors), dtype=X.dtype)
    indices = np.empty((X.shape[0], n_neighbors), dtype=np.int64)
    for rows in _row_chunks(X.shape[0], Y.shape[0]):
        block = _distance_block(X[rows], Y, metric)
        order = np.argsort(block, axis=1, kind="stable")[:, :n_neighbors]
        indices[rows] = order
        distances[rows] = np.take_along_axis(block, order, axis=1)
    return distances, indices


def describe():
    return f"NumPy {np.__version__} (reference)"


def kmeans_update(X, sample_weight, labels, n_clusters):
    """Per-cluster weighted sums (float64, summed in row order) and weights."""
    weights = np.bincount(labels, weights=sample_weight.astype(np.float64), minlength=n_clusters)
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, X.astype(np.float64) * sample_weight.astype(np.float64)[:, None])
    return sums, weights


# --------------------------------------------------------------------------- Gaussian mixtures
#
# scikit-learn's formulas (``sklearn/mixture/_gaussian_mixture.py``), computed in float64 in
# row blocks of about ``_CHUNK_ELEMENTS`` elements and returned in X's dtype. Parameters may
# come in either float dtype; they are read in float64. See ``fastlatent.ops.mixture`` for
# the layouts per ``covariance_type``.

_LOG_2PI = float(np.log(2.0 * np.pi))


def _gmm_log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """log det of each precision Cholesky factor (= -1/2 log det of the covariance), (k,)."""
    if covariance_type == "full":
        return np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.log(np.diag(precisions_cholesky)).sum()
    if covariance_type == "diag":
        return np.log(precisions_cholesky).sum(axis=1)
    return n_features * np.log(precisions_cholesky)


def _gmm_squared_mahalanobis(X, means, precisions_cholesky, covariance_type):
    """(rows, k) float64: ``||(x - mu_k) @ P_k||**2``, never an (rows, k, d) array."""
    X = np.asarray(X, dtype=np.float64)
    n_components = means.shape[0]
    if covariance_type == "full":
        out = np.empty((X.shape[0], n_components))
        for k in range(n_components):
            y = X @ precisions_cholesky[k] - means[k] @ precisions_cholesky[k]
            out[:, k] = np.einsum("ij,ij->i", y, y)
    elif covariance_type == "tied":
        out = np.empty((X.shape[0], n_components))
        X_projected = X @ precisions_cholesky  # the same for every component
        means_projected = means @ precisions_cholesky
        for k in range(n_components):
            y = X_projected - means_projected[k]
            out[:, k] = np.einsum("ij,ij->i", y, y)
    elif covariance_type == "diag":
        precisions = precisions_cholesky**2
        out = (
            (means**2 * precisions).sum(axis=1)
            - 2.0 * (X @ (means * precisions).T)
            + (X**2) @ precisions.T
        )
    else:
        precisions = precisions_cholesky**2
        out = (
            (means**2).sum(axis=1) * precisions
            - 2.0 * (X @ means.T * precisions)
            + np.outer(np.einsum("ij,ij->i", X, X), precisions)
        )
    # The expanded forms may round below zero; the quadratic form cannot.
    return np.maximum(out, 0.0, out=out)


def _gmm_log_prob_block(X, means, precisions_cholesky, covariance_type, log_det):
    n_features = X.shape[1]
    squared = _gmm_squared_mahalanobis(X, means, precisions_cholesky, covariance_type)
    return -0.5 * (n_features * _LOG_2PI + squared) + log_det


def _gmm_float64_model(means, precisions_cholesky, covariance_type):
    means = np.asarray(means, dtype=np.float64)
    precisions_cholesky = np.asarray(precisions_cholesky, dtype=np.float64)
    log_det = _gmm_log_det_cholesky(precisions_cholesky, covariance_type, means.shape[1])
    return means, precisions_cholesky, log_det


def gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type):
    """log N(x | mu_k, Sigma_k), (n, k) of X's dtype (scikit-learn's
    ``_estimate_log_gaussian_prob``)."""
    means, precisions_cholesky, log_det = _gmm_float64_model(means, precisions_cholesky, covariance_type)
    n_components, n_features = means.shape
    log_prob = np.empty((X.shape[0], n_components), dtype=X.dtype)
    for rows in _row_chunks(X.shape[0], max(n_features, n_components)):
        log_prob[rows] = _gmm_log_prob_block(X[rows], means, precisions_cholesky, covariance_type, log_det)
    return log_prob


def gmm_e_step(X, weights, means, precisions_cholesky, covariance_type):
    """(mean over rows of log p(x) as float64, log-responsibilities (n, k) of X's dtype)."""
    from scipy.special import logsumexp

    means, precisions_cholesky, log_det = _gmm_float64_model(means, precisions_cholesky, covariance_type)
    n_components, n_features = means.shape
    with np.errstate(divide="ignore"):  # a zero weight is a log-weight of -inf
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    log_resp = np.empty((X.shape[0], n_components), dtype=X.dtype)
    total = 0.0
    for rows in _row_chunks(X.shape[0], max(n_features, n_components)):
        weighted = _gmm_log_prob_block(X[rows], means, precisions_cholesky, covariance_type, log_det)
        weighted += log_weights
        log_norm = logsumexp(weighted, axis=1)
        with np.errstate(under="ignore"):
            log_resp[rows] = weighted - log_norm[:, None]
        total += float(log_norm.sum())
    return np.float64(total / X.shape[0]), log_resp


def gmm_m_step(X, resp, reg_covar, covariance_type):
    """(nk (k,), means (k, d), covariances) of X's dtype: scikit-learn's
    ``_estimate_gaussian_parameters``, with ``nk = resp.sum(0) + 10 * eps(X.dtype)``."""
    n_samples, n_features = X.shape
    n_components = resp.shape[1]
    chunks = list(_row_chunks(n_samples, max(n_features, n_components)))
    nk = np.zeros(n_components)
    sums = np.zeros((n_components, n_features))
    for rows in chunks:
        block_resp = np.asarray(resp[rows], dtype=np.float64)
        nk += block_resp.sum(axis=0)
        sums += block_resp.T @ np.asarray(X[rows], dtype=np.float64)
    nk += 10 * np.finfo(X.dtype).eps
    means = sums / nk[:, None]

    if covariance_type == "full":
        covariances = np.zeros((n_components, n_features, n_features))
        for rows in chunks:
            block = np.asarray(X[rows], dtype=np.float64)
            block_resp = np.asarray(resp[rows], dtype=np.float64)
            for k in range(n_components):
                diff = block - means[k]
                covariances[k] += (block_resp[:, k] * diff.T) @ diff
        covariances /= nk[:, None, None]
        covariances[:, np.arange(n_features), np.arange(n_features)] += reg_covar
    elif covariance_type == "tied":
        second_moment = np.zeros((n_features, n_features))
        for rows in chunks:
            block = np.asarray(X[rows], dtype=np.float64)
            second_moment += block.T @ block
        covariances = (second_moment - (nk * means.T) @ means) / nk.sum()
        covariances[np.arange(n_features), np.arange(n_features)] += reg_covar
    else:
        squares = np.zeros((n_components, n_features))
        for rows in chunks:
            block = np.asarray(X[rows], dtype=np.float64)
            squares += np.asarray(resp[rows], dtype=np.float64).T @ (block * block)
        covariances = squares / nk[:, None] - means**2 + reg_covar
        if covariance_type == "spherical":
            covariances = covariances.mean(axis=1)
    return nk.astype(X.dtype), means.astype(X.dtype), covariances.astype(X.dtype)


# --------------------------------------------------------------------------- k-means++ seeding


def kmeans_plusplus_step(X, sample_weight, closest, candidates):
    """One greedy k-means++ step: (best position in ``candidates``, its potential, new closest).

    ``sample_weight`` and ``closest`` are float64 (n,), ``candidates`` int64 (t,) rows of X.
    The squared distances to the candidates are ``pairwise_distances`` (float64, rounded to
    X's dtype) widened to float64; the potential of candidate j is
    ``sum_i w_i * min(closest_i, d_ij)``; the least potential wins, ties to the lower position.
    """
    to_candidates = np.asarray(pairwise_distances(X, X[candidates], "sqeuclidean"), dtype=np.float64).T
    to_candidates = np.minimum(closest, to_candidates)
    potentials = to_candidates @ np.asarray(sample_weight, dtype=np.float64)
    best = int(np.argmin(potentials))
    return best, float(potentials[best]), np.ascontiguousarray(to_candidates[best])


def silhouette_cluster_sums(X, labels, n_clusters, metric):
    """sums[i, k] = sum of distance(X[i], X[j]) over rows j != i with labels[j] == k (float64).

    Row chunks of the exact float64 distance matrix, each multiplied by the one-hot matrix of
    the labels.
    """
    one_hot = np.zeros((X.shape[0], n_clusters), dtype=np.float64)
    one_hot[np.arange(X.shape[0]), labels] = 1.0
    sums = np.empty((X.shape[0], n_clusters), dtype=np.float64)
    for rows in _row_chunks(X.shape[0], X.shape[0]):
        block = _distance_block(X[rows], X, metric)
        block[np.arange(block.shape[0]), np.arange(rows.start, rows.stop)] = 0.0  # j == i
        sums[rows] = block @ one_hot
    return sums


# ---- soft nearest neighbour loss (B x B reference: fastlatent/backends/_snnl_numpy.py) ----
from ._snnl_numpy import snnl_loss_and_grad  # noqa: E402
