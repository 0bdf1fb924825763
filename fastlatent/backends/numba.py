"""Numba backend: parallel compiled kernels, one row of X per ``prange`` iteration.

Same contract as ``fastlatent.backends.numpy`` (see its docstring): inputs are validated by
``fastlatent.ops`` (2-D, C-contiguous, finite, non-empty, one dtype, float32 or float64, same
number of columns); outputs have the input's dtype; indices are int64; ties go to the lower
index.

Every distance is computed in the direct form (sum of ``(x - y)**2``, sum of ``|x - y|``),
accumulated in float64 whatever the input dtype, and cast to the input dtype only when stored,
so results equal the float64 reference to rounding, near-coincident points included.
``fastmath`` is off, so the summation order is the plain sequential one.

Cosine follows the reference's arithmetic: the rows of X and Y are normalised once, in float64
(``row / sqrt(sum(row**2))``, a zero row left at zero, so its similarity is 0 and its distance
1), and the distance is ``clip(1 - dot(x_n, y_n), 0, 2)``. Those normalised copies, the size of
the inputs, are the only extra memory. ``1 - similarity`` cancels near 0 in any dot-product
form, the reference's included, so near-parallel rows agree with it only to a few float64 ulps
of 1.0, and ties within that noise may be ordered differently.

The metric is passed to the kernels as an integer code and resolved by one inlined
``_distance`` function shared by the three ops; each kernel compiles on first call, once per
(input dtype, output dtype) pair met -- (float32, float32), (float64, float64), and
(float64, float32) for float32 cosine -- and is cached on disk (``cache=True``). No
``n_x x n_y`` array is built except the output of ``pairwise_distances``.
"""

import numba
import numpy as np

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")
_EUCLIDEAN, _SQEUCLIDEAN, _COSINE, _MANHATTAN = 0, 1, 2, 3
_METRIC_CODES = {
    "euclidean": _EUCLIDEAN,
    "sqeuclidean": _SQEUCLIDEAN,
    "cosine": _COSINE,
    "manhattan": _MANHATTAN,
}


def describe():
    return f"Numba {numba.__version__}, {numba.get_num_threads()} threads"


# --------------------------------------------------------------------------- kernels


@numba.njit(inline="always", fastmath=False)
def _distance(x, y, metric):
    """Distance between rows ``x`` and ``y``, accumulated and returned in float64.

    For cosine, ``x`` and ``y`` are the float64 normalised rows (see ``_normalized_rows``).
    """
    n = x.shape[0]
    acc = 0.0
    if metric == _COSINE:
        for t in range(n):
            acc += x[t] * y[t]
        d = 1.0 - acc
        if d < 0.0:
            d = 0.0
        elif d > 2.0:
            d = 2.0
        return d
    if metric == _MANHATTAN:
        for t in range(n):
            acc += abs(np.float64(x[t]) - np.float64(y[t]))
        return acc
    for t in range(n):
        diff = np.float64(x[t]) - np.float64(y[t])
        acc += diff * diff
    if metric == _EUCLIDEAN:
        return np.sqrt(acc)
    return acc


@numba.njit(parallel=True, cache=True, fastmath=False)
def _normalized_rows(A):
    """float64 copy of A with each row divided by its norm (a zero row stays zero)."""
    n = np.int64(A.shape[0])
    d = np.int64(A.shape[1])
    out = np.empty((n, d), dtype=np.float64)
    for i in numba.prange(n):
        acc = 0.0
        for t in range(d):
            v = np.float64(A[i, t])
            acc += v * v
        norm = np.sqrt(acc) if acc > 0.0 else 1.0
        for t in range(d):
            out[i, t] = np.float64(A[i, t]) / norm
    return out


