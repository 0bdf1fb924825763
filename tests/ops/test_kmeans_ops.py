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
