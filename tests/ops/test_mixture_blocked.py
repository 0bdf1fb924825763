"""The array-namespace Gaussian mixture ops (fastlatent/backends/_gmm_blocked.py), which the CUDA
backend runs with CuPy: here with NumPy against the NumPy reference backend, with blocks small
enough that every shape is cut into several; then (marker ``gpu``) the CUDA backend and
GaussianMixture on CuPy arrays."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from sklearn.datasets import make_blobs

from fastlatent._arrays import logsumexp_rows
from fastlatent.backends import _gmm_blocked as blocked
from fastlatent.backends import numpy as reference
from fastlatent.mixture import GaussianMixture
from test_mixture_ops import make_data, make_model, make_resp
from tolerances import GMM_BACKEND_VS_REFERENCE, GMM_PARAMETERS_TOL, gmm_tol

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
# (n_samples, n_features, n_components): K = 1, one row, one feature, K = N, a plain case,
# and a block size (float64 elements of the largest temporary) that cuts them into blocks of
# 1 to a few rows.
SHAPES = [(7, 3, 1), (1, 3, 2), (60, 1, 3), (40, 6, 40), (501, 8, 5)]
BLOCK_ELEMENTS = [1, 97]


def layouts(X):
    """X as given, a non-contiguous view of the same values, and Fortran order."""
    wide = np.empty((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
    wide[:, ::2] = X
    return {"C": X, "strided": wide[:, ::2], "F": np.asfortranarray(X)}


def assert_same(ours, theirs, dtype):
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert_allclose(ours, theirs, **gmm_tol(GMM_BACKEND_VS_REFERENCE, dtype))


@pytest.mark.parametrize("block_elements", BLOCK_ELEMENTS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_blocked_ops_match_reference(rng, dtype, covariance_type, n, d, k, block_elements):
    X = make_data(rng, n, d, dtype)
    weights, means, precisions_cholesky = make_model(rng, covariance_type, k, d, dtype)
    resp = make_resp(rng, n, k, dtype)
    expected_log_prob = reference.gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type)
    expected_mean, expected_log_resp = reference.gmm_e_step(X, weights, means, precisions_cholesky, covariance_type)
    expected_m_step = reference.gmm_m_step(X, resp, 1e-6, covariance_type)
    for layout, X_in in layouts(X).items():
        log_prob = blocked.gmm_estimate_log_prob_blocked(
            X_in, means, precisions_cholesky, covariance_type, block_elements=block_elements
        )
        assert_same(log_prob, expected_log_prob, dtype)
        mean_log_likelihood, log_resp = blocked.gmm_e_step_blocked(
            X_in, weights, means, precisions_cholesky, covariance_type, block_elements=block_elements
        )
        assert np.ndim(mean_log_likelihood) == 0
        assert_allclose(float(mean_log_likelihood), expected_mean, **gmm_tol(GMM_BACKEND_VS_REFERENCE, dtype))
        assert_same(log_resp, expected_log_resp, dtype)
        results = blocked.gmm_m_step_blocked(X_in, resp, 1e-6, covariance_type, block_elements=block_elements)
        for ours, theirs in zip(results, expected_m_step):
            assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_blocked_degenerate_data(dtype, covariance_type):
    # Duplicate rows and a constant column: the expanded forms round near zero (clipped), and
    # the M-step's covariances reduce to reg_covar on the constant column.
    rng = np.random.default_rng(1)
    X = np.repeat(make_data(rng, 10, 4, dtype), 5, axis=0)
    X[:, 2] = 3.0
    resp = make_resp(rng, X.shape[0], 3, dtype)
    nk, means, covariances = blocked.gmm_m_step_blocked(X, resp, 1e-3, covariance_type, block_elements=50)
    for ours, theirs in zip((nk, means, covariances), reference.gmm_m_step(X, resp, 1e-3, covariance_type)):
        assert_same(ours, theirs, dtype)
    from fastlatent.mixture._gaussian_mixture import _compute_precision_cholesky

    precisions_cholesky = _compute_precision_cholesky(covariances, covariance_type)
    weights = nk / nk.sum()
    _, log_resp = blocked.gmm_e_step_blocked(X, weights, means, precisions_cholesky, covariance_type, block_elements=50)
    assert_same(log_resp, reference.gmm_e_step(X, weights, means, precisions_cholesky, covariance_type)[1], dtype)


def test_blocked_zero_weight_gives_minus_infinity():
    rng = np.random.default_rng(0)
    X = make_data(rng, 20, 3, np.float64)
    _, means, precisions_cholesky = make_model(rng, "full", 3, 3, np.float64)
    _, log_resp = blocked.gmm_e_step_blocked(X, np.array([0.0, 0.5, 0.5]), means, precisions_cholesky, "full",
                                             block_elements=20)
    assert np.all(log_resp[:, 0] == -np.inf) and np.isfinite(log_resp[:, 1:]).all()


def test_logsumexp_rows_matches_scipy(rng):
    a = rng.standard_normal((6, 4)) * 300
    a[1, 2] = -np.inf
    a[2] = -np.inf
    a[3, 0] = 800.0  # exp would overflow without the shift
    assert_array_equal(logsumexp_rows(a)[2], -np.inf)
    assert_allclose(logsumexp_rows(a), logsumexp(a, axis=1), rtol=1e-15)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimator_on_blocked_ops(monkeypatch, covariance_type):
    """A whole fit with the NumPy backend's three ops replaced by the blocked ones (as the CUDA
    backend runs them, with NumPy): the fit of the reference, to float64 rounding."""
    X, _ = make_blobs(300, n_features=5, centers=3, cluster_std=1.5, random_state=2)
    params = dict(covariance_type=covariance_type, random_state=0, init_params="random", n_init=2, backend="numpy")
    expected = GaussianMixture(3, **params).fit(X)
    for op in ("gmm_estimate_log_prob", "gmm_e_step", "gmm_m_step"):
        function = getattr(blocked, op + "_blocked")
        monkeypatch.setattr(reference, op, lambda *args, _f=function: _f(*args, block_elements=64))
    ours = GaussianMixture(3, **params).fit(X)
    rtol, atol = GMM_PARAMETERS_TOL[np.float64]
    assert ours.n_iter_ == expected.n_iter_
    assert_allclose(ours.lower_bound_, expected.lower_bound_, rtol=1e-12)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(getattr(ours, name), getattr(expected, name), rtol=rtol, atol=atol, err_msg=name)
    assert_array_equal(ours.predict(X), expected.predict(X))
    assert_allclose(ours.score_samples(X), expected.score_samples(X), rtol=1e-12)


# ---- on a GPU: the CUDA backend and GaussianMixture on CuPy arrays (skipped without one) --------


@pytest.mark.gpu
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_cuda_ops_on_cupy_arrays(rng, dtype, covariance_type):
    cupy = pytest.importorskip("cupy")
    from fastlatent.ops.mixture import gmm_e_step, gmm_estimate_log_prob, gmm_m_step

    X = make_data(rng, 3001, 24, dtype)
    weights, means, precisions_cholesky = make_model(rng, covariance_type, 7, 24, dtype)
    resp = make_resp(rng, 3001, 7, dtype)
    dX = cupy.asarray(X)
    log_prob = gmm_estimate_log_prob(dX, means, precisions_cholesky, covariance_type)  # "auto": cuda
    assert isinstance(log_prob, cupy.ndarray)
    assert_same(log_prob.get(), reference.gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type), dtype)
    mean_log_likelihood, log_resp = gmm_e_step(dX, weights, means, precisions_cholesky, covariance_type)
    expected_mean, expected_log_resp = reference.gmm_e_step(X, weights, means, precisions_cholesky, covariance_type)
    assert isinstance(log_resp, cupy.ndarray) and isinstance(mean_log_likelihood, float)
    assert_allclose(mean_log_likelihood, expected_mean, **gmm_tol(GMM_BACKEND_VS_REFERENCE, dtype))
    assert_same(log_resp.get(), expected_log_resp, dtype)
    results = gmm_m_step(dX, cupy.asarray(resp), 1e-6, covariance_type)
    for ours, theirs in zip(results, reference.gmm_m_step(X, resp, 1e-6, covariance_type)):
        assert isinstance(ours, cupy.ndarray)
        assert_same(ours.get(), theirs, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_mixture_on_cupy_input(dtype, covariance_type, init_params):
    cupy = pytest.importorskip("cupy")
    X, _ = make_blobs(2000, n_features=6, centers=4, cluster_std=1.5, random_state=3)
    X = X.astype(dtype)
    params = dict(covariance_type=covariance_type, random_state=0, init_params=init_params)
    ours = GaussianMixture(4, **params)
    labels = ours.fit_predict(cupy.asarray(X))
    expected = GaussianMixture(4, backend="numpy", **params).fit(X)
    # Fitted attributes are NumPy arrays (the k x d x d algebra is on the host); what comes
    # from the rows of X is CuPy.
    assert type(ours.means_) is np.ndarray and ours.means_.dtype == dtype
    assert isinstance(labels, cupy.ndarray)
    if init_params in ("random", "random_from_data"):  # the same draws: the same fit
        rtol, atol = GMM_PARAMETERS_TOL[dtype]
        assert_allclose(ours.lower_bound_, expected.lower_bound_, rtol=1e-5)
        assert_allclose(ours.means_, expected.means_, rtol=rtol, atol=atol * np.abs(X).max())
        assert_array_equal(labels.get(), expected.predict(X))
    proba = ours.predict_proba(cupy.asarray(X))
    scores = ours.score_samples(cupy.asarray(X))
    assert isinstance(proba, cupy.ndarray) and isinstance(scores, cupy.ndarray) and scores.dtype == dtype
    host = GaussianMixture(4, backend="numpy", **params).fit(X)
    host._set_parameters(ours._get_parameters())  # the same model, evaluated on the host
    assert_allclose(scores.get(), host.score_samples(X), **gmm_tol(GMM_PARAMETERS_TOL, dtype))
    assert_array_equal(ours.predict(cupy.asarray(X)).get(), host.predict(X))
    assert_allclose(ours.score(cupy.asarray(X)), host.score(X), rtol=1e-6)


@pytest.mark.gpu
def test_gaussian_mixture_cuda_backend_on_numpy_input():
    pytest.importorskip("cupy")
    X, _ = make_blobs(500, n_features=4, centers=3, random_state=0)
    ours = GaussianMixture(3, covariance_type="full", backend="cuda", random_state=0, init_params="random").fit(X)
    expected = GaussianMixture(3, covariance_type="full", backend="numpy", random_state=0, init_params="random").fit(X)
    assert type(ours.predict(X)) is np.ndarray
    assert_allclose(ours.lower_bound_, expected.lower_bound_, rtol=1e-10)
    assert_array_equal(ours.predict(X), expected.predict(X))
