"""The Gaussian mixture ops on blocks of rows, for any NumPy-like namespace ``xp`` (CuPy on the GPU).

The CUDA backend runs these with ``xp = cupy`` until hand-written kernels exist; the tests run
them with ``xp = numpy`` against the reference (``fastlatent.backends.numpy``), whose contract,
formulas and float64 arithmetic they follow: X is read in float64 block by block, every sum is
float64, results are returned in X's dtype. They have NOT been run with CuPy on a GPU by their
author (no GPU in that session).

Everything is a GEMM or an elementwise/row operation on a block of ``b`` rows, with ``b`` chosen
so that the largest temporary holds about ``block_elements`` float64 numbers (16 Mi = 128 MiB by
default; about three such temporaries are live at once). Memory is O(b * k * d + k * d^2) and
never n x k x d; the only n-sized arrays are the (n, k) results.

E-step (log N(x | mu_k, Sigma_k) through the precision Cholesky factors P_k):
- "full": one GEMM per block, X_b (b x d) @ [P_1 ... P_k] (d x k*d), minus mu_k @ P_k, then
  squared row norms per component: 2 b k d^2 flops (the triangle of P_k is not exploited).
- "tied": X_b @ P once (2 b d^2), then the direct form |x P - mu_k P|^2 (3 b k d).
- "diag", "spherical": the expanded form as GEMMs of X_b and X_b^2 with the precision
  vectors (4 b k d), clipped at 0, as the reference does.
then the log-sum-exp of each row over the components.
M-step: nk = resp.sum(0), sums = resp^T X (2 n k d); "full": the centred scatter
(sqrt(r_k) (x - mu_k))^T (sqrt(r_k) (x - mu_k)) as one batched GEMM over the components per block (2 n k d^2);
"tied": X^T X (2 n d^2); "diag"/"spherical": resp^T X^2 (2 n k d).
"""

import numpy as np

from .._arrays import logsumexp_rows
from .numpy import _gmm_log_det_cholesky

_LOG_2PI = float(np.log(2.0 * np.pi))
_BLOCK_ELEMENTS = 1 << 24


