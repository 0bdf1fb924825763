r"""The soft nearest neighbour loss (SNNL) and its exact gradient, streamed in tiles.

Definition (Frosst, Papernot & Hinton, ICML 2019; Agarap & Azcarraga, IJCNN 2020). For a
batch X (B x D), labels y and a temperature T > 0::

    w_ij = exp(-d_ij / T)  for j != i,   w_ii = 0
    A_i  = sum_{j != i} w_ij              (all other rows)
    S_i  = sum_{j != i, y_j == y_i} w_ij  (other rows of the same class)
    p_i  = S_i / (eps + A_i)
    L    = mean_i  -log(eps + p_i)

with d the *squared* euclidean distance ``|x_i - x_j|^2`` (metric "euclidean", alias
"sqeuclidean": both published implementations use the squared distance under that name) or
the cosine distance ``1 - x_i.x_j / (|x_i| |x_j|)`` (metric "cosine"; a zero row has
similarity 0 with every row, distance 1, as in scikit-learn).

The two reference implementations, read for this (cleverhans ``SNNLCrossEntropy`` in
``cleverhans/loss.py``, TensorFlow; Agarap's ``pt-snnl`` ``SNNLoss``, PyTorch) agree on:
eps = 1e-5 added in both places (``-log(eps + p_i)`` and ``S_i / (eps + A_i)``); the
temperature divides the distance, ``exp(-d / T)``; the class mask includes j == i but the
diagonal is removed from the weights. They differ in: (1) the metric -- cleverhans defaults to
the squared euclidean distance (expanded form ``|a|^2 + |b|^2 - 2 a.b``), Agarap's module always
uses the cosine distance; (2) the temperature -- cleverhans defaults to T = 100 and optionally
takes one gradient step on an inverse temperature at every call (``optimize_temperature``),
Agarap anneals it, ``T(epoch) = 1 / (1 + epoch)^0.55`` (see ``annealed_temperature``). We follow
Agarap: the temperature is the caller's (no hidden optimisation step), and the gradient with
respect to T is returned for callers who learn it. (3) Both remove the diagonal by subtracting
the identity, ``exp(-d_ii / T) - 1``, which is exactly 0 only when the computed d_ii is exactly
0 (their cosine d_ii is ~1e-7 in float32, and a zero row's is 1); we set w_ii = 0 exactly,
the quantity they mean.

Stability. Every backend shifts row i by its maximum ``m_i = max_{j != i} (-d_ij / T)``
(the streaming kernels keep a running maximum, an online log-sum-exp), so the sums are of
terms in [0, 1] with at least one term equal to 1, and works in log space:
``log(eps + A_i) = logaddexp(log eps, m_i + log A'_i)`` and
``p_i = exp(m_i + log S'_i - log(eps + A_i))`` (primes: the shifted sums). Nothing under- or
overflows, at any T. Where the unshifted float64 reference ``exp(-d/T)`` underflows for a whole
row (A_i < 1e-308), the true p_i is below S_i / eps < 1e-300 and both give p_i = 0, so
``L_i = -log(eps)``: no discrepancy. Kernels accumulate the sums in float64.

Precision by backend. numpy and numba compute every distance in float64 (direct form). The cpu
kernel and the cuda backend compute distances in X's dtype by the expanded form
``|z_i|^2 + |z_j|^2 - 2 z_i.z_j`` on centred rows (squared euclidean) or unit rows (cosine):
absolute error about ``(D + 8) u (|z_i|^2 + |z_j|^2)`` (u = 2^-24 in float32), so the exponent
``d/T`` carries that error divided by T. Distances below 4x that bound (duplicates and
near-duplicates, common once a class has gathered) are recomputed from X in float64, direct
form, so coinciding points are at distance exactly 0. In float32 at small T (say T <= 1e-2 with
|z|^2 ~ 10) the loss stays finite and close, but gradients of nearly saturated rows (themselves
~1e-11) may differ from the float64 reference by a few percent; use float64 input there. (A
float32 B x B implementation returns 0/0 in that regime.)

Gradient. With ``q_ij = w_ij / (eps + A_i)``, ``c_i = 1 / (B (eps + p_i))`` and
``[same_ij] = 1`` when ``y_i == y_j``, the derivative with respect to ``s_ij = -d_ij / T`` is::

    g_ij = dL/ds_ij = c_i q_ij (p_i - [same_ij])          (g_ii = 0)

Every d_ij depends on x_i and x_j, and appears in row i (as d_ij) and row j (as d_ji), so with
``G_ij = g_ij + g_ji`` (symmetric)::

    squared euclidean:  dL/dx_k = -(2 / T) sum_j G_kj (x_k - x_j)
    cosine:             dL/dx_k = (I - u_k u_k^T) (sum_j G_kj u_j) / (T |x_k|),  u = x / |x|
    temperature:        dL/dT   = sum_ij g_ij d_ij / T^2

(a zero row gets a zero gradient under cosine). ``p_i - [same_ij]`` is ``p_i`` or
``-(1 - p_i)``, and ``1 - p_i = (eps + A_i - S_i) / (eps + A_i)`` is computed from the sum over
the other classes, never as ``1 - p_i``: when a class is gathered p_i -> 1 and the gradient is
made of that small difference alone (float32 would lose it entirely). Streaming kernels need
two passes over the column tiles: the first finishes every row's ``m_i``, ``log(eps + A_i)`` and ``p_i``; the
second recomputes each distance tile and forms ``G`` from the row and column statistics, never
holding more than a tile. Memory O(B D); work 2 B^2 D flops (loss), 6 B^2 D (with gradient).

``eps = 0`` is accepted; then a row with no other member of its class has an infinite loss
(and the gradient is not finite).
"""