@numba.njit(parallel=True, cache=True, fastmath=False)
def _pairwise_kernel(X, Y, metric, out):
    n_x = np.int64(X.shape[0])
    n_y = np.int64(Y.shape[0])
    for i in numba.prange(n_x):
        x = X[i]
        for j in range(n_y):
            out[i, j] = _distance(x, Y[j], metric)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _argmin_min_kernel(X, Y, metric, indices, distances):
    n_x = np.int64(X.shape[0])
    n_y = np.int64(Y.shape[0])
    for i in numba.prange(n_x):
        x = X[i]
        best_j = np.int64(0)
        best_d = _distance(x, Y[0], metric)
        for j in range(1, n_y):
            d = _distance(x, Y[j], metric)
            if d < best_d:  # strict: the lower index keeps ties
                best_d = d
                best_j = j
        indices[i] = best_j
        distances[i] = best_d


@numba.njit(parallel=True, cache=True, fastmath=False)
def _kneighbors_kernel(X, Y, metric, distances, indices):
    n_x = np.int64(X.shape[0])
    n_y = np.int64(Y.shape[0])
    k = np.int64(indices.shape[1])
    for i in numba.prange(n_x):
        x = X[i]
        # Sorted insertion buffer keyed on (distance, index). Candidates arrive in increasing
        # index order, so strict comparisons place a tied candidate after the ones held.
        buf_d = np.empty(k, dtype=np.float64)
        buf_i = np.empty(k, dtype=np.int64)
        count = np.int64(0)
        for j in range(n_y):
            d = _distance(x, Y[j], metric)
            if count < k:
                p = count
                count += 1
            elif d < buf_d[k - 1]:
                p = k - 1
            else:
                continue
            while p > 0 and buf_d[p - 1] > d:
                buf_d[p] = buf_d[p - 1]
                buf_i[p] = buf_i[p - 1]
                p -= 1
            buf_d[p] = d
            buf_i[p] = j
        for t in range(k):
            distances[i, t] = buf_d[t]
            indices[i, t] = buf_i[t]


# --------------------------------------------------------------------------- public ops


def _prepare(X, Y, metric):
    try:
        code = _METRIC_CODES[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}") from None
    X = np.ascontiguousarray(X)
    Y = np.ascontiguousarray(Y)
    if code == _COSINE:
        return _normalized_rows(X), _normalized_rows(Y), code
    return X, Y, code


def pairwise_distances(X, Y, metric):
    dtype = X.dtype
    X, Y, code = _prepare(X, Y, metric)
    out = np.empty((X.shape[0], Y.shape[0]), dtype=dtype)
    _pairwise_kernel(X, Y, code, out)
    return out


def pairwise_distances_argmin_min(X, Y, metric):
    dtype = X.dtype
    X, Y, code = _prepare(X, Y, metric)
    indices = np.empty(X.shape[0], dtype=np.int64)
    distances = np.empty(X.shape[0], dtype=dtype)
    _argmin_min_kernel(X, Y, code, indices, distances)
    return indices, distances


def kneighbors(X, Y, n_neighbors, metric):
    dtype = X.dtype
    X, Y, code = _prepare(X, Y, metric)
    n_neighbors = int(n_neighbors)
    if not 1 <= n_neighbors <= Y.shape[0]:
        raise ValueError(f"n_neighbors must be in [1, {Y.shape[0]}], got {n_neighbors}")
    distances = np.empty((X.shape[0], n_neighbors), dtype=dtype)
    indices = np.empty((X.shape[0], n_neighbors), dtype=np.int64)
    _kneighbors_kernel(X, Y, code, distances, indices)
    return distances, indices


@numba.njit(cache=True, fastmath=False)
def _kmeans_update_kernel(X, sample_weight, labels, sums, weights):
    # Sequential over rows: the float64 sums then do not depend on the thread count.
    for i in range(X.shape[0]):
        label = labels[i]
        w = np.float64(sample_weight[i])
        weights[label] += w
        for k in range(X.shape[1]):
            sums[label, k] += w * np.float64(X[i, k])


