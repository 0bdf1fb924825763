"""Exact nearest neighbours, a drop-in for ``sklearn.neighbors.NearestNeighbors``.

The search is always exact and brute force (a fused distance + top-k kernel, no tree and no
approximation), so ``algorithm`` and ``leaf_size`` are accepted for compatibility and do
not change the answer. Host or GPU arrays; results come back as the query's kind.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import ops
from ._arrays import to_like
from ._config import BACKEND_CHOICES
from ._validation import METRIC_ALIASES, check_metric, validate_data


class NearestNeighbors(BaseEstimator):
    """Exact k-nearest-neighbour queries (euclidean, cosine, manhattan, sqeuclidean).

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbours returned by ``kneighbors`` when it is not given there.
    algorithm : {"auto", "brute", "ball_tree", "kd_tree"}, default="auto"
        Accepted for scikit-learn compatibility; the search is always exact brute force.
    leaf_size : int, default=30
        Accepted for scikit-learn compatibility; unused.
    metric : str, default="minkowski"
        "minkowski" (with ``p``), "euclidean", "sqeuclidean", "cosine", "manhattan",
        "l1", "l2", "cityblock".
    p : {1, 2}, default=2
        Power of the Minkowski metric: 1 is manhattan, 2 is euclidean.
    metric_params : None
        Accepted for compatibility; must be None or empty.
    n_jobs : int, default=None
        Accepted for compatibility; the native backends use all cores (OpenMP).
    precision : {"exact", "tf32", "bf16"}, default="exact"
        Precision of the distance products of the search (euclidean, sqeuclidean, cosine).
        "tf32" and "bf16" screen on GPU tensor cores (cuda backend) and re-check every row
        whose margin is within the format's error bound, so the neighbours equal "exact"'s.
        Backends without tensor cores warn and compute exactly.
    backend : {"auto", "cuda", "cpu", "numba", "numpy"}, default=None
        Where the kernels run; None follows ``fastlatent.config_context``.

    Attributes
    ----------
    n_features_in_, feature_names_in_, n_samples_fit_, effective_metric_
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "algorithm": [StrOptions({"auto", "brute", "ball_tree", "kd_tree"})],
        "leaf_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "metric": [StrOptions(set(METRIC_ALIASES) | {"minkowski"})],
        "p": [Interval(numbers.Real, 1, None, closed="left")],
        "metric_params": [dict, None],
        "n_jobs": [numbers.Integral, None],
        "precision": [StrOptions({"exact", "tf32", "bf16"})],
        "backend": [StrOptions(set(BACKEND_CHOICES)), None],
    }

    def __init__(
        self,
        n_neighbors=5,
        *,
        algorithm="auto",
        leaf_size=30,
        metric="minkowski",
        p=2,
        metric_params=None,
        n_jobs=None,
        precision="exact",
        backend=None,
    ):
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.precision = precision
        self.backend = backend

    def _effective_metric(self):
        if self.metric_params:
            raise ValueError(f"metric_params are not supported; got {self.metric_params!r}.")
        if self.metric != "minkowski":
            return check_metric(self.metric)
        if self.p not in (1, 2):
            raise ValueError(
                f"fastlatent supports the Minkowski metric with p=1 or p=2 only; got p={self.p}."
            )
        return "manhattan" if self.p == 1 else "euclidean"

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Store the rows to search (validated, C-contiguous, float32 or float64)."""
        self.effective_metric_ = self._effective_metric()
        self._fit_X = validate_data(self, X, reset=True)
        self.n_samples_fit_ = self._fit_X.shape[0]
        return self

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """The ``n_neighbors`` nearest fitted rows of each row of X, nearest first.

        With ``X=None`` the query is the fitted data and each point is not its own
        neighbour (as in scikit-learn: where duplicates push a point out of its own list,
        the first duplicate is dropped instead).

        Returns
        -------
        distances : array (n_queries, n_neighbors), only if ``return_distance``
        indices : int64 array (n_queries, n_neighbors)
        """
        check_is_fitted(self)
        if n_neighbors is None:
            n_neighbors = self.n_neighbors
        elif not isinstance(n_neighbors, numbers.Integral) or isinstance(n_neighbors, bool):
            raise TypeError(
                f"n_neighbors does not take {type(n_neighbors)} value, enter integer value"
            )
        elif n_neighbors <= 0:
            raise ValueError(f"Expected n_neighbors > 0. Got {n_neighbors}")

        query_is_train = X is None
        if query_is_train:
            X = self._fit_X
            if n_neighbors >= self.n_samples_fit_:
                raise ValueError(
                    f"Expected n_neighbors < n_samples_fit, but n_neighbors = {n_neighbors}, "
                    f"n_samples_fit = {self.n_samples_fit_}, n_samples = {X.shape[0]}"
                )
            n_neighbors += 1  # the point itself is found, then removed
        else:
            reference = X
            X = validate_data(self, X, reset=False)
            if n_neighbors > self.n_samples_fit_:
                raise ValueError(
                    f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {n_neighbors}, "
                    f"n_samples_fit = {self.n_samples_fit_}, n_samples = {X.shape[0]}"
                )

        distances, indices = ops.kneighbors(
            X, self._fit_X, n_neighbors, self.effective_metric_, precision=self.precision, backend=self.backend
        )
        if query_is_train:
            distances, indices = _drop_self(np.asarray(distances), np.asarray(indices))
            distances, indices = to_like(self._fit_X, distances, indices)
        else:
            distances, indices = to_like(reference, distances, indices)
        return (distances, indices) if return_distance else indices

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


def _drop_self(distances, indices):
    """Remove each query point from its own neighbour list (scikit-learn's rule)."""
    n_queries, k = indices.shape
    keep = indices != np.arange(n_queries)[:, None]
    self_missing = keep.all(axis=1)  # more duplicates than neighbours: drop the first one
    keep[self_missing, 0] = False
    return (
        distances[keep].reshape(n_queries, k - 1),
        indices[keep].reshape(n_queries, k - 1),
    )
