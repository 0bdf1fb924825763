"""Native CPU backend: the C++/OpenMP kernels of ``fastlatent._cpu`` (csrc/cpu/).

Same contract as ``fastlatent.backends.numpy`` (see its docstring): inputs are validated by
``fastlatent.ops`` (2-D, C-contiguous, finite, non-empty, one dtype, float32 or float64, same
number of columns); outputs have the input's dtype; indices are int64; ties go to the lower
index. The compiled functions take arrays without conversion, so a wrong dtype or layout is a
TypeError rather than a silent copy.

Full distance matrices are computed in the direct form, accumulated in float64. Nearest
neighbours under euclidean, sqeuclidean and cosine are screened with a GEMM in the input's
precision, then the winners are recomputed exactly in float64; a row whose screening margin
is within the proven rounding bound is recomputed whole, so indices equal the reference's.
Importing this module raises ImportError when the compiled module is missing, which the
backend registry reports as "unavailable".
"""

from fastlatent import _cpu


def pairwise_distances(X, Y, metric):
    return _cpu.pairwise_distances(X, Y, metric)


def pairwise_distances_argmin_min(X, Y, metric):
    return _cpu.pairwise_distances_argmin_min(X, Y, metric)


def kneighbors(X, Y, n_neighbors, metric):
    return _cpu.kneighbors(X, Y, int(n_neighbors), metric)


def kmeans_update(X, sample_weight, labels, n_clusters):
    return _cpu.kmeans_update(X, sample_weight, labels, int(n_clusters))


def kmeans_step(X, sample_weight, centers):
    return _cpu.kmeans_step(X, sample_weight, centers)


def describe():
    return f"native C++ / OpenMP, {_cpu.max_threads()} threads"
