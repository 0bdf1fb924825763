"""fastlatent.KMeans against sklearn.cluster.KMeans, on every backend."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import KMeans as SkKMeans
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastlatent import KMeans, ops
from fastlatent.cluster._kmeans import _relocate_empty_clusters
from tolerances import KMEANS_CENTERS_RTOL, KMEANS_INERTIA_RTOL


def blobs(dtype, n_samples=3000, n_features=10, centers=8, seed=0):
    X, _ = make_blobs(n_samples, n_features=n_features, centers=centers, cluster_std=2.0, random_state=seed)
    return X.astype(dtype)


def _expected_failed_checks(estimator):
    # scikit-learn x-fails this check for its own KMeans: weights change the random
    # initialisation, so weighted and repeated data are seeded differently.
    return {"check_sample_weight_equivalence_on_dense_data": "sample_weight changes the random init, as in sklearn"}


@parametrize_with_checks(
    [KMeans(n_clusters=3, n_init=2, backend="numpy"), KMeans(n_clusters=3, metric="cosine")],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("backend_name", ["numpy", "numba", "cpu"])
@pytest.mark.parametrize("n_clusters", [1, 8, 40])
def test_same_labels_and_inertia_as_sklearn_from_the_same_init(backend_name, dtype, n_clusters):
    from fastlatent.backends import is_available

    if not is_available(backend_name):
        pytest.skip(f"{backend_name} not available")
    X = blobs(dtype)
    init = X[np.random.default_rng(1).choice(len(X), n_clusters, replace=False)]
    for tol in (1e-4, 0.0):
        ours = KMeans(n_clusters, init=init, n_init=1, tol=tol, backend=backend_name).fit(X)
        theirs = SkKMeans(n_clusters, init=init, n_init=1, tol=tol).fit(X)
        assert_array_equal(ours.labels_, theirs.labels_)
        assert ours.n_iter_ == theirs.n_iter_
        assert_allclose(ours.inertia_, theirs.inertia_, rtol=KMEANS_INERTIA_RTOL[dtype])
        assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=KMEANS_CENTERS_RTOL[dtype], atol=1e-5)
        assert ours.cluster_centers_.dtype == dtype and ours.labels_.dtype == np.int32


def test_kmeans_plusplus_draws_the_same_rows_as_sklearn(dtype):
    X = blobs(dtype, n_samples=2000)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(X)).astype(dtype)
    for k in (1, 5, 50):
        centers, indices = ops.kmeans_plusplus(X, k, weight, np.random.RandomState(3), backend="numpy")
        sk_centers, sk_indices = sk_kmeans_plusplus(X, k, sample_weight=weight, random_state=3)
        assert_array_equal(indices, sk_indices)
        assert_array_equal(centers, sk_centers)


def test_default_fit_matches_sklearn_for_a_seed(dtype):
    X = blobs(dtype)
    ours = KMeans(8, random_state=0).fit(X)
    theirs = SkKMeans(8, random_state=0).fit(X)
    assert_array_equal(ours.labels_, theirs.labels_)
    assert_allclose(ours.inertia_, theirs.inertia_, rtol=KMEANS_INERTIA_RTOL[dtype])


def test_backends_agree(backend, dtype):
    X = blobs(dtype)
    ours = KMeans(8, random_state=0, n_init=3, init="random", backend=backend).fit(X)
    reference = KMeans(8, random_state=0, n_init=3, init="random", backend="numpy").fit(X)
    assert_array_equal(ours.labels_, reference.labels_)
    assert_allclose(ours.inertia_, reference.inertia_, rtol=KMEANS_INERTIA_RTOL[dtype])


def test_toy_example_from_sklearn(dtype):
    X = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]], dtype=dtype)
    km = KMeans(n_clusters=2, n_init=1, init=np.array([[0, 0], [1, 1]], dtype=dtype))
    km.fit(X, sample_weight=[3, 1, 1, 3])
    assert_array_equal(km.labels_, [0, 0, 1, 1])
    assert_allclose(km.inertia_, 0.375)
    assert_allclose(km.cluster_centers_, [[0.125, 0], [0.875, 1]])
    assert km.n_iter_ == 2


def test_relocate_empty_clusters():
    # scikit-learn's example: all points start in cluster 0; the two farthest move out.
    X = np.array([-10.0, -9.5, -9, -8.5, -8, -1, 1, 9, 9.5, 10]).reshape(-1, 1)
    sample_weight = np.ones(10)
    labels = np.zeros(10, dtype=np.int32)
    distances = ((X - -10.0) ** 2).ravel()
    sums = np.array([[-16.5], [0.0], [0.0]])
    weights = np.array([10.0, 0, 0])
    _relocate_empty_clusters(X, sample_weight, labels, distances, sums, weights)
    assert_array_equal(weights, [8, 1, 1])
    assert_allclose(sums, [[-36], [10], [9.5]])


def test_relocated_clusters_in_a_fit():
    X = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]])
    init = np.array([[0.5, 0.5], [3, 3]])
    km = KMeans(n_clusters=2, n_init=1, init=init).fit(X)
    sk = SkKMeans(n_clusters=2, n_init=1, init=init).fit(X)
    assert_array_equal(km.labels_, sk.labels_)
    assert_allclose(km.cluster_centers_, sk.cluster_centers_)
    assert_allclose(km.inertia_, sk.inertia_)


@pytest.mark.parametrize("case", ["strict convergence", "empty cluster"])
def test_lloyd_without_step_distances_changes_nothing(backend, dtype, case, capsys):
    """The Lloyd loop asks its steps for no distances (verbose=0) and computes them only where
    an iteration needs them: an empty cluster to relocate, the inertia after strict
    convergence. verbose=1 takes every step's distances; the fits must agree (on the fused cpu
    kernel bit for bit: kmeans_distances gives the step's own bits)."""
    X, _ = make_blobs(2000, 8, centers=4, cluster_std=0.3, random_state=0)
    X = X.astype(dtype)
    init = X[[0, 1, 2, 3]].copy()
    if case == "empty cluster":
        init[3] = X.max(axis=0) + 100  # nearest to no row: relocated at the first iteration
    fits = [
        KMeans(4, init=init, n_init=1, tol=0, verbose=verbose, backend=backend).fit(X)
        for verbose in (0, 1)
    ]
    assert "strict convergence" in capsys.readouterr().out
    assert_array_equal(fits[0].labels_, fits[1].labels_)
    assert_array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    if backend == "cpu":
        assert fits[0].inertia_ == fits[1].inertia_
    else:
        assert_allclose(fits[0].inertia_, fits[1].inertia_, rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_weight_two_is_repeating_the_row(backend):
    X = blobs(np.float64, n_samples=300)
    repeats = np.random.default_rng(0).integers(1, 4, len(X))
    init = X[:5]
    weighted = KMeans(5, init=init, n_init=1, backend=backend).fit(X, sample_weight=repeats)
    repeated = KMeans(5, init=init, n_init=1, backend=backend).fit(np.repeat(X, repeats, axis=0))
    assert_array_equal(weighted.labels_, repeated.labels_[np.cumsum(repeats) - 1])
    assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_)
    assert_allclose(weighted.inertia_, repeated.inertia_)


