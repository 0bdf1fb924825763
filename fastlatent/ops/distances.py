"""Distance ops: the full matrix, the fused nearest row (argmin), the fused top-k.

Each op validates its inputs once, picks the backend and returns arrays of the input's
kind. The fused ops never build the n_x x n_y matrix on the native backends.
"""

from .._arrays import array_namespace, to_like
from .._validation import check_array, check_metric, check_n_neighbors, check_pair
from . import _dispatch, _reduced_precision

# Metrics for which d(x, x) is 0 in exact arithmetic but may come out as rounding noise.
_ZERO_DIAGONAL = ("euclidean", "sqeuclidean", "cosine")


def pairwise_distances(X, Y=None, metric="euclidean", *, backend=None):
    """Distances between the rows of X and the rows of Y (or of X when Y is None).

    Returns an array of shape (n_x, n_y) and X's dtype. With Y None the diagonal is exactly
    zero, as in scikit-learn.
    """
    metric = check_metric(metric)
    reference = X
    if Y is None:
        X = check_array(X)
        pair = (X, X)
    else:
        pair = check_pair(X, Y)
    distances = _dispatch.run("pairwise_distances", backend, pair, metric)
    if Y is None and metric in _ZERO_DIAGONAL:
        distances.reshape(-1)[:: distances.shape[1] + 1] = 0  # square and C-contiguous
    return to_like(reference, distances)


def pairwise_distances_argmin_min(X, Y, metric="euclidean", *, precision="exact", backend=None):
    """For each row of X, the index of the nearest row of Y and the distance to it.

    Returns (indices int64 (n_x,), distances (n_x,)); ties go to the lower index.
    ``precision="tf32"`` or ``"bf16"`` screens on tensor cores (cuda backend) and proves every
    index equal to ``"exact"``'s (see ``_reduced_precision``); other backends warn and compute
    exactly.
    """
    metric = check_metric(metric)
    _reduced_precision.check_precision(precision, metric)
    pair = check_pair(X, Y)
    distances, indices = nearest_rows("pairwise_distances_argmin_min", pair, 1, metric, precision, backend)
    return to_like(X, indices, distances)


def kneighbors(X, Y, n_neighbors, metric="euclidean", *, precision="exact", backend=None):
    """For each row of X, its ``n_neighbors`` nearest rows of Y, nearest first.

    Returns (distances (n_x, k), indices int64 (n_x, k)); ties go to the lower index.
    ``precision`` as in ``pairwise_distances_argmin_min``.
    """
    metric = check_metric(metric)
    _reduced_precision.check_precision(precision, metric)
    pair = check_pair(X, Y)
    n_neighbors = check_n_neighbors(n_neighbors, pair[1].shape[0])
    return to_like(X, *nearest_rows("kneighbors", pair, n_neighbors, metric, precision, backend))


def nearest_rows(op, pair, n_neighbors, metric, precision, backend):
    """(distances, indices) of the nearest rows by the backend's ``op`` ("kneighbors", or
    "pairwise_distances_argmin_min" for one neighbour: then both are 1-D), in ``precision``
    where the backend has tensor cores. Validated inputs; arrays as the backend makes them."""

    def exact(X, Y):
        if op == "kneighbors":
            return _dispatch.run(op, backend, (X, Y), n_neighbors, metric)
        indices, distances = _dispatch.run(op, backend, (X, Y), metric)
        return distances, indices

    name, module = _dispatch.select_backend(backend, *pair, op=op)
    precision = _reduced_precision.effective(precision, name, module)
    if precision == "exact":
        return exact(*pair)
    X, Y = _dispatch.place(name, pair)
    distances, indices, _ = _reduced_precision.nearest(
        X, Y, n_neighbors, metric, precision,
        lambda A, B: module.tensor_core_gemm(A, B, precision),
        lambda rows: exact(X[rows], Y),
        xp=array_namespace(X),
    )  # fmt: skip
    if op != "kneighbors":
        return distances[:, 0], indices[:, 0]
    return distances, indices
