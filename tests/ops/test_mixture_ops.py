"""Gaussian mixture ops on every backend against the NumPy reference, and the reference
against scikit-learn's private helpers."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import logsumexp
from sklearn.mixture._gaussian_mixture import (
    _compute_precision_cholesky,
    _estimate_gaussian_parameters,
    _estimate_log_gaussian_prob,
)

from fastlatent.backends import get_backend, is_available
from fastlatent.backends import numpy as reference
from fastlatent.ops.mixture import gmm_e_step, gmm_estimate_log_prob, gmm_m_step, gmm_responsibilities
from tolerances import (
    GMM_BACKEND_VS_REFERENCE,
    GMM_FLOAT32_Q_RTOL,
    GMM_FLOAT32_SCATTER_RTOL,
    GMM_REFERENCE_VS_SKLEARN,
    gmm_tol,
)

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
# (n_samples, n_features, n_components): one row, one feature, K = N, a plain case.
# k = 11 and 18: the cpu kernel's diag/spherical tiles of 4, 8, 12 and 16 components plus a rest.
SHAPES = [(1, 3, 1), (60, 1, 3), (40, 6, 40), (500, 8, 5), (33, 7, 11), (19, 5, 18)]


def make_model(rng, covariance_type, n_components, n_features, dtype):
    """Random means, weights and SPD covariances; the precision Cholesky factors are
    scikit-learn's."""
    means = rng.standard_normal((n_components, n_features))
    if covariance_type == "full":
        A = rng.standard_normal((n_components, n_features, n_features))
        covariances = A @ A.transpose(0, 2, 1) / n_features + np.eye(n_features)
    elif covariance_type == "tied":
        A = rng.standard_normal((n_features, n_features))
        covariances = A @ A.T / n_features + np.eye(n_features)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.5, 2.0, (n_components, n_features))
    else:
        covariances = rng.uniform(0.5, 2.0, n_components)
    precisions_cholesky = _compute_precision_cholesky(covariances, covariance_type)
    weights = rng.uniform(0.5, 2.0, n_components)
    weights /= weights.sum()
    return weights.astype(dtype), means.astype(dtype), precisions_cholesky.astype(dtype)


def make_data(rng, n_samples, n_features, dtype):
    return (1.5 * rng.standard_normal((n_samples, n_features))).astype(dtype)


def make_resp(rng, n_samples, n_components, dtype):
    if n_samples == n_components:
        return np.eye(n_samples, dtype=dtype)  # every point its own component
    return rng.dirichlet(np.ones(n_components), n_samples).astype(dtype)


def skip_if_missing(backend, op):
    if not hasattr(get_backend(backend), op):
        pytest.skip(f"the {backend!r} backend does not implement {op} yet")


