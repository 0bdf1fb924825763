"""``snnl_loss_and_grad`` on blocks of rows, for any NumPy-like namespace ``xp`` (CuPy on the GPU).

The CUDA backend runs this with CuPy until a hand-written kernel exists: the two passes of
``fastlatent.ops.snnl`` written with array operations on blocks of about ``block_elements``
entries of the B x B matrix (16 Mi entries by default: 64 MiB per float32 temporary, about ten
temporaries live at once, so well under 1 GiB), so memory is O(block * B + B * D), never
B x B. Distances use the expanded form on centred (or unit)
rows in X's dtype, like the CPU kernel, with near-zero distances (below 4x the expanded form's
rounding bound) recomputed in float64 direct form; the exponentials of a block are in X's
dtype and every per-row statistic and sum is float64.

The same code runs with ``xp = numpy``; the tests check it that way against the reference
(it has not been run with CuPy on a GPU here: no GPU in the session that wrote it).
"""

import numpy as np


def _logsumexp_rows(xp, s, mask):
    """log sum_j exp(s_ij) over the entries where mask is True, float64; -inf for none."""
    masked = xp.where(mask, s, -xp.inf)
    m = masked.max(axis=1)
    finite = xp.isfinite(m)
    shift = xp.where(finite, m, 0)
    total = xp.exp(masked - shift[:, None]).sum(axis=1, dtype=xp.float64)
    with np.errstate(divide="ignore"):
        return xp.where(finite, shift.astype(xp.float64) + xp.log(total), -xp.inf)


def snnl_loss_and_grad_blocked(X, labels, temperature, metric, eps, gradient, xp=np,
                               block_elements=1 << 24):
    n, d = X.shape
    dtype = X.dtype
    T = float(temperature)
    cosine = metric == "cosine"
    X64 = X.astype(xp.float64)
    labels = xp.asarray(labels)
    if cosine:
        norms = xp.sqrt((X64 * X64).sum(axis=1))
        safe = xp.where(norms > 0, norms, 1.0)
        U64 = X64 / safe[:, None]
        Z = U64.astype(dtype)
    else:
        Z = (X64 - X64.mean(axis=0)).astype(dtype)
    squared = (Z.astype(xp.float64) ** 2).sum(axis=1).astype(dtype)
    bound = 4.0 * (d + 8) * float(np.finfo(dtype).eps)
    block = max(1, min(n, block_elements // n))
    log_eps = np.log(eps) if eps > 0 else -np.inf

    def exponents(r0, r1):
        dots = Z[r0:r1] @ Z.T
        if cosine:
            distance = 1 - dots
            scale = xp.full((r1 - r0, 1), 2.0, dtype=dtype)
        else:
            scale = squared[r0:r1, None] + squared[None, :]
            distance = scale - 2 * dots
        rows = xp.arange(r0, r1)
        small = distance < bound * scale
        small[rows - r0, rows] = False
        distance = xp.maximum(distance, 0)
        close_i, close_j = xp.nonzero(small)
        if close_i.size:  # duplicates and near-duplicates: exact, float64 direct form
            a = (U64 if cosine else X64)[close_i + r0]
            b = (U64 if cosine else X64)[close_j]
            exact = ((a - b) ** 2).sum(axis=1) * (0.5 if cosine else 1.0)
            distance[close_i, close_j] = exact.astype(dtype)
        s = -distance / dtype.type(T)
        s[rows - r0, rows] = -xp.inf
        same = labels[r0:r1, None] == labels[None, :]
        return s, same

    ld = xp.empty(n)
    p = xp.empty(n)
    q = xp.empty(n)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        s, same = exponents(r0, r1)
        log_same = _logsumexp_rows(xp, s, same)
        log_other = _logsumexp_rows(xp, s, ~same)
        ld[r0:r1] = xp.logaddexp(log_eps, xp.logaddexp(log_same, log_other))
        p[r0:r1] = xp.exp(log_same - ld[r0:r1])
        q[r0:r1] = xp.exp(xp.logaddexp(log_eps, log_other) - ld[r0:r1])
    with np.errstate(divide="ignore"):
        loss = (-xp.log(eps + p)).mean()
    if not gradient:
        return loss, None, None
    c = 1.0 / (n * (eps + p))
    ld_t, p_t, q_t, c_t = (v.astype(dtype) for v in (ld, p, q, c))
    grad = xp.empty((n, d), dtype=xp.float64)
    s_total = 0.0
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        s, same = exponents(r0, r1)
        g_ij = c_t[r0:r1, None] * xp.exp(s - ld_t[r0:r1, None]) * xp.where(
            same, -q_t[r0:r1, None], p_t[r0:r1, None])
        g_ji = c_t[None, :] * xp.exp(s - ld_t[None, :]) * xp.where(same, -q_t[None, :], p_t[None, :])
        G = g_ij + g_ji  # 0 on the diagonal: exp(-inf)
        s_total += float((g_ij * xp.where(xp.isfinite(s), s, 0)).sum(dtype=xp.float64))
        v = (G @ Z).astype(xp.float64)
        if cosine:
            u = Z[r0:r1].astype(xp.float64)
            block_grad = (v - u * (u * v).sum(axis=1)[:, None]) / (T * safe[r0:r1, None])
            block_grad[norms[r0:r1] == 0] = 0
        else:
            block_grad = -(2.0 / T) * (G.sum(axis=1, dtype=xp.float64)[:, None] * Z[r0:r1] - v)
        grad[r0:r1] = block_grad
    return loss, grad.astype(dtype), np.float64(-s_total / T)