@numba.njit(parallel=True, cache=True, fastmath=False)
def _kmeans_distances_kernel(X, centers, labels, out):
    for i in numba.prange(X.shape[0]):
        acc = 0.0
        for k in range(X.shape[1]):
            t = np.float64(X[i, k]) - np.float64(centers[labels[i], k])
            acc += t * t
        out[i] = acc


def kmeans_distances(X, centers, labels):
    out = np.empty(X.shape[0], dtype=X.dtype)
    _kmeans_distances_kernel(X, centers, labels, out)
    return out


def kmeans_update(X, sample_weight, labels, n_clusters):
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    weights = np.zeros(n_clusters, dtype=np.float64)
    _kmeans_update_kernel(X, sample_weight, labels, sums, weights)
    return sums, weights


# --------------------------------------------------------------------------- Gaussian mixtures
#
# The arithmetic of the NumPy reference (scikit-learn's formulas), in float64 whatever X's
# dtype, cast to X's dtype when stored. The log-densities run one block of rows per
# ``prange`` iteration (each block owns its small float64 buffers); the M-step sums run one
# output entry per ``prange`` iteration, each summed over the rows in row order, so results
# do not depend on the number of threads. Cost: log-densities n*k*d**2 flops for "full"
# ("tied": n*d**2 + n*k*d), n*k*d for "diag"/"spherical"; the M-step as much again.

_GMM_FULL, _GMM_TIED, _GMM_DIAG, _GMM_SPHERICAL = 0, 1, 2, 3
_GMM_CODES = {"full": _GMM_FULL, "tied": _GMM_TIED, "diag": _GMM_DIAG, "spherical": _GMM_SPHERICAL}
_GMM_ROW_BLOCK = 256
_LOG_2PI = float(np.log(2.0 * np.pi))


@numba.njit(inline="always", fastmath=False)
def _project(x, cholesky, y):  # IN x (d,), cholesky (d, d); OUT y (d,) = x @ cholesky in float64
    for j in range(y.shape[0]):
        y[j] = 0.0
    for a in range(x.shape[0]):
        xa = np.float64(x[a])
        for j in range(y.shape[0]):
            y[j] += xa * cholesky[a, j]


@numba.njit(inline="always", fastmath=False)
def _gmm_row_log_prob(x, means, precisions_cholesky, means_projected, precisions, mean_terms,
                      log_det, code, y, out):  # IN x (d,) ... OUT out (k,) float64; y (d,) scratch
    n_components = means.shape[0]
    d = x.shape[0]
    if code == _GMM_TIED:
        _project(x, precisions_cholesky[0], y)
    norm = 0.0
    if code == _GMM_SPHERICAL:
        for j in range(d):
            norm += np.float64(x[j]) * np.float64(x[j])
    for c in range(n_components):
        squared = 0.0
        if code == _GMM_FULL:
            _project(x, precisions_cholesky[c], y)
            for j in range(d):
                v = y[j] - means_projected[c, j]
                squared += v * v
        elif code == _GMM_TIED:
            for j in range(d):
                v = y[j] - means_projected[c, j]
                squared += v * v
        elif code == _GMM_DIAG:
            cross = 0.0
            quadratic = 0.0
            for j in range(d):
                xj = np.float64(x[j])
                cross += xj * (means[c, j] * precisions[c, j])
                quadratic += xj * xj * precisions[c, j]
            squared = mean_terms[c] - 2.0 * cross + quadratic
        else:
            cross = 0.0
            for j in range(d):
                cross += np.float64(x[j]) * means[c, j]
            squared = mean_terms[c] * precisions[c, 0] - 2.0 * (cross * precisions[c, 0]) + norm * precisions[c, 0]
        if squared < 0.0:
            squared = 0.0
        out[c] = -0.5 * (d * _LOG_2PI + squared) + log_det[c]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _gmm_log_prob_kernel(X, means, precisions_cholesky, means_projected, precisions, mean_terms,
                         log_det, log_weights, code, e_step, out, log_norm):
    """log-densities (``e_step`` False) or log-responsibilities and log p(x) (True)."""
    n = np.int64(X.shape[0])
    d = np.int64(X.shape[1])
    k = np.int64(means.shape[0])
    n_blocks = (n + _GMM_ROW_BLOCK - 1) // _GMM_ROW_BLOCK
    for block in numba.prange(n_blocks):
        y = np.empty(d, dtype=np.float64)
        row = np.empty(k, dtype=np.float64)
        stop = min(n, (block + 1) * _GMM_ROW_BLOCK)
        for i in range(block * _GMM_ROW_BLOCK, stop):
            _gmm_row_log_prob(X[i], means, precisions_cholesky, means_projected, precisions,
                              mean_terms, log_det, code, y, row)
            if not e_step:
                for c in range(k):
                    out[i, c] = row[c]
                continue
            largest = -np.inf
            for c in range(k):
                row[c] += log_weights[c]
                if row[c] > largest:
                    largest = row[c]
            if np.isinf(largest):
                norm = largest
            else:
                total = 0.0
                for c in range(k):
                    total += np.exp(row[c] - largest)
                norm = largest + np.log(total)
            log_norm[i] = norm
            for c in range(k):
                out[i, c] = row[c] - norm


