"""fastlatent.GaussianMixture against sklearn.mixture.GaussianMixture."""

import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky as sk_compute_precision_cholesky
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastlatent.backends import get_backend
from fastlatent.mixture import GaussianMixture
from fastlatent.mixture._gaussian_mixture import (
    _compute_precision_cholesky,
    _compute_precision_cholesky_from_precisions,
)
from tolerances import GMM_LOWER_BOUND_RTOL, GMM_PARAMETERS_TOL, gmm_tol

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def blobs(dtype, n_samples=400, n_features=4, centers=3, seed=0):
    X, _ = make_blobs(n_samples, n_features=n_features, centers=centers, cluster_std=1.5, random_state=seed)
    return X.astype(dtype)


def initial_parameters(X, covariance_type, n_components, seed=0):
    """Weights, means and precisions near the data (not the answer)."""
    rng = np.random.default_rng(seed)
    n_features = X.shape[1]
    means = X[rng.choice(len(X), n_components, replace=False)]
    weights = np.full(n_components, 1.0 / n_components)
    precision = np.linalg.inv(np.cov(X.T.astype(np.float64)) + 0.1 * np.eye(n_features))
    precisions = {
        "full": np.stack([precision] * n_components),
        "tied": precision,
        "diag": np.tile(np.diag(precision), (n_components, 1)),
        "spherical": np.full(n_components, np.diag(precision).mean()),
    }[covariance_type]
    return weights, means, precisions


def assert_same_fit(ours, theirs, X, dtype):
    rtol, atol = GMM_PARAMETERS_TOL[dtype]
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.converged_ == theirs.converged_
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=GMM_LOWER_BOUND_RTOL[dtype])
    assert_allclose(ours.lower_bounds_, theirs.lower_bounds_, rtol=GMM_LOWER_BOUND_RTOL[dtype])
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        expected = getattr(theirs, name)
        assert getattr(ours, name).dtype == dtype, name
        # atol relative to the largest entry: a precision of 1e6 (a constant column) next
        # to 1e-9 off-diagonal rounding noise.
        assert_allclose(getattr(ours, name), expected, err_msg=name, rtol=rtol, atol=atol * np.abs(expected).max())
    assert_array_equal(ours.predict(X), theirs.predict(X))


# ---- the scikit-learn contract -----------------------------------------------------------------


# sklearn's PER_ESTIMATOR_XFAIL_CHECKS for GaussianMixture lists only an array-API check,
# which does not run here (no array API support), and its test instance is
# GaussianMixture(n_init=2, max_iter=5): nothing to x-fail.
@parametrize_with_checks(
    [
        GaussianMixture(n_init=2, max_iter=5, backend="numpy"),
        GaussianMixture(n_init=2, max_iter=5, covariance_type="diag"),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- the same fit as scikit-learn ----------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_fit_as_sklearn_from_given_parameters(dtype, covariance_type):
    X = blobs(dtype)
    weights, means, precisions = initial_parameters(X, covariance_type, 3)
    params = dict(
        covariance_type=covariance_type,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
        tol=1e-4,
    )
    ours = GaussianMixture(3, backend="numpy", **params).fit(X)
    theirs = SkGaussianMixture(3, **params).fit(X)
    assert_same_fit(ours, theirs, X, dtype)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "random", "k-means++", "random_from_data"])
def test_same_fit_as_sklearn_for_a_seed(dtype, covariance_type, init_params):
    X = blobs(dtype, seed=1)
    params = dict(covariance_type=covariance_type, init_params=init_params, random_state=0, n_init=2)
    ours = GaussianMixture(3, backend="numpy", **params).fit(X)
    theirs = SkGaussianMixture(3, **params).fit(X)
    if dtype == np.float32 and init_params in ("k-means++", "random_from_data"):
        # These start each component on one row: its initial covariance is
        # x**2 * (1/nk - 1/nk**2) + reg_covar with nk = 1 + 10 * eps(float32), which
        # scikit-learn evaluates in float32 as pure rounding noise (we evaluate it in
        # float64). The EM paths differ from there and stop (tol=1e-3) at slightly
        # different points of the same flat optimum (for "tied" the components all sit on
        # the data mean, and the n_init runs tie in float32: scikit-learn keeps the first,
        # we keep the better in float64, as scikit-learn does on float64 data).
        assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-4)
        return
    assert_same_fit(ours, theirs, X, dtype)


