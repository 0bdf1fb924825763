"""Drop-in versions of scikit-learn's ``sklearn.metrics.pairwise`` functions.

Metrics: "euclidean", "sqeuclidean", "cosine", "manhattan" (aliases "l2", "l1",
"cityblock"). Results match scikit-learn's within float rounding, and are more accurate
where scikit-learn's expanded form cancels (near-coincident points, data far from the
origin): fastlatent computes the reported distances in the direct form.
"""

from .. import ops


def pairwise_distances(X, Y=None, metric="euclidean", *, backend=None):
    """Distance matrix between the rows of X and of Y (of X itself when Y is None).

    Parameters
    ----------
    X : array of shape (n_samples_X, n_features)
    Y : array of shape (n_samples_Y, n_features), default=None
    metric : {"euclidean", "sqeuclidean", "cosine", "manhattan"}, default="euclidean"
    backend : {"auto", "cuda", "cpu", "numba", "numpy"}, default=None (the configured one)

    Returns
    -------
    distances : array of shape (n_samples_X, n_samples_Y), X's dtype (float32 stays float32)
    """
    return ops.pairwise_distances(X, Y, metric, backend=backend)


def pairwise_distances_argmin_min(
    X, Y, *, axis=1, metric="euclidean", metric_kwargs=None, precision="exact", backend=None
):
    """Index of, and distance to, the nearest row of Y for each row of X.

    Same as ``pairwise_distances(X, Y).argmin(axis)`` and ``.min(axis)``, without building the
    matrix. ``axis=0`` looks for the nearest row of X for each row of Y. ``precision="tf32"``
    or ``"bf16"`` screens on GPU tensor cores (cuda backend) and re-checks in full precision
    every row whose margin is within the format's error bound: the indices equal "exact"'s.
    Backends without tensor cores warn and compute exactly.

    Returns
    -------
    indices : int64 array, distances : array of X's dtype
    """
    if metric_kwargs:
        raise ValueError(f"metric_kwargs are not supported; got {metric_kwargs!r}.")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1; got {axis!r}.")
    if axis == 0:
        X, Y = Y, X
    return ops.pairwise_distances_argmin_min(X, Y, metric, precision=precision, backend=backend)


def pairwise_distances_argmin(
    X, Y, *, axis=1, metric="euclidean", metric_kwargs=None, precision="exact", backend=None
):
    """Index of the nearest row of Y for each row of X (see pairwise_distances_argmin_min)."""
    return pairwise_distances_argmin_min(
        X, Y, axis=axis, metric=metric, metric_kwargs=metric_kwargs, precision=precision, backend=backend
    )[0]
