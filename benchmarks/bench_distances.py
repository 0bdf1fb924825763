"""Distance ops against scikit-learn and SciPy, on the same data in the same run.

    pytest benchmarks/bench_distances.py --benchmark-json=bench.json
    python benchmarks/report.py bench.json

Groups are named "<op> <shape> <dtype>"; within a group every implementation gets the same
arrays. The floor of each op: 2*n_x*n_y*d flops for the products (argmin, kneighbors:
expanded form; the full matrix: direct form, 3*n_x*n_y*d) and 4*n_x*n_y bytes written for
the full float32 matrix.
"""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn import metrics as skm
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import fastlatent
from conftest import data, fastlatent_backends, run

IMPLEMENTATIONS = [f"fastlatent-{b}" for b in fastlatent_backends()] + ["sklearn"]


def _backend(impl):
    return impl.removeprefix("fastlatent-")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "n_x, n_y, d, dtype",
    [(1_000_000, 1_000, 64, np.float32), (1_000_000, 1_000, 64, np.float64), (1_000_000, 256, 128, np.float32)],
)
def test_argmin_min(benchmark, impl, n_x, n_y, d, dtype):
    benchmark.group = f"pairwise_distances_argmin_min {n_x}x{d} vs {n_y} {np.dtype(dtype).name}"
    X, Y = data(n_x, d, dtype), data(n_y, d, dtype, seed=1)
    if impl == "sklearn":
        run(benchmark, lambda: skm.pairwise_distances_argmin_min(X, Y))
    else:
        run(benchmark, lambda: fastlatent.pairwise_distances_argmin_min(X, Y, backend=_backend(impl)))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS + ["scipy"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("n, d, dtype", [(10_000, 64, np.float32), (5_000, 256, np.float64)])
def test_pairwise_distances(benchmark, impl, metric, n, d, dtype):
    benchmark.group = f"pairwise_distances {n}x{n}x{d} {metric} {np.dtype(dtype).name}"
    X, Y = data(n, d, dtype), data(n, d, dtype, seed=1)
    if impl == "sklearn":
        run(benchmark, lambda: skm.pairwise_distances(X, Y, metric=metric))
    elif impl == "scipy":
        run(benchmark, lambda: cdist(X, Y, metric))
    else:
        run(benchmark, lambda: fastlatent.pairwise_distances(X, Y, metric, backend=_backend(impl)))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kneighbors(benchmark, impl, metric):
    n_queries, n_index, d, k = 20_000, 100_000, 64, 10
    benchmark.group = f"kneighbors {n_queries} queries x {n_index}x{d} k={k} {metric} float32"
    Q, X = data(n_queries, d, np.float32), data(n_index, d, np.float32, seed=1)
    if impl == "sklearn":
        nn = SkNearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(X)
    else:
        nn = fastlatent.NearestNeighbors(n_neighbors=k, metric=metric, backend=_backend(impl)).fit(X)
    run(benchmark, lambda: nn.kneighbors(Q))
