"""fastlatent: fast clustering and comparison of embedding vectors.

Drop-in scikit-learn estimators and functions on native CPU (C++/OpenMP) and CUDA kernels,
with Numba and NumPy versions of every kernel as fallbacks and references.
"""

from . import ops
from .cluster import AgglomerativeClustering, KMeans, linkage
from .mixture import GaussianMixture
from ._config import config_context, get_config, set_config
from .backends import available_backends, show_backends
from .losses import annealed_temperature, soft_nearest_neighbor_loss
from .metrics import (
    clustering_accuracy,
    pairwise_distances,
    pairwise_distances_argmin,
    pairwise_distances_argmin_min,
    silhouette_samples,
    silhouette_score,
)
from .neighbors import NearestNeighbors

__version__ = "0.1.0"

__all__ = [
    "AgglomerativeClustering",
    "annealed_temperature",
    "available_backends",
    "clustering_accuracy",
    "config_context",
    "GaussianMixture",
    "get_config",
    "KMeans",
    "linkage",
    "NearestNeighbors",
    "ops",
    "pairwise_distances",
    "pairwise_distances_argmin",
    "pairwise_distances_argmin_min",
    "set_config",
    "show_backends",
    "silhouette_samples",
    "silhouette_score",
    "soft_nearest_neighbor_loss",
]
