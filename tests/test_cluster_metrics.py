"""silhouette_samples / silhouette_score against scikit-learn on every backend, and
clustering_accuracy against a brute-force search over cluster-to-class maps."""

import itertools

import numpy as np
import pytest
from sklearn import metrics as sk

import fastlatent as fl
from tolerances import SILHOUETTE_VS_SKLEARN

ALL_HOST = ["numpy", "numba", "cpu"]


def _tol(dtype):
    rtol, atol = SILHOUETTE_VS_SKLEARN[np.dtype(dtype).type]
    return {"rtol": rtol, "atol": atol}


@pytest.fixture(params=ALL_HOST)
def host_backend(request):
    if request.param not in fl.available_backends():
        pytest.skip(f"backend {request.param!r} not available here")
    return request.param


@pytest.mark.parametrize("metric", ["euclidean", "l2", "sqeuclidean", "cosine", "manhattan", "l1", "cityblock"])
def test_samples_match_sklearn(host_backend, dtype, rng, metric):
    X = rng.normal(size=(400, 9)).astype(dtype)
    labels = rng.integers(0, 6, 400)
    ours = fl.silhouette_samples(X, labels, metric=metric, backend=host_backend)
    assert ours.dtype == dtype and ours.shape == (400,)
    np.testing.assert_allclose(ours, sk.silhouette_samples(X, labels, metric=metric), **_tol(dtype))


def test_score_on_separated_blobs_matches_sklearn(host_backend, rng):
    centres = rng.normal(size=(4, 5)) * 20
    labels = np.repeat(np.arange(4), 50)
    X = centres[labels] + rng.normal(size=(200, 5))
    score = fl.silhouette_score(X, labels, backend=host_backend)
    assert isinstance(score, float) and score > 0.8
    assert score == pytest.approx(sk.silhouette_score(X, labels), rel=1e-6)


def test_sample_size_draws_sklearns_subset(rng):
    X = rng.normal(size=(300, 4))
    labels = rng.integers(0, 3, 300)
    for seed in (0, 7):
        ours = fl.silhouette_score(X, labels, sample_size=60, random_state=seed)
        assert ours == pytest.approx(sk.silhouette_score(X, labels, sample_size=60, random_state=seed), rel=1e-6)
    assert fl.silhouette_score(X, labels, sample_size=60, random_state=0) != pytest.approx(
        fl.silhouette_score(X, labels, sample_size=60, random_state=7)
    )


def test_labels_of_any_type_and_odd_shapes(rng):
    X = rng.normal(size=(30, 1))
    labels = np.array(["b", "a", "c"])[np.arange(30) % 3]
    np.testing.assert_allclose(fl.silhouette_samples(X, labels), sk.silhouette_samples(X, labels), **_tol(np.float64))
    Xf = np.asfortranarray(rng.normal(size=(30, 6)))
    np.testing.assert_allclose(fl.silhouette_samples(Xf, labels), sk.silhouette_samples(Xf, labels), **_tol(np.float64))


def test_singletons_and_duplicates_give_sklearns_zeros(host_backend):
    # Rows 0-2 identical in cluster 0 and row 3 alone in cluster 1: a = b = 0 and 0/0 -> 0.
    X = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 5.0], [5.0, 6.0]])
    labels = np.array([0, 0, 0, 1, 2, 2])
    ours = fl.silhouette_samples(X, labels, backend=host_backend)
    np.testing.assert_allclose(ours, sk.silhouette_samples(X, labels), **_tol(np.float64))
    assert ours[3] == 0.0  # a single-row cluster


def test_other_metrics_go_to_sklearn(rng):
    X = rng.normal(size=(50, 3))
    labels = np.arange(50) % 3
    D = sk.pairwise_distances(X)
    assert fl.silhouette_score(D, labels, metric="precomputed") == pytest.approx(
        sk.silhouette_score(D, labels, metric="precomputed")
    )
    assert fl.silhouette_score(X, labels, metric="chebyshev") == sk.silhouette_score(X, labels, metric="chebyshev")
    assert fl.silhouette_score(X, labels, metric="minkowski", p=3) == sk.silhouette_score(
        X, labels, metric="minkowski", p=3
    )


@pytest.mark.parametrize("n_labels", [1, 10])
def test_number_of_labels_checked_like_sklearn(n_labels):
    X = np.arange(20.0).reshape(10, 2)
    labels = np.arange(10) % n_labels
    with pytest.raises(ValueError, match=f"Number of labels is {n_labels}. Valid values are 2 to n_samples - 1"):
        fl.silhouette_samples(X, labels)


def test_bad_input():
    X = np.arange(20.0).reshape(10, 2)
    labels = np.arange(10) % 2
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        fl.silhouette_score(X, labels[:-1])
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        fl.silhouette_score(bad, labels)
    with pytest.raises(ValueError, match="Expected 2D array"):
        fl.silhouette_score(X[:, 0], labels)
    with pytest.raises(ValueError, match="'sample_size' parameter of silhouette_score"):
        fl.silhouette_score(X, labels, sample_size=0)


def _brute_force_accuracy(y_true, y_pred):
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    best = 0
    slots = list(classes) + [None] * max(0, len(clusters) - len(classes))
    for image in itertools.permutations(slots, len(clusters)):
        mapping = dict(zip(clusters, image))
        best = max(best, sum(mapping[p] == t for t, p in zip(y_true, y_pred)))
    return best / len(y_true)


@pytest.mark.parametrize("n_classes, n_clusters", [(3, 3), (2, 4), (4, 2), (1, 3)])
def test_clustering_accuracy_matches_brute_force(rng, n_classes, n_clusters):
    y_true = rng.integers(0, n_classes, 40)
    y_pred = rng.integers(0, n_clusters, 40)
    assert fl.clustering_accuracy(y_true, y_pred) == pytest.approx(_brute_force_accuracy(y_true, y_pred))


def test_clustering_accuracy_is_invariant_to_renaming():
    y_true = np.array(["cat", "cat", "dog", "dog", "owl"])
    assert fl.clustering_accuracy(y_true, [7, 7, 2, 2, 9]) == 1.0
    assert fl.clustering_accuracy(y_true, [0, 0, 0, 0, 0]) == 0.4
    assert fl.clustering_accuracy(y_true, [0, 1, 0, 1, 2]) == 0.6


def test_clustering_accuracy_bad_input():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        fl.clustering_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="at least one sample"):
        fl.clustering_accuracy([], [])
