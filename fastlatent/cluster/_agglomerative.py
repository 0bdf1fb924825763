"""Agglomerative (hierarchical) clustering: ``fastlatent.linkage`` and
``AgglomerativeClustering``, a drop-in for ``sklearn.cluster.AgglomerativeClustering``.

The tree comes from one op, ``fastlatent.ops.linkage`` (Ward by the nearest-neighbour chain
over centroids, O(n * d) memory; single linkage by Prim's minimum spanning tree, O(n) extra
memory; average and complete by the nearest-neighbour chain over a condensed distance
matrix, refused up front when it cannot fit). The estimator then cuts the tree exactly as
scikit-learn does (``_cut_tree`` below follows ``sklearn.cluster._agglomerative._hc_cut``),
so its ``labels_`` are scikit-learn's, numbering included, up to ties between merge heights.

Differences from scikit-learn, on purpose:
- ``connectivity`` (structured clustering) is not implemented: any value but None is refused.
- ``metric`` is one of "euclidean", "l2", "manhattan", "l1", "cityblock", "cosine" (Ward:
  euclidean only, as in scikit-learn); "precomputed" and callables are refused.
- Ward never builds an n x n matrix (scikit-learn's, through SciPy, needs 8 n^2 / 2 bytes).
"""

import heapq
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_memory

from .. import ops
from .._arrays import to_host
from .._config import BACKEND_CHOICES
from .._validation import validate_data
from ..ops.hierarchy import check_linkage_method

_METRICS = {"euclidean", "l2", "manhattan", "l1", "cityblock", "cosine"}


def linkage(X, method="ward", metric="euclidean", *, backend=None):
    """Hierarchical clustering of the rows of X: a SciPy linkage matrix.

    Same output as ``scipy.cluster.hierarchy.linkage(X, method, metric)`` (heights to
    rounding, merges up to ties), so ``fcluster``, ``dendrogram`` and ``cut_tree`` take it
    unchanged, without SciPy's n(n-1)/2 distance matrix for Ward and single linkage.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), n_samples >= 2
    method : {"ward", "complete", "average", "single"}, default="ward"
    metric : {"euclidean", "sqeuclidean", "cosine", "manhattan"}, default="euclidean"
        Aliases "l2", "l1", "cityblock" accepted. Ward: euclidean only.
    backend : {"auto", "cpu", "numba", "numpy"}, default=None (the configured one)

    Returns
    -------
    Z : float64 array of shape (n_samples - 1, 4)
        Row i merges clusters Z[i, 0] < Z[i, 1] at height Z[i, 2] into cluster
        n_samples + i of Z[i, 3] samples; heights never decrease.

    Raises
    ------
    MemoryError
        average/complete linkage when the condensed distance matrix (8 n(n-1)/2 bytes)
        does not fit in the memory available; the message says how much it needs.
    """
    Z = ops.linkage(X, method, metric, backend=backend)
    Z[:, :2].sort(axis=1)
    return Z


def _cut_tree(n_clusters, children, n_leaves):
    """Labels of the ``n_clusters`` clusters at the top of the tree, numbered as
    scikit-learn's ``_hc_cut`` numbers them (the order of its heap of cluster ids)."""
    if n_clusters > n_leaves:
        raise ValueError(
            "Cannot extract more clusters than samples: "
            f"{n_clusters} clusters were given for a tree with {n_leaves} leaves."
        )
    # Split the newest cluster n_clusters - 1 times; the heap holds negated ids, so its
    # first element is the newest cluster. The same pushes as scikit-learn's, in the same
    # order, leave the same heap, whose order numbers the clusters.
    nodes = [-(max(children[-1]) + 1)]
    for _ in range(n_clusters - 1):
        left, right = children[-nodes[0] - n_leaves]
        heapq.heappush(nodes, -int(left))
        heapq.heappushpop(nodes, -int(right))
    # Each leaf takes the number of its ancestor in the heap: walk down from the root,
    # each internal node passing its number to its children (a child's id < its parent's).
    cluster_of = np.full(2 * n_leaves - 1, -1, dtype=np.intp)
    cluster_of[[-node for node in nodes]] = np.arange(len(nodes))
    for node in range(2 * n_leaves - 2, n_leaves - 1, -1):
        number = cluster_of[node]
        if number >= 0:
            cluster_of[children[node - n_leaves]] = number
    return cluster_of[:n_leaves].copy()


def _build_tree(X, linkage, metric, backend):
    """(children, distances) of the full tree, as scikit-learn reports them: pairs in merge
    order for single linkage under the metrics its own Prim handles, SciPy's sorted pairs
    otherwise (single + cosine goes through SciPy in scikit-learn)."""
    Z = ops.linkage(X, linkage, metric, backend=backend, check_input=False)
    children = Z[:, :2].astype(np.intp)
    if linkage != "single" or metric == "cosine":
        children.sort(axis=1)
    return children, Z[:, 2].copy()