def _gmm_model(means, precisions_cholesky, covariance_type):
    """float64 parameters in the kernels' layout, and the per-component constants."""
    code = _GMM_CODES[covariance_type]
    means = np.ascontiguousarray(means, dtype=np.float64)
    k, d = means.shape
    chol = np.asarray(precisions_cholesky, dtype=np.float64)
    if code == _GMM_FULL:
        log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        means_projected = np.einsum("ka,kaj->kj", means, chol)
        chol3, precisions, mean_terms = np.ascontiguousarray(chol), np.zeros((k, 1)), np.zeros(k)
    elif code == _GMM_TIED:
        log_det = np.full(k, np.log(np.diag(chol)).sum())
        means_projected = means @ chol
        chol3, precisions, mean_terms = np.ascontiguousarray(chol[None]), np.zeros((k, 1)), np.zeros(k)
    elif code == _GMM_DIAG:
        log_det = np.log(chol).sum(axis=1)
        precisions = np.ascontiguousarray(chol**2)
        mean_terms = (means**2 * precisions).sum(axis=1)
        chol3, means_projected = np.zeros((1, 1, 1)), np.zeros((1, 1))
    else:
        log_det = d * np.log(chol)
        precisions = np.ascontiguousarray((chol**2)[:, None])
        mean_terms = (means**2).sum(axis=1)  # times the precision in the kernel
        chol3, means_projected = np.zeros((1, 1, 1)), np.zeros((1, 1))
    return code, means, chol3, np.ascontiguousarray(means_projected), precisions, mean_terms, np.ascontiguousarray(log_det)


def gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type):
    X = np.ascontiguousarray(X)
    code, means, chol, projected, precisions, mean_terms, log_det = _gmm_model(means, precisions_cholesky, covariance_type)
    out = np.empty((X.shape[0], means.shape[0]), dtype=X.dtype)
    _gmm_log_prob_kernel(X, means, chol, projected, precisions, mean_terms, log_det,
                         np.zeros(means.shape[0]), code, False, out, np.empty(0))
    return out


def gmm_e_step(X, weights, means, precisions_cholesky, covariance_type):
    X = np.ascontiguousarray(X)
    code, means, chol, projected, precisions, mean_terms, log_det = _gmm_model(means, precisions_cholesky, covariance_type)
    with np.errstate(divide="ignore"):  # a zero weight is a log-weight of -inf
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    log_resp = np.empty((X.shape[0], means.shape[0]), dtype=X.dtype)
    log_norm = np.empty(X.shape[0], dtype=np.float64)
    _gmm_log_prob_kernel(X, means, chol, projected, precisions, mean_terms, log_det,
                         log_weights, code, True, log_resp, log_norm)
    return np.float64(log_norm.sum() / X.shape[0]), log_resp