# ---- the NumPy reference against scikit-learn ---------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_reference_log_prob_matches_sklearn(rng, dtype, covariance_type, n, d, k):
    X = make_data(rng, n, d, dtype)
    _, means, precisions_cholesky = make_model(rng, covariance_type, k, d, dtype)
    log_prob = gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type, backend="numpy")
    expected = _estimate_log_gaussian_prob(X, means, precisions_cholesky, covariance_type)
    assert log_prob.dtype == dtype and log_prob.shape == (n, k)
    assert_allclose(log_prob, expected, **gmm_tol(GMM_REFERENCE_VS_SKLEARN, dtype))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_reference_e_step_matches_sklearn(rng, dtype, covariance_type, n, d, k):
    X = make_data(rng, n, d, dtype)
    weights, means, precisions_cholesky = make_model(rng, covariance_type, k, d, dtype)
    mean_log_likelihood, log_resp = gmm_e_step(
        X, weights, means, precisions_cholesky, covariance_type, backend="numpy"
    )
    weighted = _estimate_log_gaussian_prob(X, means, precisions_cholesky, covariance_type) + np.log(weights)
    log_prob_norm = logsumexp(weighted, axis=1)
    assert isinstance(mean_log_likelihood, float)
    assert log_resp.dtype == dtype and log_resp.shape == (n, k)
    tol = gmm_tol(GMM_REFERENCE_VS_SKLEARN, dtype)
    assert_allclose(mean_log_likelihood, np.mean(log_prob_norm), **tol)
    assert_allclose(log_resp, weighted - log_prob_norm[:, None], **tol)
    assert_allclose(np.exp(log_resp.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_reference_m_step_matches_sklearn(rng, dtype, covariance_type, n, d, k):
    X = make_data(rng, n, d, dtype)
    resp = make_resp(rng, n, k, dtype)
    nk, means, covariances = gmm_m_step(X, resp, 1e-6, covariance_type, backend="numpy")
    expected = _estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    tol = gmm_tol(GMM_REFERENCE_VS_SKLEARN, dtype)
    for ours, theirs in zip((nk, means, covariances), expected):
        assert ours.dtype == dtype and ours.shape == theirs.shape
        assert_allclose(ours, theirs, **tol)


# ---- every backend against the NumPy reference ------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_ops_match_reference(backend, rng, dtype, covariance_type, n, d, k):
    skip_if_missing(backend, "gmm_e_step")
    X = make_data(rng, n, d, dtype)
    weights, means, precisions_cholesky = make_model(rng, covariance_type, k, d, dtype)
    tol = gmm_tol(GMM_BACKEND_VS_REFERENCE, dtype)

    log_prob = gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type, backend=backend)
    assert log_prob.dtype == dtype
    assert_allclose(log_prob, reference.gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type), **tol)

    mean_log_likelihood, log_resp = gmm_e_step(X, weights, means, precisions_cholesky, covariance_type, backend=backend)
    ref_mean, ref_log_resp = reference.gmm_e_step(X, weights, means, precisions_cholesky, covariance_type)
    assert log_resp.dtype == dtype
    assert_allclose(mean_log_likelihood, ref_mean, **tol)
    assert_allclose(log_resp, ref_log_resp, **tol)

    resp = make_resp(rng, n, k, dtype)
    results = gmm_m_step(X, resp, 1e-6, covariance_type, backend=backend)
    for ours, theirs in zip(results, reference.gmm_m_step(X, resp, 1e-6, covariance_type)):
        assert ours.dtype == dtype and ours.shape == theirs.shape
        assert_allclose(ours, theirs, **tol)


@pytest.mark.parametrize("backend_name", ["numpy", "numba", "cpu"])
def test_zero_weight_gives_minus_infinity(backend_name):
    if not is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} not available here")
    rng = np.random.default_rng(0)
    X = make_data(rng, 20, 3, np.float64)
    weights, means, precisions_cholesky = make_model(rng, "diag", 3, 3, np.float64)
    weights = np.array([0.0, 0.5, 0.5])
    _, log_resp = gmm_e_step(X, weights, means, precisions_cholesky, "diag", backend=backend_name)
    assert np.all(log_resp[:, 0] == -np.inf) and np.isfinite(log_resp[:, 1:]).all()


@pytest.mark.parametrize("backend_name", ["numpy", "cpu"])
def test_responsibilities_are_exp_of_log_responsibilities(rng, dtype, backend_name):
    """Within 2 ulps of NumPy's exp over the whole range: -inf, subnormal results, overflow."""
    if not is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} not available here")
    limit = 700.0 if dtype == np.float64 else 85.0
    log_resp = rng.uniform(-1.1 * limit, limit, (999, 7)).astype(dtype)
    log_resp = log_resp[:, ::2]  # not contiguous
    log_resp[0, :4] = [-np.inf, 0.0, -745.13 if dtype == np.float64 else -103.9, limit]
    resp = gmm_responsibilities(log_resp, backend=backend_name)
    expected = np.exp(log_resp)
    assert resp.dtype == dtype and resp.shape == log_resp.shape
    assert_allclose(resp, expected, rtol=2 * np.finfo(dtype).eps, atol=2 * np.finfo(dtype).smallest_subnormal)
    assert resp[0, 0] == 0.0 and resp[0, 1] == 1.0


