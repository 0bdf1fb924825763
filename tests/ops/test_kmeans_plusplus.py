"""The k-means++ seeding step: every backend's op against the NumPy reference, and the whole
seeding against scikit-learn's draws (fused op where a backend has it, pairwise path elsewhere)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus
from sklearn.datasets import make_blobs

from fastlatent import ops
from fastlatent.backends import HOST_BACKENDS, get_backend, is_available
from fastlatent.backends import numpy as reference

OP = "kmeans_plusplus_step"


def _module_with_op(backend):
    module = get_backend(backend)
    if not hasattr(module, OP):
        pytest.skip(f"backend {backend!r} has no {OP} (kmeans_plusplus falls back to distances)")
    return module


def _step_inputs(rng, dtype, n, d, t):
    X = rng.standard_normal((n, d)).astype(dtype)
    weight = rng.uniform(0.0, 3.0, n)
    weight[rng.random(n) < 0.1] = 0.0
    closest = rng.uniform(0.0, 3.0 * d, n)
    candidates = rng.integers(0, n, t).astype(np.int64)
    return X, weight, closest, candidates


@pytest.mark.parametrize(
    "n, d, t",
    [(1, 1, 1), (7, 3, 2), (300, 5, 4), (1000, 70, 5), (2000, 17, 8), (513, 64, 9), (257, 33, 13)],
)
def test_step_matches_reference(backend, rng, dtype, n, d, t):
    module = _module_with_op(backend)
    X, weight, closest, candidates = _step_inputs(rng, dtype, n, d, t)
    best, potential, new_closest = module.kmeans_plusplus_step(X, weight, closest, candidates)
    ref_best, ref_potential, ref_closest = reference.kmeans_plusplus_step(X, weight, closest, candidates)
    assert isinstance(best, int) and isinstance(potential, float)
    assert new_closest.dtype == np.float64 and new_closest.shape == (n,)
    assert best == ref_best
    assert_allclose(potential, ref_potential, rtol=1e-12)
    assert_allclose(new_closest, ref_closest, rtol=1e-6 if dtype == np.float32 else 1e-12)
    # The distances are the backend's pairwise_distances, rounded to X's dtype, bit for bit.
    to_best = module.pairwise_distances(X, X[candidates[best : best + 1]], "sqeuclidean")[:, 0]
    assert_array_equal(new_closest, np.minimum(closest, to_best.astype(np.float64)))
    again = module.kmeans_plusplus_step(X, weight, closest, candidates)
    assert again[:2] == (best, potential)  # deterministic for a thread count
    assert_array_equal(again[2], new_closest)


def test_step_first_centre_and_ties(backend, rng, dtype):
    module = _module_with_op(backend)
    X = rng.standard_normal((400, 6)).astype(dtype)
    weight = rng.uniform(0.5, 2.0, 400)
    inf = np.full(400, np.inf)
    best, potential, closest = module.kmeans_plusplus_step(X, weight, inf, np.array([17], dtype=np.int64))
    distances = module.pairwise_distances(X, X[17:18], "sqeuclidean")[:, 0].astype(np.float64)
    assert best == 0 and closest[17] == 0.0
    assert_array_equal(closest, distances)
    assert_allclose(potential, distances @ weight, rtol=1e-12)
    # The same row twice, and a row already chosen: ties go to the first position.
    best, _, _ = module.kmeans_plusplus_step(X, weight, closest, np.array([5, 5, 17], dtype=np.int64))
    assert best == 0
    best, _, same = module.kmeans_plusplus_step(X, weight, closest, np.array([17, 17], dtype=np.int64))
    assert best == 0
    assert_array_equal(same, closest)


def test_step_rejects_bad_candidates(rng):
    module = get_backend("cpu") if is_available("cpu") else pytest.skip("no cpu backend")
    X = rng.standard_normal((10, 3))
    with pytest.raises(ValueError, match="not in"):
        module.kmeans_plusplus_step(X, np.ones(10), np.ones(10), np.array([3, 10], dtype=np.int64))
    with pytest.raises(ValueError, match="rows but"):
        module.kmeans_plusplus_step(X, np.ones(9), np.ones(10), np.array([3], dtype=np.int64))


def _blobs(dtype, n_samples=2000):
    X, _ = make_blobs(n_samples, n_features=10, centers=8, cluster_std=2.0, random_state=0)
    return X.astype(dtype)


@pytest.mark.parametrize("name", ["auto", *HOST_BACKENDS])
def test_seeding_draws_sklearns_rows(name, dtype):
    if name != "auto" and not is_available(name):
        pytest.skip(f"backend {name!r} not available here")
    backend = None if name == "auto" else name
    X = _blobs(dtype)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(X)).astype(dtype)
    for k in (1, 5, 50):
        centers, indices = ops.kmeans_plusplus(X, k, weight, np.random.RandomState(3), backend=backend)
        sk_centers, sk_indices = sk_kmeans_plusplus(X, k, sample_weight=weight, random_state=3)
        assert_array_equal(indices, sk_indices)
        assert_array_equal(centers, sk_centers)
        assert centers.dtype == dtype and indices.dtype == np.int64


def test_seeding_fused_and_pairwise_paths_agree(backend, dtype):
    """A backend with the op and the pairwise fallback (numba; cuda) pick the same rows."""
    X = np.random.default_rng(1).standard_normal((3000, 24)).astype(dtype)
    weight = np.random.default_rng(2).uniform(0.1, 1.0, len(X))
    _, ours = ops.kmeans_plusplus(X, 40, weight, np.random.RandomState(0), backend=backend)
    _, ref = ops.kmeans_plusplus(X, 40, weight, np.random.RandomState(0), backend="numpy")
    assert_array_equal(ours, ref)
