"""fastlatent on a Dask cluster: ``KMeans`` and ``GaussianMixture`` for Dask arrays chunked by
rows, running fastlatent's ops on each block and reducing ``k x d``-sized partial results.

Needs Dask (``pip install 'fastlatent[dask]'``); ``import fastlatent`` never does. Works on any
Dask scheduler: a ``distributed.Client`` when one is active, else Dask's local threads.
"""

try:
    import dask  # noqa: F401
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised where Dask is absent
    raise ImportError(
        "fastlatent.dask needs Dask with its array module: pip install 'fastlatent[dask]'"
    ) from exc

from ._gaussian_mixture import GaussianMixture
from ._kmeans import KMeans

__all__ = ["GaussianMixture", "KMeans"]
