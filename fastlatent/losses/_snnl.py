"""The soft nearest neighbour loss (Frosst, Papernot & Hinton 2019) and its annealed temperature.

The definition, the published references it matches and the gradient formulas are in
``fastlatent.ops.snnl``.
"""

import numbers

from ..ops.snnl import snnl_loss_and_grad


def soft_nearest_neighbor_loss(X, y, temperature=1.0, metric="euclidean", eps=1e-5,
                               return_gradient=False, *, backend=None):
    """Soft nearest neighbour loss of the rows of X with class labels y.

    ``L = mean_i -log(eps + p_i)``, ``p_i = S_i / (eps + A_i)``, where ``A_i`` sums
    ``exp(-d_ij / T)`` over the other rows j and ``S_i`` over the other rows of the same class.
    Low when each class is gathered together, high (up to ``-log(eps)``) when classes are
    entangled. Computed in tiles: memory O(B * D), never a B x B matrix.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), n_samples >= 2
        Embeddings (float32 stays float32; other real dtypes become float64).
    y : array of shape (n_samples,)
        Class labels (any values that can be compared: ints, strings, ...).
    temperature : float > 0, default=1.0
        T in ``exp(-d / T)``; see ``annealed_temperature`` for the usual schedule.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        "euclidean" is the *squared* euclidean distance (as in both published
        implementations); "sqeuclidean" is the same. "cosine" is ``1 - cos(x_i, x_j)``, the
        choice of Agarap & Azcarraga's PyTorch implementation.
    eps : float >= 0, default=1e-5
        Stability constant, added to the denominator of ``p_i`` and inside the log, as in the
        references.
    return_gradient : bool, default=False
        Also return the gradient with respect to X and to the temperature.
    backend : {"auto", "cuda", "cpu", "numba", "numpy"}, default=None (the configured one)

    Returns
    -------
    loss : float
        When ``return_gradient`` is False.
    (loss, grad_X, grad_temperature) : (float, array like X, float)
        When ``return_gradient`` is True: ``grad_X = dL/dX`` (X's shape, dtype and array kind)
        and ``grad_temperature = dL/dT``.

    Examples
    --------
    >>> import numpy as np, fastlatent
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> round(fastlatent.soft_nearest_neighbor_loss(X, [0, 0, 1, 1]), 4)  # classes apart
    0.0
    >>> round(fastlatent.soft_nearest_neighbor_loss(X, [0, 1, 0, 1]), 2)  # entangled: -log(eps)
    11.51
    """
    loss, grad, grad_temperature = snnl_loss_and_grad(
        X, y, temperature, metric, eps, gradient=bool(return_gradient), backend=backend
    )
    if return_gradient:
        return loss, grad, grad_temperature
    return loss


def annealed_temperature(epoch, base=1.0, exponent=0.55):
    """The annealed temperature ``base / (1 + epoch)^exponent``.

    Agarap & Azcarraga (2020) use ``1 / (1 + epoch)^0.55`` (the exponent of the annealed
    gradient noise of Neelakantan et al., 2015): a high temperature early lets distant points
    interact, a low one later sharpens the neighbourhoods.

    Parameters
    ----------
    epoch : int or float >= 0
    base : float > 0, default=1.0
    exponent : float >= 0, default=0.55
    """
    for name, value in (("epoch", epoch), ("base", base), ("exponent", exponent)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number; got {value!r}.")
    if not epoch >= 0:
        raise ValueError(f"epoch must be >= 0; got {epoch!r}.")
    if not base > 0:
        raise ValueError(f"base must be > 0; got {base!r}.")
    if not exponent >= 0:
        raise ValueError(f"exponent must be >= 0; got {exponent!r}.")
    return float(base) / (1.0 + float(epoch)) ** float(exponent)

