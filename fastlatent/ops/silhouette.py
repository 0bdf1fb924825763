"""Silhouette op: per-row sums of distances to every cluster, never the n x n matrix."""

import numpy as np

from .._validation import check_array, check_metric
from . import _dispatch


def silhouette_cluster_sums(X, labels, n_clusters, metric="euclidean", *, backend=None):
    """``sums[i, k]`` = sum of distance(X[i], X[j]) over the rows j != i with label k.

    Parameters
    ----------
    X : array (n_samples, n_features), float32 or float64
    labels : int array (n_samples,), values in [0, n_clusters)
    n_clusters : int
    metric : {"euclidean", "sqeuclidean", "cosine", "manhattan"}

    Returns
    -------
    sums : float64 array (n_samples, n_clusters), on the host. Every backend computes the
        distances in float64, whatever X's dtype; memory is O(n_samples * n_clusters).
    """
    metric = check_metric(metric)
    X = check_array(X)
    labels = np.asarray(labels)
    n_clusters = int(n_clusters)
    if labels.shape != (X.shape[0],):
        raise ValueError(
            f"labels must have shape ({X.shape[0]},) to match X; got {labels.shape}."
        )
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers in [0, n_clusters); got dtype {labels.dtype}.")
    if n_clusters < 1 or labels.min() < 0 or labels.max() >= n_clusters:
        raise ValueError(
            f"labels must lie in [0, n_clusters) = [0, {n_clusters}); got values from "
            f"{labels.min()} to {labels.max()}."
        )
    labels = labels.astype(np.int64)
    return _dispatch.run("silhouette_cluster_sums", backend, (X,), labels, n_clusters, metric)
