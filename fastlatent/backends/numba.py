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


def kmeans_update(X, sample_weight, labels, n_clusters):
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    weights = np.zeros(n_clusters, dtype=np.float64)
    _kmeans_update_kernel(X, sample_weight, labels, sums, weights)
    return sums, weights
