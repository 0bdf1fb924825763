"""GaussianMixture on a Dask array: the single-machine EM loop, each iteration one pass over
the row blocks that returns ``k x d`` (``k x d x d`` for "full") partial results.

Per block, one task runs the single-machine ops: ``ops.gmm_e_step`` (log-responsibilities and
the mean log-likelihood of the block), then ``ops.gmm_m_step`` on the block's
responsibilities with ``reg_covar=0``: the block's masses, means and covariances. The client
merges the blocks' results into the whole data's M-step (``_merge_m_step_partials``: the
pairwise-update formula of Chan, Golub & LeVeque for weighted means and (co)variances, with
scikit-learn's ``10 * eps`` added to the masses exactly once), then the single-machine code
turns them into weights and precision Cholesky factors. The merge is exact algebra: from the
same initial parameters the fit is the single-machine one to rounding (per-block partials are
rounded to X's dtype, so float32 fits agree to float32 rounding).

The EM loop itself (``n_init``, ``warm_start``, convergence on the lower bound, the best run
kept) is the single-machine ``_fit_em``: here ``_e_step`` is the pass over the blocks, which
returns the mean log-likelihood and the merged M-step statistics in place of the
log-responsibilities, and ``_m_step`` sets the parameters from them.

Initialisation (when weights_init, means_init and precisions_init are not all given):
"kmeans" runs ``fastlatent.dask.KMeans`` (k-means++ on a sample) and uses its labels;
"k-means++" seeds on a uniform sample of rows (``init_sample_size``); "random_from_data" draws
the rows over all of X as the single-machine estimator does; "random" draws each block's
responsibilities from a seed drawn per block (so not the single-machine numbers). Small data
(no more rows than the sample) and the same ``random_state`` give the single-machine start for
"kmeans", "k-means++" and "random_from_data".
"""

import numbers

import dask
import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.random import sample_without_replacement
from sklearn.utils.validation import check_is_fitted

from .. import ops
from .._arrays import array_namespace, to_host
from ..mixture._gaussian_mixture import GaussianMixture as _SingleMachineGaussianMixture
from ._blocks import check_dask_data, row_blocks
from ._kmeans import KMeans, _empty_like_meta, _shared