@pytest.mark.parametrize("backend_name", ["numpy", "numba", "cpu"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_samples, n_features, n_components", SHAPES)
def test_e_step_with_responsibilities(rng, dtype, backend_name, covariance_type, n_samples, n_features, n_components):
    """responsibilities=True returns exp(log_resp), the M-step's input: the cpu backend from
    the log-sum-exp's own exponentials (e / sum), the others through gmm_responsibilities.
    The same to a few roundings, a zero weight included; the mean log-likelihood unchanged."""
    if not is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} not available here")
    X = make_data(rng, n_samples, n_features, dtype)
    weights, means, precisions_cholesky = make_model(rng, covariance_type, n_components, n_features, dtype)
    if n_components > 1:
        weights[0] = 0.0
        weights /= weights.sum()
    mean, log_resp = gmm_e_step(X, weights, means, precisions_cholesky, covariance_type, backend=backend_name)
    fused_mean, resp = gmm_e_step(
        X, weights, means, precisions_cholesky, covariance_type, responsibilities=True, backend=backend_name
    )
    assert fused_mean == mean
    assert resp.dtype == dtype and resp.shape == log_resp.shape
    eps = np.finfo(dtype).eps
    expected = np.exp(log_resp.astype(np.float64))
    # exp(log_resp) carries log_resp's roundings, which the fused e / sum does not: storing it in
    # X's dtype (|log_resp| eps / 2) and, in float64, forming w - log p(x) (|w| of a row's
    # weighted log-densities, times a few float64 units).
    with np.errstate(divide="ignore"):
        weighted = reference.gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type) + np.log(weights)
    scale = np.abs(np.where(np.isfinite(weighted), weighted, 0.0)).max(axis=1, keepdims=True)
    slack = np.abs(np.nan_to_num(log_resp.astype(np.float64), neginf=0.0)) * eps / 2 + 4 * scale * 2.0**-52
    assert np.all(np.abs(resp - expected) <= (8 * eps + slack) * expected + np.finfo(dtype).smallest_subnormal)
    if n_components > 1:
        assert np.all(resp[:, 0] == 0)
    assert_allclose(resp.sum(axis=1), 1.0, rtol=n_components * 4 * eps)


# ---- validation -------------------------------------------------------------------------------


def test_ops_validate_their_inputs():
    rng = np.random.default_rng(0)
    X = make_data(rng, 10, 3, np.float64)
    weights, means, precisions_cholesky = make_model(rng, "full", 2, 3, np.float64)
    with pytest.raises(ValueError, match="Unknown covariance_type 'banana'"):
        gmm_estimate_log_prob(X, means, precisions_cholesky, "banana")
    with pytest.raises(ValueError, match=r"precisions_cholesky has shape \(2, 3, 3\); expected \(2, 3\)"):
        gmm_estimate_log_prob(X, means, precisions_cholesky, "diag")
    with pytest.raises(ValueError, match="means has 2 feature"):
        gmm_estimate_log_prob(X, means[:, :2], precisions_cholesky, "full")
    with pytest.raises(ValueError, match=r"weights has shape \(3,\); expected \(2,\)"):
        gmm_e_step(X, np.ones(3) / 3, means, precisions_cholesky, "full")
    with pytest.raises(ValueError, match="Input X contains NaN"):
        gmm_e_step(np.full((3, 3), np.nan), weights, means, precisions_cholesky, "full")
    with pytest.raises(ValueError, match="resp has 9 row"):
        gmm_m_step(X, np.ones((9, 2)) / 2, 1e-6, "full")
    with pytest.raises(ValueError, match="resp must be non-negative"):
        gmm_m_step(X, -np.ones((10, 2)), 1e-6, "full")


