"""KMeans: scikit-learn's estimator (k-means++, Lloyd, sample weights) on fastlatent's ops,
plus a cosine ("spherical") mode.

This file holds the parameters, the validation and the algorithm's outline; the work per
iteration is two ops: ``kmeans_assign`` (fused distance + argmin, no n x k matrix) and
``kmeans_update`` (weighted per-cluster sums). The loop follows scikit-learn's
``_kmeans_single_lloyd`` step for step — empty clusters relocated to the points farthest
from their centres, strict convergence when the labels stop changing, else the centre shift
within ``tol * mean(var(X, axis=0))`` — so that from the same initial centres the labels are
the same (up to exact ties) and the inertia agrees to rounding.

Differences from scikit-learn, on purpose:
- X is never modified or centred (``copy_x`` is accepted for compatibility): the reported
  distances are exact in the direct form, so centring buys no accuracy here.
- ``algorithm="elkan"`` runs Lloyd's algorithm: the answer is the same, Elkan's bounds only
  save distance computations, which the fused kernel makes cheap.
- negative sample weights are refused (scikit-learn accepts them and can diverge).
- ``metric="cosine"``: spherical k-means. Rows are scaled to unit length, each centre is the
  normalised weighted mean of its members, and the inertia is the weighted sum of cosine
  distances ``1 - cos(x, centre)``. ``cluster_centers_`` are unit vectors; ``transform``
  returns cosine distances. A zero row is at cosine distance 1 from every centre.
"""

import numbers
import warnings

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, _is_arraylike_not_scalar, check_is_fitted