@pytest.mark.filterwarnings("ignore:covariance is not symmetric positive-semidefinite")  # sklearn's too
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_scores_and_sample_match_sklearn(dtype, covariance_type):
    X = blobs(dtype, seed=2)
    ours = GaussianMixture(3, covariance_type=covariance_type, random_state=0, backend="numpy").fit(X)
    theirs = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    tol = gmm_tol(GMM_PARAMETERS_TOL, dtype)
    score_samples = ours.score_samples(X)
    assert score_samples.dtype == dtype
    assert_allclose(score_samples, theirs.score_samples(X), **tol)
    proba = ours.predict_proba(X)
    assert proba.dtype == dtype and proba.shape == (len(X), 3)
    assert_allclose(proba, theirs.predict_proba(X), **tol)
    assert_allclose(ours.score(X), theirs.score(X), rtol=GMM_LOWER_BOUND_RTOL[dtype])
    assert_allclose(ours.bic(X), theirs.bic(X), rtol=GMM_LOWER_BOUND_RTOL[dtype])
    assert_allclose(ours.aic(X), theirs.aic(X), rtol=GMM_LOWER_BOUND_RTOL[dtype])
    assert ours._n_parameters() == theirs._n_parameters()

    # sample: the same draws from the same random_state (sklearn redraws from its seed).
    samples, labels = ours.sample(500)
    sk_samples, sk_labels = theirs.sample(500)
    assert samples.shape == (500, X.shape[1]) and samples.dtype == np.float64
    assert labels.dtype == np.int64
    assert_array_equal(labels, sk_labels)
    assert_allclose(samples, sk_samples, rtol=1e-3, atol=1e-3)
    # ... and each sample comes from its component: it is near that component's mean.
    assert (ours.predict(samples) == labels).mean() > 0.95


def test_sample_shapes_and_errors():
    X = blobs(np.float64)
    gmm = GaussianMixture(3, random_state=0)
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted"):
        gmm.sample(1)
    gmm.fit(X)
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        gmm.sample(0)
    for n in (1, 2, 7):
        samples, labels = gmm.sample(n)
        assert samples.shape == (n, X.shape[1]) and labels.shape == (n,)


# ---- EM's behaviours ------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_degenerate_data_matches_sklearn(covariance_type):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((60, 4))
    X[:, 1] = 3.0  # a constant column
    X[30:] = X[:30]  # every row twice
    for n_components in (1, 3):
        params = dict(covariance_type=covariance_type, random_state=0)
        ours = GaussianMixture(n_components, backend="numpy", **params).fit(X)
        theirs = SkGaussianMixture(n_components, **params).fit(X)
        assert_same_fit(ours, theirs, X, np.float64)


def test_one_component_is_the_sample_mean_and_covariance():
    X = blobs(np.float64)
    gmm = GaussianMixture(1, reg_covar=0).fit(X)
    assert gmm.n_iter_ == 2 and gmm.converged_
    assert_allclose(gmm.means_[0], X.mean(axis=0), rtol=1e-12)
    assert_allclose(gmm.covariances_[0], np.cov(X.T, bias=True), rtol=1e-10)
    assert_array_equal(gmm.predict(X), 0)


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # the k-means init, as sklearn's
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_singular_covariance_raises_sklearns_error(covariance_type):
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    gmm = GaussianMixture(n_components=10, reg_covar=0, covariance_type=covariance_type, random_state=0)
    message = re.escape(
        "Fitting the mixture model failed because some components have ill-defined empirical "
        "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
        "number of components, increase reg_covar, or scale the input data."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=message):
            gmm.fit(X)
        with pytest.raises(ValueError, match="passing float64 data instead of float32"):
            gmm.fit(X.astype(np.float32))
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.set_params(reg_covar=1e-6).fit(X)


