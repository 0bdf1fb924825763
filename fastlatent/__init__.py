"""fastlatent: fast clustering and comparison of embedding vectors.

Drop-in scikit-learn estimators and functions on native CPU (C++/OpenMP) and CUDA kernels,
with Numba and NumPy versions of every kernel as fallbacks and references.
"""

from . import ops
from .cluster import KMeans
from .mixture import GaussianMixture
from ._config import config_context, get_config, set_config
from .backends import available_backends, show_backends
from .metrics import (
    pairwise_distances,
    pairwise_distances_argmin,
    pairwise_distances_argmin_min,
)
from .neighbors import NearestNeighbors
from .cluster import AgglomerativeClustering, linkage

__version__ = "0.1.0"

__all__ = [
    "AgglomerativeClustering",
    "linkage",
    "GaussianMixture",
    "KMeans",
    "NearestNeighbors",
    "available_backends",
    "config_context",
    "get_config",
    "ops",
    "pairwise_distances",
    "pairwise_distances_argmin",
    "pairwise_distances_argmin_min",
    "set_config",
    "show_backends",
]
