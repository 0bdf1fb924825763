"""Functions users call directly, with scikit-learn's signatures."""

from .cluster import clustering_accuracy, silhouette_samples, silhouette_score
from .pairwise import (
    pairwise_distances,
    pairwise_distances_argmin,
    pairwise_distances_argmin_min,
)

__all__ = [
    "clustering_accuracy",
    "pairwise_distances",
    "pairwise_distances_argmin",
    "pairwise_distances_argmin_min",
    "silhouette_samples",
    "silhouette_score",
]
