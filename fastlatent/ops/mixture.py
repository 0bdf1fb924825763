"""Gaussian mixture ops: the log-densities, the E-step and the M-step of EM.

The three ops carry all the per-iteration work over the rows of X (``n x k x d`` flops and
up); the small per-component linear algebra (the Cholesky factors of the precisions,
``k x d x d``) stays in the estimator, ``fastlatent.mixture``.

Parameters are in scikit-learn's layout for each ``covariance_type``:

================  ===========================  ============================
covariance_type   covariances / precisions     ``precisions_cholesky``
================  ===========================  ============================
"full"            (k, d, d)                    (k, d, d), upper triangular
"tied"            (d, d)                       (d, d), upper triangular
"diag"            (k, d)                       (k, d)
"spherical"       (k,)                         (k,)
================  ===========================  ============================

``precisions_cholesky`` is scikit-learn's: ``precision = P @ P.T``, so the squared
Mahalanobis distance of x to mu is ``|| (x - mu) @ P ||**2``. Backends compute in float64
whatever X's dtype and return arrays of X's dtype (scikit-learn's rule).

``check_input=False`` skips validation for callers that validated once already (the
estimator's EM loop).
"""

import numpy as np
from sklearn.utils import check_array as _sklearn_check_array

from .._arrays import array_namespace, to_host, to_like
from .._validation import check_array
from . import _dispatch

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def check_covariance_type(covariance_type):
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"Unknown covariance_type {covariance_type!r}. Valid types are "
            + ", ".join(repr(c) for c in COVARIANCE_TYPES)
            + "."
        )
    return covariance_type


def parameter_shape(covariance_type, n_components, n_features):
    """Shape of the covariances, precisions and their Cholesky factors for this type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def gmm_working_array(X, backend=None):
    """X (validated) where the mixture ops of ``backend`` compute: on the GPU for the cuda
    backend, else on the host. An estimator converts X once with this, so that EM's (n, k)
    responsibilities stay where the ops run instead of crossing the bus at every op call."""
    name, _ = _dispatch.select_backend(backend, X, op="gmm_e_step")
    return _dispatch.place(name, (X,))[0]


def _check_parameter(array, name, shape):
    array = _sklearn_check_array(
        to_host(array),
        dtype=[np.float64, np.float32],
        order="C",
        ensure_2d=False,
        allow_nd=True,
        ensure_min_samples=0,
        ensure_min_features=0,
        input_name=name,
    )
    if array.shape != tuple(shape):
        raise ValueError(f"{name} has shape {array.shape}; expected {tuple(shape)}.")
    return array


def _check_model(X, means, precisions_cholesky, covariance_type):
    X = check_array(X)
    check_covariance_type(covariance_type)
    means = check_array(means, input_name="means")
    if means.shape[1] != X.shape[1]:
        raise ValueError(
            f"means has {means.shape[1]} feature(s) but X has {X.shape[1]}."
        )
    n_components, n_features = means.shape
    precisions_cholesky = _check_parameter(
        precisions_cholesky,
        "precisions_cholesky",
        parameter_shape(covariance_type, n_components, n_features),
    )
    return X, means, precisions_cholesky


def gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type, *, backend=None, check_input=True):
    """log N(x | mu_k, Sigma_k) for each row x of X and each component k.

    scikit-learn's ``_estimate_log_gaussian_prob``: the quadratic form through the precision
    Cholesky factors plus their log-determinant. No ``n x k x d`` array is built: "full"
    and "tied" loop over the components, "diag" and "spherical" use the expanded quadratic
    form (clipped at 0) as scikit-learn does.

    Returns log_prob (n, k) of X's dtype.
    """
    reference = X
    if check_input:
        X, means, precisions_cholesky = _check_model(X, means, precisions_cholesky, covariance_type)
    log_prob = _dispatch.run(
        "gmm_estimate_log_prob", backend, (X, means, precisions_cholesky), covariance_type
    )
    return to_like(reference, log_prob)


def gmm_e_step(
    X, weights, means, precisions_cholesky, covariance_type, *, responsibilities=False, backend=None,
    check_input=True,
):
    """The E-step: log-responsibilities and the mean log-likelihood of X.

    scikit-learn's ``_estimate_log_prob_resp`` and the mean of its ``log_prob_norm``: the
    weighted log-densities ``log_prob + log(weights)``, their log-sum-exp per row
    (``log p(x)``), and ``log_resp = weighted - log p(x)``. A zero weight gives a
    log-responsibility of -inf.

    Returns (mean log-likelihood as a Python float, log_resp (n, k) of X's dtype). With
    ``responsibilities=True`` the second array is the responsibilities ``exp(log_resp)``, what
    the M-step takes: the cpu backend divides the log-sum-exp's own exponentials by their sum
    (no second exp per entry); the others apply ``gmm_responsibilities``.
    """
    reference = X
    if check_input:
        X, means, precisions_cholesky = _check_model(X, means, precisions_cholesky, covariance_type)
        weights = _check_parameter(weights, "weights", (means.shape[0],))
        if bool((weights < 0).any()):
            raise ValueError("weights must be non-negative.")
    _, module = _dispatch.select_backend(backend, X, op="gmm_e_step")
    fused = responsibilities and hasattr(module, "gmm_e_step_responsibilities")
    mean_log_likelihood, out = _dispatch.run(
        "gmm_e_step_responsibilities" if fused else "gmm_e_step",
        backend, (X, weights, means, precisions_cholesky), covariance_type,
    )
    out = to_like(reference, out)
    if responsibilities and not fused:
        out = gmm_responsibilities(out, backend=backend)
    return float(mean_log_likelihood), out


def gmm_responsibilities(log_resp, *, backend=None):
    """``exp(log_resp)``: the responsibilities the M-step takes, of log_resp's dtype.

    A backend with its own (the cpu backend: a vectorised exp on all threads, within a few ulps
    of NumPy's) computes it; elsewhere it is the array module's ``exp``.
    """
    name, module = _dispatch.select_backend(backend, log_resp)
    if not hasattr(module, "gmm_responsibilities"):
        return array_namespace(log_resp).exp(log_resp)
    (placed,) = _dispatch.place(name, (log_resp,))
    return to_like(log_resp, module.gmm_responsibilities(placed))


def gmm_m_step(X, resp, reg_covar, covariance_type, *, backend=None, check_input=True):
    """The M-step: component masses, means and covariances from the responsibilities.

    scikit-learn's ``_estimate_gaussian_parameters``: ``nk = resp.sum(0) + 10 * eps`` (eps of
    X's dtype), ``means = resp.T @ X / nk``, and the covariances of ``covariance_type`` with
    ``reg_covar`` added to their diagonal. ``nk`` is returned unnormalised, as scikit-learn
    does (the estimator divides by its sum, or by n at initialisation).

    Returns (nk (k,), means (k, d), covariances in the layout of ``covariance_type``), all
    of X's dtype.
    """
    reference = X
    if check_input:
        X = check_array(X)
        check_covariance_type(covariance_type)
        resp = check_array(resp, input_name="resp")
        if resp.shape[0] != X.shape[0]:
            raise ValueError(f"resp has {resp.shape[0]} row(s) but X has {X.shape[0]}.")
        if bool((to_host(resp) < 0).any()):
            raise ValueError("resp must be non-negative.")
        reg_covar = float(reg_covar)
        if not reg_covar >= 0:
            raise ValueError(f"reg_covar must be >= 0; got {reg_covar}.")
    nk, means, covariances = _dispatch.run("gmm_m_step", backend, (X, resp), float(reg_covar), covariance_type)
    return to_like(reference, nk, means, covariances)
