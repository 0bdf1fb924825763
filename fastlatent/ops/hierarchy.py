"""Hierarchical clustering op: the linkage matrix of X (SciPy's format).

``linkage`` validates X, checks that the memory the method needs is there (average and
complete keep a condensed n(n-1)/2 float64 distance matrix; Ward and single linkage need
O(n * d)), chooses the backend and returns Z as the backend made it (see
``fastlatent.backends.numpy`` for the contract).
"""

import os

import numpy as np

from .._arrays import to_host
from .._validation import check_array, check_metric
from . import _dispatch

LINKAGE_METHODS = ("ward", "complete", "average", "single")
# Methods that keep a condensed distance matrix, n(n-1)/2 float64 values.
_CONDENSED_METHODS = ("complete", "average")
# The condensed matrix may take at most this fraction of the memory available.
_MEMORY_FRACTION = 0.9


def available_memory_bytes():
    """Bytes this process can still allocate: the smaller of the host's available memory
    (``MemAvailable`` in /proc/meminfo) and the room left under a cgroup v2 limit."""
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None  # unknown: no refusal
    try:
        with open("/sys/fs/cgroup/memory.max") as limit_file, open("/sys/fs/cgroup/memory.current") as used_file:
            limit = limit_file.read().strip()
            if limit != "max":
                available = min(available, int(limit) - int(used_file.read().strip()))
    except (OSError, ValueError):
        pass
    return available


def linkage_memory_bytes(n_samples, method):
    """Bytes of the largest work array ``method`` allocates for ``n_samples`` rows."""
    if method in _CONDENSED_METHODS:
        return 8 * (n_samples * (n_samples - 1) // 2)
    return 0  # O(n * d): the size of X again, at most


def check_linkage_memory(n_samples, method, max_memory_bytes=None):
    """Refuse, before allocating, a condensed distance matrix that cannot fit.

    ``max_memory_bytes`` defaults to ``available_memory_bytes()``; raises MemoryError saying
    how much is needed and how much there is.
    """
    needed = linkage_memory_bytes(n_samples, method)
    if needed == 0:
        return
    limit = available_memory_bytes() if max_memory_bytes is None else max_memory_bytes
    if limit is None:
        return
    if needed > _MEMORY_FRACTION * limit:
        raise MemoryError(
            f"{method} linkage of {n_samples} samples needs a condensed distance matrix of "
            f"{needed / 2**30:.2f} GiB (n(n-1)/2 float64 values), but only {limit / 2**30:.2f} GiB "
            "of memory is available. Use linkage='ward' or 'single' (memory O(n_samples x "
            "n_features)), or cluster fewer samples."
        )


def check_linkage_method(method, metric):
    """The canonical (method, metric), or a ValueError naming what is allowed."""
    if method not in LINKAGE_METHODS:
        raise ValueError(
            f"Unknown linkage method {method!r}. Valid methods are "
            + ", ".join(repr(m) for m in LINKAGE_METHODS)
            + "."
        )
    metric = check_metric(metric)
    if method == "ward" and metric != "euclidean":
        raise ValueError(
            f"{metric} was provided as metric. Ward can only work with euclidean distances "
            "(i.e. 'euclidean' and 'l2')."
        )
    return method, metric


def linkage(X, method="ward", metric="euclidean", *, backend=None, check_input=True, max_memory_bytes=None):
    """Agglomerative clustering of the rows of X: the linkage matrix Z, float64 (n - 1, 4).

    Row i merges clusters Z[i, 0] and Z[i, 1] (leaves 0..n-1; row i makes cluster n + i) at
    height Z[i, 2] into a cluster of Z[i, 3] rows; heights never decrease. Heights equal
    SciPy's ``linkage`` to rounding, and the merges equal its merges up to ties. Columns 0 and
    1 are in merge order (single linkage: the side already in Prim's tree first, as
    scikit-learn reports it; other methods: the smaller id first, as SciPy does).

    Methods: "ward" (euclidean only), "complete", "average", "single"; metrics "euclidean",
    "sqeuclidean", "cosine", "manhattan" (and their aliases). X has at least 2 rows. Average
    and complete linkage refuse with MemoryError when their condensed distance matrix does
    not fit in ``max_memory_bytes`` (default: the memory available now).
    """
    method, metric = check_linkage_method(method, metric)
    X = to_host(X)  # no GPU backend implements linkage yet: GPU arrays are clustered on the host
    if check_input:
        X = check_array(X, min_samples=2)
        if metric == "cosine" and not np.all(np.any(X, axis=1)):
            raise ValueError("Cosine affinity cannot be used when X contains zero vectors")
    check_linkage_memory(X.shape[0], method, max_memory_bytes)
    Z = _dispatch.run("linkage", backend, (X,), method, metric)
    return np.asarray(Z, dtype=np.float64)
