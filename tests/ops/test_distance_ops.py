"""Distance ops on every backend against the NumPy reference, and the reference against
scikit-learn and SciPy: float32 and float64, odd shapes, strides, near-coincident points."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import cdist
from sklearn import metrics as skm

from fastlatent import ops
from fastlatent.backends import numpy as reference
from tolerances import BACKEND_VS_REFERENCE, REFERENCE_VS_SKLEARN, TIE_RTOL, distance_tol

METRICS = ["euclidean", "sqeuclidean", "cosine", "manhattan"]
SCIPY_NAME = {"manhattan": "cityblock"}

# (n_x, n_y, n_features): 1x1, single feature, K = N, and sizes that are not multiples of
# any tile (6, 8, 16, 32, 64, 128 rows or columns).
SHAPES = [(1, 1, 1), (1, 7, 5), (7, 1, 5), (37, 29, 13), (513, 1001, 70), (100, 100, 1), (1000, 1000, 3), (65, 130, 257)]


def make_pair(rng, n_x, n_y, n_features, dtype):
    X = rng.standard_normal((n_x, n_features)).astype(dtype)
    Y = rng.standard_normal((n_y, n_features)).astype(dtype)
    return X, Y


def exact_distances(X, rows, Y, cols, metric):
    """float64 distances between X[rows[i]] and Y[cols[i]], one pair at a time."""
    x = np.asarray(X, dtype=np.float64)[rows]
    y = np.asarray(Y, dtype=np.float64)[cols]
    return np.array([reference._distance_block(a[None], b[None], metric)[0, 0] for a, b in zip(x, y)])


def assert_same_neighbors(X, Y, metric, expected, got, dtype):
    """Distances equal within tolerance; indices equal except between true ties."""
    expected_dist, expected_idx = expected
    got_dist, got_idx = got
    assert got_idx.dtype == np.int64
    assert got_dist.dtype == np.dtype(dtype)
    assert_allclose(got_dist, expected_dist, **distance_tol(BACKEND_VS_REFERENCE, dtype))
    differ = np.nonzero(np.asarray(expected_idx != got_idx).reshape(expected_idx.shape[0], -1).any(axis=1))[0]
    for i in differ:
        mine = exact_distances(X, np.full(got_idx.shape[-1] if got_idx.ndim > 1 else 1, i), Y, np.atleast_1d(got_idx[i]), metric)
        theirs = exact_distances(X, np.full(mine.shape[0], i), Y, np.atleast_1d(expected_idx[i]), metric)
        assert_allclose(mine, theirs, rtol=TIE_RTOL[np.dtype(dtype).type], atol=1e-12,
                        err_msg=f"row {i}: indices {got_idx[i]} vs {expected_idx[i]} are not ties")


# ---------------------------------------------------------------------------------------
# Reference against scikit-learn / SciPy


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES[:5])
def test_reference_matches_sklearn_pairwise(rng, dtype, metric, shape):
    X, Y = make_pair(rng, *shape, dtype)
    got = reference.pairwise_distances(X, Y, metric)
    assert got.dtype == dtype
    expected = skm.pairwise_distances(X.astype(np.float64), Y.astype(np.float64), metric=metric)
    assert_allclose(got, expected, **distance_tol(REFERENCE_VS_SKLEARN, dtype))


def test_reference_float32_euclidean_within_1e6_of_scipy(rng):
    # scikit-learn's own requirement for float32 euclidean distances.
    X, Y = make_pair(rng, 300, 200, 50, np.float32)
    got = reference.pairwise_distances(X, Y, "euclidean")
    assert_allclose(got, cdist(X.astype(np.float64), Y.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_reference_argmin_min_matches_sklearn(rng, dtype, metric):
    X, Y = make_pair(rng, 300, 40, 8, dtype)
    idx, dist = reference.pairwise_distances_argmin_min(X, Y, metric)
    sk_idx, sk_dist = skm.pairwise_distances_argmin_min(X.astype(np.float64), Y.astype(np.float64), metric=metric)
    assert_array_equal(idx, sk_idx)
    assert_allclose(dist, sk_dist, **distance_tol(REFERENCE_VS_SKLEARN, dtype))


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
def test_reference_kneighbors_matches_sklearn(rng, dtype, metric):
    from sklearn.neighbors import NearestNeighbors

    X, Y = make_pair(rng, 200, 150, 6, dtype)
    dist, idx = reference.kneighbors(X, Y, 7, metric)
    sk_dist, sk_idx = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(Y).kneighbors(X)
    assert_array_equal(idx, sk_idx)
    assert_allclose(dist, sk_dist, **distance_tol(REFERENCE_VS_SKLEARN, dtype))


def test_reference_is_exact_where_the_expanded_form_cancels():
    # scikit-learn's float64 expanded form returns zeros for points far from the origin.
    X = np.array([[1e8, 0.0], [1e8 + 1.0, 0.0]])
    assert_allclose(reference.pairwise_distances(X, X, "euclidean"), [[0.0, 1.0], [1.0, 0.0]])


# ---------------------------------------------------------------------------------------
# Every backend against the reference


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES)
def test_pairwise_distances_matches_reference(backend, rng, dtype, metric, shape):
    X, Y = make_pair(rng, *shape, dtype)
    got = ops.pairwise_distances(X, Y, metric, backend=backend)
    assert type(got) is np.ndarray and got.dtype == dtype and got.shape == shape[:2]
    assert_allclose(got, reference.pairwise_distances(X, Y, metric), **distance_tol(BACKEND_VS_REFERENCE, dtype))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES)
def test_argmin_min_matches_reference(backend, rng, dtype, metric, shape):
    X, Y = make_pair(rng, *shape, dtype)
    idx, dist = ops.pairwise_distances_argmin_min(X, Y, metric, backend=backend)
    ref_idx, ref_dist = reference.pairwise_distances_argmin_min(X, Y, metric)
    assert_same_neighbors(X, Y, metric, (ref_dist, ref_idx), (dist, idx), dtype)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES)
def test_kneighbors_matches_reference(backend, rng, dtype, metric, shape):
    X, Y = make_pair(rng, *shape, dtype)
    for k in sorted({1, min(3, shape[1]), shape[1]}):
        got = ops.kneighbors(X, Y, k, metric, backend=backend)
        assert got[0].shape == (shape[0], k)
        assert_same_neighbors(X, Y, metric, reference.kneighbors(X, Y, k, metric), got, dtype)


@pytest.mark.parametrize("metric", METRICS)
def test_duplicate_rows_tie_to_the_lower_index(backend, rng, dtype, metric):
    Y = rng.standard_normal((20, 9)).astype(dtype)
    Y = np.repeat(Y, 3, axis=0)  # every row three times
    X = Y[::5] + np.asarray(0.01, dtype)
    idx, _ = ops.pairwise_distances_argmin_min(X, Y, metric, backend=backend)
    assert np.all(idx % 3 == 0)
    _, kidx = ops.kneighbors(X, Y, 3, metric, backend=backend)
    assert_array_equal(kidx, idx[:, None] + np.arange(3))


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_near_coincident_points(backend, rng, dtype, metric, offset):
    # The expanded form |x|^2 + |y|^2 - 2 x.y cancels here; reported distances must not.
    Y = rng.standard_normal((50, 16)) + offset
    X = Y + 1e-3 * rng.standard_normal(Y.shape)
    X, Y = X.astype(dtype), Y.astype(dtype)
    got = ops.pairwise_distances(X, Y, metric, backend=backend)
    assert_allclose(got, reference.pairwise_distances(X, Y, metric), **distance_tol(BACKEND_VS_REFERENCE, dtype))
    assert np.all(got >= 0)
    idx, dist = ops.pairwise_distances_argmin_min(X, Y, metric, backend=backend)
    assert_same_neighbors(X, Y, metric, reference.pairwise_distances_argmin_min(X, Y, metric)[::-1], (dist, idx), dtype)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_float64_nearest_below_float32_resolution(backend, rng, metric):
    """The cpu backend screens float64 input in float32: rows whose two nearest centres differ
    by less than float32 can resolve (relative gaps 1e-14 to 1e-6, far from the origin) must
    still get the exact float64 answer, as must rows beyond float32's range."""
    Y = rng.standard_normal((30, 24)) + 100.0
    a = rng.integers(0, 30, 3000)
    b = (a + 1 + rng.integers(0, 29, 3000)) % 30
    gap = 10.0 ** rng.uniform(-14, -6, 3000)
    X = (Y[a] + Y[b]) / 2 + gap[:, None] * (Y[a] - Y[b])  # nearer to Y[a], by a hair
    X[:3] *= 1e30  # norms past float32
    idx, dist = ops.pairwise_distances_argmin_min(X, Y, metric, backend=backend)
    ref_idx, ref_dist = reference.pairwise_distances_argmin_min(X, Y, metric)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, **distance_tol(BACKEND_VS_REFERENCE, np.float64))
    if metric != "cosine":
        X32, Y32 = X[3:].astype(np.float32), Y.astype(np.float32)  # float32 alone gets many wrong
        assert ((np.square(Y32).sum(axis=1) - 2 * X32 @ Y32.T).argmin(axis=1) != ref_idx[3:]).sum() > 100
        labels, _ = ops.kmeans_assign(X, Y, backend=backend)
        assert_array_equal(labels, ref_idx)
    _, neighbours = ops.kneighbors(X, Y, 3, metric, backend=backend)
    assert_array_equal(neighbours, reference.kneighbors(X, Y, 3, metric)[1])


