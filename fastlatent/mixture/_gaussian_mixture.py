"""GaussianMixture: scikit-learn's EM estimator on fastlatent's ops.

This file holds the parameters, their validation, the initialisation and EM's outline; the
work over the rows of X is three ops: ``gmm_e_step`` (log-densities through the precision
Cholesky factors, log-sum-exp, log-responsibilities), ``gmm_m_step`` (masses, means,
covariances) and ``gmm_estimate_log_prob`` (for predict and score_samples). The loop follows
scikit-learn's ``BaseMixture.fit_predict`` step for step -- ``n_init`` runs drawn from one
RandomState, ``warm_start``, convergence when the lower bound changes by less than ``tol``,
the best run kept, a final E-step so that ``fit_predict(X) == fit(X).predict(X)`` -- so that
from the same initial parameters the fit is scikit-learn's to rounding.

The small per-component linear algebra (``k x d x d``: the Cholesky factors of the
precisions) is done here with SciPy, as named helpers that tests call on their own.

Where the arrays live: X stays where the ops run -- on the GPU for CuPy input (or a copy made
once for ``backend="cuda"`` on NumPy input), on the host otherwise -- and with it the (n, k)
responsibilities, through all of EM; ``fit_predict``, ``predict``, ``predict_proba`` and
``score_samples`` return the input's kind of array. The fitted attributes (``weights_``,
``means_``, ``covariances_``, ``precisions_``, ``precisions_cholesky_``) are NumPy arrays
whatever the input: they are at most k x d x d, and the Cholesky factors, the checks of the
initial parameters and ``sample`` are SciPy/NumPy work on the host. Each EM iteration moves
those parameters (not X, not the responsibilities) across the bus once each way.

Differences from scikit-learn, on purpose:
- The ops compute in float64 whatever X's dtype, and store float32 parameters for float32
  input (scikit-learn computes in float32 there); float32 fits are therefore a little more
  accurate than scikit-learn's, and agree with them to float32 rounding. The exceptions are
  on the cpu backend for float32 X: the E-step's squared Mahalanobis distances are computed in
  float32 (on data centred at the mean of the component means), and the "full" M-step's
  weighted scatter is summed in float32 over blocks of at most 64 rows (of the differences
  from each component's mean, taken in float64) and in float64 across blocks; the rest in
  float64.
  ``lower_bound_`` is a Python float.
- ``fit`` never writes to a parameter: scikit-learn replaces ``weights_init``, ``means_init``
  and ``precisions_init`` by their validated arrays; here they are left as given.
- With ``precisions_init`` and ``max_iter=0``, ``covariances_`` is the inverse of the given
  precisions (scikit-learn leaves it unset and fails).
- The expanded quadratic forms ("diag", "spherical") are clipped at 0.
"""

import numbers
import warnings
from time import time

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array as _sklearn_check_array
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted

from .._arrays import array_namespace, logsumexp_rows, to_host, to_like
from .._config import BACKEND_CHOICES
from .._threads import native_fit_context
from .._validation import validate_data
from ..ops.kmeans import kmeans_plusplus
from ..ops.mixture import (
    gmm_e_step,
    gmm_estimate_log_prob,
    gmm_m_step,
    gmm_working_array,
    parameter_shape,
)

_ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM, a drop-in for ``sklearn.mixture.GaussianMixture``.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Each component's own full matrix, one matrix shared by all, a diagonal per
        component, or one variance per component.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood changes by less than this.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, so that they stay positive definite.
    max_iter : int, default=100
        EM iterations per run (0: only the initialisation).
    n_init : int, default=1
        Number of runs; the one of highest lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the responsibilities start: k-means labels, k-means++ seeds, uniform random
        responsibilities, or random rows as one-point components.
    weights_init, means_init, precisions_init : array-like, default=None
        Initial weights (k,), means (k, d) and precisions (layout of ``covariance_type``);
        given ones replace what ``init_params`` would give.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and ``sample``.
    warm_start : bool, default=False
        Start a new fit from the last one (one run, ``n_init`` ignored).
    verbose : int, default=0
        1 prints the runs and iterations; 2 also times and lower-bound changes.
    verbose_interval : int, default=10
        Iterations between two prints.
    backend : {"auto", "cuda", "cpu", "numba", "numpy"}, default=None
        Where the kernels run; None follows ``fastlatent.config_context``.

    Attributes
    ----------
    weights_ : array (k,)
    means_ : array (k, d)
    covariances_, precisions_, precisions_cholesky_ : arrays in the layout of ``covariance_type``
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood of the training data at the end of the best run.
    lower_bounds_ : list of float
        The lower bound after each iteration of the best run.
    n_features_in_ : int
    feature_names_in_ : array of str, when X has feature names
    """

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "random", "random_from_data", "k-means++"})],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(numbers.Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "backend": [StrOptions(set(BACKEND_CHOICES)), None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        backend=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.backend = backend

    # ---- validation --------------------------------------------------------------------------

    def _check_initial_parameters(self, X):
        """The given initial weights, means and precisions, validated (None where not given)."""
        n_features = X.shape[1]
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = _check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            means = _check_means(self.means_init, self.n_components, n_features)
        if self.precisions_init is not None:
            precisions = _check_precisions(
                self.precisions_init, self.covariance_type, self.n_components, n_features
            )
        return weights, means, precisions

    # ---- initialisation ----------------------------------------------------------------------

    def _initial_responsibilities(self, X, random_state):
        """scikit-learn's ``BaseMixture._initialize_parameters``: the same draws, in order."""
        n_samples = X.shape[0]
        xp = array_namespace(X)  # the responsibilities live where X does (host or GPU)
        if self.init_params == "kmeans":
            from ..cluster import KMeans

            resp = xp.zeros((n_samples, self.n_components), dtype=X.dtype)
            labels = (
                KMeans(n_clusters=self.n_components, n_init=1, random_state=random_state, backend=self.backend)
                .fit(X)
                .labels_
            )
            resp[xp.arange(n_samples), xp.asarray(labels)] = 1
        elif self.init_params == "random":
            resp = np.asarray(random_state.uniform(size=(n_samples, self.n_components)), dtype=X.dtype)
            resp /= resp.sum(axis=1)[:, np.newaxis]
            resp = xp.asarray(resp)
        elif self.init_params == "random_from_data":
            resp = xp.zeros((n_samples, self.n_components), dtype=X.dtype)
            indices = random_state.choice(n_samples, size=self.n_components, replace=False)
            resp[xp.asarray(indices), xp.arange(self.n_components)] = 1
        else:  # "k-means++"
            resp = xp.zeros((n_samples, self.n_components), dtype=X.dtype)
            _, indices = kmeans_plusplus(
                X, self.n_components, xp.ones(n_samples, dtype=X.dtype), random_state, backend=self.backend
            )
            resp[xp.asarray(indices), xp.arange(self.n_components)] = 1
        return resp

    def _initialize_parameters(self, X, random_state):
        """A new run's starting point: the given initial parameters, the rest from the
        responsibilities of ``init_params`` (not drawn when all three are given)."""
        if self.weights_init is None or self.means_init is None or self.precisions_init is None:
            self._initialize(X, self._initial_responsibilities(X, random_state))
        else:
            self._initialize(X, None)

    def _initialize(self, X, resp):
        """Set weights_, means_, covariances_ and precisions_cholesky_ from ``resp`` (n, k)
        and the given initial parameters (scikit-learn's ``GaussianMixture._initialize``)."""
        statistics = None
        if resp is not None:
            statistics = gmm_m_step(
                X, resp, self.reg_covar, self.covariance_type, backend=self.backend, check_input=False
            )
        self._set_initial_parameters(X, statistics)

    def _set_initial_parameters(self, X, statistics):
        """The given initial parameters, the rest from ``statistics``: the M-step's (nk,
        means, covariances) of the initial responsibilities, or None when all are given.
        Shared with ``fastlatent.dask.GaussianMixture`` (X is only looked at for its shape)."""
        weights_init, means_init, precisions_init = self._check_initial_parameters(X)
        weights = means = covariances = None
        if statistics is not None:
            weights, means, covariances = (to_host(s) for s in statistics)  # attributes: NumPy
            if weights_init is None:
                weights = weights / X.shape[0]
        self.weights_ = weights if weights_init is None else weights_init
        self.means_ = means if means_init is None else means_init
        if precisions_init is None:
            self.covariances_ = covariances
            self.precisions_cholesky_ = _compute_precision_cholesky(covariances, self.covariance_type)
        else:
            self.covariances_ = _covariances_from_precisions(precisions_init, self.covariance_type)
            self.precisions_cholesky_ = _compute_precision_cholesky_from_precisions(
                precisions_init, self.covariance_type
            )

    # ---- EM ----------------------------------------------------------------------------------

    def _e_step(self, X, responsibilities=False):
        return gmm_e_step(
            X,
            self.weights_,
            self.means_,
            self.precisions_cholesky_,
            self.covariance_type,
            responsibilities=responsibilities,
            backend=self.backend,
            check_input=False,
        )

    def _em_e_step(self, X):
        """The EM loop's E-step: (mean log-likelihood, what ``_m_step`` takes: the
        responsibilities, fused into the E-step where the backend can)."""
        return self._e_step(X, responsibilities=True)

    def _m_step(self, X, resp):
        self._set_m_step_parameters(
            *gmm_m_step(X, resp, self.reg_covar, self.covariance_type, backend=self.backend, check_input=False)
        )

    def _set_m_step_parameters(self, nk, means, covariances):
        """weights_, means_, covariances_ and precisions_cholesky_ from the M-step's results
        (NumPy arrays, wherever the M-step ran: the k x d x d algebra is SciPy's)."""
        nk, means, covariances = to_host(nk), to_host(means), to_host(covariances)
        self.means_, self.covariances_ = means, covariances
        self.weights_ = nk / nk.sum()
        self.precisions_cholesky_ = _compute_precision_cholesky(self.covariances_, self.covariance_type)

    def fit(self, X, y=None):
        """Estimate the parameters with EM (``n_init`` runs, the best kept)."""
        self.fit_predict(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None):
        """Fit, then the most probable component of each row of X (``fit(X).predict(X)``)."""
        reference = X
        # X stays where the ops run (a GPU copy is made once for backend="cuda"), and with it
        # the (n, k) responsibilities, through all of EM.
        X = gmm_working_array(validate_data(self, X, reset=True, min_samples=2), self.backend)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        with native_fit_context(self.backend, X):
            self._fit_em(X)

        # A final E-step, so that fit_predict(X) == fit(X).predict(X) whatever max_iter,
        # tol and random_state.
        _, log_resp = self._e_step(X)
        return to_like(reference, log_resp.argmax(axis=1))

    def _fit_em(self, X):
        """scikit-learn's EM loop (n_init runs, warm_start, the best run kept): sets the fitted
        attributes. Shared with ``fastlatent.dask.GaussianMixture``, whose ``_e_step`` and
        ``_m_step`` work over the blocks of a Dask array."""
        self._check_initial_parameters(X)  # errors before any work

        # warm_start: one run, from where the last fit ended.
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1

        max_lower_bound = -np.inf
        best_lower_bounds = []
        self.converged_ = False
        random_state = check_random_state(self.random_state)

        for init in range(n_init):
            self._print_verbose_msg_init_beg(init)
            if do_init:
                self._initialize_parameters(X, random_state)
            lower_bound = -np.inf if do_init else self.lower_bound_
            current_lower_bounds = []

            if self.max_iter == 0:
                best_params = self._get_parameters()
                best_n_iter = 0
            else:
                converged = False
                for n_iter in range(1, self.max_iter + 1):
                    previous_lower_bound = lower_bound
                    log_prob_norm, resp = self._em_e_step(X)
                    self._m_step(X, resp)
                    lower_bound = log_prob_norm
                    current_lower_bounds.append(lower_bound)
                    change = lower_bound - previous_lower_bound
                    self._print_verbose_msg_iter_end(n_iter, change)
                    if abs(change) < self.tol:
                        converged = True
                        break
                self._print_verbose_msg_init_end(lower_bound, converged)
                if lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                    max_lower_bound = lower_bound
                    best_params = self._get_parameters()
                    best_n_iter = n_iter
                    best_lower_bounds = current_lower_bounds
                    self.converged_ = converged

        # No warning for max_iter == 0: the caller asked for the initialisation only.
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. "
                "Try different init parameters, or increase max_iter, "
                "tol, or check for degenerate data.",
                ConvergenceWarning,
            )

        self._set_parameters(best_params)
        self.n_iter_ = best_n_iter
        self.lower_bound_ = max_lower_bound
        self.lower_bounds_ = best_lower_bounds

    def _get_parameters(self):
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params
        self.precisions_ = _precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

    # ---- using the model ---------------------------------------------------------------------

    def _check_test_data(self, X):
        check_is_fitted(self)
        return gmm_working_array(validate_data(self, X, reset=False), self.backend)

    def _estimate_weighted_log_prob(self, X):
        """log p(x | k) + log weight_k, float64 (n, k)."""
        log_prob = gmm_estimate_log_prob(
            X, self.means_, self.precisions_cholesky_, self.covariance_type, backend=self.backend, check_input=False
        )
        xp = array_namespace(log_prob)
        with np.errstate(divide="ignore"):
            return log_prob.astype(xp.float64) + xp.log(xp.asarray(self.weights_, dtype=xp.float64))

    def score_samples(self, X):
        """Log-likelihood of each row of X under the model, (n,) of X's dtype."""
        reference = X
        X = self._check_test_data(X)
        return to_like(reference, logsumexp_rows(self._estimate_weighted_log_prob(X)).astype(X.dtype))

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of X."""
        return float(np.mean(to_host(self.score_samples(X))))

    def predict(self, X):
        """The most probable component of each row of X."""
        reference = X
        X = self._check_test_data(X)
        return to_like(reference, self._estimate_weighted_log_prob(X).argmax(axis=1))

    def predict_proba(self, X):
        """The posterior probability of each component for each row of X, (n, k)."""
        reference = X
        X = self._check_test_data(X)
        _, resp = self._e_step(X, responsibilities=True)
        return to_like(reference, resp)

    def sample(self, n_samples=1):
        """Draw ``n_samples`` rows from the fitted mixture (scikit-learn's draws, in order).

        Returns (X float64 (n_samples, n_features), y int64 component labels).
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                "Invalid value for 'n_samples': %d . The sampling requires at "
                "least one sample." % (self.n_components)
            )
        n_features = self.means_.shape[1]
        rng = check_random_state(self.random_state)
        n_samples_comp = rng.multinomial(n_samples, self.weights_)
        if self.covariance_type == "full":
            X = np.vstack(
                [
                    rng.multivariate_normal(mean, covariance, int(count))
                    for mean, covariance, count in zip(self.means_, self.covariances_, n_samples_comp)
                ]
            )
        elif self.covariance_type == "tied":
            X = np.vstack(
                [
                    rng.multivariate_normal(mean, self.covariances_, int(count))
                    for mean, count in zip(self.means_, n_samples_comp)
                ]
            )
        else:
            X = np.vstack(
                [
                    mean + rng.standard_normal(size=(count, n_features)) * np.sqrt(covariance)
                    for mean, covariance, count in zip(self.means_, self.covariances_, n_samples_comp)
                ]
            )
        y = np.concatenate([np.full(int(count), k, dtype=np.int64) for k, count in enumerate(n_samples_comp)])
        return np.asarray(X, dtype=np.float64), y

    def _n_parameters(self):
        """Number of free parameters of the model."""
        n_features = self.means_.shape[1]
        if self.covariance_type == "full":
            cov_params = self.n_components * n_features * (n_features + 1) / 2.0
        elif self.covariance_type == "diag":
            cov_params = self.n_components * n_features
        elif self.covariance_type == "tied":
            cov_params = n_features * (n_features + 1) / 2.0
        else:
            cov_params = self.n_components
        mean_params = n_features * self.n_components
        return int(cov_params + mean_params + self.n_components - 1)

    def bic(self, X):
        """Bayesian information criterion of the model on X (lower is better)."""
        n_samples = _num_samples(X)
        return -2 * self.score(X) * n_samples + self._n_parameters() * np.log(n_samples)

    def aic(self, X):
        """Akaike information criterion of the model on X (lower is better)."""
        return -2 * self.score(X) * _num_samples(X) + 2 * self._n_parameters()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    # ---- verbose messages (scikit-learn's) ---------------------------------------------------

    def _print_verbose_msg_init_beg(self, n_init):
        if self.verbose == 1:
            print("Initialization %d" % n_init)
        elif self.verbose >= 2:
            print("Initialization %d" % n_init)
            self._init_prev_time = time()
            self._iter_prev_time = self._init_prev_time

    def _print_verbose_msg_iter_end(self, n_iter, diff_ll):
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print("  Iteration %d" % n_iter)
            elif self.verbose >= 2:
                cur_time = time()
                print(
                    "  Iteration %d\t time lapse %.5fs\t ll change %.5f"
                    % (n_iter, cur_time - self._iter_prev_time, diff_ll)
                )
                self._iter_prev_time = cur_time

    def _print_verbose_msg_init_end(self, lower_bound, converged):
        converged_msg = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {converged_msg}.")
        elif self.verbose >= 2:
            t = time() - self._init_prev_time
            print(f"Initialization {converged_msg}. time lapse {t:.5f}s\t lower bound {lower_bound:.5f}.")