class AgglomerativeClustering(ClusterMixin, BaseEstimator):
    """Agglomerative clustering, a drop-in for ``sklearn.cluster.AgglomerativeClustering``.

    Recursively merges the pair of clusters that are closest under the linkage; the tree
    is cut at ``n_clusters`` clusters or at ``distance_threshold``.

    Parameters
    ----------
    n_clusters : int or None, default=2
        Number of clusters; None when ``distance_threshold`` is set.
    metric : {"euclidean", "l2", "manhattan", "l1", "cityblock", "cosine"}, default="euclidean"
        Ward accepts "euclidean" and "l2" only.
    memory : str or object with the joblib.Memory interface, default=None
        Caches the tree.
    connectivity : None
        Structured clustering is not implemented; anything but None is refused in ``fit``.
    compute_full_tree : "auto" or bool, default="auto"
        Must be True (or "auto") with ``distance_threshold``. Without connectivity the full
        tree is always built, as in scikit-learn.
    linkage : {"ward", "complete", "average", "single"}, default="ward"
    distance_threshold : float, default=None
        Clusters are not merged at or above this linkage distance.
    compute_distances : bool, default=False
        Keep ``distances_`` even without ``distance_threshold``.
    backend : {"auto", "cpu", "numba", "numpy"}, default=None
        Where the tree is built; None follows ``fastlatent.config_context``.

    Attributes
    ----------
    n_clusters_ : int
    labels_ : int array (n_samples,)
    n_leaves_ : int
    n_connected_components_ : int (1: there is no connectivity)
    children_ : int array (n_samples - 1, 2)
        Row i merges ``children_[i]`` into node n_samples + i.
    distances_ : float64 array (n_samples - 1,)
        Merge heights; set with ``distance_threshold`` or ``compute_distances``.
    n_features_in_ : int
    feature_names_in_ : array of str, when X has feature names
    """

    _parameter_constraints = {
        "n_clusters": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "metric": [StrOptions(_METRICS)],
        "memory": [str, HasMethods("cache"), None],
        "connectivity": ["array-like", "sparse matrix", callable, None],
        "compute_full_tree": [StrOptions({"auto"}), "boolean"],
        "linkage": [StrOptions({"ward", "complete", "average", "single"})],
        "distance_threshold": [Interval(numbers.Real, 0, None, closed="left"), None],
        "compute_distances": ["boolean"],
        "backend": [StrOptions(set(BACKEND_CHOICES)), None],
    }

    def __init__(
        self,
        n_clusters=2,
        *,
        metric="euclidean",
        memory=None,
        connectivity=None,
        compute_full_tree="auto",
        linkage="ward",
        distance_threshold=None,
        compute_distances=False,
        backend=None,
    ):
        self.n_clusters = n_clusters
        self.metric = metric
        self.memory = memory
        self.connectivity = connectivity
        self.compute_full_tree = compute_full_tree
        self.linkage = linkage
        self.distance_threshold = distance_threshold
        self.compute_distances = compute_distances
        self.backend = backend

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the tree of X and cut it; returns self."""
        # The tree is built on the host (no GPU linkage yet); labels_ are NumPy either way.
        X = to_host(validate_data(self, X, reset=True, min_samples=2))
        memory = check_memory(self.memory)
        if not ((self.n_clusters is None) ^ (self.distance_threshold is None)):
            raise ValueError(
                "Exactly one of n_clusters and distance_threshold has to be set, and the other "
                "needs to be None."
            )
        if self.distance_threshold is not None and not self.compute_full_tree:
            raise ValueError("compute_full_tree must be True if distance_threshold is set.")
        if self.linkage == "ward" and self.metric not in ("euclidean", "l2"):
            raise ValueError(
                f"{self.metric} was provided as metric. Ward can only work with euclidean "
                "distances (i.e. 'euclidean' and 'l2')."
            )
        if self.connectivity is not None:
            raise ValueError(
                "connectivity is not supported by fastlatent.AgglomerativeClustering "
                "(structured clustering is not implemented); leave it None, or use "
                "sklearn.cluster.AgglomerativeClustering for a connectivity graph."
            )
        metric = check_linkage_method(self.linkage, self.metric)[1]
        if metric == "cosine" and not np.all(np.any(X, axis=1)):
            raise ValueError("Cosine affinity cannot be used when X contains zero vectors")

        # Without connectivity scikit-learn always builds the full tree ("auto" included).
        children, distances = memory.cache(_build_tree)(X, self.linkage, metric, self.backend)
        self.children_ = children
        self.n_connected_components_ = 1
        self.n_leaves_ = X.shape[0]
        if self.distance_threshold is not None or self.compute_distances:
            self.distances_ = distances
        if self.distance_threshold is not None:
            self.n_clusters_ = int(np.count_nonzero(distances >= self.distance_threshold)) + 1
        else:
            self.n_clusters_ = self.n_clusters
        self.labels_ = _cut_tree(self.n_clusters_, self.children_, self.n_leaves_)
        return self

    def fit_predict(self, X, y=None):
        """Fit and return ``labels_``."""
        return super().fit_predict(X, y)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags
