"""The array-namespace silhouette sums (fastlatent/backends/_silhouette_blocked.py), which the
CUDA backend runs with CuPy: here with NumPy against the NumPy reference, in blocks small enough
that block boundaries fall inside clusters; then (marker ``gpu``) the CUDA backend itself, with
CuPy arrays through the public functions. The gpu tests were never run by their author (no GPU
in that session)."""

import numpy as np
import pytest
from sklearn import metrics as sk

import fastlatent as fl
from fastlatent.backends import numpy as reference
from fastlatent.backends._silhouette_blocked import silhouette_cluster_sums_blocked
from tolerances import SILHOUETTE_SUMS_RTOL, SILHOUETTE_VS_SKLEARN

METRICS = ["euclidean", "sqeuclidean", "cosine", "manhattan"]
SHAPES = [  # (n_samples, n_features, n_clusters)
    (1, 1, 1),
    (2, 3, 2),
    (37, 1, 2),  # one column
    (53, 5, 3),
    (20, 4, 20),  # K = N: every cluster a single row
    (61, 6, 50),  # K ~ N: mostly singletons, many clusters per block
    (130, 17, 7),
]


def _data(rng, n, d, k, dtype):
    X = rng.normal(size=(n, d)).astype(dtype)
    labels = rng.permutation(np.arange(n) % k)  # every cluster non-empty, unsorted
    return X, labels


def _check(X, labels, k, metric, **blocking):
    expected = reference.silhouette_cluster_sums(X, labels, k, metric)
    sums = silhouette_cluster_sums_blocked(X, labels, k, metric, **blocking)
    assert sums.dtype == np.float64 and sums.shape == (X.shape[0], k)
    np.testing.assert_allclose(sums, expected, rtol=SILHOUETTE_SUMS_RTOL, atol=1e-12)
    return sums


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_blocked_matches_reference(dtype, rng, metric, shape):
    n, d, k = shape
    X, labels = _data(rng, n, d, k, dtype)
    # 1 column per block, 7 (boundaries inside clusters, and a narrower last block), all.
    for columns in (1, 7, n):
        _check(X, labels, k, metric, block_elements=columns * n)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_blocked_accepts_any_layout_and_leaves_x_alone(rng, layout):
    base = rng.normal(size=(90, 12))
    X = np.asfortranarray(base) if layout == "fortran" else base[::2, ::3]
    labels = np.arange(X.shape[0]) % 4
    original = X.copy()
    sums = _check(X, labels, 4, "euclidean", block_elements=5 * X.shape[0])
    np.testing.assert_array_equal(X, original)
    np.testing.assert_array_equal(sums, silhouette_cluster_sums_blocked(np.ascontiguousarray(X), labels, 4,
                                                                        "euclidean", block_elements=5 * X.shape[0]))


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_blocked_near_duplicate_points_far_from_origin(metric, rng):
    """Rows equal to ~1e-9 around centres ~800 from the origin: the GEMM form's worst case;
    twelve identical rows; a zero row (cosine: distance 1 to everything)."""
    centres = rng.normal(size=(30, 64)) * 10 + 100
    X = np.repeat(centres, 12, axis=0) + rng.normal(size=(360, 64)) * 1e-9
    X[:12] = centres[0]
    X[100] = 0.0
    labels = np.repeat(np.arange(30) % 4, 12)
    for columns in (5, 360):
        _check(X, labels, 4, metric, block_elements=columns * 360)


def test_blocked_empty_clusters_are_zero(rng):
    X = rng.normal(size=(40, 3))
    labels = np.arange(40) % 3 * 2  # clusters 1, 3 and 5 empty
    for columns in (1, 6, 40):
        sums = _check(X, labels, 6, "euclidean", block_elements=columns * 40)
        assert np.all(sums[:, [1, 3, 5]] == 0.0)


def test_blocked_silhouette_matches_sklearn(dtype, rng):
    # The public formula on the blocked sums against scikit-learn, K = 2 and K ~ N / 2.
    from fastlatent.metrics.cluster import _silhouette_from_sums

    X = rng.normal(size=(120, 8)).astype(dtype)
    for k in (2, 55):
        labels = rng.permutation(np.arange(120) % k)
        counts = np.bincount(labels)
        sums = silhouette_cluster_sums_blocked(X, labels, k, "euclidean", block_elements=9 * 120)
        rtol, atol = SILHOUETTE_VS_SKLEARN[np.dtype(dtype).type]
        np.testing.assert_allclose(_silhouette_from_sums(sums, labels, counts), sk.silhouette_samples(X, labels),
                                   rtol=rtol, atol=atol)


# ---- the CUDA backend (CuPy); never run by the author: no GPU in that session ----------------


@pytest.fixture
def cupy():
    return pytest.importorskip("cupy")


@pytest.mark.gpu
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_backend_matches_reference_in_small_blocks(cupy, dtype, rng, metric):
    n, d, k = 301, 9, 7
    X, labels = _data(rng, n, d, k, dtype)
    expected = reference.silhouette_cluster_sums(X, labels, k, metric)
    for columns in (1, 7, n):
        sums = silhouette_cluster_sums_blocked(cupy.asarray(X), labels, k, metric, xp=cupy,
                                               block_elements=columns * n)
        assert isinstance(sums, cupy.ndarray)
        np.testing.assert_allclose(sums.get(), expected, rtol=SILHOUETTE_SUMS_RTOL, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cupy_in_silhouette_on_the_gpu(cupy, dtype, rng, metric):
    X = rng.normal(size=(500, 16)).astype(dtype)
    labels = rng.integers(0, 5, 500)
    ours = fl.silhouette_samples(cupy.asarray(X), labels, metric=metric)  # "auto": cuda
    assert isinstance(ours, cupy.ndarray) and ours.dtype == dtype
    rtol, atol = SILHOUETTE_VS_SKLEARN[np.dtype(dtype).type]
    np.testing.assert_allclose(ours.get(), sk.silhouette_samples(X, labels, metric=metric), rtol=rtol, atol=atol)
    score = fl.silhouette_score(cupy.asarray(X), cupy.asarray(labels), metric=metric, sample_size=200,
                                random_state=0)
    assert score == pytest.approx(sk.silhouette_score(X, labels, metric=metric, sample_size=200, random_state=0),
                                  rel=rtol, abs=atol)