def _row_blocks(n_rows, elements_per_row, block_elements):
    step = max(1, block_elements // max(int(elements_per_row), 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


class _Model:
    """The parameters in float64 and what every block reuses: projected means, precisions,
    the log-determinants, and the elements of the largest temporary per row."""

    def __init__(self, xp, means, precisions_cholesky, covariance_type):
        self.covariance_type = covariance_type
        self.means = xp.asarray(means, dtype=xp.float64)
        n_components, n_features = self.means.shape
        P = xp.asarray(precisions_cholesky, dtype=xp.float64)
        self.log_det = _gmm_log_det_cholesky(P, covariance_type, n_features)
        self.elements_per_row = max(n_components, n_features)
        if covariance_type == "full":
            # [P_1 ... P_k] side by side: column k*d + j is column j of P_k.
            self.stacked = xp.ascontiguousarray(P.transpose(1, 0, 2).reshape(n_features, n_components * n_features))
            self.means_projected = xp.matmul(self.means[:, None, :], P)[:, 0, :]  # (k, d): mu_k @ P_k
            self.elements_per_row = n_components * n_features
        elif covariance_type == "tied":
            self.P = P
            self.means_projected = self.means @ P
            self.elements_per_row = n_components * n_features
        elif covariance_type == "diag":
            self.precisions = P**2
            self.mean_terms = (self.means**2 * self.precisions).sum(axis=1)
            self.means_scaled = self.means * self.precisions
        else:
            self.precisions = P**2
            self.mean_terms = (self.means**2).sum(axis=1) * self.precisions

    def squared_mahalanobis(self, xp, X):
        """(b, k) float64: ``||(x - mu_k) @ P_k||**2`` of the float64 block X."""
        n_components, n_features = self.means.shape
        if self.covariance_type == "full":
            y = (X @ self.stacked).reshape(X.shape[0], n_components, n_features)
            y -= self.means_projected
            return xp.square(y, out=y).sum(axis=2)  # squared in place: one (b, k, d) temporary
        if self.covariance_type == "tied":
            y = (X @ self.P)[:, None, :] - self.means_projected
            return xp.square(y, out=y).sum(axis=2)
        if self.covariance_type == "diag":
            out = self.mean_terms - 2.0 * (X @ self.means_scaled.T) + (X * X) @ self.precisions.T
        else:
            out = (
                self.mean_terms
                - 2.0 * ((X @ self.means.T) * self.precisions)
                + (X * X).sum(axis=1)[:, None] * self.precisions
            )
        # The expanded forms may round below zero; the quadratic form cannot.
        return xp.maximum(out, 0.0)

    def log_prob(self, xp, X):
        """(b, k) float64 log-densities of the block X (any float dtype)."""
        X = xp.asarray(X, dtype=xp.float64)
        squared = self.squared_mahalanobis(xp, X)
        return -0.5 * (X.shape[1] * _LOG_2PI + squared) + self.log_det


def gmm_estimate_log_prob_blocked(X, means, precisions_cholesky, covariance_type, *, xp=np,
                                  block_elements=_BLOCK_ELEMENTS):
    """log N(x | mu_k, Sigma_k), (n, k) of X's dtype."""
    model = _Model(xp, means, precisions_cholesky, covariance_type)
    log_prob = xp.empty((X.shape[0], model.means.shape[0]), dtype=X.dtype)
    for rows in _row_blocks(X.shape[0], model.elements_per_row, block_elements):
        log_prob[rows] = model.log_prob(xp, X[rows])
    return log_prob


def gmm_e_step_blocked(X, weights, means, precisions_cholesky, covariance_type, *, xp=np,
                       block_elements=_BLOCK_ELEMENTS):
    """(mean over rows of log p(x), float64 -- a 0-d array of ``xp``; log-responsibilities (n, k)
    of X's dtype). A zero weight gives a log-responsibility of -inf."""
    model = _Model(xp, means, precisions_cholesky, covariance_type)
    with np.errstate(divide="ignore"):  # a zero weight is a log-weight of -inf
        log_weights = xp.log(xp.asarray(weights, dtype=xp.float64))
    log_resp = xp.empty((X.shape[0], model.means.shape[0]), dtype=X.dtype)
    total = xp.zeros((), dtype=xp.float64)  # summed on the device: no transfer per block
    for rows in _row_blocks(X.shape[0], model.elements_per_row, block_elements):
        weighted = model.log_prob(xp, X[rows])
        weighted += log_weights
        log_norm = logsumexp_rows(weighted)
        with np.errstate(under="ignore"):
            log_resp[rows] = weighted - log_norm[:, None]
        total += log_norm.sum()
    return total / X.shape[0], log_resp


def gmm_m_step_blocked(X, resp, reg_covar, covariance_type, *, xp=np, block_elements=_BLOCK_ELEMENTS):
    """(nk (k,), means (k, d), covariances) of X's dtype, with ``nk = resp.sum(0) + 10 *
    eps(X.dtype)`` (scikit-learn's ``_estimate_gaussian_parameters``)."""
    n_samples, n_features = X.shape
    n_components = resp.shape[1]
    elements_per_row = max(n_features, n_components)
    if covariance_type == "full":
        elements_per_row = n_components * n_features
    blocks = list(_row_blocks(n_samples, elements_per_row, block_elements))

    def block(rows):
        return xp.asarray(X[rows], dtype=xp.float64), xp.asarray(resp[rows], dtype=xp.float64)

    nk = xp.zeros(n_components)
    sums = xp.zeros((n_components, n_features))
    for rows in blocks:
        X_block, resp_block = block(rows)
        nk += resp_block.sum(axis=0)
        sums += resp_block.T @ X_block
    nk += 10 * np.finfo(X.dtype).eps
    means = sums / nk[:, None]

    diagonal = xp.arange(n_features)
    if covariance_type == "full":
        covariances = xp.zeros((n_components, n_features, n_features))
        for rows in blocks:
            X_block, resp_block = block(rows)
            # sqrt(r_ik) (x_i - mu_k) for every component: one (k, b, d) temporary, then a
            # batched GEMM of it with itself (r = sqrt(r)^2 to 1 ulp).
            scaled = X_block[None, :, :] - means[:, None, :]
            scaled *= xp.sqrt(resp_block.T)[:, :, None]
            covariances += xp.matmul(scaled.transpose(0, 2, 1), scaled)
        covariances /= nk[:, None, None]
        covariances[:, diagonal, diagonal] += reg_covar
    elif covariance_type == "tied":
        second_moment = xp.zeros((n_features, n_features))
        for rows in blocks:
            X_block = xp.asarray(X[rows], dtype=xp.float64)
            second_moment += X_block.T @ X_block
        covariances = (second_moment - (nk * means.T) @ means) / nk.sum()
        covariances[diagonal, diagonal] += reg_covar
    else:
        squares = xp.zeros((n_components, n_features))
        for rows in blocks:
            X_block, resp_block = block(rows)
            squares += resp_block.T @ (X_block * X_block)
        covariances = squares / nk[:, None] - means**2 + reg_covar
        if covariance_type == "spherical":
            covariances = covariances.mean(axis=1)
    return nk.astype(X.dtype), means.astype(X.dtype), covariances.astype(X.dtype)