def test_precision_cholesky_helpers_match_sklearn(dtype):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 4, 4))
    covariances = {
        "full": A @ A.transpose(0, 2, 1) + np.eye(4),
        "tied": A[0] @ A[0].T + np.eye(4),
        "diag": rng.uniform(0.5, 2, (3, 4)),
        "spherical": rng.uniform(0.5, 2, 3),
    }
    for covariance_type, covariance in covariances.items():
        covariance = covariance.astype(dtype)
        ours = _compute_precision_cholesky(covariance, covariance_type)
        theirs = sk_compute_precision_cholesky(covariance, covariance_type)
        assert ours.dtype == dtype
        assert_allclose(ours, theirs, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 0)
        precision = {"full": np.linalg.inv, "tied": np.linalg.inv}.get(covariance_type, lambda c: 1 / c)(
            covariance.astype(np.float64)
        )
        assert_allclose(
            _compute_precision_cholesky_from_precisions(precision, covariance_type),
            ours,
            rtol=1e-4 if dtype == np.float32 else 1e-10,
        )


def test_convergence_warning():
    X = blobs(np.float64)
    message = (
        "Best performing initialization did not converge. Try different init parameters, "
        "or increase max_iter, tol, or check for degenerate data."
    )
    with pytest.warns(ConvergenceWarning, match=re.escape(message)):
        gmm = GaussianMixture(3, max_iter=1, random_state=0, init_params="random").fit(X)
    assert not gmm.converged_ and gmm.n_iter_ == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        GaussianMixture(3, max_iter=0, random_state=0).fit(X)  # initialisation only: no warning


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lower_bound_never_decreases(covariance_type):
    X = blobs(np.float64, centers=5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm = GaussianMixture(
            5, covariance_type=covariance_type, reg_covar=0, tol=1e-10, init_params="random", random_state=0
        ).fit(X)
    bounds = np.array(gmm.lower_bounds_)
    assert len(bounds) == gmm.n_iter_ > 3
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]))
    assert bounds[-1] == gmm.lower_bound_