def test_identical_points_are_at_distance_zero(backend, rng, dtype):
    X = (rng.standard_normal((40, 33)) * 1e3).astype(dtype)
    D = ops.pairwise_distances(X, X.copy(), "euclidean", backend=backend)
    assert_array_equal(np.diag(D), 0)
    idx, dist = ops.pairwise_distances_argmin_min(X, X.copy(), backend=backend)
    assert_array_equal(idx, np.arange(40))
    assert_array_equal(dist, 0)


@pytest.mark.parametrize("layout", ["fortran", "strided", "list", "float16", "int", "bool"])
def test_layouts_and_dtypes_are_accepted(backend, rng, layout):
    base = rng.standard_normal((30, 12))
    X = {
        "fortran": np.asfortranarray(base),
        "strided": np.repeat(base, 2, axis=1)[:, ::2],
        "list": base.tolist(),
        "float16": base.astype(np.float16),
        "int": (base * 10).astype(np.int32),
        "bool": base > 0,
    }[layout]
    before = np.array(X, copy=True)
    as_float64 = np.asarray(X, dtype=np.float64)
    got = ops.pairwise_distances(X, as_float64[:7], "euclidean", backend=backend)
    assert got.dtype == np.float64
    assert_allclose(got, reference.pairwise_distances(as_float64, as_float64[:7], "euclidean"), rtol=1e-12)
    assert_array_equal(np.asarray(X), before)  # inputs are never modified


