"""PyTorch integration: the soft nearest neighbour loss as an autograd Function and an nn.Module.

Optional: needs torch (``pip install 'fastlatent[torch]'``); nothing else in fastlatent imports
this module. The forward pass runs fastlatent's streaming kernel (``ops.snnl_loss_and_grad``:
memory O(B * D), no B x B matrix) and computes the exact gradient with respect to X (and to the
temperature, when it is a tensor that requires grad) at the same time; backward only scales
them by the incoming gradient. When no gradient is needed (``torch.no_grad()``, or inputs that
do not require grad) only the loss is computed (one pass).

CPU tensors are handed to the kernels without a copy (a float32/float64 contiguous tensor is
viewed as a NumPy array through the buffer protocol; other dtypes or layouts are converted
once). CUDA tensors are refused with a clear error: fastlatent has no CUDA kernel for this loss
yet (issue 5), and a silent copy to the host and back would hide a large cost.

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
            f"fastlatent.torch.soft_nearest_neighbor_loss got a tensor on {X.device}; "
            "fastlatent has no CUDA kernel for the soft nearest neighbour loss yet. Call it on "
            "a CPU tensor (x.cpu()) or use a torch implementation on the GPU."
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
        loss, grad, grad_t = ops.snnl_loss_and_grad(
            _host_view(X), _labels(y), T, metric, eps, gradient=gradient, backend=backend
        )
        if gradient:
            grad_x = torch.from_numpy(np.ascontiguousarray(grad)).reshape(X.shape).to(X.dtype)
            ctx.save_for_backward(grad_x)
            ctx.grad_t = grad_t
            ctx.t_dtype = temperature.dtype if isinstance(temperature, torch.Tensor) else None
        return torch.tensor(loss, dtype=X.dtype if X.is_floating_point() else torch.float64)

    @staticmethod
    def backward(ctx, grad_output):
        (grad_x,) = ctx.saved_tensors
        gx = grad_output.to(grad_x.dtype) * grad_x if ctx.needs_input_grad[0] else None
        gt = None
        if ctx.needs_input_grad[2]:
            gt = (grad_output.to(torch.float64) * ctx.grad_t).to(ctx.t_dtype)
        return gx, None, gt, None, None, None


def soft_nearest_neighbor_loss(X, y, temperature=1.0, metric="euclidean", eps=1e-5, *, backend=None):
    """The soft nearest neighbour loss of a (B, ...) tensor X (flattened to (B, D)) with labels y,
    differentiable with respect to X and a tensor temperature. See
    ``fastlatent.soft_nearest_neighbor_loss`` for the definition."""
    return SoftNearestNeighborFunction.apply(X, y, temperature, metric, eps, backend)


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
