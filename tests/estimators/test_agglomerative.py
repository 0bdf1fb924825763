"""fastlatent.AgglomerativeClustering against sklearn.cluster.AgglomerativeClustering."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import AgglomerativeClustering as SkAgglomerative
from sklearn.datasets import make_blobs
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastlatent import AgglomerativeClustering
from fastlatent.backends import get_backend, is_available
from fastlatent.cluster._agglomerative import _cut_tree
from tolerances import LINKAGE_HEIGHT_TOL

CASES = [
    ("ward", "euclidean"),
    ("single", "euclidean"),
    ("single", "cosine"),
    ("single", "manhattan"),
    ("average", "euclidean"),
    ("average", "cosine"),
    ("average", "l1"),
    ("complete", "euclidean"),
    ("complete", "cosine"),
    ("complete", "manhattan"),
]


def blobs(dtype, n_samples=300, n_features=6, seed=0):
    X, _ = make_blobs(n_samples, n_features=n_features, centers=5, cluster_std=1.5, random_state=seed)
    return X.astype(dtype)


@parametrize_with_checks(
    [
        AgglomerativeClustering(backend="numpy"),
        AgglomerativeClustering(linkage="single"),
        AgglomerativeClustering(linkage="average", metric="manhattan"),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _skip_unless_linkage(backend_name):
    if not is_available(backend_name):
        pytest.skip(f"{backend_name} not available")
    if not hasattr(get_backend(backend_name), "linkage"):
        pytest.skip(f"the {backend_name} backend has no linkage op yet")


@pytest.mark.parametrize("backend_name", ["numpy", "numba", "cpu"])
@pytest.mark.parametrize("linkage,metric", CASES)
def test_same_tree_and_labels_as_sklearn(backend_name, linkage, metric, dtype):
    _skip_unless_linkage(backend_name)
    X = blobs(dtype)
    for params in ({"n_clusters": 5}, {"n_clusters": 40}, {"n_clusters": None, "distance_threshold": 3.0}):
        if metric == "cosine" and "distance_threshold" in params:
            params = {"n_clusters": None, "distance_threshold": 0.01}
        ours = AgglomerativeClustering(linkage=linkage, metric=metric, backend=backend_name, **params).fit(X)
        theirs = SkAgglomerative(linkage=linkage, metric=metric, **params).fit(X)
        assert_array_equal(ours.children_, theirs.children_)
        assert_array_equal(ours.labels_, theirs.labels_)
        assert ours.n_clusters_ == theirs.n_clusters_
        assert ours.n_leaves_ == theirs.n_leaves_ == len(X)
        assert ours.n_connected_components_ == theirs.n_connected_components_ == 1
        assert ours.n_features_in_ == X.shape[1]
        if "distance_threshold" in params:
            rtol, atol = LINKAGE_HEIGHT_TOL
            assert_allclose(ours.distances_, theirs.distances_, rtol=rtol, atol=atol)
            assert 1 < ours.n_clusters_ < len(X)
        else:
            assert not hasattr(ours, "distances_")


def test_compute_distances_and_fit_predict():
    X = blobs(np.float64, n_samples=100)
    model = AgglomerativeClustering(n_clusters=3, compute_distances=True)
    labels = model.fit_predict(X)
    assert_array_equal(labels, model.labels_)
    assert model.distances_.shape == (99,)
    assert np.all(np.diff(model.distances_) >= 0)
    assert_array_equal(np.unique(labels), [0, 1, 2])


@pytest.mark.parametrize("linkage", ["ward", "single", "average", "complete"])
def test_thresholds_giving_one_cluster_and_every_sample_alone(linkage):
    X = blobs(np.float64, n_samples=50)
    alone = AgglomerativeClustering(n_clusters=None, distance_threshold=0.0, linkage=linkage).fit(X)
    assert alone.n_clusters_ == 50
    assert_array_equal(np.sort(alone.labels_), np.arange(50))
    together = AgglomerativeClustering(n_clusters=None, distance_threshold=1e9, linkage=linkage).fit(X)
    assert together.n_clusters_ == 1
    assert_array_equal(together.labels_, np.zeros(50))
    theirs = SkAgglomerative(n_clusters=None, distance_threshold=0.0, linkage=linkage).fit(X)
    assert_array_equal(alone.labels_, theirs.labels_)


@pytest.mark.parametrize("linkage", ["ward", "single", "average", "complete"])
def test_two_samples(linkage):
    X = np.array([[0.0, 1.0], [2.0, 1.0]])
    for n_clusters in (1, 2):
        ours = AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage).fit(X)
        theirs = SkAgglomerative(n_clusters=n_clusters, linkage=linkage).fit(X)
        assert_array_equal(ours.labels_, theirs.labels_)
        assert_array_equal(ours.children_, [[0, 1]])


def test_duplicates_give_sklearns_partition():
    base = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0], [5.0, 5.0], [9.0, 0.0]])
    X = np.concatenate([base, base + 20])
    for linkage in ("ward", "single", "average", "complete"):
        ours = AgglomerativeClustering(n_clusters=6, linkage=linkage).fit(X)
        theirs = SkAgglomerative(n_clusters=6, linkage=linkage).fit(X)
        # The same partition (numbering may differ where ties merged in another order).
        pairs_ours = ours.labels_[:, None] == ours.labels_[None, :]
        pairs_theirs = theirs.labels_[:, None] == theirs.labels_[None, :]
        assert_array_equal(pairs_ours, pairs_theirs)


def test_cut_tree_matches_sklearn_numbering():
    from sklearn.cluster._agglomerative import _hc_cut

    X = blobs(np.float64, n_samples=200)
    children = SkAgglomerative(n_clusters=2, linkage="single").fit(X).children_
    for n_clusters in (1, 2, 7, 60, 200):
        assert_array_equal(_cut_tree(n_clusters, children, 200), _hc_cut(n_clusters, children, 200))


def test_float32_and_float64_agree():
    X = blobs(np.float32)
    a = AgglomerativeClustering(n_clusters=5).fit(X)
    b = AgglomerativeClustering(n_clusters=5).fit(X.astype(np.float64))
    assert_array_equal(a.labels_, b.labels_)


def test_errors_have_sklearns_messages():
    X = blobs(np.float64, n_samples=20)
    with pytest.raises(ValueError, match="Exactly one of n_clusters and distance_threshold"):
        AgglomerativeClustering(n_clusters=2, distance_threshold=1.0).fit(X)
    with pytest.raises(ValueError, match="Exactly one of n_clusters and distance_threshold"):
        AgglomerativeClustering(n_clusters=None).fit(X)
    with pytest.raises(ValueError, match="compute_full_tree must be True"):
        AgglomerativeClustering(n_clusters=None, distance_threshold=1.0, compute_full_tree=False).fit(X)
    with pytest.raises(ValueError, match="cosine was provided as metric. Ward can only work"):
        AgglomerativeClustering(metric="cosine").fit(X)
    with pytest.raises(ValueError, match="Cannot extract more clusters than samples: 30 clusters"):
        AgglomerativeClustering(n_clusters=30).fit(X)
    with pytest.raises(InvalidParameterError, match="'metric' parameter"):
        AgglomerativeClustering(metric="precomputed").fit(X)
    with pytest.raises(InvalidParameterError, match="'linkage' parameter"):
        AgglomerativeClustering(linkage="centroid").fit(X)
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        AgglomerativeClustering().fit(X[:1])
    X_zero = X.copy()
    X_zero[0] = 0
    with pytest.raises(ValueError, match="Cosine affinity cannot be used when X contains zero vectors"):
        AgglomerativeClustering(linkage="average", metric="cosine").fit(X_zero)


def test_connectivity_is_refused():
    from sklearn.neighbors import kneighbors_graph

    X = blobs(np.float64, n_samples=30)
    graph = kneighbors_graph(X, 5)
    with pytest.raises(ValueError, match="connectivity is not supported"):
        AgglomerativeClustering(connectivity=graph).fit(X)


def test_memory_refusal_reaches_the_estimator(monkeypatch):
    from fastlatent.ops import hierarchy

    monkeypatch.setattr(hierarchy, "available_memory_bytes", lambda: 10_000)
    X = blobs(np.float64, n_samples=300)
    with pytest.raises(MemoryError, match="needs a condensed distance matrix of .* GiB"):
        AgglomerativeClustering(linkage="complete").fit(X)
    assert AgglomerativeClustering(linkage="ward").fit(X).n_clusters_ == 2


def test_memory_caches_the_tree(tmp_path):
    X = blobs(np.float64, n_samples=60)
    first = AgglomerativeClustering(n_clusters=3, memory=str(tmp_path)).fit(X)
    second = AgglomerativeClustering(n_clusters=4, memory=str(tmp_path)).fit(X)
    assert_array_equal(first.children_, second.children_)
    assert second.n_clusters_ == 4