@numba.njit(parallel=True, cache=True, fastmath=False)
def _gmm_moments_kernel(X, resp_t, nk, sums):  # IN X (n, d), resp_t (k, n); OUT nk (k,), sums (k, d)
    n = np.int64(X.shape[0])
    d = np.int64(X.shape[1])
    k = np.int64(resp_t.shape[0])
    for c in numba.prange(k):
        total = 0.0
        for i in range(n):
            total += np.float64(resp_t[c, i])
        nk[c] = total
    for t in numba.prange(k * d):
        c = t // d
        j = t % d
        total = 0.0
        for i in range(n):
            total += np.float64(resp_t[c, i]) * np.float64(X[i, j])
        sums[c, j] = total


@numba.njit(parallel=True, cache=True, fastmath=False)
def _gmm_full_covariance_kernel(X, resp_t, means, out):  # OUT out (k, d, d): sum_i r (x-mu)(x-mu)^T
    n = np.int64(X.shape[0])
    d = np.int64(X.shape[1])
    k = np.int64(resp_t.shape[0])
    for t in numba.prange(k * d):
        c = t // d
        a = t % d
        row = np.zeros(d, dtype=np.float64)
        for i in range(n):
            w = np.float64(resp_t[c, i]) * (np.float64(X[i, a]) - means[c, a])
            for b in range(d):
                row[b] += w * (np.float64(X[i, b]) - means[c, b])
        for b in range(d):
            out[c, a, b] = row[b]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _gmm_second_moment_kernel(X, out):  # OUT out (d, d): X^T X
    n = np.int64(X.shape[0])
    d = np.int64(X.shape[1])
    for a in numba.prange(d):
        row = np.zeros(d, dtype=np.float64)
        for i in range(n):
            xa = np.float64(X[i, a])
            for b in range(d):
                row[b] += xa * np.float64(X[i, b])
        for b in range(d):
            out[a, b] = row[b]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _gmm_weighted_squares_kernel(X, resp_t, out):  # OUT out (k, d): sum_i r x**2
    n = np.int64(X.shape[0])
    d = np.int64(X.shape[1])
    k = np.int64(resp_t.shape[0])
    for t in numba.prange(k * d):
        c = t // d
        j = t % d
        total = 0.0
        for i in range(n):
            v = np.float64(X[i, j])
            total += np.float64(resp_t[c, i]) * (v * v)
        out[c, j] = total


def gmm_m_step(X, resp, reg_covar, covariance_type):
    X = np.ascontiguousarray(X)
    resp_t = np.ascontiguousarray(np.asarray(resp).T)  # one component's column per row
    n_features = X.shape[1]
    n_components = resp_t.shape[0]
    nk = np.empty(n_components)
    sums = np.empty((n_components, n_features))
    _gmm_moments_kernel(X, resp_t, nk, sums)
    nk += 10 * np.finfo(X.dtype).eps
    means = sums / nk[:, None]
    diagonal = np.arange(n_features)
    if covariance_type == "full":
        covariances = np.empty((n_components, n_features, n_features))
        _gmm_full_covariance_kernel(X, resp_t, means, covariances)
        covariances /= nk[:, None, None]
        covariances[:, diagonal, diagonal] += reg_covar
    elif covariance_type == "tied":
        second_moment = np.empty((n_features, n_features))
        _gmm_second_moment_kernel(X, second_moment)
        covariances = (second_moment - (nk * means.T) @ means) / nk.sum()
        covariances[diagonal, diagonal] += reg_covar
    else:
        squares = np.empty((n_components, n_features))
        _gmm_weighted_squares_kernel(X, resp_t, squares)
        covariances = squares / nk[:, None] - means**2 + reg_covar
        if covariance_type == "spherical":
            covariances = covariances.mean(axis=1)
    return nk.astype(X.dtype), means.astype(X.dtype), covariances.astype(X.dtype)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _silhouette_sums_kernel(X, labels, metric, sums):
    # One row per prange iteration, its sums in column order: independent of the thread count.
    n = np.int64(X.shape[0])
    for i in numba.prange(n):
        x = X[i]
        for j in range(n):
            if j != i:
                sums[i, labels[j]] += _distance(x, X[j], metric)


