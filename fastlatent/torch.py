"""PyTorch integration: the soft nearest neighbour loss as an autograd Function and an nn.Module.

Optional: needs torch (``pip install 'fastlatent[torch]'``); nothing else in fastlatent imports
this module. The forward pass runs fastlatent's streaming kernel (``ops.snnl_loss_and_grad``:
memory O(B * D), no B x B matrix) and computes the exact gradient with respect to X (and to the
temperature, when it is a tensor that requires grad) at the same time; backward only scales
them by the incoming gradient. When no gradient is needed (``torch.no_grad()``, or inputs that
do not require grad) only the loss is computed (one pass).

CPU tensors are handed to the kernels without a copy (a float32/float64 contiguous tensor is
viewed as a NumPy array through the buffer protocol; other dtypes or layouts are converted
once). fastlatent has no CUDA kernel for this loss yet, so CUDA tensors (or ``backend="torch"``)
run ``streaming_loss_and_grad``: the same two-pass algorithm written with torch operations on
blocks of rows, on the tensor's device -- memory O(block * B + B * D) instead of B x B, the
same formulas, no autograd graph (the gradient is computed, not traced). It is tested here on
CPU tensors against the NumPy reference; it has not been run on a GPU.

Example::

    criterion = SoftNearestNeighborLoss(metric="cosine")
    for epoch in range(n_epochs):
        criterion.temperature = fastlatent.annealed_temperature(epoch)
        for x, y in loader:
            hidden = encoder(x)
            loss = reconstruction(decoder(hidden), x) + factor * criterion(hidden, y)
            loss.backward()
"""

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "fastlatent.torch needs PyTorch (pip install 'fastlatent[torch]')."
    ) from exc

from . import ops

__all__ = ["SoftNearestNeighborFunction", "SoftNearestNeighborLoss", "soft_nearest_neighbor_loss"]


def _host_view(X):
    if X.device.type != "cpu":
        raise ValueError(
            f"fastlatent's kernels need a CPU tensor, got one on {X.device} (fastlatent has "
            "no CUDA kernel for the soft nearest neighbour loss yet; backend='torch' runs the "
            "streaming torch implementation on any device)."
        )
    X = X.detach()
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float64)
    return X.contiguous().numpy()  # shares memory with the tensor when already contiguous


def _labels(y):
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy()
    return np.asarray(y)


class SoftNearestNeighborFunction(torch.autograd.Function):
    """``apply(X, y, temperature, metric, eps, backend)`` -> 0-d tensor of X's dtype.

    ``temperature`` is a float or a 0-d tensor; when it is a tensor that requires grad, its
    gradient is returned too (for callers who learn the temperature).
    """

    @staticmethod
    def forward(ctx, X, y, temperature, metric, eps, backend):
        T = float(temperature)
        need_x = ctx.needs_input_grad[0]
        need_t = len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2]
        gradient = need_x or need_t
        if backend == "torch" or (backend is None and X.device.type != "cpu"):
            loss, grad, grad_t = streaming_loss_and_grad(X, y, T, metric, eps, gradient=gradient)
            loss = float(loss)
        else:
            loss, grad, grad_t = ops.snnl_loss_and_grad(
                _host_view(X), _labels(y), T, metric, eps, gradient=gradient, backend=backend
            )
            if gradient:
                grad = torch.from_numpy(np.ascontiguousarray(grad))
        if gradient:
            grad_x = grad.reshape(X.shape).to(X.dtype)
            ctx.save_for_backward(grad_x)
            ctx.grad_t = grad_t
            ctx.t_dtype = temperature.dtype if isinstance(temperature, torch.Tensor) else None
        dtype = X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float64
        return torch.tensor(loss, dtype=dtype, device=X.device)

    @staticmethod
    def backward(ctx, grad_output):
        (grad_x,) = ctx.saved_tensors
        gx = grad_output.to(grad_x.dtype) * grad_x if ctx.needs_input_grad[0] else None
        gt = None
        if ctx.needs_input_grad[2]:
            gt = (grad_output.to(torch.float64) * ctx.grad_t).to(ctx.t_dtype)
            gt = gt.to(grad_output.device)
        return gx, None, gt, None, None, None


def soft_nearest_neighbor_loss(X, y, temperature=1.0, metric="euclidean", eps=1e-5, *, backend=None):
    """The soft nearest neighbour loss of a (B, ...) tensor X (flattened to (B, D)) with labels y,
    differentiable with respect to X and a tensor temperature. See
    ``fastlatent.soft_nearest_neighbor_loss`` for the definition.

    ``backend``: None (CPU tensors: fastlatent's fastest kernel; CUDA tensors: the streaming torch
    implementation), a fastlatent backend name (CPU tensors), or "torch" (the streaming torch
    implementation on the tensor's device)."""
    return SoftNearestNeighborFunction.apply(X, y, temperature, metric, eps, backend)


