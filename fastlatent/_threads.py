"""BLAS threads while the native kernels do the heavy work of a fit.

Between kernel calls an estimator does small dense algebra (Cholesky factors, K x D x D
updates) through NumPy/SciPy's BLAS, which wakes its own thread pool for each call. On a busy
machine those wake-ups cost up to a scheduler time slice each: five GaussianMixture fits of
the 16-dimensional digits took 4-11 s on the loaded 2-core machine with a threaded OpenBLAS and
0.2 s with one thread. scikit-learn's KMeans limits BLAS the same way. The NumPy and Numba
backends keep every BLAS thread: there the dense algebra is the heavy work.
"""

from contextlib import nullcontext

from .ops import select_backend

_controller = None


def native_fit_context(backend, *arrays):
    """A context in which BLAS runs on one thread, when a native backend will run the fit."""
    global _controller
    if select_backend(backend, *arrays)[0] not in ("cpu", "cuda"):
        return nullcontext()
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