def silhouette_cluster_sums(X, labels, n_clusters, metric):
    X, _, code = _prepare(X, X[:1], metric)
    sums = np.zeros((X.shape[0], int(n_clusters)), dtype=np.float64)
    _silhouette_sums_kernel(X, np.ascontiguousarray(labels, dtype=np.int64), code, sums)
    return sums


# ---- soft nearest neighbour loss (fastlatent/backends/_snnl_numba.py) ----
from ._snnl_numba import snnl_loss_and_grad  # noqa: E402


# --------------------------------------------------------------------------- hierarchical clustering
# The NumPy reference's algorithms (see fastlatent.backends.numpy), compiled: Ward by the
# nearest-neighbour chain over float64 centroids, single linkage by Prim from row 0, average
# and complete by the nearest-neighbour chain over a condensed float64 matrix; SciPy's
# tie-breaking. The chain and Prim steps run serially: each step is one scan of O(n * d),
# too short to pay for a parallel region on every step (the condensed fill is parallel).


@numba.njit(cache=True, fastmath=False)
def _chain_next(chain, length, x, best, best_id, to_previous):
    """SciPy's rule: the chain's previous element unless another is strictly closer."""
    if length > 1 and not best < to_previous:
        return chain[length - 2], to_previous
    return best_id, best


@numba.njit(cache=True, fastmath=False)
def _ward_kernel(C, pairs, heights):  # INOUT C (n, d) float64 centroids; OUT pairs, heights
    n = np.int64(C.shape[0])
    d = np.int64(C.shape[1])
    size = np.ones(n, dtype=np.float64)
    chain = np.empty(n, dtype=np.int64)
    length = np.int64(0)
    first = np.int64(0)
    for k in range(n - 1):
        if length == 0:
            while size[first] == 0.0:
                first += 1
            chain[0] = first
            length = 1
        while True:
            x = chain[length - 1]
            best = np.inf
            best_id = np.int64(-1)
            to_previous = np.inf
            for i in range(n):
                if size[i] == 0.0 or i == x:
                    continue
                acc = 0.0
                for t in range(d):
                    diff = C[i, t] - C[x, t]
                    acc += diff * diff
                cost = size[i] * size[x] / (size[i] + size[x]) * acc
                if cost < best:
                    best = cost
                    best_id = i
                if length > 1 and i == chain[length - 2]:
                    to_previous = cost
            y, best = _chain_next(chain, length, x, best, best_id, to_previous)
            if length > 1 and y == chain[length - 2]:
                break
            chain[length] = y
            length += 1
        length -= 2
        a, b = min(x, y), max(x, y)
        pairs[k, 0] = a
        pairs[k, 1] = b
        heights[k] = np.sqrt(2.0 * best)
        for t in range(d):
            C[b, t] = (size[a] * C[a, t] + size[b] * C[b, t]) / (size[a] + size[b])
        size[b] += size[a]
        size[a] = 0.0


@numba.njit(cache=True, fastmath=False)
def _prim_kernel(R, metric, pairs, heights):  # IN R (n, d) (normalised rows for cosine)
    n = np.int64(R.shape[0])
    to_tree = np.full(n, np.inf)
    in_tree = np.zeros(n, dtype=np.bool_)
    current = np.int64(0)
    for k in range(n - 1):
        in_tree[current] = True
        best = np.inf
        best_id = np.int64(0)
        for j in range(n):
            if in_tree[j]:
                continue
            dist = _distance(R[current], R[j], metric)
            if dist < to_tree[j]:
                to_tree[j] = dist
            if to_tree[j] < best:
                best = to_tree[j]
                best_id = j
        pairs[k, 0] = current
        pairs[k, 1] = best_id
        heights[k] = best
        current = best_id