def test_zero_vectors_with_cosine(backend, dtype):
    X = np.zeros((3, 4), dtype=dtype)
    Y = np.eye(4, dtype=dtype)
    assert_allclose(ops.pairwise_distances(X, Y, "cosine", backend=backend), np.ones((3, 4)))
    idx, dist = ops.pairwise_distances_argmin_min(X, Y, "cosine", backend=backend)
    assert_array_equal(idx, 0)
    assert_allclose(dist, 1.0)


def test_self_distances_have_an_exact_zero_diagonal(backend, rng, dtype):
    X = (rng.standard_normal((60, 5)) + 100).astype(dtype)
    for metric in METRICS:
        D = ops.pairwise_distances(X, metric=metric, backend=backend)
        assert_array_equal(np.diag(D), 0)
        assert_allclose(D, D.T, **distance_tol(BACKEND_VS_REFERENCE, dtype))


def test_mixed_dtypes_follow_sklearn(backend, rng):
    X = rng.standard_normal((5, 3)).astype(np.float32)
    Y = rng.standard_normal((4, 3))
    assert ops.pairwise_distances(X, Y, backend=backend).dtype == np.float64
    assert ops.pairwise_distances(X, Y.astype(np.float32), backend=backend).dtype == np.float32


def test_large_values_do_not_overflow(backend, dtype):
    big = np.finfo(dtype).max ** 0.5 / 8  # squares stay finite in the working precision
    X = np.array([[big, 0.0], [0.0, big]], dtype=dtype)
    got = ops.pairwise_distances(X, X[::-1].copy(), "euclidean", backend=backend)
    assert np.all(np.isfinite(got))
    assert_allclose(got, reference.pairwise_distances(X, X[::-1].copy(), "euclidean"), rtol=1e-5)