class GaussianMixture(_SingleMachineGaussianMixture):
    """Gaussian mixture fitted by EM on a Dask array chunked by rows; the parameters and
    attributes of ``fastlatent.GaussianMixture``, plus ``init_sample_size``.

    Parameters
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, weights_init,
    means_init, precisions_init, random_state, warm_start, verbose, verbose_interval, backend
        As ``fastlatent.GaussianMixture`` (see the module docstring for the initialisations).
    init_sample_size : "auto" or int, default="auto"
        Rows drawn uniformly for the "kmeans" and "k-means++" initialisations; "auto" is
        ``max(10_000, 100 * n_components)``.

    NumPy input is accepted and wrapped with ``dask.array.from_array``. ``predict``,
    ``predict_proba`` and ``score_samples`` return lazy Dask arrays; ``fit_predict`` is
    ``fit(X).predict(X)`` (lazy). X is persisted on the workers during the fit. Blocks that are
    CuPy arrays run on the cuda backend through the same ops (untested: no GPU was available).
    """

    _parameter_constraints = {
        **_SingleMachineGaussianMixture._parameter_constraints,
        "init_sample_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
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
        init_sample_size="auto",
    ):
        super().__init__(
            n_components=n_components,
            covariance_type=covariance_type,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            weights_init=weights_init,
            means_init=means_init,
            precisions_init=precisions_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
            backend=backend,
        )
        self.init_sample_size = init_sample_size

    # ---- one pass over the blocks --------------------------------------------------------------

    def _m_step_pass(self, X, responsibilities, parameters=None):
        """Run ``_block_m_step`` on every block; returns (mean log-likelihood or None, merged
        (nk, means, covariances) with ``reg_covar``). ``responsibilities[b]`` says how block b
        gets its responsibilities (see ``_block_responsibilities``)."""
        task = dask.delayed(_block_m_step, pure=False)
        parameters = _shared(parameters)
        partials = dask.compute(
            *[
                task(block, spec, parameters, self.n_components, self.covariance_type, self.backend)
                for block, spec in zip(row_blocks(X), responsibilities)
            ]
        )
        statistics = _merge_m_step_partials(
            [p[1:] for p in partials], self.reg_covar, self.covariance_type, X.dtype
        )
        log_likelihood = None if parameters is None else sum(p[0] for p in partials) / X.shape[0]
        return log_likelihood, statistics

    # ---- EM (the single-machine loop calls these) ------------------------------------------------

    def _e_step(self, X):
        """The E-step and the M-step's statistics in one pass: (mean log-likelihood, merged
        statistics), the latter handed to ``_m_step`` in place of the log-responsibilities."""
        parameters = (self.weights_, self.means_, self.precisions_cholesky_)
        n_blocks = len(X.chunks[0])
        return self._m_step_pass(X, [("e-step",)] * n_blocks, parameters)

    _em_e_step = _e_step  # the EM loop's E-step: here with the M-step's statistics

    def _m_step(self, X, statistics):
        self._set_m_step_parameters(*statistics)

    def _initialize_parameters(self, X, random_state):
        if self.weights_init is not None and self.means_init is not None and self.precisions_init is not None:
            self._set_initial_parameters(X, None)
            return
        n_samples, n_blocks = X.shape[0], len(X.chunks[0])
        if self.init_params == "kmeans":
            kmeans = KMeans(
                n_clusters=self.n_components,
                n_init=1,
                random_state=random_state,
                backend=self.backend,
                init_sample_size=self.init_sample_size,
            ).fit(X)
            specs = [("labels", labels) for labels in row_blocks(kmeans.labels_)]
        elif self.init_params == "random":
            seeds = random_state.randint(np.iinfo(np.int32).max, size=n_blocks)
            specs = [("random", int(seed)) for seed in seeds]
        else:
            if self.init_params == "random_from_data":
                rows = _draw_rows(n_samples, self.n_components, random_state)
            else:  # "k-means++" on a sample (all of X when it is small)
                rows = self._kmeans_plusplus_rows(X, random_state)
            specs = _rows_by_block(rows, X.chunks[0])
        _, statistics = self._m_step_pass(X, specs)
        self._set_initial_parameters(X, statistics)

    def _kmeans_plusplus_rows(self, X, random_state):
        """Global indices of the rows k-means++ picks, on a uniform sample of rows."""
        n_samples = X.shape[0]
        size = (
            max(10_000, 100 * self.n_components) if self.init_sample_size == "auto" else self.init_sample_size
        )
        if size >= n_samples:
            rows, sample = np.arange(n_samples), X
        else:
            rows = np.sort(sample_without_replacement(n_samples, size, random_state=random_state))
            sample = X[rows]
        sample = np.ascontiguousarray(to_host(sample.compute()))
        _, chosen = ops.kmeans_plusplus(
            sample, self.n_components, np.ones(len(sample), dtype=sample.dtype), random_state, backend=self.backend
        )
        return rows[to_host(chosen)]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Estimate the parameters with EM on a Dask (or NumPy) array."""
        X = check_dask_data(self, X, reset=True, min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        (X,) = dask.persist(X)
        self._fit_em(X)
        return self

    def fit_predict(self, X, y=None):
        """``fit(X).predict(X)``: a lazy Dask array of component indices."""
        return self.fit(X).predict(X)

    # ---- using the model (lazy) --------------------------------------------------------------

    def _model(self):
        return (self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type, self.backend)

    def _check_test_data(self, X):
        check_is_fitted(self)
        return check_dask_data(self, X, reset=False)

    def predict(self, X):
        """The most probable component of each row of X: a lazy Dask array of int64."""
        X = self._check_test_data(X)
        return X.map_blocks(
            _block_predict, *self._model(), dtype=np.int64, drop_axis=1, meta=_empty_like_meta(X._meta, 1, np.int64)
        )

    def predict_proba(self, X):
        """Posterior probability of each component for each row of X: lazy, (n, k)."""
        X = self._check_test_data(X)
        return X.map_blocks(
            _block_predict_proba,
            *self._model(),
            dtype=X.dtype,
            chunks=(X.chunks[0], (self.n_components,)),
            meta=_empty_like_meta(X._meta, 2, X.dtype),
        )

    def score_samples(self, X):
        """Log-likelihood of each row of X under the model: lazy, (n,)."""
        X = self._check_test_data(X)
        return X.map_blocks(
            _block_score_samples, *self._model(), dtype=X.dtype, drop_axis=1, meta=_empty_like_meta(X._meta, 1, X.dtype)
        )

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of X (computed now)."""
        return float(self.score_samples(X).mean(dtype=np.float64).compute())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


