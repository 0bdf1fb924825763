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

from .._arrays import array_namespace

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


def kmeans_distances(X, centers, labels):
    """Squared distance of each row to its own centre, in float64 in row chunks (NumPy or
    CuPy arrays: the cuda backend uses this too)."""
    xp = array_namespace(X)
    out = xp.empty(X.shape[0], dtype=X.dtype)
    centers = centers.astype(np.float64)
    for rows in _row_chunks(X.shape[0], X.shape[1]):
        diff = X[rows].astype(np.float64) - centers[labels[rows]]
        out[rows] = (diff * diff).sum(axis=1)
    return out


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
    """log det of each precision Cholesky factor (= -1/2 log det of the covariance), (k,).
    NumPy or CuPy (``_gmm_blocked`` uses it too)."""
    xp = array_namespace(precisions_cholesky)
    if covariance_type == "full":
        return xp.log(xp.diagonal(precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return xp.log(xp.diagonal(precisions_cholesky)).sum()
    if covariance_type == "diag":
        return xp.log(precisions_cholesky).sum(axis=1)
    return n_features * xp.log(precisions_cholesky)


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


# --------------------------------------------------------------------------- hierarchical clustering
#
# ``linkage(X, method, metric)`` returns the linkage matrix Z, float64 (n - 1, 4): row i merges
# clusters Z[i, 0] and Z[i, 1] (leaves 0..n-1, the cluster made by row i is n + i) at height
# Z[i, 2] into a cluster of Z[i, 3] points; rows sorted by height (stable), numbered as SciPy
# numbers them. Columns 0 and 1 are in merge order: for single linkage (the side already in
# Prim's tree, the joining side), as scikit-learn's AgglomerativeClustering reports them; for
# the other methods (smaller, larger). SciPy's ``linkage`` sorts every pair (``fastlatent.linkage``
# does too). All arithmetic is float64 whatever X's dtype (SciPy's ``linkage`` does the same).
#
# The algorithms are the ones SciPy uses, with its tie-breaking, so merge orders agree up to ties:
# Ward, average and complete by the nearest-neighbour chain (Ward over centroids and sizes,
# O(n*d) memory; average and complete over a condensed distance matrix, n(n-1)/2 float64),
# single linkage by Prim's minimum spanning tree from row 0 (O(n) extra memory).

LINKAGE_METHODS = ("ward", "complete", "average", "single")


def _label_merges(pairs, heights, n_samples, sort_pairs):
    """Z from merges given as pairs of member rows: stable sort by height, then union-find.

    ``pairs[k]`` names one row of each of the two clusters merged at step k (any member: the
    union-find finds the cluster). This is SciPy's ``label`` step.
    """
    order = np.argsort(heights, kind="stable")
    Z = np.empty((n_samples - 1, 4), dtype=np.float64)
    parent = np.arange(2 * n_samples - 1)
    size = np.ones(2 * n_samples - 1, dtype=np.int64)

    def find(node):
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    for i, k in enumerate(order):
        a, b = find(pairs[k, 0]), find(pairs[k, 1])
        if sort_pairs and a > b:
            a, b = b, a
        new = n_samples + i
        parent[a] = parent[b] = new
        size[new] = size[a] + size[b]
        Z[i] = (a, b, heights[k], size[new])
    return Z


def _ward_nn_chain(X):
    """Ward merges by the nearest-neighbour chain over centroids (float64) and sizes.

    The Ward distance between clusters a and b is sqrt(2 n_a n_b / (n_a + n_b)) ||c_a - c_b||
    (SciPy's, which is the euclidean distance between two single points); the chain compares
    the Ward cost n_a n_b / (n_a + n_b) ||c_a - c_b||^2, a monotone function of it.
    """
    n = X.shape[0]
    centroids = np.array(X, dtype=np.float64)
    size = np.ones(n, dtype=np.float64)
    active = np.ones(n, dtype=bool)
    pairs = np.empty((n - 1, 2), dtype=np.int64)
    heights = np.empty(n - 1, dtype=np.float64)
    chain = []

    def ward_cost(x):
        diff = centroids - centroids[x]
        return size * size[x] / (size + size[x]) * np.einsum("ij,ij->i", diff, diff)

    for k in range(n - 1):
        x, y, best = _chain_merge(chain, active, ward_cost)
        pairs[k] = (x, y)
        heights[k] = np.sqrt(2.0 * best)
        # The merged cluster lives at the larger index (SciPy's convention).
        centroids[y] = (size[x] * centroids[x] + size[y] * centroids[y]) / (size[x] + size[y])
        size[y] += size[x]
        active[x] = False
    return pairs, heights


def _chain_merge(chain, active, cost_of):
    """Follow the nearest-neighbour chain (SciPy's nn_chain) to the next merge: (x < y, cost).

    ``cost_of(x)`` is a new array of the costs from cluster x to every cluster; inactive
    clusters and x itself are masked here. The chain is started at the first active cluster
    (as SciPy starts) and left holding the clusters below the merged pair.
    """
    if not chain:
        chain.append(int(np.argmax(active)))
    while True:
        x = chain[-1]
        cost = cost_of(x)
        cost[~active] = np.inf
        cost[x] = np.inf
        y, best = _nearest_with_previous(cost, chain)
        if len(chain) > 1 and y == chain[-2]:
            break
        chain.append(y)
    chain.pop()
    chain.pop()
    return min(x, y), max(x, y), best


def _nearest_with_previous(cost, chain):
    """The chain's next element, SciPy's way: the chain's previous element unless another
    cluster is strictly closer, and then the lowest index among the closest."""
    y = int(np.argmin(cost))
    if len(chain) > 1 and not cost[y] < cost[chain[-2]]:
        y = chain[-2]
    return y, float(cost[y])


def _condensed_row(n, x):
    """Positions in the condensed matrix (SciPy's ``pdist`` layout) of the pairs (x, j), all j."""
    j = np.arange(n)
    lo, hi = np.minimum(j, x), np.maximum(j, x)
    index = n * lo - lo * (lo + 1) // 2 + hi - lo - 1
    index[x] = 0  # (x, x) is not stored; callers mask it
    return index


def _condensed_distances(X, metric):
    n = X.shape[0]
    condensed = np.empty(n * (n - 1) // 2, dtype=np.float64)
    start = 0
    for i in range(n - 1):
        row = _distance_block(X[i : i + 1], X[i + 1 :], metric)[0]
        condensed[start : start + row.size] = row
        start += row.size
    return condensed


def _pairwise_nn_chain(X, method, metric):
    """Average or complete merges by the nearest-neighbour chain over the condensed matrix,
    updated by the Lance-Williams formula (SciPy's ``nn_chain``)."""
    n = X.shape[0]
    D = _condensed_distances(X, metric)
    size = np.ones(n, dtype=np.float64)
    active = np.ones(n, dtype=bool)
    pairs = np.empty((n - 1, 2), dtype=np.int64)
    heights = np.empty(n - 1, dtype=np.float64)
    chain = []
    for k in range(n - 1):
        x, y, best = _chain_merge(chain, active, lambda x: D[_condensed_row(n, x)])
        pairs[k] = (x, y)
        heights[k] = best
        others = active.copy()
        others[[x, y]] = False
        to_x, to_y = _condensed_row(n, x)[others], _condensed_row(n, y)[others]
        if method == "average":
            D[to_y] = (size[x] * D[to_x] + size[y] * D[to_y]) / (size[x] + size[y])
        else:  # complete
            D[to_y] = np.maximum(D[to_x], D[to_y])
        size[y] += size[x]
        active[x] = False
    return pairs, heights


def _single_prim(X, metric):
    """Single-linkage merges by Prim's minimum spanning tree from row 0: each step adds the
    row nearest to the tree (lowest index among equals); the edge is reported as (the row
    added last, the new row), as SciPy and scikit-learn report it."""
    n = X.shape[0]
    nearest = np.full(n, np.inf)  # distance of each row to the tree
    in_tree = np.zeros(n, dtype=bool)
    pairs = np.empty((n - 1, 2), dtype=np.int64)
    heights = np.empty(n - 1, dtype=np.float64)
    current = 0
    for k in range(n - 1):
        in_tree[current] = True
        np.minimum(nearest, _distance_block(X[current : current + 1], X, metric)[0], out=nearest)
        candidates = np.where(in_tree, np.inf, nearest)
        new = int(np.argmin(candidates))
        pairs[k] = (current, new)
        heights[k] = candidates[new]
        current = new
    return pairs, heights


def linkage(X, method, metric):
    if method == "ward":
        pairs, heights = _ward_nn_chain(X)
    elif method == "single":
        pairs, heights = _single_prim(X, metric)
    else:
        pairs, heights = _pairwise_nn_chain(X, method, metric)
    return _label_merges(pairs, heights, X.shape[0], sort_pairs=method != "single")
