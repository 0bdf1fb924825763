"""NumPy backend: the readable reference for every op.

Every other backend is tested against these functions, and these against scikit-learn.
Distances are computed in float64 with SciPy's ``cdist`` (direct form, no cancellation) and
cast back to the input's dtype. Work is done in row chunks so that the temporary float64
block stays near ``_CHUNK_ELEMENTS`` elements, whatever the shapes.

Backend contract (the same in every backend module):
inputs are validated by ``fastlatent.ops``: 2-D, C-contiguous, finite, non-empty, one dtype
(float32 or float64) for X and Y, the same number of columns; ``metric`` is one of
``METRICS``. Outputs have the input's dtype; indices are int64. Ties go to the lower index.
"""

import numpy as np
from scipy.spatial.distance import cdist

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")
_CHUNK_ELEMENTS = 1 << 22


def _distance_block(X, Y, metric):
    """Exact distances between the rows of X and Y, in float64."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if metric == "cosine":
        # A zero vector has cosine similarity 0 with everything (scikit-learn's convention).
        Xn = X / _safe_norms(X)[:, None]
        Yn = Y / _safe_norms(Y)[:, None]
        return np.clip(1.0 - Xn @ Yn.T, 0.0, 2.0)
    return cdist(X, Y, "cityblock" if metric == "manhattan" else metric)


def _safe_norms(A):
    norms = np.sqrt(np.einsum("ij,ij->i", A, A))
    norms[norms == 0.0] = 1.0
    return norms


def _row_chunks(n_rows, n_cols):
    step = max(1, _CHUNK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def pairwise_distances(X, Y, metric):
    out = np.empty((X.shape[0], Y.shape[0]), dtype=X.dtype)
    for rows in _row_chunks(X.shape[0], Y.shape[0]):
        out[rows] = _distance_block(X[rows], Y, metric)
    return out


def pairwise_distances_argmin_min(X, Y, metric):
    indices = np.empty(X.shape[0], dtype=np.int64)
    distances = np.empty(X.shape[0], dtype=X.dtype)
    for rows in _row_chunks(X.shape[0], Y.shape[0]):
        block = _distance_block(X[rows], Y, metric)
        indices[rows] = np.argmin(block, axis=1)  # first index among equal minima
        distances[rows] = block[np.arange(block.shape[0]), indices[rows]]
    return indices, distances


def kneighbors(X, Y, n_neighbors, metric):
    distances = np.empty((X.shape[0], n_neighbors), dtype=X.dtype)
    indices = np.empty((X.shape[0], n_neighbors), dtype=np.int64)
    for rows in _row_chunks(X.shape[0], Y.shape[0]):
        block = _distance_block(X[rows], Y, metric)
        order = np.argsort(block, axis=1, kind="stable")[:, :n_neighbors]
        indices[rows] = order
        distances[rows] = np.take_along_axis(block, order, axis=1)
    return distances, indices


def describe():
    return f"NumPy {np.__version__} (reference)"


def kmeans_update(X, sample_weight, labels, n_clusters):
    """Per-cluster weighted sums (float64, summed in row order) and weights."""
    weights = np.bincount(labels, weights=sample_weight.astype(np.float64), minlength=n_clusters)
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, X.astype(np.float64) * sample_weight.astype(np.float64)[:, None])
    return sums, weights