from .. import ops
from .._arrays import array_namespace, to_host, to_like
from .._config import BACKEND_CHOICES
from .._threads import native_fit_context
from .._validation import check_array, validate_data
from ..ops._reduced_precision import effective


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-means clustering, a drop-in for ``sklearn.cluster.KMeans``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (and centres).
    init : {"k-means++", "random"}, callable or array of shape (n_clusters, n_features), default="k-means++"
        How the centres start: greedy k-means++ seeding, rows drawn at random (weighted), a
        callable ``init(X, n_clusters, random_state)``, or the centres themselves.
    n_init : "auto" or int, default="auto"
        Number of runs from different seeds; the one of lowest inertia is kept. "auto" is 1
        for k-means++ and an array, 10 for "random" and a callable (scikit-learn's rule).
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    tol : float, default=1e-4
        Convergence when the squared centre shift is within ``tol * mean(var(X, axis=0))``.
    verbose : int, default=0
        Print the inertia of every iteration.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation.
    copy_x : bool, default=True
        Accepted for compatibility; X is never modified either way.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Both run Lloyd's algorithm (same answer; see the module docstring).
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine" is spherical k-means: rows and centres on the unit sphere.
    precision : {"exact", "tf32", "bf16"}, default="exact"
        Precision of the assignment's distance products. "tf32" and "bf16" run them on GPU
        tensor cores (cuda backend) and re-check every row whose margin is within the format's
        error bound in full precision, so the labels equal "exact"'s. Backends without tensor
        cores warn and compute exactly.
    backend : {"auto", "cuda", "cpu", "numba", "numpy"}, default=None
        Where the kernels run; None follows ``fastlatent.config_context``.

    Attributes
    ----------
    cluster_centers_ : array (n_clusters, n_features), X's dtype
    labels_ : int32 array (n_samples,)
    inertia_ : float
        Weighted sum of squared euclidean distances to the nearest centre (cosine
        distances in cosine mode).
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : array of str, when X has feature names
    """

    _parameter_constraints = {
        "n_clusters": [Interval(numbers.Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), callable, "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "copy_x": ["boolean"],
        "algorithm": [StrOptions({"lloyd", "elkan"})],
        "metric": [StrOptions({"euclidean", "cosine"})],
        "precision": [StrOptions({"exact", "tf32", "bf16"})],
        "backend": [StrOptions(set(BACKEND_CHOICES)), None],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        copy_x=True,
        algorithm="lloyd",
        metric="euclidean",
        precision="exact",
        backend=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.metric = metric
        self.precision = precision
        self.backend = backend

    # ---- preparation -------------------------------------------------------------------------

    def _prepare(self, X):
        """X as the Lloyd loop sees it: rows scaled to unit length in cosine mode.

        A zero row stays zero: its cosine similarity with anything is 0 (scikit-learn's
        convention), so its cosine distance to every centre is 1.
        """
        if self.metric != "cosine":
            return X
        return self._normalize_centers(X)

    def _normalize_centers(self, centers):
        if self.metric != "cosine":
            return centers
        xp = array_namespace(centers)
        # Row norms accumulated in float64 without a float64 copy of the rows.
        norms = xp.sqrt(xp.einsum("ij,ij->i", centers, centers, dtype=np.float64))
        norms[norms == 0] = 1.0
        return (centers / norms[:, None]).astype(centers.dtype)

    def _check_params_vs_input(self, X):
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        xp = array_namespace(X)
        self._set_tol_and_n_init(0.0 if self.tol == 0 else float(xp.mean(xp.var(X, axis=0))))

    def _set_tol_and_n_init(self, mean_variance):
        """``_tol`` (absolute, from X's mean column variance) and ``_n_init``; shared with
        ``fastlatent.dask.KMeans``, which computes the variance over the blocks."""
        self._tol = mean_variance * self.tol
        init_is_array = _is_arraylike_not_scalar(self.init)
        if self.n_init == "auto":
            self._n_init = 1 if (init_is_array or self.init == "k-means++") else 10
        else:
            self._n_init = self.n_init
        if init_is_array and self._n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={self._n_init}.",
                RuntimeWarning,
                stacklevel=4,
            )
            self._n_init = 1

    def _check_sample_weight(self, sample_weight, X):
        xp = array_namespace(X)
        if xp is np:
            return _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        if sample_weight is None:
            return xp.ones(X.shape[0], dtype=X.dtype)
        sample_weight = xp.asarray(sample_weight, dtype=X.dtype)
        if sample_weight.shape != (X.shape[0],):
            raise ValueError(f"sample_weight.shape == {sample_weight.shape}, expected {(X.shape[0],)}!")
        if bool((sample_weight < 0).any()):
            raise ValueError("Negative values in data passed to `sample_weight`.")
        if not bool((sample_weight != 0).any()):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return sample_weight

    def _validate_center_shape(self, X, centers):
        if centers.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number "
                f"of clusters {self.n_clusters}."
            )
        if centers.shape[1] != X.shape[1]:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number "
                f"of features of the data {X.shape[1]}."
            )

    def _init_centroids(self, X, init, random_state, sample_weight):
        xp = array_namespace(X)
        if isinstance(init, str) and init == "k-means++":
            centers, _ = ops.kmeans_plusplus(
                X, self.n_clusters, sample_weight, random_state, backend=self.backend
            )
        elif isinstance(init, str) and init == "random":
            weight = np.asarray(to_host(sample_weight), dtype=np.float64)
            seeds = random_state.choice(
                X.shape[0], size=self.n_clusters, replace=False, p=weight / weight.sum()
            )
            centers = X[seeds.tolist()]
        elif callable(init):
            centers = init(X, self.n_clusters, random_state=random_state)
            centers = check_array(centers, dtype=X.dtype)
            self._validate_center_shape(X, centers)
        else:
            centers = init
        return xp.array(self._normalize_centers(centers), dtype=X.dtype, copy=True)

    # ---- the algorithm -----------------------------------------------------------------------

    def _lloyd(self, X, sample_weight, centers, precision="exact"):
        """One run of Lloyd's algorithm from ``centers``; scikit-learn's loop, step for step."""
        xp = array_namespace(X)
        labels_old = None
        strict_convergence = False
        for i in range(self.max_iter):
            # The distances only when this iteration needs them (verbose, an empty cluster) or
            # the loop ends on it (strict convergence: the inertia): kmeans_distances gives them
            # then, the same as the step would have. Skipping them saves ~8% of a step.
            labels, distances, sums, weights = ops.kmeans_step(
                X, sample_weight, centers, precision=precision, return_distances=bool(self.verbose),
                backend=self.backend, check_input=False,
            )
            if self.verbose:
                print(f"Iteration {i}, inertia {self._inertia(X, sample_weight, distances)}.")
            if distances is None and bool((weights == 0).any()):
                distances = self._distances(X, centers, labels)
            _relocate_empty_clusters(X, sample_weight, labels, distances, sums, weights)
            new_centers = self._normalize_centers(_average_centers(sums, weights).astype(X.dtype))
            center_shift_total = float(((new_centers - centers) ** 2).sum())
            step_centers, centers = centers, new_centers
            if labels_old is not None and bool(xp.array_equal(labels, labels_old)):
                if self.verbose:
                    print(f"Converged at iteration {i}: strict convergence.")
                strict_convergence = True
                break
            if center_shift_total <= self._tol:
                if self.verbose:
                    print(
                        f"Converged at iteration {i}: center shift {center_shift_total} "
                        f"within tolerance {self._tol}."
                    )
                break
            labels_old = labels
        if not strict_convergence:
            # A final assignment, so that the labels match the final centres.
            labels, distances = ops.kmeans_assign(
                X, centers, precision=precision, backend=self.backend, check_input=False
            )
        elif distances is None:
            distances = self._distances(X, step_centers, labels)
        return labels, self._inertia(X, sample_weight, distances), centers, i + 1

    def _distances(self, X, centers, labels):
        return ops.kmeans_distances(X, centers, labels, backend=self.backend, check_input=False)

    def _inertia(self, X_fit, sample_weight, squared_distances):
        inertia = float((sample_weight.astype(np.float64) * squared_distances).sum())
        if self.metric != "cosine":
            return inertia
        # For a unit centre c, 1 - x.c = (|x - c|^2 + 1 - |x|^2) / 2, and |x|^2 is 1 for a
        # unit row, 0 for a zero row (whose cosine distance is 1).
        zero_rows = ~(X_fit != 0).any(axis=1)
        return (inertia + float(sample_weight[zero_rows].astype(np.float64).sum())) / 2

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute the k-means clustering of X (n_samples, n_features)."""
        X = validate_data(self, X, reset=True)
        self._check_params_vs_input(X)
        random_state = check_random_state(self.random_state)
        sample_weight = self._check_sample_weight(sample_weight, X)
        init = self.init
        if _is_arraylike_not_scalar(init):
            init = check_array(init, input_name="init", dtype=X.dtype)
            self._validate_center_shape(X, init)
        X_fit = self._prepare(X)
        # Resolved once (one warning where the backend has no tensor cores).
        precision = effective(self.precision, *ops.select_backend(self.backend, X), stacklevel=4)

        best = None
        with native_fit_context(self.backend, X):
            for _ in range(self._n_init):
                centers_init = self._init_centroids(X_fit, init, random_state, sample_weight)
                if self.verbose:
                    print("Initialization complete")
                labels, inertia, centers, n_iter = self._lloyd(X_fit, sample_weight, centers_init, precision)
                # Keep a new run only if it is better and not the same clustering relabelled
                # (rounding can make a permuted clustering look slightly better).
                if best is None or (
                    inertia < best[1] and not _is_same_clustering(labels, best[0], self.n_clusters)
                ):
                    best = (labels, inertia, centers, n_iter)

        labels, inertia, centers, n_iter = best
        distinct_clusters = int(np.count_nonzero(np.bincount(to_host(labels), minlength=self.n_clusters)))
        if distinct_clusters < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct_clusters}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = centers
        self._n_features_out = self.n_clusters
        self.labels_ = labels
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        return self

    # ---- using the model ---------------------------------------------------------------------

    def _check_test_data(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return X, self._prepare(X)

    def predict(self, X):
        """Index of the nearest centre of each row of X (int32)."""
        reference = X
        _, X_fit = self._check_test_data(X)
        labels, _ = ops.kmeans_assign(
            X_fit, self.cluster_centers_, precision=self.precision, backend=self.backend, check_input=False
        )
        return to_like(reference, labels)

    def fit_predict(self, X, y=None, sample_weight=None):
        """``fit(X).labels_``."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Distances from each row of X to every centre (cosine distances in cosine mode)."""
        reference = X
        X, _ = self._check_test_data(X)
        return to_like(reference, self._transform(X))

    def _transform(self, X):
        return ops.pairwise_distances(X, self.cluster_centers_, self.metric, backend=self.backend)

    def fit_transform(self, X, y=None, sample_weight=None):
        """``fit(X).transform(X)``."""
        return self.fit(X, sample_weight=sample_weight)._transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the weighted inertia of X under the fitted centres."""
        X, X_fit = self._check_test_data(X)
        sample_weight = self._check_sample_weight(sample_weight, X)
        _, distances = ops.kmeans_assign(
            X_fit, self.cluster_centers_, precision=self.precision, backend=self.backend, check_input=False
        )
        return -self._inertia(X_fit, sample_weight, distances)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _relocate_empty_clusters(X, sample_weight, labels, distances, sums, weights):
    """Move each empty cluster to one of the points farthest from their centres (in place).

    As scikit-learn: the farthest points, by their distance to their current centre, each
    leave their cluster for an empty one; nothing moves when every distance is 0 (more
    clusters than distinct points). Labels are left as they are.
    """
    xp = array_namespace(X)
    empty = xp.flatnonzero(weights == 0)
    n_empty = int(empty.shape[0])
    if n_empty == 0 or float(distances.max()) == 0:
        return
    farthest = xp.argpartition(distances, -n_empty)[: -n_empty - 1 : -1]
    for new_cluster, far in zip(to_host(empty).tolist(), to_host(farthest).tolist()):
        weight = float(sample_weight[far])
        old_cluster = int(labels[far])
        point = X[far].astype(np.float64) * weight
        sums[old_cluster] -= point
        sums[new_cluster] = point
        weights[new_cluster] = weight
        weights[old_cluster] -= weight


def _average_centers(sums, weights):
    """Weighted means; a cluster still empty sits on the heaviest cluster's centre."""
    xp = array_namespace(sums)
    centers = sums / xp.where(weights > 0, weights, 1.0)[:, None]
    empty = weights <= 0
    if bool(empty.any()):
        centers[empty] = centers[int(xp.argmax(weights))]
    return centers


def _is_same_clustering(labels1, labels2, n_clusters):
    """True when the two labelings are the same partition, up to a permutation."""
    labels1, labels2 = to_host(labels1), to_host(labels2)
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    for a, b in zip(labels1, labels2):
        if mapping[a] == -1:
            mapping[a] = b
        elif mapping[a] != b:
            return False
    return True