# ---- float32 input computed in float32 (cpu backend) -------------------------------------------
# The cpu backend computes the squared Mahalanobis distances q of float32 input in float32, on
# rows and means centred at m0 = the mean of the component means; the rest in float64. Its
# error is bounded per (row, component) by GMM_FLOAT32_Q_RTOL(d) times the scale M below (see
# tests/tolerances.py), plus the output's float32 rounding.
U32 = 2.0**-24
# (n, d, k): 1 row, 1 feature, K = 1, odd K (not a multiple of 8), odd d (not a multiple of 16),
# d = 128 with K = 40 (the workflow's tied model, fewer rows).
FLOAT32_SHAPES = [(1, 5, 3), (50, 1, 4), (40, 7, 1), (64, 33, 13), (37, 128, 40)]


def offset_problem(rng, covariance_type, n, d, k, offset):
    """Components at ``offset`` with unit spread and different scales; float64 means (not
    float32-representable), float32 X drawn from the mixture."""
    weights, means, precisions_cholesky = make_model(rng, covariance_type, k, d, np.float64)
    means = means * rng.uniform(0.5, 3.0, (k, 1)) + offset
    X = means[rng.integers(0, k, n)] + rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, (n, 1))
    return X.astype(np.float32), weights, means, precisions_cholesky


def float32_scale(X, means, precisions_cholesky, covariance_type):
    """M [n x k], float64: ||x' P||^2 + ||mu' P||^2 (full, tied) or sum_j ((|x'_j| + |mu'_j|)
    s_j)^2 (diag, spherical), with x' = x - m0 and mu' = mu - m0."""
    m0 = means.mean(axis=0)
    Xc, Mc, P = X.astype(np.float64) - m0, means - m0, precisions_cholesky
    if covariance_type == "full":
        return np.stack([((Xc @ P[c]) ** 2).sum(1) + ((Mc[c] @ P[c]) ** 2).sum() for c in range(len(means))], 1)
    if covariance_type == "tied":
        return ((Xc @ P) ** 2).sum(1)[:, None] + ((Mc @ P) ** 2).sum(1)[None]
    magnitudes = np.abs(Xc)[:, None, :] + np.abs(Mc)[None]
    if covariance_type == "diag":
        return ((magnitudes * P[None]) ** 2).sum(2)
    return (magnitudes**2).sum(2) * P[None] ** 2


def float32_errors_within_bound(ours, expected, bound):
    """|ours - expected| <= bound + the output's float32 rounding, elementwise."""
    excess = np.abs(ours.astype(np.float64) - expected) - (bound + U32 * np.abs(expected))
    return excess.max() <= 0, excess.max()


@pytest.mark.parametrize("offset", [0.0, 1000.0])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n, d, k", FLOAT32_SHAPES)
def test_cpu_float32_within_error_bound(covariance_type, n, d, k, offset):
    if not is_available("cpu"):
        pytest.skip("backend 'cpu' not available here")
    rng = np.random.default_rng(n * 1000 + d * 10 + k)
    X, weights, means, precisions_cholesky = offset_problem(rng, covariance_type, n, d, k, offset)
    X64 = X.astype(np.float64)
    q_bound = GMM_FLOAT32_Q_RTOL(d) * float32_scale(X, means, precisions_cholesky, covariance_type)

    log_prob = gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type, backend="cpu")
    expected = reference.gmm_estimate_log_prob(X64, means, precisions_cholesky, covariance_type)
    assert log_prob.dtype == np.float32
    ok, excess = float32_errors_within_bound(log_prob, expected, 0.5 * q_bound)
    assert ok, excess

    # log_resp = w_c - logsumexp(w): the row's normaliser moves by at most its largest error.
    mean_log_likelihood, log_resp = gmm_e_step(X, weights, means, precisions_cholesky, covariance_type, backend="cpu")
    ref_mean, ref_log_resp = reference.gmm_e_step(X64, weights, means, precisions_cholesky, covariance_type)
    assert log_resp.dtype == np.float32
    row_bound = 0.5 * q_bound.max(axis=1, keepdims=True)
    ok, excess = float32_errors_within_bound(log_resp, ref_log_resp, 0.5 * q_bound + row_bound)
    assert ok, excess
    assert abs(mean_log_likelihood - ref_mean) <= row_bound.mean() + 1e-12 * abs(ref_mean)


