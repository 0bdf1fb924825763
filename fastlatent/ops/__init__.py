"""The stable low-level API: one function per kernel, array in / array out.

Other tools (and ``fastlatent.dask``) call these. Each op validates its inputs, chooses the
backend (``backend=`` argument, then ``config_context``/``set_config``, then
``FASTLATENT_BACKEND``, then "auto") and returns arrays of the input's kind.
"""

from ._dispatch import select_backend
from .distances import kneighbors, pairwise_distances, pairwise_distances_argmin_min
from .mixture import gmm_e_step, gmm_estimate_log_prob, gmm_m_step, gmm_responsibilities
from .kmeans import kmeans_assign, kmeans_distances, kmeans_plusplus, kmeans_step, kmeans_update
from .silhouette import silhouette_cluster_sums
from .snnl import snnl_loss_and_grad
from .hierarchy import linkage

__all__ = [
    "gmm_e_step",
    "gmm_estimate_log_prob",
    "gmm_m_step",
    "gmm_responsibilities",
    "kmeans_assign",
    "kmeans_distances",
    "kmeans_plusplus",
    "kmeans_step",
    "kmeans_update",
    "kneighbors",
    "linkage",
    "pairwise_distances",
    "pairwise_distances_argmin_min",
    "select_backend",
    "silhouette_cluster_sums",
    "snnl_loss_and_grad",
]