@numba.njit(inline="always")
def _condensed_index(n, i, j):
    if i > j:
        i, j = j, i
    return n * i - i * (i + 1) // 2 + j - i - 1


@numba.njit(parallel=True, cache=True, fastmath=False)
def _condensed_kernel(R, metric, D):  # OUT D (n(n-1)/2,)
    n = np.int64(R.shape[0])
    for i in numba.prange(n - 1):
        start = n * i - i * (i + 1) // 2
        for j in range(i + 1, n):
            D[start + j - i - 1] = _distance(R[i], R[j], metric)


@numba.njit(cache=True, fastmath=False)
def _pairwise_chain_kernel(D, n, average, pairs, heights):  # INOUT D condensed
    size = np.ones(n, dtype=np.float64)
    chain = np.empty(n, dtype=np.int64)
    length = np.int64(0)
    first = np.int64(0)
    for k in range(n - 1):
        if length == 0:
            while size[first] == 0.0:
                first += 1
            chain[0] = first
            length = 1
        while True:
            x = chain[length - 1]
            best = np.inf
            best_id = np.int64(-1)
            for i in range(n):
                if size[i] == 0.0 or i == x:
                    continue
                dist = D[_condensed_index(n, x, i)]
                if dist < best:
                    best = dist
                    best_id = i
            to_previous = D[_condensed_index(n, x, chain[length - 2])] if length > 1 else np.inf
            y, best = _chain_next(chain, length, x, best, best_id, to_previous)
            if length > 1 and y == chain[length - 2]:
                break
            chain[length] = y
            length += 1
        length -= 2
        a, b = min(x, y), max(x, y)
        pairs[k, 0] = a
        pairs[k, 1] = b
        heights[k] = best
        for i in range(n):
            if size[i] == 0.0 or i == a or i == b:
                continue
            to_a = D[_condensed_index(n, i, a)]
            to_b = D[_condensed_index(n, i, b)]
            if average:
                D[_condensed_index(n, i, b)] = (size[a] * to_a + size[b] * to_b) / (size[a] + size[b])
            else:
                D[_condensed_index(n, i, b)] = max(to_a, to_b)
        size[b] += size[a]
        size[a] = 0.0


@numba.njit(cache=True)
def _label_kernel(pairs, heights, order, n, sort_pairs, Z):  # SciPy's `label`
    parent = np.arange(2 * n - 1)
    count = np.ones(2 * n - 1, dtype=np.int64)
    for i in range(n - 1):
        k = order[i]
        roots = np.empty(2, dtype=np.int64)
        for side in range(2):
            node = pairs[k, side]
            while parent[node] != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            roots[side] = node
        a, b = roots[0], roots[1]
        if sort_pairs and a > b:
            a, b = b, a
        new = n + i
        parent[a] = new
        parent[b] = new
        count[new] = count[a] + count[b]
        Z[i, 0] = a
        Z[i, 1] = b
        Z[i, 2] = heights[k]
        Z[i, 3] = count[new]


def linkage(X, method, metric):
    n = X.shape[0]
    pairs = np.empty((n - 1, 2), dtype=np.int64)
    heights = np.empty(n - 1, dtype=np.float64)
    code = _METRIC_CODES[metric]
    rows = _normalized_rows(X) if metric == "cosine" else np.array(X, dtype=np.float64)
    if method == "ward":
        _ward_kernel(rows, pairs, heights)
    elif method == "single":
        _prim_kernel(rows, code, pairs, heights)
    else:
        D = np.empty(n * (n - 1) // 2, dtype=np.float64)
        _condensed_kernel(rows, code, D)
        del rows
        _pairwise_chain_kernel(D, n, method == "average", pairs, heights)
    Z = np.empty((n - 1, 4), dtype=np.float64)
    order = np.argsort(heights, kind="stable")
    _label_kernel(pairs, heights, order, n, method != "single", Z)
    return Z
