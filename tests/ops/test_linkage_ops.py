"""The linkage op on every backend against the NumPy reference, and the reference against
SciPy's ``linkage``: heights to rounding, merges equal (up to ties), SciPy's format."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.cluster import hierarchy
from sklearn.metrics import adjusted_rand_score

import fastlatent
from fastlatent import ops
from fastlatent.backends import get_backend
from fastlatent.ops import hierarchy as linkage_op
from tolerances import LINKAGE_HEIGHT_TOL

RTOL, ATOL = LINKAGE_HEIGHT_TOL
CASES = [
    ("ward", "euclidean"),
    ("single", "euclidean"),
    ("single", "cosine"),
    ("single", "manhattan"),
    ("average", "euclidean"),
    ("average", "cosine"),
    ("average", "manhattan"),
    ("complete", "euclidean"),
    ("complete", "cosine"),
    ("complete", "manhattan"),
]
SCIPY_METRIC = {"euclidean": "euclidean", "cosine": "cosine", "manhattan": "cityblock"}


def data(n, d, dtype, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


def needs_linkage(backend):
    if not hasattr(get_backend(backend), "linkage"):
        pytest.skip(f"the {backend} backend has no linkage op yet")


def sorted_pairs(Z):
    Z = Z.copy()
    Z[:, :2].sort(axis=1)
    return Z


def assert_same_tree(Z, expected):
    """Same merges, same sizes, heights to rounding (data without ties)."""
    assert Z.dtype == np.float64 and Z.shape == expected.shape
    assert_array_equal(sorted_pairs(Z)[:, [0, 1, 3]], sorted_pairs(expected)[:, [0, 1, 3]])
    assert_allclose(Z[:, 2], expected[:, 2], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("method,metric", CASES)
def test_reference_equals_scipy(method, metric, dtype):
    X = data(120, 6, dtype)
    Z = ops.linkage(X, method, metric, backend="numpy")
    expected = hierarchy.linkage(X, method, SCIPY_METRIC[metric])
    assert_same_tree(Z, expected)
    assert hierarchy.is_valid_linkage(sorted_pairs(Z))


@pytest.mark.parametrize("method,metric", CASES)
def test_backend_equals_reference(backend, method, metric, dtype):
    needs_linkage(backend)
    X = data(150, 9, dtype, seed=1)
    expected = ops.linkage(X, method, metric, backend="numpy")
    Z = ops.linkage(X, method, metric, backend=backend)
    # Pairs in the same (merge) order too: scikit-learn's children_ depend on it.
    assert_array_equal(Z[:, [0, 1, 3]], expected[:, [0, 1, 3]])
    assert_allclose(Z[:, 2], expected[:, 2], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("backend_name", ["numpy", "numba", "cpu"])
@pytest.mark.parametrize("method", ["ward", "single", "average", "complete"])
def test_ties_and_duplicates_give_scipys_clusters(backend_name, method):
    from fastlatent.backends import is_available

    if not is_available(backend_name):
        pytest.skip(f"{backend_name} not available")
    needs_linkage(backend_name)
    # Points on an integer grid, each repeated: zero heights and many equal distances.
    grid = np.array([[i, j] for i in range(5) for j in range(4)], dtype=np.float64)
    X = np.concatenate([grid, grid[::3], grid[:2]])
    Z = fastlatent.linkage(X, method, backend=backend_name)
    expected = hierarchy.linkage(X, method)
    assert hierarchy.is_valid_linkage(Z)
    assert_allclose(np.sort(Z[:, 2]), np.sort(expected[:, 2]), rtol=RTOL, atol=ATOL)
    # Cut between distinct heights: the same partition whatever order the ties merged in.
    levels = np.unique(np.round(expected[:, 2], 9))
    for cut in (levels[:-1] + levels[1:]) / 2:
        ours = hierarchy.fcluster(Z, cut, criterion="distance")
        theirs = hierarchy.fcluster(expected, cut, criterion="distance")
        assert adjusted_rand_score(ours, theirs) == 1.0, cut


def test_linkage_matrix_works_with_scipy_tools(rng):
    X = rng.normal(size=(60, 3))
    Z = fastlatent.linkage(X, "average")
    assert hierarchy.is_valid_linkage(Z, throw=True)
    assert hierarchy.is_monotonic(Z)
    labels = hierarchy.fcluster(Z, 4, criterion="maxclust")
    assert labels.shape == (60,) and labels.max() == 4
    tree = hierarchy.dendrogram(Z, no_plot=True, truncate_mode="lastp", p=10)
    assert len(tree["leaves"]) == 10
    assert_array_equal(hierarchy.cut_tree(Z, n_clusters=1).ravel(), np.zeros(60))


@pytest.mark.parametrize("method", ["ward", "single", "average", "complete"])
def test_two_samples(method):
    X = np.array([[0.0, 0.0], [3.0, 4.0]])
    Z = fastlatent.linkage(X, method)
    assert_allclose(Z, [[0, 1, 5.0, 2]])


@pytest.mark.parametrize("method", ["ward", "single", "average"])
def test_one_sample_is_refused(method):
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        fastlatent.linkage(np.zeros((1, 3)), method)


def test_odd_layouts_and_input_untouched(rng):
    base = rng.normal(size=(80, 12))
    expected = fastlatent.linkage(base[:, ::2], "ward", backend="numpy")
    for X in (base[:, ::2], np.asfortranarray(base[:, ::2]), base[:, ::2].copy().astype(np.float16).astype(np.float64)):
        before = X.copy()
        Z = fastlatent.linkage(X, "ward")
        assert_array_equal(X, before)
        assert_array_equal(Z[:, [0, 1, 3]], expected[:, [0, 1, 3]])
    one_column = fastlatent.linkage(base[:, :1], "single")
    assert_allclose(one_column[:, 2], hierarchy.linkage(base[:, :1], "single")[:, 2], rtol=RTOL)


def test_memory_refusal_before_allocating(monkeypatch):
    X = np.zeros((2000, 2))
    needed = 8 * 2000 * 1999 // 2
    with pytest.raises(MemoryError, match=r"average linkage of 2000 samples needs .*0\.01 GiB"):
        ops.linkage(X, "average", max_memory_bytes=needed // 2)
    monkeypatch.setattr(linkage_op, "available_memory_bytes", lambda: 1000)
    with pytest.raises(MemoryError, match="complete linkage .* GiB"):
        fastlatent.linkage(X, "complete")
    # Ward and single linkage need no condensed matrix: no refusal.
    assert fastlatent.linkage(X[:50], "ward").shape == (49, 4)


def test_memory_estimate():
    assert linkage_op.linkage_memory_bytes(100_000, "average") == 8 * 100_000 * 99_999 // 2
    assert linkage_op.linkage_memory_bytes(100_000, "ward") == 0
    assert linkage_op.available_memory_bytes() > 0


@pytest.mark.parametrize(
    "X,match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "Input X contains NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "Input X contains infinity"),
        (np.zeros(5), "Expected 2D array"),
        (np.zeros((0, 3)), "Found array with 0 sample"),
        (np.zeros((4, 0)), "0 feature"),
        (np.array([[1 + 1j, 0], [0, 1]]), "Complex data not supported"),
    ],
)
def test_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        fastlatent.linkage(X)


def test_bad_method_and_metric():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="Unknown linkage method 'centroid'"):
        fastlatent.linkage(X, "centroid")
    with pytest.raises(ValueError, match="Ward can only work with euclidean"):
        fastlatent.linkage(X, "ward", "cosine")
    with pytest.raises(ValueError, match="Unknown metric 'chebyshev'"):
        fastlatent.linkage(X, "single", "chebyshev")
    X[3] = 0
    with pytest.raises(ValueError, match="zero vectors"):
        fastlatent.linkage(X, "average", "cosine")


@pytest.mark.parametrize("kind", ["normal", "blobs"])
@pytest.mark.parametrize("method", ["ward", "single"])
def test_large_enough_to_share_scans_between_threads(backend, method, kind):
    # 2,100 x 64: the native scans are split between threads past 2^17 multiply-adds; tight
    # blobs make the chain revisit clusters often (the cpu Ward's recorded neighbours).
    from sklearn.datasets import make_blobs

    needs_linkage(backend)
    if kind == "normal":
        X = data(2100, 64, np.float64, seed=3)
    else:
        X = make_blobs(2100, n_features=64, centers=25, cluster_std=0.2, random_state=3)[0]
    Z = ops.linkage(X, method, backend=backend)
    expected = hierarchy.linkage(X, method)
    assert_same_tree(Z, expected)


def test_average_large_enough_to_share_scans(backend):
    # 8,300 rows: the cpu backend's condensed-matrix scans are split between threads.
    if backend != "cpu":
        pytest.skip("only the cpu backend splits scans between threads")
    needs_linkage(backend)
    X = data(8300, 3, np.float64, seed=4)
    Z = ops.linkage(X, "average", backend=backend)
    expected = hierarchy.linkage(X, "average")
    assert_same_tree(Z, expected)


@pytest.mark.parametrize("transform", ["tiny", "huge", "far", "one_far_row"])
def test_ward_at_every_scale_and_offset(backend, transform):
    # Ward screens in float32 after centring and scaling by a power of two: the merges must
    # not change at any scale or offset (SciPy works in float64 throughout).
    needs_linkage(backend)
    X = data(400, 16, np.float64, seed=5)
    X = {
        "tiny": X * 1e-150,
        "huge": X * 1e100,
        "far": X + 1e4,
        "one_far_row": np.vstack([X, np.full((1, 16), 1e6)]),
    }[transform]
    Z = ops.linkage(X, "ward", backend=backend)
    expected = hierarchy.linkage(X, "ward")
    assert_array_equal(sorted_pairs(Z)[:, [0, 1, 3]], sorted_pairs(expected)[:, [0, 1, 3]])
    assert_allclose(Z[:, 2], expected[:, 2], rtol=RTOL)