def streaming_loss_and_grad(X, y, temperature, metric="euclidean", eps=1e-5, *, gradient=True,
                            block_elements=1 << 24):
    """The loss and its gradients with torch operations on blocks of rows, on X's device.

    The algorithm and formulas of ``fastlatent.ops.snnl`` (two passes: row statistics
    log(eps + A_i), p_i and 1 - p_i by log-sum-exp over blocks of rows, then
    G = g + g^T block by block and the gradient products). Blocks hold about
    ``block_elements`` entries of the B x B matrix (64 MiB of float32 per temporary by
    default). Distances use the expanded form on centred (or unit) rows in X's dtype; per-row
    statistics are float64. Returns (loss 0-d float64 tensor, grad_X (B, D) in X's dtype or
    None, dL/dT float or None). Not traced by autograd.
    """
    from ._validation import check_labels, check_real
    from .ops.snnl import check_snnl_metric

    metric = check_snnl_metric(metric)
    T = check_real(float(temperature), "temperature", low=0.0, low_inclusive=False)
    eps = check_real(eps, "eps", low=0.0, low_inclusive=True)
    X = X.detach()
    if X.ndim < 2:
        raise ValueError(f"Expected a (B, D) or (B, ...) tensor, got {X.ndim}-D.")
    X = X.reshape(X.shape[0], -1)
    if X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float64)
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"Found array with {n} sample(s) (shape={tuple(X.shape)}) while a minimum of 2 is required.")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("Input X contains NaN or infinity.")
    labels = torch.as_tensor(check_labels(_labels(y), n), device=X.device)
    f64 = torch.float64
    cosine = metric == "cosine"
    if cosine:
        norms = torch.linalg.vector_norm(X.to(f64), dim=1)
        Z = (X.to(f64) / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]).to(X.dtype)
    else:
        Z = (X.to(f64) - X.to(f64).mean(0)).to(X.dtype)
    squared = (Z * Z).sum(1)
    block = max(1, min(n, block_elements // n))
    log_eps = torch.tensor(float(np.log(eps)) if eps > 0 else -np.inf, dtype=f64, device=X.device)
    minus_inf = torch.tensor(-np.inf, dtype=X.dtype, device=X.device)

    def exponents(r0, r1):
        dots = Z[r0:r1] @ Z.T
        d = (1 - dots) if cosine else (squared[r0:r1, None] + squared[None, :] - 2 * dots)
        d = d.clamp_min(0)
        s = -d / T
        rows = torch.arange(r0, r1, device=X.device)
        s[rows - r0, rows] = minus_inf
        same = labels[r0:r1, None] == labels[None, :]
        return s, same, d

    ld = torch.empty(n, dtype=f64, device=X.device)
    p = torch.empty(n, dtype=f64, device=X.device)
    q = torch.empty(n, dtype=f64, device=X.device)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        s, same, _ = exponents(r0, r1)
        log_same = torch.logsumexp(s.masked_fill(~same, minus_inf), 1).to(f64)
        log_other = torch.logsumexp(s.masked_fill(same, minus_inf), 1).to(f64)
        ld[r0:r1] = torch.logaddexp(log_eps, torch.logaddexp(log_same, log_other))
        p[r0:r1] = torch.exp(log_same - ld[r0:r1])
        q[r0:r1] = torch.exp(torch.logaddexp(log_eps, log_other) - ld[r0:r1])
    loss = torch.mean(-torch.log(eps + p))
    if not gradient:
        return loss, None, None
    c = 1.0 / (n * (eps + p))
    ld_t, p_t, q_t, c_t = (v.to(X.dtype) for v in (ld, p, q, c))
    grad = torch.empty_like(Z)
    s_total = torch.zeros((), dtype=f64, device=X.device)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        s, same, _ = exponents(r0, r1)
        g_ij = c_t[r0:r1, None] * torch.exp(s - ld_t[r0:r1, None]) * torch.where(
            same, -q_t[r0:r1, None], p_t[r0:r1, None])
        g_ji = c_t[None, :] * torch.exp(s - ld_t[None, :]) * torch.where(same, -q_t[None, :], p_t[None, :])
        G = g_ij + g_ji  # the diagonal: exp(-inf) = 0
        s_total += (g_ij * torch.where(torch.isfinite(s), s, torch.zeros_like(s))).sum(dtype=f64)
        v = G @ Z
        if cosine:
            u = Z[r0:r1]
            block_grad = (v - u * (u * v).sum(1, keepdim=True)) / (T * norms[r0:r1, None]).to(X.dtype)
            block_grad[norms[r0:r1] == 0] = 0
        else:
            block_grad = -(2.0 / T) * (G.sum(1, keepdim=True) * Z[r0:r1] - v)
        grad[r0:r1] = block_grad
    return loss, grad, float(-s_total / T)


class SoftNearestNeighborLoss(torch.nn.Module):
    """The soft nearest neighbour loss as an ``nn.Module``.

    Parameters
    ----------
    temperature : float, default=1.0
        Set it per epoch for annealing (``fastlatent.annealed_temperature(epoch)``).
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        "euclidean" is the squared euclidean distance; Agarap & Azcarraga use "cosine".
    eps : float, default=1e-5
    learn_temperature : bool, default=False
        Make the temperature an ``nn.Parameter`` (trained with the model's parameters).
    backend : fastlatent backend name or None
    """

    def __init__(self, temperature=1.0, metric="euclidean", eps=1e-5, learn_temperature=False, backend=None):
        super().__init__()
        if learn_temperature:
            self.temperature = torch.nn.Parameter(torch.tensor(float(temperature), dtype=torch.float64))
        else:
            self.temperature = float(temperature)
        self.metric = metric
        self.eps = eps
        self.backend = backend

    def forward(self, X, y, temperature=None):
        T = self.temperature if temperature is None else temperature
        return soft_nearest_neighbor_loss(X, y, T, self.metric, self.eps, backend=self.backend)

    def extra_repr(self):
        return f"temperature={float(self.temperature):g}, metric={self.metric!r}, eps={self.eps:g}"
