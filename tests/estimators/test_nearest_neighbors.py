"""fastlatent.NearestNeighbors against sklearn.neighbors.NearestNeighbors."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastlatent import NearestNeighbors
from tolerances import REFERENCE_VS_SKLEARN, distance_tol


@parametrize_with_checks([NearestNeighbors(), NearestNeighbors(metric="cosine", n_neighbors=2)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("metric, p", [("minkowski", 2), ("minkowski", 1), ("euclidean", 2), ("cosine", 2), ("manhattan", 2)])
def test_matches_sklearn(rng, dtype, metric, p):
    X = rng.standard_normal((300, 10)).astype(dtype)
    Q = rng.standard_normal((40, 10)).astype(dtype)
    ours = NearestNeighbors(n_neighbors=6, metric=metric, p=p).fit(X)
    theirs = SkNearestNeighbors(n_neighbors=6, metric=metric, p=p, algorithm="brute").fit(X)
    for query in (Q, None):
        dist, idx = ours.kneighbors(query)
        sk_dist, sk_idx = theirs.kneighbors(query)
        assert_array_equal(idx, sk_idx)
        assert_allclose(dist, sk_dist, **distance_tol(REFERENCE_VS_SKLEARN, dtype))
        assert dist.dtype == dtype


def test_query_of_the_training_set_excludes_each_point(rng):
    X = rng.standard_normal((50, 4))
    idx = NearestNeighbors(n_neighbors=3).fit(X).kneighbors(return_distance=False)
    assert idx.shape == (50, 3)
    assert not np.any(idx == np.arange(50)[:, None])


def test_more_duplicates_than_neighbours_like_sklearn():
    # Four copies of one point: scikit-learn's rule removes the point itself when found,
    # else the first neighbour. Exact ties go to the lower index here (scikit-learn's order
    # among exact ties is arbitrary), so the indices are known exactly.
    X = np.array([[0.0, 0.0]] * 4 + [[5.0, 5.0]] * 2)
    dist, idx = NearestNeighbors(n_neighbors=2).fit(X).kneighbors()
    assert_array_equal(idx, [[1, 2], [0, 2], [0, 1], [1, 2], [5, 0], [4, 0]])
    sk_dist, _ = SkNearestNeighbors(n_neighbors=2, algorithm="brute").fit(X).kneighbors()
    assert_allclose(dist, sk_dist)


def test_books_closest_to_a_title():
    # The workflow of our users: the items most like one item, by cosine similarity.
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((500, 32)).astype(np.float32)
    embeddings[7] = embeddings[3] * 2.5 + 0.01  # a near twin of item 3, in direction
    nn = NearestNeighbors(n_neighbors=3, metric="cosine").fit(embeddings)
    dist, idx = nn.kneighbors(embeddings[3:4])
    assert idx[0, 0] == 3 and idx[0, 1] == 7
    assert dist[0, 0] < 1e-6 and dist[0, 1] < 1e-3


def test_errors():
    X = np.ones((5, 3))
    nn = NearestNeighbors(n_neighbors=2).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but NearestNeighbors is expecting 3 features as input."):
        nn.kneighbors(np.ones((1, 2)))
    with pytest.raises(ValueError, match="Expected n_neighbors < n_samples_fit, but n_neighbors = 5, n_samples_fit = 5"):
        nn.kneighbors(n_neighbors=5)
    with pytest.raises(ValueError, match="Expected n_neighbors <= n_samples_fit, but n_neighbors = 6"):
        nn.kneighbors(X, n_neighbors=6)
    with pytest.raises(ValueError, match="p=1 or p=2 only; got p=3"):
        NearestNeighbors(p=3).fit(X)
    with pytest.raises(ValueError, match="The 'n_neighbors' parameter of NearestNeighbors must be an int"):
        NearestNeighbors(n_neighbors=0).fit(X)


def test_pickle_round_trip(rng):
    X = rng.standard_normal((20, 3))
    nn = NearestNeighbors(n_neighbors=2).fit(X)
    again = pickle.loads(pickle.dumps(nn))
    assert_array_equal(again.kneighbors(X)[1], nn.kneighbors(X)[1])
