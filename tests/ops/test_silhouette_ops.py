"""The silhouette op (per-row sums of distances to every cluster) on every backend against the
NumPy reference, and the reference against sums taken from SciPy's distance matrix."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from fastlatent import ops
from tolerances import SILHOUETTE_SUMS_RTOL

METRICS = ["euclidean", "sqeuclidean", "cosine", "manhattan"]
SHAPES = [  # (n_samples, n_features, n_clusters)
    (1, 1, 1),
    (2, 3, 2),
    (37, 5, 3),
    (20, 4, 20),  # K = N: every cluster a single row
    (301, 64, 7),
    (250, 130, 2),  # more features than the kernel's block holds rows
]


def _data(rng, n, d, k, dtype):
    X = rng.normal(size=(n, d)).astype(dtype)
    labels = rng.permutation(np.arange(n) % k)  # every cluster non-empty, unsorted
    return X, labels


def _scipy_sums(X, labels, k, metric):
    D = cdist(X.astype(np.float64), X.astype(np.float64), "cityblock" if metric == "manhattan" else metric)
    np.fill_diagonal(D, 0.0)
    return np.stack([D[:, labels == c].sum(axis=1) for c in range(k)], axis=1)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_reference_matches_scipy(rng, metric, shape):
    X, labels = _data(rng, *shape, np.float64)
    sums = ops.silhouette_cluster_sums(X, labels, shape[2], metric, backend="numpy")
    np.testing.assert_allclose(sums, _scipy_sums(X, labels, shape[2], metric), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backend_matches_reference(backend, dtype, rng, metric, shape):
    X, labels = _data(rng, *shape, dtype)
    expected = ops.silhouette_cluster_sums(X, labels, shape[2], metric, backend="numpy")
    sums = ops.silhouette_cluster_sums(X, labels, shape[2], metric, backend=backend)
    assert sums.dtype == np.float64 and sums.shape == (shape[0], shape[2])
    np.testing.assert_allclose(sums, expected, rtol=SILHOUETTE_SUMS_RTOL, atol=1e-12)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_backend_accepts_any_layout(backend, rng, layout):
    base = rng.normal(size=(90, 12))
    X = np.asfortranarray(base) if layout == "fortran" else base[::2, ::3]
    labels = np.arange(X.shape[0]) % 4
    original = X.copy()
    sums = ops.silhouette_cluster_sums(X, labels, 4, "euclidean", backend=backend)
    np.testing.assert_array_equal(X, original)  # input untouched
    expected = _scipy_sums(np.ascontiguousarray(X), labels, 4, "euclidean")
    np.testing.assert_allclose(sums, expected, rtol=SILHOUETTE_SUMS_RTOL)


def test_backend_near_duplicate_points_far_from_origin(backend, rng):
    """Rows equal to ~1e-9 around centres at distance ~800 from the origin: the GEMM form's
    worst case. Exactly coincident rows must add exactly zero."""
    centres = rng.normal(size=(30, 64)) * 10 + 100
    X = np.repeat(centres, 12, axis=0) + rng.normal(size=(360, 64)) * 1e-9
    X[:12] = centres[0]  # twelve identical rows
    labels = np.repeat(np.arange(30) % 4, 12)
    expected = ops.silhouette_cluster_sums(X, labels, 4, "euclidean", backend="numpy")
    sums = ops.silhouette_cluster_sums(X, labels, 4, "euclidean", backend=backend)
    np.testing.assert_allclose(sums, expected, rtol=SILHOUETTE_SUMS_RTOL)


def test_empty_cluster_sums_are_zero(backend, rng):
    X = rng.normal(size=(40, 3))
    labels = np.arange(40) % 3 * 2  # clusters 1 and 3 empty
    sums = ops.silhouette_cluster_sums(X, labels, 5, "manhattan", backend=backend)
    assert np.all(sums[:, [1, 3]] == 0.0)
    np.testing.assert_allclose(sums, _scipy_sums(X, labels, 5, "manhattan"), rtol=SILHOUETTE_SUMS_RTOL)


def test_backend_is_deterministic(backend, rng):
    X, labels = _data(rng, 500, 17, 6, np.float64)
    first = ops.silhouette_cluster_sums(X, labels, 6, "euclidean", backend=backend)
    again = ops.silhouette_cluster_sums(X, labels, 6, "euclidean", backend=backend)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize(
    "labels, n_clusters, error, match",
    [
        (np.zeros(9, dtype=np.int64), 2, ValueError, r"labels must have shape \(10,\)"),
        (np.full(10, 2), 2, ValueError, r"labels must lie in \[0, n_clusters\)"),
        (np.full(10, -1), 2, ValueError, r"labels must lie in"),
        (np.zeros(10), 2, TypeError, "labels must be integers"),
    ],
)
def test_bad_labels(labels, n_clusters, error, match):
    X = np.ones((10, 2))
    with pytest.raises(error, match=match):
        ops.silhouette_cluster_sums(X, labels, n_clusters, "euclidean")


def test_bad_x():
    X = np.ones((4, 2))
    X[1, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        ops.silhouette_cluster_sums(X, np.zeros(4, dtype=int), 1, "euclidean")
    with pytest.raises(ValueError, match="Unknown metric"):
        ops.silhouette_cluster_sums(np.ones((4, 2)), np.zeros(4, dtype=int), 1, "hamming")