def test_warm_start_continues_the_last_fit():
    X = np.random.RandomState(0).rand(500, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        two = GaussianMixture(2, max_iter=2, reg_covar=0, random_state=0).fit(X)
        warm = GaussianMixture(2, max_iter=1, reg_covar=0, random_state=0, warm_start=True)
        score1 = warm.fit(X).score(X)
        score2 = warm.fit(X).score(X)
        sk_warm = SkGaussianMixture(2, max_iter=1, reg_covar=0, random_state=0, warm_start=True)
        sk_warm.fit(X)
        sk_warm.fit(X)
    assert score2 > score1
    assert_allclose(warm.weights_, two.weights_, rtol=1e-12)
    assert_allclose(warm.means_, two.means_, rtol=1e-12)
    assert_allclose(warm.precisions_, two.precisions_, rtol=1e-10)
    assert_allclose(warm.lower_bound_, sk_warm.lower_bound_, rtol=1e-10)
    # warm_start ignores n_init after the first fit, and converges from where it stood.
    warm.set_params(max_iter=100, n_init=5)
    warm.fit(X)
    assert warm.converged_


@pytest.mark.parametrize("seed, max_iter, tol", [(0, 2, 1e-7), (1, 2, 1e-1), (3, 300, 1e-7), (4, 300, 1e-1)])
def test_fit_predict_equals_fit_then_predict(seed, max_iter, tol):
    X = blobs(np.float64, centers=4, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for covariance_type in COVARIANCE_TYPES:
            params = dict(covariance_type=covariance_type, max_iter=max_iter, tol=tol, random_state=seed)
            labels = GaussianMixture(4, **params).fit_predict(X)
            assert_array_equal(labels, GaussianMixture(4, **params).fit(X).predict(X))


def test_verbose_prints_sklearns_messages(capsys):
    X = blobs(np.float64)
    GaussianMixture(3, verbose=1, verbose_interval=1, random_state=0).fit(X)
    ours = capsys.readouterr().out
    SkGaussianMixture(3, verbose=1, verbose_interval=1, random_state=0).fit(X)
    assert ours == capsys.readouterr().out
    GaussianMixture(3, verbose=2, random_state=0).fit(X)
    assert "Initialization converged. time lapse" in capsys.readouterr().out


# ---- validation ---------------------------------------------------------------------------------


def test_initial_weights_are_validated_with_sklearns_messages():
    X = blobs(np.float64)
    with pytest.raises(ValueError, match=re.escape("The parameter 'weights' should have the shape of (3,), but got (3, 1)")):
        GaussianMixture(3, weights_init=np.ones((3, 1)) / 3).fit(X)
    bad_range = np.array([0.5, 1.2, 0.3])
    message = "The parameter 'weights' should be in the range [0, 1], but got max value 0.30000, min value 1.20000"
    with pytest.raises(ValueError, match=re.escape(message)):
        GaussianMixture(3, weights_init=bad_range).fit(X)
    with pytest.raises(ValueError, match=re.escape("should be normalized, but got sum(weights) = 0.90000")):
        GaussianMixture(3, weights_init=[0.3, 0.3, 0.3]).fit(X)
    weights = np.array([0.2, 0.3, 0.5])
    gmm = GaussianMixture(3, weights_init=weights).fit(X)
    assert gmm.weights_init is weights  # parameters are never replaced


def test_initial_means_are_validated_with_sklearns_messages():
    X = blobs(np.float64)
    with pytest.raises(ValueError, match=re.escape("The parameter 'means' should have the shape of (3, 4), but got (4, 4)")):
        GaussianMixture(3, means_init=np.zeros((4, 4))).fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_initial_precisions_are_validated_with_sklearns_messages(covariance_type):
    X = blobs(np.float64)
    k, d = 3, 4
    bad_shape = {
        "full": np.ones((k + 1, d, d)),
        "tied": np.ones((d + 1, d + 1)),
        "diag": np.ones((k + 1, d)),
        "spherical": np.ones(k + 1),
    }[covariance_type]
    not_positive_full = np.ones((k, d, d))
    not_positive_full[0] = np.eye(d)
    not_positive_full[0, 0, 0] = -1.0
    not_positive = {
        "full": not_positive_full,
        "tied": not_positive_full[0],
        "diag": np.full((k, d), -1.0),
        "spherical": np.full(k, -1.0),
    }[covariance_type]
    expected_error = "positive" if covariance_type in ("diag", "spherical") else "symmetric, positive-definite"
    with pytest.raises(ValueError, match=f"The parameter '{covariance_type} precision' should have the shape of"):
        GaussianMixture(k, covariance_type=covariance_type, precisions_init=bad_shape).fit(X)
    with pytest.raises(ValueError, match=f"'{covariance_type} precision' should be {expected_error}"):
        GaussianMixture(k, covariance_type=covariance_type, precisions_init=not_positive).fit(X)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=re.escape("a minimum of 2 is required by GaussianMixture")):
        GaussianMixture().fit(np.ones((1, 3)))
    with pytest.raises(ValueError, match="Expected n_samples >= n_components but got n_components = 3, n_samples = 2"):
        GaussianMixture(3).fit(np.random.rand(2, 3))
    with pytest.raises(ValueError, match="The 'covariance_type' parameter of GaussianMixture must be"):
        GaussianMixture(covariance_type="banana").fit(np.random.rand(5, 3))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(1).fit(np.array([[0.0, np.nan], [1.0, 2.0]]))


# ---- backends ----------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_backends_agree(backend, dtype, covariance_type):
    if not hasattr(get_backend(backend), "gmm_e_step"):
        pytest.skip(f"the {backend!r} backend does not implement the GMM ops yet")
    X = blobs(dtype, seed=4)
    params = dict(covariance_type=covariance_type, random_state=0, init_params="random", n_init=2)
    ours = GaussianMixture(3, backend=backend, **params).fit(X)
    reference = GaussianMixture(3, backend="numpy", **params).fit(X)
    assert_same_fit(ours, reference, X, dtype)
    assert_allclose(ours.score_samples(X), reference.score_samples(X), **gmm_tol(GMM_PARAMETERS_TOL, dtype))
