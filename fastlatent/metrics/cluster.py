"""Clustering scores: the silhouette coefficient (scikit-learn's signatures) and clustering
accuracy against known classes.

The silhouette of the metrics fastlatent computes ("euclidean", "sqeuclidean", "cosine",
"manhattan" and their aliases) runs on the native kernels: per-row sums of distances to each
cluster, each distance computed once for both of its rows, memory O(n_samples * n_clusters)
instead of scikit-learn's chunks of the n x n matrix. Distances are computed in float64 for
float32 input too; the result has X's dtype, as scikit-learn's. Any other metric,
``metric="precomputed"``, sparse input or extra keyword arguments are handed to
scikit-learn unchanged.
"""

import numbers

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import issparse
from sklearn import metrics as _sk_metrics
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .. import ops
from .._arrays import array_namespace, host_if_device, like
from .._validation import METRIC_ALIASES, check_array

__all__ = ["clustering_accuracy", "silhouette_samples", "silhouette_score"]


def _native_metric(metric, X, kwds):
    """The metric fastlatent computes itself, or None when scikit-learn should."""
    if kwds or issparse(X) or not isinstance(metric, str):
        return None
    return METRIC_ALIASES.get(metric)


def _validated(X, labels):
    """X (float32/float64, finite; GPU arrays stay on the GPU) and labels (1-D, one per row,
    on the host)."""
    X = check_array(X)
    labels = column_or_1d(host_if_device(labels), warn=True)
    check_consistent_length(X, labels)
    return X, labels


def _native_samples(X, labels, metric, backend):
    """silhouette_samples of validated input under a metric fastlatent computes."""
    codes = LabelEncoder().fit_transform(labels)
    counts = np.bincount(codes)
    if not 1 < len(counts) < X.shape[0]:  # scikit-learn's check and message
        raise ValueError(
            f"Number of labels is {len(counts)}. Valid values are 2 to n_samples - 1 (inclusive)"
        )
    sums = ops.silhouette_cluster_sums(X, codes, len(counts), metric, backend=backend)
    return _silhouette_from_sums(sums, codes, counts).astype(X.dtype, copy=False)


def _native_score(X, labels, metric, sample_size, random_state, backend):
    """silhouette_score of validated input (scikit-learn's subset when ``sample_size``)."""
    if sample_size is not None:
        indices = check_random_state(random_state).permutation(X.shape[0])[:sample_size]
        X, labels = X[array_namespace(X).asarray(indices)], labels[indices]
    return float(np.mean(_native_samples(X, labels, metric, backend)))


def silhouette_samples(X, labels, *, metric="euclidean", backend=None, **kwds):
    """Silhouette coefficient of each sample, as ``sklearn.metrics.silhouette_samples``.

    s_i = (b_i - a_i) / max(a_i, b_i), with a_i the mean distance from sample i to the other
    members of its cluster and b_i the smallest mean distance to the members of another
    cluster; 0 for members of single-sample clusters.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), or (n_samples, n_samples) with
        ``metric="precomputed"``. GPU arrays (CuPy) stay on the GPU for the distance work
        (the cuda backend); only the n x n_clusters sums come back to the host.
    labels : array of shape (n_samples,)
    metric : str or callable, default="euclidean"
    backend : {"auto", "cuda", "cpu", "numba", "numpy"}, default=None (the configured one)

    Returns
    -------
    silhouette : array of shape (n_samples,), X's dtype for float input; the input's kind of
        array (CuPy in, CuPy out)
    """
    native = _native_metric(metric, X, kwds)
    if native is None:
        return _sk_metrics.silhouette_samples(X, labels, metric=metric, **kwds)
    validated, labels = _validated(X, labels)
    return like(_native_samples(validated, labels, native, backend), X)


def _silhouette_from_sums(sums, codes, counts):
    """scikit-learn's formula from the per-cluster distance sums (float64)."""
    rows = np.arange(len(codes))
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = sums[rows, codes] / (counts[codes] - 1)
        means = sums / counts
        means[rows, codes] = np.inf
        inter = means.min(axis=1)
        silhouette = (inter - intra) / np.maximum(intra, inter)
    return np.nan_to_num(silhouette)  # single-sample clusters (0/0) and a == b == 0


def silhouette_score(
    X, labels, *, metric="euclidean", sample_size=None, random_state=None, backend=None, **kwds
):
    """Mean silhouette coefficient, as ``sklearn.metrics.silhouette_score``.

    With ``sample_size``, the mean over the same random subset scikit-learn draws for the
    same ``random_state``.
    """
    if sample_size is not None and (
        not isinstance(sample_size, numbers.Integral)
        or isinstance(sample_size, bool)
        or sample_size < 1
    ):
        raise ValueError(
            "The 'sample_size' parameter of silhouette_score must be an int in the range "
            f"[1, inf) or None. Got {sample_size!r} instead."
        )
    native = _native_metric(metric, X, kwds)
    if native is None:
        return _sk_metrics.silhouette_score(
            X, labels, metric=metric, sample_size=sample_size, random_state=random_state, **kwds
        )
    return _native_score(*_validated(X, labels), native, sample_size, random_state, backend)


def clustering_accuracy(y_true, y_pred):
    """Fraction of samples whose cluster maps to their class, under the best one-to-one map.

    The map is the assignment of clusters to classes that maximises the number of matching
    samples (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``). With more
    clusters than classes (or the reverse) the extra ones map to nothing and their samples
    count as errors. Labels may be any hashable values; 1.0 means the clustering equals the
    classes up to renaming.

    Parameters
    ----------
    y_true : array of shape (n_samples,), the known classes
    y_pred : array of shape (n_samples,), the cluster labels

    Returns
    -------
    accuracy : float in [0, 1]
    """
    y_true = column_or_1d(host_if_device(y_true))
    y_pred = column_or_1d(host_if_device(y_pred))
    check_consistent_length(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("clustering_accuracy needs at least one sample; got empty labels.")
    _, classes = np.unique(y_true, return_inverse=True)
    _, clusters = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((clusters.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(counts, (clusters, classes), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y_true))
