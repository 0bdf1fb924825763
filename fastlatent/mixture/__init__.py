"""Mixture models with scikit-learn's API."""

from ._gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture"]