def test_unit_and_scaled_weights_change_nothing():
    X = blobs(np.float64, n_samples=500)
    plain = KMeans(6, random_state=0).fit(X)
    weight = np.ones(len(X))
    unit = KMeans(6, random_state=0).fit(X, sample_weight=weight)
    scaled = KMeans(6, random_state=0).fit(X, sample_weight=weight * 3.5)
    assert_array_equal(weight, 1.0)  # the caller's array is not modified
    for other in (unit, scaled):
        assert_array_equal(other.labels_, plain.labels_)
        assert_allclose(other.cluster_centers_, plain.cluster_centers_)
    assert_allclose(scaled.inertia_, 3.5 * plain.inertia_)


@pytest.mark.parametrize(
    "weight, message",
    [
        (np.zeros(20), "Sample weights must contain at least one non-zero number."),
        (np.ones(5), r"sample_weight.shape == \(5,\), expected \(20,\)!"),
        (-np.ones(20), "Negative values in data passed to `sample_weight`."),
    ],
)
def test_bad_sample_weight(weight, message):
    with pytest.raises(ValueError, match=message):
        KMeans(2).fit(np.random.default_rng(0).standard_normal((20, 3)), sample_weight=weight)


def test_predict_fit_predict_labels_agree(backend, dtype):
    X = blobs(dtype, n_samples=1000)
    km = KMeans(7, random_state=2, backend=backend).fit(X)
    assert_array_equal(km.predict(X), km.labels_)
    assert_array_equal(KMeans(7, random_state=2, backend=backend).fit_predict(X), km.labels_)
    assert_array_equal(km.predict(km.cluster_centers_), np.arange(7))


