"""Clustering estimators with scikit-learn's API."""

from ._kmeans import KMeans
from ._agglomerative import AgglomerativeClustering, linkage

__all__ = ["KMeans", "AgglomerativeClustering", "linkage"]
