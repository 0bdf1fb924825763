"""Clustering estimators with scikit-learn's API."""

from ._kmeans import KMeans

__all__ = ["KMeans"]
