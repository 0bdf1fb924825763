"""Functions users call directly, with scikit-learn's signatures."""

from .pairwise import (
    pairwise_distances,
    pairwise_distances_argmin,
    pairwise_distances_argmin_min,
)

__all__ = ["pairwise_distances", "pairwise_distances_argmin", "pairwise_distances_argmin_min"]
