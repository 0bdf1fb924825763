"""k-means ops on every backend against the NumPy reference."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastlatent import ops
from fastlatent.backends import numpy as reference


@pytest.mark.parametrize("n, d, k", [(1, 1, 1), (37, 13, 5), (1000, 70, 40), (300, 3, 300)])
def test_kmeans_update_matches_reference(backend, rng, dtype, n, d, k):
    X = rng.standard_normal((n, d)).astype(dtype)
    weight = rng.uniform(0, 3, n).astype(dtype)
    labels = rng.integers(0, k, n).astype(np.int32)
    sums, weights = ops.kmeans_update(X, weight, labels, k, backend=backend)
    ref_sums, ref_weights = reference.kmeans_update(X, weight, labels, k)
    assert sums.dtype == np.float64 and sums.shape == (k, d)
    assert_allclose(sums, ref_sums, rtol=1e-12, atol=1e-12)
    assert_allclose(weights, ref_weights, rtol=1e-12, atol=1e-12)
    again = ops.kmeans_update(X, weight, labels, k, backend=backend)
    assert_array_equal(again[0], sums)  # deterministic


def test_kmeans_update_checks_labels():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ops.kmeans_update(X, np.ones(4), np.array([0, 1, 2, 0]), 2)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\); expected \(4,\)"):
        ops.kmeans_update(X, np.ones(3), np.zeros(4), 2)


def test_kmeans_assign_is_the_nearest_centre(backend, rng, dtype):
    X = rng.standard_normal((500, 16)).astype(dtype)
    centers = rng.standard_normal((20, 16)).astype(dtype)
    labels, distances = ops.kmeans_assign(X, centers, backend=backend)
    ref_idx, ref_dist = reference.pairwise_distances_argmin_min(X, centers, "sqeuclidean")
    assert labels.dtype == np.int32 and distances.dtype == dtype
    assert_array_equal(labels, ref_idx)
    assert_allclose(distances, ref_dist, rtol=2e-6 if dtype == np.float32 else 1e-12)


def test_native_kmeans_update_checks_its_preconditions():
    _cpu = pytest.importorskip("fastlatent._cpu")
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"labels\[1\] = 5 is not in \[0, 2\)"):
        _cpu.kmeans_update(X, np.ones(3), np.array([0, 5, 1], dtype=np.int32), 2)
    with pytest.raises(ValueError, match="rows"):
        _cpu.kmeans_update(X, np.ones(2), np.zeros(3, dtype=np.int32), 2)


@pytest.mark.parametrize("n, d, k", [(1, 1, 1), (37, 13, 5), (5000, 64, 16), (300, 3, 300)])
def test_kmeans_step_is_assign_then_update(backend, rng, dtype, n, d, k):
    X = rng.standard_normal((n, d)).astype(dtype)
    centers = np.concatenate([X[: k - 1], X[:1]]) if k > 1 else X[:1]  # a duplicate centre
    weight = rng.uniform(0, 2, n).astype(dtype)
    weight[::7] = 0
    labels, distances, sums, weights = ops.kmeans_step(X, weight, centers, backend=backend)
    ref_idx, ref_dist = reference.pairwise_distances_argmin_min(X, centers, "sqeuclidean")
    assert labels.dtype == np.int32 and distances.dtype == dtype
    assert_array_equal(labels, ref_idx)
    assert_allclose(distances, ref_dist, rtol=2e-6 if dtype == np.float32 else 1e-12)
    ref_sums, ref_weights = reference.kmeans_update(X, weight, ref_idx.astype(np.int32), k)
    assert_allclose(sums, ref_sums, rtol=1e-12, atol=1e-12)
    assert_allclose(weights, ref_weights, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, d, k", [(1, 1, 1), (37, 13, 5), (5000, 64, 16), (300, 3, 300)])
def test_kmeans_distances_matches_reference(backend, rng, dtype, n, d, k):
    X = rng.standard_normal((n, d)).astype(dtype) + 10  # off the origin
    X = np.asfortranarray(X)[:, ::-1] if d > 1 else X  # neither C nor Fortran ordered
    centers = rng.standard_normal((k, d)).astype(dtype) + 10
    labels = rng.integers(0, k, n).astype(np.int32)
    distances = ops.kmeans_distances(X, centers, labels, backend=backend)
    diff = np.asarray(X, np.float64) - np.asarray(centers, np.float64)[labels]
    expected = (diff**2).sum(axis=1)
    assert distances.dtype == dtype and distances.shape == (n,)
    assert_allclose(distances, expected, rtol=2e-7 if dtype == np.float32 else 1e-13)
    assert_allclose(reference.kmeans_distances(X, centers, labels), expected, rtol=2e-7 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("n, d, k", [(1, 1, 1), (200, 5, 1), (37, 13, 5), (5000, 64, 16), (300, 3, 300)])
def test_kmeans_step_without_distances(backend, rng, dtype, n, d, k):
    """return_distances=False: None in their place, the rest unchanged; kmeans_distances gives
    them afterwards, and on the fused kernel (cpu) the very bits the step would have."""
    X = rng.standard_normal((n, d)).astype(dtype)
    centers = X[rng.choice(n, k, replace=False)] if k <= n else X[:k]
    weight = rng.uniform(0, 2, n).astype(dtype)
    labels, distances, sums, weights = ops.kmeans_step(X, weight, centers, backend=backend)
    quick = ops.kmeans_step(X, weight, centers, return_distances=False, backend=backend)
    assert quick[1] is None
    assert_array_equal(quick[0], labels)
    assert_array_equal(quick[2], sums)
    assert_array_equal(quick[3], weights)
    later = ops.kmeans_distances(X, centers, labels, backend=backend)
    if backend == "cpu":
        assert_array_equal(later, distances)
    else:
        assert_allclose(later, distances, rtol=2e-7 if dtype == np.float32 else 1e-13)


def test_kmeans_distances_checks_labels():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ops.kmeans_distances(X, np.ones((2, 2)), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"labels has shape \(3,\); expected \(4,\)"):
        ops.kmeans_distances(X, np.ones((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="Incompatible dimension"):
        ops.kmeans_distances(X, np.ones((2, 3)), np.zeros(4))
    _cpu = pytest.importorskip("fastlatent._cpu")
    with pytest.raises(ValueError, match=r"labels\[2\] = -1 is not in \[0, 2\)"):
        _cpu.kmeans_distances(X, np.ones((2, 2)), np.array([0, 1, -1, 0], dtype=np.int32))
    with pytest.raises(ValueError, match="rows"):
        _cpu.kmeans_distances(X, np.ones((2, 2)), np.zeros(3, dtype=np.int32))


def test_kmeans_step_without_distances_on_near_ties(backend, rng, dtype):
    """Without distances the screening bound takes |x|^2 from the screening copy of the row
    (cpu): rows whose two nearest centres differ by a hair (relative gaps down to 1e-14 in
    float64, 1e-8 in float32, far from the origin), rows on a centre, and rows beyond float32's
    range must still get the exact labels."""
    Y = rng.standard_normal((30, 24)) + 100.0
    a = rng.integers(0, 30, 3000)
    b = (a + 1 + rng.integers(0, 29, 3000)) % 30
    low = -14 if dtype == np.float64 else -8
    gap = 10.0 ** rng.uniform(low, -3, 3000)
    X = (Y[a] + Y[b]) / 2 + gap[:, None] * (Y[a] - Y[b])  # nearer to Y[a], by a hair
    X[3:40] = Y[a[3:40]]
    if dtype == np.float64:
        X[:3] *= 1e30
    X, Y = X.astype(dtype), Y.astype(dtype)
    labels, none, _, _ = ops.kmeans_step(X, np.ones(len(X), dtype), Y, return_distances=False, backend=backend)
    ref_idx, _ = reference.pairwise_distances_argmin_min(X, Y, "sqeuclidean")
    assert none is None
    assert_array_equal(labels, ref_idx)
    X32, Y32 = X[3:].astype(np.float32), Y.astype(np.float32)  # float32 GEMM alone gets many wrong
    assert ((np.square(Y32).sum(axis=1) - 2 * X32 @ Y32.T).argmin(axis=1) != ref_idx[3:]).sum() > 50


@pytest.mark.parametrize("d", [1, 5, 64, 67])
@pytest.mark.parametrize("k", [1, 3, 16, 200])
def test_fused_step_sums_equal_kmeans_update_on_one_thread(rng, dtype, d, k):
    """On one thread the fused step adds each row to its cluster's sums in row order, as
    kmeans_update does: the same float64 bits, whatever the grouping of rows per label."""
    _cpu = pytest.importorskip("fastlatent._cpu")
    from threadpoolctl import threadpool_limits

    X = rng.standard_normal((3001, d)).astype(dtype)
    centers = X[:k].copy()
    weight = rng.uniform(0, 3, len(X)).astype(dtype)
    with threadpool_limits(limits=1, user_api="openmp"):
        if _cpu.max_threads() != 1:
            pytest.skip("threadpoolctl cannot limit this OpenMP runtime")
        labels, _, sums, weights = _cpu.kmeans_step(X, weight, centers, False)
        ref_sums, ref_weights = _cpu.kmeans_update(X, weight, labels, k)
    assert_array_equal(sums, ref_sums)
    assert_array_equal(weights, ref_weights)