def uncentred_float32_log_prob(X, means, precisions_cholesky, covariance_type):
    """The same computation without the centring: q in float32 from float32 X and the
    parameters rounded to float32 (full, tied: ||x P - mu P||^2 with mu P rounded once)."""
    f = np.float32
    Xf, M, P = X.astype(f), means, precisions_cholesky
    if covariance_type in ("full", "tied"):
        factors = P if covariance_type == "full" else [P] * len(M)
        q = np.stack([(((Xf @ Pc.astype(f)) - (mu @ Pc).astype(f)) ** 2).sum(1, dtype=f) for mu, Pc in zip(M, factors)], 1)
    elif covariance_type == "diag":
        q = (((Xf[:, None, :] - M.astype(f)[None]) * P.astype(f)[None]) ** 2).sum(2, dtype=f)
    else:
        q = ((Xf[:, None, :] - M.astype(f)[None]) ** 2).sum(2, dtype=f) * P[None] ** 2
    d = X.shape[1]
    log_det = reference._gmm_float64_model(means, precisions_cholesky, covariance_type)[2]
    return -0.5 * (d * np.log(2 * np.pi) + q.astype(np.float64)) + log_det


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_cpu_float32_centring_is_needed(covariance_type):
    """Data at 1000 with unit spread: without the centring, float32 rounding of x (P) and
    mu (P) at the scale of the offset breaks the bound that the cpu kernel meets."""
    if not is_available("cpu"):
        pytest.skip("backend 'cpu' not available here")
    rng = np.random.default_rng(3)
    n, d, k = 200, 24, 5
    X, _, means, precisions_cholesky = offset_problem(rng, covariance_type, n, d, k, 1000.0)
    expected = reference.gmm_estimate_log_prob(X.astype(np.float64), means, precisions_cholesky, covariance_type)
    bound = 0.5 * GMM_FLOAT32_Q_RTOL(d) * float32_scale(X, means, precisions_cholesky, covariance_type)
    uncentred = uncentred_float32_log_prob(X, means, precisions_cholesky, covariance_type)
    ok, excess = float32_errors_within_bound(uncentred, expected, bound)
    assert not ok  # the uncentred formula violates the bound ...
    log_prob = gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type, backend="cpu")
    ok, excess = float32_errors_within_bound(log_prob, expected, bound)
    assert ok, excess  # ... which the cpu kernel meets


# ---- the "full" M-step's scatter of float32 input, summed in float32 per block (cpu backend) ---
# gmm_full_scatter sums r (x - mu)(x - mu)^T in float32 over each block of rows and in float64
# across blocks: per entry within GMM_FLOAT32_SCATTER_RTOL(d) * M, M = sum_i r_i |d_ia| |d_ib|
# with d = x - mu in float64 (tests/tolerances.py). (n, d, k): as FLOAT32_SHAPES, d = 128 with
# more rows (several blocks of 32) and a case of several blocks of 64 rows (d = 5).
SCATTER_SHAPES = [(1, 5, 3), (50, 1, 4), (40, 7, 1), (64, 33, 13), (300, 128, 40), (1000, 5, 3)]


def float64_scatter(X64, resp64, means):
    """sum_i r_ic (x_i - mu_c)(x_i - mu_c)^T and the bound's scale M, both [k x d x d] float64."""
    scatter, scale = [], []
    for c in range(len(means)):
        D = X64 - means[c]
        scatter.append((resp64[:, c, None] * D).T @ D)
        scale.append((resp64[:, c, None] * np.abs(D)).T @ np.abs(D))
    return np.array(scatter), np.array(scale)