def test_transform_and_score(dtype):
    X = blobs(dtype, n_samples=500)
    km = KMeans(4, random_state=0).fit(X)
    sk = SkKMeans(4, init=km.cluster_centers_, n_init=1, max_iter=1).fit(X)
    sk.cluster_centers_ = km.cluster_centers_
    assert_allclose(km.transform(X), sk.transform(X), rtol=1e-4 if dtype == np.float32 else 1e-9, atol=1e-4)
    assert km.transform(X).dtype == dtype
    assert_allclose(km.score(X), -km.inertia_, rtol=1e-6)
    assert_allclose(km.fit_transform(X), km.transform(X))
    assert list(km.get_feature_names_out()) == [f"kmeans{i}" for i in range(4)]


def test_k_equals_n_and_k_one():
    X = np.random.default_rng(0).standard_normal((12, 3))
    km = KMeans(12, random_state=0).fit(X)
    assert sorted(km.labels_) == list(range(12))
    assert km.inertia_ == 0
    km1 = KMeans(1, random_state=0).fit(X)
    assert_allclose(km1.cluster_centers_[0], X.mean(axis=0))
    assert_allclose(km1.inertia_, ((X - X.mean(axis=0)) ** 2).sum())


def test_single_feature_and_float32_vs_float64():
    X = blobs(np.float64, n_samples=800, n_features=1, centers=4)
    a = KMeans(4, random_state=0).fit(X)
    b = KMeans(4, random_state=0).fit(X.astype(np.float32))
    assert_array_equal(a.labels_, b.labels_)
    assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-4)