# ---- initial responsibilities ------------------------------------------------------------------


def _draw_rows(n_samples, n_components, random_state):
    """``n_components`` distinct rows, drawn as the single-machine "random_from_data" does
    (``RandomState.choice``); above 10 million rows, without its O(n) permutation."""
    if n_samples <= 10_000_000:
        return random_state.choice(n_samples, size=n_components, replace=False)
    return sample_without_replacement(n_samples, n_components, random_state=random_state)


def _rows_by_block(rows, row_chunks):
    """For each block, ("rows", local row indices, their components) of the chosen rows."""
    starts = np.concatenate([[0], np.cumsum(row_chunks)])
    rows = np.asarray(rows, dtype=np.int64)
    components = np.arange(len(rows))
    specs = []
    for start, stop in zip(starts[:-1], starts[1:]):
        inside = (rows >= start) & (rows < stop)
        specs.append(("rows", rows[inside] - start, components[inside]))
    return specs


# ---- per-block tasks (run on the workers) ------------------------------------------------------


def _block_responsibilities(X, spec, parameters, n_components, covariance_type, backend):
    """(log-likelihood sum of the block or 0, responsibilities (n_b, k) of X's dtype)."""
    xp = array_namespace(X)
    kind = spec[0]
    if kind == "e-step":
        weights, means, precisions_cholesky = parameters
        mean_log_likelihood, resp = ops.gmm_e_step(
            X, weights, means, precisions_cholesky, covariance_type, responsibilities=True,
            backend=backend, check_input=False,
        )
        return mean_log_likelihood * X.shape[0], resp
    if kind == "random":  # the single-machine "random", with this block's own seed
        draws = np.random.RandomState(spec[1]).uniform(size=(X.shape[0], n_components))
        resp = xp.asarray(draws, dtype=X.dtype)
        resp /= resp.sum(axis=1)[:, None]
        return 0.0, resp
    resp = xp.zeros((X.shape[0], n_components), dtype=X.dtype)
    if kind == "labels":
        labels = xp.asarray(spec[1])
        resp[xp.arange(X.shape[0]), labels] = 1
    else:  # "rows": one-point components
        resp[xp.asarray(spec[1]), xp.asarray(spec[2])] = 1
    return 0.0, resp


def _block_m_step(X, spec, parameters, n_components, covariance_type, backend):
    """(log-likelihood sum, nk, means, covariances) of one block, as float64 NumPy arrays;
    the M-step of the block alone, with ``reg_covar=0`` (``_merge_m_step_partials`` adds it)."""
    xp = array_namespace(X)
    X = xp.ascontiguousarray(X)
    log_likelihood, resp = _block_responsibilities(X, spec, parameters, n_components, covariance_type, backend)
    nk, means, covariances = ops.gmm_m_step(X, resp, 0.0, covariance_type, backend=backend, check_input=False)
    return (float(log_likelihood),) + tuple(np.asarray(to_host(a), dtype=np.float64) for a in (nk, means, covariances))


def _block_weighted_log_prob(X, weights, means, precisions_cholesky, covariance_type, backend):
    xp = array_namespace(X)
    X = xp.ascontiguousarray(X)
    log_prob = ops.gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type, backend=backend, check_input=False)
    with np.errstate(divide="ignore"):
        return log_prob.astype(np.float64) + xp.log(xp.asarray(weights, dtype=np.float64))


def _block_predict(X, *model):
    return _block_weighted_log_prob(X, *model).argmax(axis=1)


