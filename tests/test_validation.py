"""Bad input gets a clear error (scikit-learn's text) before any native code runs."""

import numpy as np
import pytest
import scipy.sparse as sp

import fastlatent
from fastlatent import ops

GOOD = np.ones((4, 3))


@pytest.mark.parametrize("backend", ["numpy", "numba", "cpu"])
@pytest.mark.parametrize(
    "X, error, message",
    [
        (np.array([[1.0, np.nan, 0.0]] * 4), ValueError, "Input X contains NaN."),
        (np.array([[1.0, np.inf, 0.0]] * 4), ValueError, r"Input X contains infinity or a value too large for dtype\('float64'\)\."),
        (np.empty((0, 3)), ValueError, r"Found array with 0 sample\(s\) \(shape=\(0, 3\)\) while a minimum of 1 is required."),
        (np.empty((4, 0)), ValueError, r"Found array with 0 feature\(s\)"),
        (np.ones(3), ValueError, "Expected 2D array, got 1D array instead"),
        (np.ones((2, 3, 1)), ValueError, "Found array with dim 3"),
        (np.ones((4, 3), dtype=complex), ValueError, "Complex data not supported"),
        (sp.csr_matrix(np.ones((4, 3))), TypeError, "Sparse data was passed"),
        (np.array([["a", "b", "c"]] * 4), ValueError, "could not convert|dtype='numeric' is not compatible"),
    ],
    ids=["nan", "inf", "empty", "no-features", "1d", "3d", "complex", "sparse", "strings"],
)
def test_bad_x_is_refused_on_every_op(backend, X, error, message):
    with pytest.raises(error, match=message):
        ops.pairwise_distances(X, GOOD, backend=backend)
    with pytest.raises(error, match=message):
        ops.pairwise_distances_argmin_min(X, GOOD, backend=backend)
    with pytest.raises(error, match=message):
        ops.kneighbors(X, GOOD, 1, backend=backend)


def test_bad_y_names_y():
    with pytest.raises(ValueError, match="Input Y contains NaN."):
        ops.pairwise_distances(GOOD, np.full((2, 3), np.nan))


def test_mismatched_features():
    with pytest.raises(ValueError, match=r"X.shape\[1\] == 3 while Y.shape\[1\] == 2"):
        ops.pairwise_distances_argmin_min(GOOD, np.ones((5, 2)))


@pytest.mark.parametrize("metric", ["minkowski", "chebyshev", None, 3])
def test_unknown_metric(metric):
    with pytest.raises(ValueError, match="Unknown metric .* Valid metrics are"):
        ops.pairwise_distances(GOOD, metric=metric)


@pytest.mark.parametrize(
    "k, error, message",
    [
        (0, ValueError, "Expected n_neighbors > 0. Got 0"),
        (-2, ValueError, "Expected n_neighbors > 0. Got -2"),
        (5, ValueError, "Expected n_neighbors <= n_samples_fit, but n_neighbors = 5, n_samples_fit = 4"),
        (2.5, TypeError, "n_neighbors does not take <class 'float'> value"),
        (True, TypeError, "n_neighbors does not take <class 'bool'> value"),
    ],
)
def test_bad_n_neighbors(k, error, message):
    with pytest.raises(error, match=message):
        ops.kneighbors(GOOD, GOOD, k)


def test_float32_infinity_message_names_float32():
    X = np.array([[np.inf, 1.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"infinity or a value too large for dtype\('float32'\)"):
        fastlatent.pairwise_distances(X)


def test_axis_and_metric_kwargs_are_checked():
    with pytest.raises(ValueError, match="axis must be 0 or 1"):
        fastlatent.pairwise_distances_argmin_min(GOOD, GOOD, axis=2)
    with pytest.raises(ValueError, match="metric_kwargs are not supported"):
        fastlatent.pairwise_distances_argmin_min(GOOD, GOOD, metric_kwargs={"p": 3})


def test_native_module_checks_its_own_preconditions():
    _cpu = pytest.importorskip("fastlatent._cpu")
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="n_neighbors"):
        _cpu.kneighbors(X, X, 4, "euclidean")
    with pytest.raises(ValueError, match="metric"):
        _cpu.pairwise_distances(X, X, "hamming")
    with pytest.raises(ValueError):
        _cpu.pairwise_distances(X, np.ones((3, 5)), "euclidean")
    with pytest.raises(TypeError):  # no silent dtype conversion in the binding
        _cpu.pairwise_distances(X, X.astype(np.float32), "euclidean")


def test_float64_values_whose_squares_overflow_are_refused():
    X = np.full((3, 4), 1e154)  # the limit for 4 features is 3.4e153
    with pytest.raises(ValueError, match="Input X contains values of magnitude up to 1e\\+154; squared distances"):
        ops.pairwise_distances_argmin_min(X, np.ones((2, 4)))
    with pytest.raises(ValueError, match="Input Y contains values of magnitude"):
        ops.kneighbors(np.ones((2, 4)), -X, 1)
    with pytest.raises(ValueError, match="Scale the data down"):
        fastlatent.NearestNeighbors().fit(X)
    # float32 near its own maximum is fine (it is squared in float64) as long as the
    # euclidean distances themselves fit in float32: here 4 * max / 8.
    big32 = np.full((3, 4), np.finfo(np.float32).max / 8, dtype=np.float32)
    assert np.all(np.isfinite(ops.pairwise_distances(big32, -big32)))
