import os

"""Property-based tests: random shapes, dtypes, strides and magnitudes against the reference."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from fastlatent import ops
from fastlatent._validation import max_magnitude
from fastlatent.backends import numpy as reference
from tolerances import BACKEND_VS_REFERENCE, TIE_RTOL, distance_tol

METRICS = ["euclidean", "sqeuclidean", "cosine", "manhattan"]


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n_x = draw(st.integers(1, 40))
    n_y = draw(st.integers(1, 40))
    n_features = draw(st.integers(1, 40))
    # Magnitudes from tiny to the largest whose squared distances still fit the dtype: for
    # float64 half of the validation limit, for float32 the same rule at float32's maximum.
    if dtype == np.float32:
        top = float(np.sqrt(np.finfo(np.float32).max / (4 * n_features))) / 2
    else:
        top = max_magnitude(n_features) / 2
    largest = draw(st.sampled_from([1e-3, 1.0, 1e3, top]))
    offset = draw(st.sampled_from([0.0, 1.0, 1e3]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, n_features)) + offset
    Y = rng.standard_normal((n_y, n_features)) + offset
    scale = largest / max(np.abs(X).max(), np.abs(Y).max())
    X, Y = (X * scale).astype(dtype), (Y * scale).astype(dtype)
    if draw(st.booleans()):  # some exact duplicates between X and Y
        Y[: min(n_x, n_y)] = X[: min(n_x, n_y)]
    if draw(st.booleans()):  # a non-contiguous view
        X = np.repeat(X, 2, axis=1)[:, ::2]
    metric = draw(st.sampled_from(METRICS))
    k = draw(st.integers(1, n_y))
    return X, Y, metric, k


def _check_neighbor_rows(X, Y, metric, idx, ref_idx, dtype):
    """Where the indices differ, the exact distances must be ties."""
    rows = np.nonzero(np.atleast_2d(idx != ref_idx).any(axis=-1) if idx.ndim > 1 else idx != ref_idx)[0]
    for i in rows:
        a = reference._distance_block(X[i : i + 1], Y[np.atleast_1d(idx[i])], metric)
        b = reference._distance_block(X[i : i + 1], Y[np.atleast_1d(ref_idx[i])], metric)
        assert_allclose(a, b, rtol=TIE_RTOL[np.dtype(dtype).type] * 10, atol=1e-300)


@pytest.mark.parametrize("backend_name", ["cpu", "numba"])
@settings(max_examples=int(os.environ.get("FASTLATENT_HYPOTHESIS_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_ops_match_reference_on_random_problems(backend_name, problem):
    from fastlatent.backends import is_available

    if not is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} not available here")
    X, Y, metric, k = problem
    dtype = X.dtype.type
    tol = distance_tol(BACKEND_VS_REFERENCE, dtype)
    if metric != "cosine":  # absolute tolerance in the data's units (float64: never inf)
        tol["atol"] *= float(np.abs(X).max()) ** (2 if metric == "sqeuclidean" else 1)
    assert np.isfinite(tol["atol"])

    got = ops.pairwise_distances(X, Y, metric, backend=backend_name)
    assert_allclose(got, reference.pairwise_distances(np.ascontiguousarray(X), Y, metric), **tol)

    idx, dist = ops.pairwise_distances_argmin_min(X, Y, metric, backend=backend_name)
    ref_idx, ref_dist = reference.pairwise_distances_argmin_min(np.ascontiguousarray(X), Y, metric)
    assert_allclose(dist, ref_dist, **tol)
    _check_neighbor_rows(X, Y, metric, idx, ref_idx, dtype)

    kdist, kidx = ops.kneighbors(X, Y, k, metric, backend=backend_name)
    ref_kdist, ref_kidx = reference.kneighbors(np.ascontiguousarray(X), Y, k, metric)
    assert_allclose(kdist, ref_kdist, **tol)
    _check_neighbor_rows(X, Y, metric, kidx, ref_kidx, dtype)
