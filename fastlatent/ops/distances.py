"""Distance ops: the full matrix, the fused nearest row (argmin), the fused top-k.

Each op validates its inputs once, picks the backend and returns arrays of the input's
kind. The fused ops never build the n_x x n_y matrix on the native backends.
"""

from .._arrays import to_like
from .._validation import check_array, check_metric, check_n_neighbors, check_pair
from . import _dispatch

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


def pairwise_distances_argmin_min(X, Y, metric="euclidean", *, backend=None):
    """For each row of X, the index of the nearest row of Y and the distance to it.

    Returns (indices int64 (n_x,), distances (n_x,)); ties go to the lower index.
    """
    metric = check_metric(metric)
    pair = check_pair(X, Y)
    indices, distances = _dispatch.run("pairwise_distances_argmin_min", backend, pair, metric)
    return to_like(X, indices, distances)


def kneighbors(X, Y, n_neighbors, metric="euclidean", *, backend=None):
    """For each row of X, its ``n_neighbors`` nearest rows of Y, nearest first.

    Returns (distances (n_x, k), indices int64 (n_x, k)); ties go to the lower index.
    """
    metric = check_metric(metric)
    pair = check_pair(X, Y)
    n_neighbors = check_n_neighbors(n_neighbors, pair[1].shape[0])
    distances, indices = _dispatch.run("kneighbors", backend, pair, n_neighbors, metric)
    return to_like(X, distances, indices)