import numpy as np

from .._arrays import to_like
from .._validation import check_array, check_labels, check_real
from . import _dispatch

SNNL_METRICS = {"euclidean": "sqeuclidean", "sqeuclidean": "sqeuclidean", "cosine": "cosine"}


def check_snnl_metric(metric):
    if isinstance(metric, str) and metric in SNNL_METRICS:
        return SNNL_METRICS[metric]
    raise ValueError(
        f"Unknown metric {metric!r} for the soft nearest neighbour loss. Valid metrics are "
        "'cosine', 'euclidean' (squared euclidean distance) and 'sqeuclidean' (the same)."
    )


def check_snnl_inputs(X, y, temperature, metric, eps):
    """Validate once: X (B >= 2 rows), labels as int64 codes, T > 0, eps >= 0, the metric."""
    X = check_array(X, min_samples=2, estimator="soft_nearest_neighbor_loss")
    labels = check_labels(y, X.shape[0])
    temperature = check_real(temperature, "temperature", low=0.0, low_inclusive=False)
    eps = check_real(eps, "eps", low=0.0, low_inclusive=True)
    metric = check_snnl_metric(metric)
    return X, labels, temperature, metric, eps


def snnl_loss_and_grad(X, y, temperature=1.0, metric="euclidean", eps=1e-5, *, gradient=True,
                       backend=None, check_input=True):
    """The soft nearest neighbour loss of (X, y) and, with ``gradient``, its derivatives.

    See the module docstring for the definition and the formulas.

    Returns (loss: Python float, grad_X: array like X (same kind and dtype) or None,
    grad_temperature: Python float or None).
    """
    reference = X
    if check_input:
        X, labels, temperature, metric, eps = check_snnl_inputs(X, y, temperature, metric, eps)
    else:
        labels = np.asarray(y, dtype=np.int64)
    loss, grad, grad_temperature = _dispatch.run(
        "snnl_loss_and_grad", backend, (X,), labels, float(temperature), metric, float(eps),
        bool(gradient),
    )
    if not gradient:
        return float(loss), None, None
    return float(loss), to_like(reference, grad), float(grad_temperature)
