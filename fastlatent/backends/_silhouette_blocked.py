"""``silhouette_cluster_sums`` on blocks of columns, for any NumPy-like namespace ``xp`` (CuPy on the GPU).

The CUDA backend runs this with CuPy until a hand-written kernel exists; the tests run the same
code with ``xp = numpy`` against the reference (it has not been run with CuPy on a GPU by its
author: no GPU in that session).

What it computes: ``sums[i, k]`` = sum of distance(X[i], X[j]) over the rows j != i with
label k, float64 (n_samples, n_clusters), the NumPy reference's contract. Every distance is
computed in float64, float32 input included (it is cast first, as the reference does).

Layout. Rows are sorted by label (stable, on the host: labels are n long), so each cluster's
rows are one contiguous range. The distance matrix is computed in blocks of ``width =
block_elements // n`` columns, all n rows at a time (so every GEMM has n rows: enough thread
blocks on a GPU, where a block of few rows times the n x K one-hot matrix would be a
GEMV-like product with little parallelism). Per block of columns c0 .. c1:

1. one GEMM, ``A @ B[c0:c1].T`` (n x width), gives the squared distances (euclidean,
   sqeuclidean) or the cosine distances directly: the operands carry the norms as two extra
   columns, A = [z, |z|^2, 1] and B = [-2 z, 1, |z|^2] with z the centred rows, so that
   A_i . B_j = |z_i|^2 + |z_j|^2 - 2 z_i . z_j (cosine: A = [u, 1], B = [-u, 1] with u the unit
   rows, zero rows left zero: distance 1 to everything, the reference's convention);
2. in place: clipped at 0 (cosine: into [0, 2]), square root for euclidean; the i == j
   entries set to 0;
3. the block's columns hold consecutive clusters k0 .. k1 - 1; one GEMM by their one-hot
   matrix (width x (k1 - k0), built per block) adds the block's share to ``sums[:, k0:k1]``.
   k1 - k0 <= min(K, width), so the flops of this product stay bounded for any K.

Manhattan has no GEMM form: the block is accumulated feature by feature (|x_if - x_jf| added
in feature order, as SciPy's cdist does), with one more block-sized temporary, so its blocks
have half the columns.

Precision. The GEMM form on centred float64 rows rounds each squared distance by about
(D + 2) u (|z_i|^2 + |z_j|^2), u = 2^-53, as the CPU kernel (csrc/cpu/silhouette.cpp) does;
near-duplicate rows far from the data's mean are its worst case, and tests/tolerances.py's
SILHOUETTE_SUMS_RTOL covers it (tested with rows equal to 1e-9 about centres 800 from the
origin). Cosine distances are the reference's own formula, 1 - u_i . u_j.

Cost (euclidean, n rows, D features, K clusters): 2 n^2 (D + 2) flops for the distances plus
2 n^2 K for the one-hot products (K replaced by at most ``width`` when K is large); the n x n
float64 distances pass through memory in blocks: written by the GEMM (8 bytes per entry), read
and written by the clip and by the square root (2 x 16), read by the one-hot product (8): 48 n^2
bytes, plus A read once per block (8 (D + 2) n^2 / width). That traffic, not the flops, bounds
the time on a GPU: about 4 s at n = 500,000, D = 64, K = 10 on an H100 (estimated, not
measured; /work/notes/issue-13-cuda.md). Memory: the block (block_elements float64, 512 MiB by
default; manhattan: two of half the columns), the operands A and B (2 n (D + 2) float64) and
the result (n K float64); never n x n.
"""

import numpy as np


def _gemm_operands(X64, metric, xp):
    """A and B with A[i] . B[j] = the metric's distance (squared for euclidean) of rows i, j."""
    n = X64.shape[0]
    ones = xp.ones((n, 1), dtype=xp.float64)
    if metric == "cosine":
        norms = xp.sqrt((X64 * X64).sum(axis=1))
        units = X64 / xp.where(norms > 0, norms, 1.0)[:, None]
        return xp.concatenate([units, ones], axis=1), xp.concatenate([-units, ones], axis=1)
    # Centring changes no distance and shrinks |z|^2, and with it the rounding of the GEMM form.
    centred = X64 - X64.mean(axis=0)
    squared = (centred * centred).sum(axis=1)[:, None]
    A = xp.concatenate([centred, squared, ones], axis=1)
    B = xp.concatenate([-2.0 * centred, ones, squared], axis=1)
    return A, B


def silhouette_cluster_sums_blocked(X, labels, n_clusters, metric, xp=np, block_elements=1 << 26):
    """``sums[i, k]`` = sum of distance(X[i], X[j]) over rows j != i with labels[j] == k.

    Parameters
    ----------
    X : xp array (n_samples, n_features), float32 or float64, any layout
    labels : host (NumPy) int array (n_samples,), values in [0, n_clusters)
    n_clusters : int
    metric : {"euclidean", "sqeuclidean", "cosine", "manhattan"}
    xp : the array namespace X lives in (numpy or cupy)
    block_elements : entries of the float64 distance block (n_samples x columns), the memory
        knob: 64 Mi entries (512 MiB) by default

    Returns
    -------
    sums : xp float64 array (n_samples, n_clusters)
    """
    n, d = X.shape
    n_clusters = int(n_clusters)
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    sorted_labels_device = xp.asarray(sorted_labels)
    order_device = xp.asarray(order)
    sorted_rows = xp.asarray(X, dtype=xp.float64)[order_device]  # a new array: X is not touched

    manhattan = metric == "manhattan"
    if manhattan:
        features = xp.ascontiguousarray(sorted_rows.T)  # features[f] = column f, contiguous
        width = max(1, min(n, block_elements // (2 * n)))
        scratch = xp.empty(n * width, dtype=xp.float64)
    else:
        A, B = _gemm_operands(sorted_rows, metric, xp)
        del sorted_rows
        width = max(1, min(n, block_elements // n))
    buffer = xp.empty(n * width, dtype=xp.float64)
    columns = xp.arange(width)
    sorted_sums = xp.zeros((n, n_clusters), dtype=xp.float64)

    for c0 in range(0, n, width):
        c1 = min(n, c0 + width)
        D = buffer[: n * (c1 - c0)].reshape(n, c1 - c0)  # C-contiguous, also for the last block
        if manhattan:
            D.fill(0.0)
            difference = scratch[: n * (c1 - c0)].reshape(n, c1 - c0)
            for f in range(d):
                xp.subtract(sorted_rows[:, f, None], features[f, None, c0:c1], out=difference)
                xp.abs(difference, out=difference)
                D += difference
        else:
            xp.matmul(A, B[c0:c1].T, out=D)
            if metric == "cosine":
                xp.clip(D, 0.0, 2.0, out=D)
            else:
                xp.maximum(D, 0.0, out=D)
                if metric == "euclidean":
                    xp.sqrt(D, out=D)
        D[columns[: c1 - c0] + c0, columns[: c1 - c0]] = 0.0  # j == i
        # The block's columns hold the consecutive clusters k0 .. k1 - 1 (rows sorted by label).
        k0, k1 = int(sorted_labels[c0]), int(sorted_labels[c1 - 1]) + 1
        one_hot = (sorted_labels_device[c0:c1, None] == xp.arange(k0, k1)[None, :]).astype(xp.float64)
        sorted_sums[:, k0:k1] += D @ one_hot

    sums = xp.empty_like(sorted_sums)
    sums[order_device] = sorted_sums
    return sums