# ---- validation of the initial parameters (scikit-learn's messages) ---------------------------


def _check_shape(param, param_shape, name):
    if param.shape != param_shape:
        raise ValueError(
            "The parameter '%s' should have the shape of %s, but got %s" % (name, param_shape, param.shape)
        )


def _check_weights(weights, n_components):
    """Initial weights: shape (k,), in [0, 1], summing to 1."""
    weights = _sklearn_check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(np.less(weights, 0.0)) or np.any(np.greater(weights, 1.0)):
        raise ValueError(
            "The parameter 'weights' should be in the range "
            "[0, 1], but got max value %.5f, min value %.5f" % (np.min(weights), np.max(weights))
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
        raise ValueError(
            "The parameter 'weights' should be normalized, but got sum(weights) = %.5f" % np.sum(weights)
        )
    return weights


def _check_means(means, n_components, n_features):
    """Initial means: shape (k, d)."""
    means = _sklearn_check_array(means, dtype=[np.float64, np.float32], ensure_2d=False, order="C")
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precision_positivity(precision, covariance_type):
    if np.any(np.less_equal(precision, 0.0)):
        raise ValueError("'%s precision' should be positive" % covariance_type)


def _check_precision_matrix(precision, covariance_type):
    if not (np.allclose(precision, precision.T, rtol=1e-5, atol=1e-8) and np.all(np.linalg.eigvalsh(precision) > 0.0)):
        raise ValueError("'%s precision' should be symmetric, positive-definite" % covariance_type)


def _check_precisions(precisions, covariance_type, n_components, n_features):
    """Initial precisions in the layout of ``covariance_type``: symmetric positive definite
    matrices, or positive values."""
    precisions = _sklearn_check_array(
        precisions,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=covariance_type == "full",
        order="C",
    )
    _check_shape(
        precisions, parameter_shape(covariance_type, n_components, n_features), "%s precision" % covariance_type
    )
    if covariance_type == "full":
        for precision in precisions:
            _check_precision_matrix(precision, covariance_type)
    elif covariance_type == "tied":
        _check_precision_matrix(precisions, covariance_type)
    else:
        _check_precision_positivity(precisions, covariance_type)
    return precisions


# ---- the precision Cholesky factors (k x d x d: small, SciPy) ---------------------------------


def _compute_precision_cholesky(covariances, covariance_type):
    """scikit-learn's ``_compute_precision_cholesky``: P with ``P @ P.T = inv(covariance)``,
    upper triangular, computed in float64 and returned in the covariances' dtype.

    Raises scikit-learn's ValueError when a covariance is not positive definite.
    """
    dtype = covariances.dtype
    message = _ILL_DEFINED_COVARIANCE
    if dtype == np.float32:
        message += " The numerical accuracy can also be improved by passing float64 data instead of float32."
    covariances = np.asarray(covariances, dtype=np.float64)

    def inverse_cholesky(covariance):
        try:
            cov_chol = scipy.linalg.cholesky(covariance, lower=True)
        except np.linalg.LinAlgError:
            raise ValueError(message) from None
        return scipy.linalg.solve_triangular(cov_chol, np.eye(covariance.shape[0]), lower=True).T

    if covariance_type == "full":
        precisions_chol = np.stack([inverse_cholesky(covariance) for covariance in covariances])
    elif covariance_type == "tied":
        precisions_chol = inverse_cholesky(covariances)
    else:
        if np.any(covariances <= 0.0):
            raise ValueError(message)
        precisions_chol = 1.0 / np.sqrt(covariances)
    return precisions_chol.astype(dtype)


def _flip_rows_and_columns(matrix):
    return matrix[::-1, ::-1]


def _compute_precision_cholesky_from_precisions(precisions, covariance_type):
    """scikit-learn's ``_compute_precision_cholesky_from_precisions``: the upper triangular
    P with ``P @ P.T = precision``, by the Cholesky factor of the row- and column-reversed
    precision (scikit-learn #26415)."""
    if covariance_type == "full":
        return np.stack(
            [
                _flip_rows_and_columns(scipy.linalg.cholesky(_flip_rows_and_columns(p), lower=True))
                for p in precisions
            ]
        )
    if covariance_type == "tied":
        return np.ascontiguousarray(
            _flip_rows_and_columns(scipy.linalg.cholesky(_flip_rows_and_columns(precisions), lower=True))
        )
    return np.sqrt(precisions)


def _precisions_from_cholesky(precisions_cholesky, covariance_type):
    if covariance_type == "full":
        return np.matmul(precisions_cholesky, np.swapaxes(precisions_cholesky, 1, 2))
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def _covariances_from_precisions(precisions, covariance_type):
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(precisions)
    return 1.0 / precisions
