"""Nearest rows from reduced-precision products, with exact answers (``precision=``).

``precision="tf32"`` or ``"bf16"`` computes the products x.y of a nearest-row search on tensor
cores (inputs rounded to TF32 or bfloat16, products accumulated in float32), and then proves,
row by row, that the rows it picked are the ones ``precision="exact"`` picks. A row whose proof
fails is searched again by the backend's exact kernel. So the indices always equal the exact
mode's; only the time differs. Only the ``cuda`` backend has tensor cores; elsewhere the
reduced modes warn and compute exactly (``effective``).

The search (``nearest``, any NumPy-like namespace ``xp``), for a block of rows of X:

1. Shift and scale. Euclidean metrics: both sides minus the mean of Y (distances do not change,
   and the norms that the bound grows with shrink to the spread of the data). Cosine: rows
   scaled to unit length. In float64, then rounded to float32 for the product.
2. Keys. Euclidean: k_ij = |y_j|^2 - 2 x_i.y_j (|x_i - y_j|^2 minus a per-row constant);
   cosine: k_ij = -x_i.y_j. The products come from ``gemm`` (tensor cores), the rest is float64.
3. Bound. With u the unit roundoff of the format (2^-10 for TF32: truncation covered, whatever
   rounding the hardware uses; 2^-8 for bfloat16, rounded to nearest by us), a = (1 + 2^-24)
   (1 + u) - 1 the relative error of one input element (float32 rounding, then the format's),
   and v = 2^-22 the unit roundoff of the float32 accumulation (twice IEEE's: tensor cores may
   truncate and drop guard bits), the product of D terms obeys

       |x^.y^ - x.y| <= sum_d |x^_d y^_d - x_d y_d| + gamma_D(v) sum_d |x^_d y^_d|
                     <= rho |x| |y|,   rho = 2a + a^2 + gamma_D(v) (1 + a)^2,

   gamma_D(v) = D v / (1 - D v) (each product of two rounded inputs is exact in float32: 11 + 11
   or 8 + 8 significant bits; Cauchy-Schwarz for the last step). Every key of row i is then
   within e_i = c rho |x_i| max_j |y_j| + f_i of its exact value, c = 2 (euclidean) or 1
   (cosine), where f_i = 2^-120 (D + 8) (1 + |x_i| + max_j |y_j|) covers float32 underflow
   (subnormals flushed to zero anywhere), a margin of 2^6 over what it needs.
4. Proof. The chosen set (the k smallest keys) equals the exact one when the (k+1)-th key
   exceeds the k-th by more than 2 e_i + s_i, where s_i = 4 (D + 8) 2^-53 (|x_i| + max_j |y_j|)^2
   bounds twice the float64 rounding of the shifted rows, of the float64 keys and of the exact
   mode's own direct-form distances (so that a true margin below float64 noise is not called
   proven); nor is a row with |x_i| or max_j |y_j| >= 2^50 proven (float32 could overflow).
   Within the set, the distances are recomputed in float64, direct form, from the unshifted
   rows, and sorted; a row where two of them lie within s_i of each other is not proven either
   (the exact kernel could order them the other way).
5. Rows not proven go to ``exact`` (the backend's exact kernel): same indices by construction.

The distances returned are float64 direct-form sums (as the exact kernels compute them, though
the order of the additions may differ in the last bit), cast to X's dtype.
"""

import warnings

import numpy as np

PRECISIONS = ("exact", "tf32", "bf16")
SCREENED_METRICS = ("euclidean", "sqeuclidean", "cosine")

# Relative error of one input element in the format (see the module docstring).
INPUT_ROUNDOFF = {"tf32": 2.0**-10, "bf16": 2.0**-8}
ACCUMULATION_ROUNDOFF = 2.0**-22
_FLOAT32_ROUNDOFF = 2.0**-24
_FLOAT64_ROUNDOFF = 2.0**-53
_UNDERFLOW = 2.0**-120
_NO_OVERFLOW = 2.0**50  # on |x_i| and max_j |y_j|: products below 2^100, far from 2^128
_BLOCK_ELEMENTS = 1 << 24  # keys and candidate rows of a block: about 128 MiB of float64


