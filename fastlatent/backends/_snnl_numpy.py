"""NumPy reference for ``snnl_loss_and_grad``: the soft nearest neighbour loss and its gradient.

Readable, float64, B x B matrices (the reference only; every other backend streams in tiles).
The definition, the gradient formulas and the conventions are documented once, in
``fastlatent.ops.snnl``; this module follows them line by line.

Backend contract: ``X`` (B, D) float32/float64 C-contiguous, finite, B >= 2; ``labels`` (B,)
int64 codes; ``temperature`` > 0; ``eps`` >= 0; ``metric`` "sqeuclidean" or "cosine";
returns ``(loss, grad_X, grad_temperature)`` with ``loss``/``grad_temperature`` float64
scalars and ``grad_X`` of X's dtype, or ``(loss, None, None)`` when ``gradient`` is False.
"""

import numpy as np
from scipy.spatial.distance import cdist


def _row_norms(X):
    return np.sqrt(np.einsum("ij,ij->i", X, X))


def snnl_loss_and_grad(X, labels, temperature, metric, eps, gradient):
    X64 = np.asarray(X, dtype=np.float64)
    n = X64.shape[0]
    T = float(temperature)
    if metric == "cosine":
        norms = _row_norms(X64)
        safe = np.where(norms > 0.0, norms, 1.0)  # a zero row: similarity 0, distance 1
        U = X64 / safe[:, None]
        D = np.clip(1.0 - U @ U.T, 0.0, 2.0)
    else:
        D = cdist(X64, X64, "sqeuclidean")
    same = labels[:, None] == labels[None, :]
    with np.errstate(divide="ignore"):
        s = -D / T
        np.fill_diagonal(s, -np.inf)  # j == i is excluded: w_ii = 0
        m = s.max(axis=1)  # row maximum: every exponent below is <= 0
        E = np.exp(s - m[:, None])
        a_hat = E.sum(axis=1)  # >= 1: the maximum's own term
        s_hat = np.where(same, E, 0.0).sum(axis=1)
        o_hat = np.where(same, 0.0, E).sum(axis=1)  # the other classes: A_i - S_i
        log_denominator = np.logaddexp(np.log(eps), m + np.log(a_hat))  # log(eps + A_i)
        p = np.exp(m + np.log(s_hat) - log_denominator)  # S_i / (eps + A_i); 0 when S_i == 0
        # 1 - p_i = (eps + A_i - S_i) / (eps + A_i), without the cancellation of 1 - p_i
        # (p_i -> 1 when a class is gathered: the gradient is then made of 1 - p_i alone).
        one_minus_p = np.exp(np.logaddexp(np.log(eps), m + np.log(o_hat)) - log_denominator)
        row_loss = -np.log(eps + p)
    loss = np.float64(row_loss.mean())
    if not gradient:
        return loss, None, None
    Q = np.exp(s - log_denominator[:, None])  # q_ij = w_ij / (eps + A_i), q_ii = 0
    c = 1.0 / (n * (eps + p))
    g = c[:, None] * Q * np.where(same, -one_minus_p[:, None], p[:, None])  # dL/ds_ij
    grad_temperature = np.float64((g * D).sum() / T**2)
    G = g + g.T
    if metric == "cosine":
        V = G @ U
        grad = (V - U * np.einsum("ij,ij->i", U, V)[:, None]) / (T * safe[:, None])
        grad[norms == 0.0] = 0.0
    else:
        grad = -(2.0 / T) * (G.sum(axis=1)[:, None] * X64 - G @ X64)
    return loss, grad.astype(X.dtype, copy=False), grad_temperature