def test_fewer_distinct_points_than_clusters_warns():
    X = np.array([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5 + [[5.0, 5.0]] * 5)
    with pytest.warns(ConvergenceWarning, match=r"Number of distinct clusters \(3\) found smaller than n_clusters \(4\)"):
        KMeans(4, random_state=0).fit(X)


def test_c_and_fortran_order_agree():
    X = blobs(np.float64, n_samples=600)
    a = KMeans(5, random_state=0).fit(X)
    b = KMeans(5, random_state=0).fit(np.asfortranarray(X))
    assert_array_equal(a.labels_, b.labels_)
    assert_allclose(a.cluster_centers_, b.cluster_centers_)


def test_n_init_auto_and_explicit_init_warning():
    X = blobs(np.float64, n_samples=200)
    assert KMeans(3, n_init="auto").fit(X)._n_init == 1
    assert KMeans(3, init="random", n_init="auto").fit(X)._n_init == 10
    with pytest.warns(RuntimeWarning, match="performing only one init in KMeans instead of n_init=5"):
        KMeans(3, init=X[:3], n_init=5).fit(X)


def test_input_errors():
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(ValueError, match="n_samples=20 should be >= n_clusters=30."):
        KMeans(30).fit(X)
    km = KMeans(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but KMeans is expecting 3 features as input."):
        km.predict(X[:, :2])
    with pytest.raises(ValueError, match=r"The shape of the initial centers \(2, 3\) does not match the number of clusters 3"):
        KMeans(3, init=X[:2]).fit(X)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        KMeans(3).fit(np.where(X > 1, np.nan, X))
    with pytest.raises(ValueError, match="The 'n_clusters' parameter of KMeans must be an int in the range"):
        KMeans(0).fit(X)


def spherical_kmeans_reference(X, centers, n_iter):
    """The slow obvious spherical k-means: unit rows, argmax cosine, normalised means."""
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    for _ in range(n_iter):
        labels = np.argmax(X @ centers.T, axis=1)
        centers = np.stack([X[labels == k].sum(axis=0) for k in range(len(centers))])
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = np.argmax(X @ centers.T, axis=1)
    return labels, centers, (1 - np.sum(X * centers[labels], axis=1)).sum()


def test_spherical_mode_matches_the_reference(backend):
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((5, 16))
    X = np.repeat(directions, 100, axis=0) + 0.3 * rng.standard_normal((500, 16))
    X *= rng.uniform(0.5, 20, (500, 1))  # lengths must not matter
    init = X[[0, 100, 200, 300, 400]] + 0.5
    km = KMeans(5, init=init, n_init=1, metric="cosine", tol=0, backend=backend).fit(X)
    labels, centers, inertia = spherical_kmeans_reference(X, init, km.n_iter_)
    assert_array_equal(km.labels_, labels)
    assert_allclose(km.cluster_centers_, centers, rtol=1e-7, atol=1e-9)
    assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0)
    assert_allclose(km.inertia_, inertia, rtol=1e-7)
    assert_allclose(km.transform(X).min(axis=1).sum(), inertia, rtol=1e-7)


def test_spherical_mode_zero_rows_are_at_distance_one():
    X = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 3.0], [0.1, 1.0], [0.0, 0.0]])
    km = KMeans(2, init=X[[0, 2]], n_init=1, metric="cosine").fit(X)
    assert_allclose(km.transform(X[4:5]), [[1.0, 1.0]])
    assert_allclose(km.inertia_, km.transform(X)[np.arange(5), km.labels_].sum(), rtol=1e-12)


def test_pickle_and_input_untouched():
    X = blobs(np.float64, n_samples=300)
    before = X.copy()
    km = KMeans(4, random_state=0, copy_x=False).fit(X)
    assert_array_equal(X, before)
    again = pickle.loads(pickle.dumps(km))
    assert_array_equal(again.predict(X), km.labels_)


def test_same_result_with_one_and_two_threads():
    _cpu = pytest.importorskip("fastlatent._cpu")
    from threadpoolctl import threadpool_limits

    X = blobs(np.float32, n_samples=20000, n_features=32, centers=20)
    two = KMeans(20, random_state=0, backend="cpu").fit(X)
    with threadpool_limits(limits=1, user_api="openmp"):
        if _cpu.max_threads() != 1:
            pytest.skip("threadpoolctl cannot limit this OpenMP runtime")
        one = KMeans(20, random_state=0, backend="cpu").fit(X)
    assert_array_equal(one.labels_, two.labels_)
    assert one.n_iter_ == two.n_iter_
    assert_allclose(one.cluster_centers_, two.cluster_centers_, rtol=1e-6)


def test_two_python_threads_fit_at_once(backend):
    from concurrent.futures import ThreadPoolExecutor

    datasets = [blobs(np.float64, n_samples=5000, seed=s) for s in range(4)]
    alone = [KMeans(8, random_state=0, backend=backend).fit(X).labels_ for X in datasets]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda X: KMeans(8, random_state=0, backend=backend).fit(X).labels_, datasets))
    for a, b in zip(alone, together):
        assert_array_equal(a, b)