def check_precision(precision, metric):
    """``precision`` if valid for ``metric``, else a ValueError saying what is."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}; got {precision!r}."
        )
    if precision != "exact" and metric not in SCREENED_METRICS:
        raise ValueError(
            f"precision={precision!r} applies to the metrics computed by products "
            f"({', '.join(SCREENED_METRICS)}); {metric!r} has none, use precision='exact'."
        )
    return precision


def effective(precision, backend_name, module, stacklevel=4):
    """``precision``, or "exact" with a warning where the backend has no tensor cores (no
    ``tensor_core_gemm``): the answer is the same, only the speed differs."""
    if precision != "exact" and not hasattr(module, "tensor_core_gemm"):
        warnings.warn(
            f"precision={precision!r} runs products on GPU tensor cores; the {backend_name!r} "
            "backend has none, so it computes in full precision (the same answer).",
            UserWarning,
            stacklevel=stacklevel,
        )
        return "exact"
    return precision


def relative_product_error(precision, n_features):
    """rho of the module docstring: |x^.y^ - x.y| <= rho |x| |y| for ``n_features`` terms."""
    a = (1 + _FLOAT32_ROUNDOFF) * (1 + INPUT_ROUNDOFF[precision]) - 1
    dv = n_features * ACCUMULATION_ROUNDOFF
    if dv >= 0.5:
        return np.inf  # no useful bound: every row goes to the exact kernel
    return 2 * a + a * a + dv / (1 - dv) * (1 + a) ** 2


def _prepared(xp, A, metric, shift):
    """Rows in float64, shifted (euclidean) or scaled to unit length (cosine), and their norms."""
    A = A.astype(xp.float64)
    if metric == "cosine":
        norms = xp.sqrt((A * A).sum(axis=1))
        A = A / xp.where(norms > 0, norms, 1.0)[:, None]
    else:
        A = A - shift
    return A, xp.sqrt((A * A).sum(axis=1))


def exact_distances(xp, X, Y64, indices, metric):
    """float64 distances from the rows of X to the rows ``indices`` (n, k) of the float64 Y64,
    direct form."""
    X64 = X.astype(xp.float64)[:, None, :]
    Yk = Y64[indices]
    if metric == "cosine":
        x_norm = xp.sqrt((X64 * X64).sum(axis=2))
        y_norm = xp.sqrt((Yk * Yk).sum(axis=2))
        dots = (X64 * Yk).sum(axis=2)
        scale = xp.where(x_norm > 0, x_norm, 1.0) * xp.where(y_norm > 0, y_norm, 1.0)
        return xp.clip(1.0 - dots / scale, 0.0, 2.0)
    squared = ((X64 - Yk) ** 2).sum(axis=2)
    return xp.sqrt(squared) if metric == "euclidean" else squared


def _shortlist(xp, keys, k, m):
    """The m smallest keys' columns of each row, and the margin key_(m+1) - key_(k) (inf when
    m is every column): the rows past the shortlist are that much farther than the k-th."""
    n_rows, n_cols = keys.shape
    rows = xp.arange(n_rows)[:, None]
    if m == n_cols:
        return xp.broadcast_to(xp.arange(n_cols), (n_rows, n_cols)), xp.full(n_rows, xp.inf)
    if m == 1:  # k == 1: no partition needed
        chosen = keys.argmin(axis=1)[:, None]
        best = keys[rows, chosen][:, 0]
        others = xp.where(xp.arange(n_cols)[None, :] == chosen, xp.inf, keys)
        return chosen, others.min(axis=1) - best
    part = xp.argpartition(keys, m, axis=1)[:, : m + 1]
    part_keys = keys[rows, part]
    order = xp.argsort(part_keys, axis=1)
    part_keys = part_keys[rows, order]
    return part[rows, order][:, :m], part_keys[:, m] - part_keys[:, k - 1]


def _decide(xp, X, Y64, chosen, k, metric, noise):
    """The k nearest of the shortlisted rows by float64 distance, and whether that choice and
    order are beyond float64 noise (the exact kernel could decide a near tie the other way)."""
    rows = xp.arange(chosen.shape[0])[:, None]
    chosen = xp.sort(chosen, axis=1)
    d = exact_distances(xp, X, Y64, chosen, metric)
    order = xp.argsort(d, axis=1)
    chosen = chosen[rows, order]
    d = d[rows, order]
    decided = xp.ones(chosen.shape[0], dtype=bool)
    if chosen.shape[1] > 1:
        first = d[:, : k + 1]
        squared = first * first if metric == "euclidean" else first  # noise is in squared units
        decided = ~((squared[:, 1:] - squared[:, :-1]) <= noise[:, None]).any(axis=1)
    return d[:, :k], chosen[:, :k], decided


def nearest(X, Y, n_neighbors, metric, precision, gemm, exact, xp=np, block_elements=_BLOCK_ELEMENTS,
            spare=7):
    """The ``n_neighbors`` nearest rows of Y for each row of X, proven equal to ``exact``'s.

    ``gemm(A, B)``: A @ B.T of float32 C-contiguous arrays, in ``precision`` (float32 out).
    ``exact(rows)``: (distances (m, k), indices (m, k)) of the exact kernel for X[rows].
    Each row is decided from the k smallest keys when their margin proves them; else from the
    k + ``spare`` smallest, re-measured in float64; else by ``exact``.
    Returns (distances (n, k) of X's dtype, indices (n, k) int64, number of rows sent to exact).
    """
    n_x, n_features = X.shape
    n_y = Y.shape[0]
    k = n_neighbors
    Y64 = Y.astype(xp.float64)
    shift = None if metric == "cosine" else Y64.mean(axis=0)
    Yp, y_norm = _prepared(xp, Y64, metric, shift)
    Y32 = xp.ascontiguousarray(Yp.astype(xp.float32))
    y_squared = y_norm * y_norm
    y_max = float(y_norm.max())
    c = 1.0 if metric == "cosine" else 2.0
    rho = relative_product_error(precision, n_features)
    slack = 4.0 * (n_features + 8) * _FLOAT64_ROUNDOFF
    wide = min(n_y, k + spare)

    distances = xp.empty((n_x, k), dtype=xp.float64)
    indices = xp.empty((n_x, k), dtype=xp.int64)
    unproven = []
    step = max(1, block_elements // max(n_y, wide * n_features, 1))
    for start in range(0, n_x, step):
        stop = min(start + step, n_x)
        Xb = X[start:stop]
        Xp, x_norm = _prepared(xp, Xb, metric, shift)
        products = gemm(xp.ascontiguousarray(Xp.astype(xp.float32)), Y32).astype(xp.float64)
        keys = -products if metric == "cosine" else y_squared[None, :] - 2.0 * products
        error = c * rho * x_norm * y_max + _UNDERFLOW * (n_features + 8) * (1.0 + x_norm + y_max)
        noise = slack * (x_norm + y_max) ** 2
        # Norms below 2^50: no input, product, partial sum or key can overflow float32.
        finite = (x_norm < _NO_OVERFLOW) & (y_max < _NO_OVERFLOW)
        chosen, margin = _shortlist(xp, keys, k, k)
        d, chosen, decided = _decide(xp, Xb, Y64, chosen, k, metric, noise)
        proven = finite & (margin > 2.0 * error + noise) & decided
        distances[start:stop] = d
        indices[start:stop] = chosen
        retry = xp.nonzero(~proven)[0]
        if retry.size and wide > k:  # a longer shortlist for the rows in doubt
            chosen, margin = _shortlist(xp, keys[retry], k, wide)
            d, chosen, decided = _decide(xp, Xb[retry], Y64, chosen, k, metric, noise[retry])
            proven = finite[retry] & (margin > 2.0 * error[retry] + noise[retry]) & decided
            distances[start + retry] = d
            indices[start + retry] = chosen
            retry = retry[~proven]
        unproven.append(retry + start)

    redo = xp.concatenate(unproven)
    if redo.size:
        d, i = exact(redo)
        distances[redo] = xp.asarray(d, dtype=xp.float64).reshape(-1, k)
        indices[redo] = xp.asarray(i, dtype=xp.int64).reshape(-1, k)
    return distances.astype(X.dtype), indices, int(redo.size)


def round_to_format(A, precision, mode="nearest"):
    """float32 A rounded to the format's significand (TF32: 11 bits, bfloat16: 8), in float32.

    ``mode="nearest"``: to nearest, ties to even (what fastlatent's bfloat16 conversion does);
    ``"truncate"``: towards zero (the worst a tensor core may do with TF32 inputs).
    """
    drop = 13 if precision == "tf32" else 16
    bits = np.ascontiguousarray(A, dtype=np.float32).view(np.uint32).astype(np.uint64)
    if mode == "nearest":
        bits = bits + ((1 << (drop - 1)) - 1) + ((bits >> drop) & 1)
    bits &= ~np.uint64((1 << drop) - 1)
    return bits.astype(np.uint32).view(np.float32).reshape(np.shape(A))


def emulated_tensor_core_gemm(precision, mode="nearest"):
    """A host stand-in for the tensor-core product: inputs rounded to the format, products and
    sums in float32. Used by the tests to exercise ``nearest`` where no GPU is present."""

    def gemm(A, B):
        return round_to_format(A, precision, mode) @ round_to_format(B, precision, mode).T

    return gemm
