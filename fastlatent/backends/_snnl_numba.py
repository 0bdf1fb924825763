"""Numba kernels for ``snnl_loss_and_grad`` (contract: fastlatent/backends/_snnl_numpy.py;
definition and formulas: fastlatent/ops/snnl.py).

One row per ``prange`` iteration, streamed: a row's distances to all others go into a per-row
buffer of B float64 values (never a B x B matrix), distances in the direct form, everything in
float64. Pass 1: the row's maximum exponent, the shifted sums over its class and over the others,
then log(eps + A_i), p_i and 1 - p_i. Pass 2: G_ij = g_ij + g_ji from the row and column
statistics, accumulated into the row's gradient.
"""

import numba
import numpy as np


@numba.njit(inline="always", fastmath=False)
def _log_add_exp(a, b):
    hi = max(a, b)
    lo = min(a, b)
    if lo == -np.inf:
        return hi
    return hi + np.log1p(np.exp(lo - hi))


@numba.njit(inline="always", fastmath=False)
def _row_exponents(Z, i, cosine, inverse_temperature, out):
    n, d = Z.shape
    for j in range(n):
        acc = 0.0
        if cosine:
            for k in range(d):
                acc += Z[i, k] * Z[j, k]
            dist = 1.0 - acc
            if dist < 0.0:
                dist = 0.0
        else:
            for k in range(d):
                t = Z[i, k] - Z[j, k]
                acc += t * t
            dist = acc
        out[j] = -dist * inverse_temperature
    out[i] = -np.inf


@numba.njit(parallel=True, cache=True, fastmath=False)
def _snnl_pass1(Z, labels, cosine, temperature, eps, log_denominator, pick, one_minus_pick, row_loss):
    n = Z.shape[0]
    inverse_temperature = 1.0 / temperature
    log_eps = np.log(eps) if eps > 0.0 else -np.inf
    for i in numba.prange(n):
        s = np.empty(n)
        _row_exponents(Z, i, cosine, inverse_temperature, s)
        m = -np.inf
        for j in range(n):
            if s[j] > m:
                m = s[j]
        same = 0.0
        other = 0.0
        for j in range(n):
            e = np.exp(s[j] - m)
            if labels[j] == labels[i]:
                same += e
            else:
                other += e
        ld = _log_add_exp(log_eps, m + np.log(same + other))
        p = np.exp(m + np.log(same) - ld) if same > 0.0 else 0.0
        log_other = m + np.log(other) if other > 0.0 else -np.inf
        log_denominator[i] = ld
        pick[i] = p
        one_minus_pick[i] = np.exp(_log_add_exp(log_eps, log_other) - ld)
        row_loss[i] = -np.log(eps + p)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _snnl_pass2(Z, labels, cosine, temperature, eps, log_denominator, pick, one_minus_pick,
                grad, temperature_terms):
    n, d = Z.shape
    inverse_temperature = 1.0 / temperature
    for i in numba.prange(n):
        s = np.empty(n)
        _row_exponents(Z, i, cosine, inverse_temperature, s)
        c_i = 1.0 / (n * (eps + pick[i]))
        v = np.zeros(d)
        row_sum = 0.0
        s_sum = 0.0
        for j in range(n):
            if j == i:
                continue
            c_j = 1.0 / (n * (eps + pick[j]))
            if labels[j] == labels[i]:
                f_i = -one_minus_pick[i]
                f_j = -one_minus_pick[j]
            else:
                f_i = pick[i]
                f_j = pick[j]
            g_ij = c_i * np.exp(s[j] - log_denominator[i]) * f_i
            g_ji = c_j * np.exp(s[j] - log_denominator[j]) * f_j
            G = g_ij + g_ji
            row_sum += G
            s_sum += g_ij * s[j]
            for k in range(d):
                v[k] += G * Z[j, k]
        if cosine:
            uv = 0.0
            for k in range(d):
                uv += Z[i, k] * v[k]
            for k in range(d):
                grad[i, k] = (v[k] - Z[i, k] * uv) * inverse_temperature
        else:
            for k in range(d):
                grad[i, k] = -2.0 * inverse_temperature * (row_sum * Z[i, k] - v[k])
        temperature_terms[i] = s_sum


def snnl_loss_and_grad(X, labels, temperature, metric, eps, gradient):
    X64 = np.asarray(X, dtype=np.float64)
    n = X64.shape[0]
    cosine = metric == "cosine"
    if cosine:
        norms = np.sqrt(np.einsum("ij,ij->i", X64, X64))
        safe = np.where(norms > 0.0, norms, 1.0)
        Z = np.ascontiguousarray(X64 / safe[:, None])
    else:
        Z = np.ascontiguousarray(X64)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    log_denominator, pick, one_minus_pick, row_loss = (np.empty(n) for _ in range(4))
    _snnl_pass1(Z, labels, cosine, float(temperature), float(eps), log_denominator, pick,
                one_minus_pick, row_loss)
    loss = np.float64(row_loss.sum() / n)
    if not gradient:
        return loss, None, None
    grad = np.empty_like(Z)
    temperature_terms = np.empty(n)
    _snnl_pass2(Z, labels, cosine, float(temperature), float(eps), log_denominator, pick,
                one_minus_pick, grad, temperature_terms)
    if cosine:
        grad /= safe[:, None]
        grad[norms == 0.0] = 0.0
    grad_temperature = np.float64(-temperature_terms.sum() / temperature)
    return loss, grad.astype(X.dtype, copy=False), grad_temperature