def sparse_resp(rng, n, k):
    """Dirichlet responsibilities with about a third of the entries zero (rows renormalised,
    every row keeps one nonzero) and, for k > 2, the last component's column all zeros."""
    resp = rng.dirichlet(np.ones(k), n)
    resp[rng.random((n, k)) < 0.35] = 0.0
    if k > 2:
        resp[:, -1] = 0.0
    empty = resp.sum(1) == 0
    resp[empty, rng.integers(0, max(k - 1, 1), empty.sum())] = 1.0
    return (resp / resp.sum(1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("offset", [0.0, 1000.0])
@pytest.mark.parametrize("n, d, k", SCATTER_SHAPES)
def test_cpu_float32_full_scatter_within_error_bound(n, d, k, offset):
    """Data at 0 and at 1000 with unit spread: the bound is relative to the spread about each
    component's mean, as the difference x - mu is taken in float64 before the rounding."""
    if not is_available("cpu"):
        pytest.skip("backend 'cpu' not available here")
    from fastlatent import _cpu

    rng = np.random.default_rng(n * 1000 + d * 10 + k)
    X, _, _, _ = offset_problem(rng, "full", n, d, k, offset)
    resp = sparse_resp(rng, n, k)
    X64, resp64 = X.astype(np.float64), resp.astype(np.float64)
    nk = resp64.sum(0) + 10 * np.finfo(np.float32).eps
    means = resp64.T @ X64 / nk[:, None]
    expected, scale = float64_scatter(X64, resp64, means)
    bound = GMM_FLOAT32_SCATTER_RTOL(d) * scale

    scatter = _cpu.gmm_full_scatter(X, resp, means)
    assert scatter.dtype == np.float64 and scatter.shape == (k, d, d)
    assert np.array_equal(scatter, scatter.transpose(0, 2, 1))
    assert (np.abs(scatter - expected) <= bound).all(), (np.abs(scatter - expected) / np.maximum(scale, 1e-300)).max()
    if k > 2:
        assert (scatter[-1] == 0).all()  # a component without responsibility

    # The M-step's covariances: scatter / nk + reg_covar, rounded to float32 once.
    reg_covar = 1e-6
    nk32, means32, covariances = gmm_m_step(X, resp, reg_covar, "full", backend="cpu")
    expected_covariances = expected / nk[:, None, None] + reg_covar * np.eye(d)
    assert covariances.dtype == np.float32
    excess = np.abs(covariances - expected_covariances) - (bound / nk[:, None, None] + U32 * np.abs(expected_covariances))
    assert excess.max() <= 0, excess.max()
    assert_allclose(means32, means, rtol=U32, atol=0)
    assert_allclose(nk32, nk, rtol=U32, atol=0)


def test_cpu_float32_full_scatter_sums_blocks_in_float64():
    """200,000 rows: the cpu kernel meets the per-block bound, which one float32 sum over all
    the rows (emulated in NumPy: sequential float32 sums of the same rounded products) breaks."""
    if not is_available("cpu"):
        pytest.skip("backend 'cpu' not available here")
    from fastlatent import _cpu

    rng = np.random.default_rng(5)
    n, d = 200_000, 2
    X = rng.standard_normal((n, d)).astype(np.float32)
    resp = np.ones((n, 1), dtype=np.float32)
    X64 = X.astype(np.float64)
    means = X64.mean(0, keepdims=True)
    expected, scale = float64_scatter(X64, resp.astype(np.float64), means)
    bound = GMM_FLOAT32_SCATTER_RTOL(d) * scale[0]

    D = X64 - means[0]
    difference, weighted = D.astype(np.float32), D.astype(np.float32)  # r = 1: W = D
    one_sum = np.array([[np.cumsum(weighted[:, a] * difference[:, b], dtype=np.float32)[-1] for b in range(d)] for a in range(d)])
    assert (np.abs(one_sum - expected[0]) > bound).any()  # one float32 sum over all the rows ...
    scatter = _cpu.gmm_full_scatter(X, resp, means)
    assert (np.abs(scatter[0] - expected[0]) <= bound).all()  # ... the per-block sums do not