def _block_predict_proba(X, weights, means, precisions_cholesky, covariance_type, backend):
    xp = array_namespace(X)
    X = xp.ascontiguousarray(X)
    _, resp = ops.gmm_e_step(
        X, weights, means, precisions_cholesky, covariance_type, responsibilities=True, backend=backend,
        check_input=False,
    )
    return resp


def _block_score_samples(X, *model):
    xp = array_namespace(X)
    weighted = _block_weighted_log_prob(X, *model)
    largest = weighted.max(axis=1, keepdims=True)
    largest = xp.where(xp.isfinite(largest), largest, 0.0)
    return (xp.log(xp.exp(weighted - largest).sum(axis=1)) + largest[:, 0]).astype(X.dtype)


# ---- on the client ------------------------------------------------------------------------------


def _merge_m_step_partials(partials, reg_covar, covariance_type, dtype):
    """The M-step of all the rows from the M-steps of the blocks (computed with reg_covar=0).

    ``partials`` is a list of (nk_b, means_b, covariances_b), float64, where, as
    ``ops.gmm_m_step`` defines them, nk_b = sum(resp) + e (e = 10 * eps of X's dtype),
    means_b = sum(resp x) / nk_b and the covariances are the scatter about means_b divided
    by nk_b ("full"), E_b[x^2] - means_b^2 ("diag", "spherical": its mean over features), or
    (X_b'X_b - sum_k nk_bk means_bk means_bk') / sum_k nk_bk ("tied"). With d_b = means_b -
    means and B blocks, the whole data's are nk = sum_b (nk_b - e) + e, means = sum_b nk_b
    means_b / nk, and the scatter about ``means``:
      full:  sum_b [nk_b cov_b + (nk_b - e) d_b d_b' + e (d_b means_b' + means_b d_b')]
      diag:  sum_b [nk_b cov_b + nk_b d_b^2] - (B - 1) e means^2   (spherical: its feature mean)
      tied:  sum_b sum_k nk_bk . cov_b + sum_k [sum_b nk_bk d_bk d_bk' - (B - 1) e means_k means_k']
    Returns (nk, means, covariances) of ``dtype`` with reg_covar on the diagonal, as the
    single-machine ``gmm_m_step`` would on all the rows.
    """
    e = 10 * np.finfo(dtype).eps
    n_blocks = len(partials)
    nk_blocks = np.stack([p[0] for p in partials])  # (B, k)
    means_blocks = np.stack([p[1] for p in partials])  # (B, k, d)
    covariances_blocks = np.stack([p[2] for p in partials])
    nk = (nk_blocks - e).sum(axis=0) + e
    means = (nk_blocks[:, :, None] * means_blocks).sum(axis=0) / nk[:, None]
    deviations = means_blocks - means  # (B, k, d)
    n_features = means.shape[1]
    diagonal = np.arange(n_features)
    if covariance_type == "full":
        scatter = (nk_blocks[:, :, None, None] * covariances_blocks).sum(axis=0)
        scatter += np.einsum("bk,bki,bkj->kij", nk_blocks - e, deviations, deviations)
        cross = np.einsum("bki,bkj->kij", deviations, means_blocks)
        scatter += e * (cross + np.swapaxes(cross, 1, 2))
        covariances = scatter / nk[:, None, None]
        covariances[:, diagonal, diagonal] += reg_covar
    elif covariance_type == "tied":
        scatter = (nk_blocks.sum(axis=1)[:, None, None] * covariances_blocks).sum(axis=0)
        scatter += np.einsum("bk,bki,bkj->ij", nk_blocks, deviations, deviations)
        scatter -= (n_blocks - 1) * e * means.T @ means
        covariances = scatter / nk.sum()
        covariances[diagonal, diagonal] += reg_covar
    else:
        between = (nk_blocks[:, :, None] * deviations**2).sum(axis=0) - (n_blocks - 1) * e * means**2
        if covariance_type == "diag":
            scatter = (nk_blocks[:, :, None] * covariances_blocks).sum(axis=0) + between
        else:
            scatter = (nk_blocks * covariances_blocks).sum(axis=0) + between.mean(axis=1)
        covariances = scatter / (nk[:, None] if covariance_type == "diag" else nk) + reg_covar
    return nk.astype(dtype), means.astype(dtype), covariances.astype(dtype)
