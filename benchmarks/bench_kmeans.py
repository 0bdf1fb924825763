"""KMeans against scikit-learn: seconds per Lloyd iteration (fixed init, tol=0) and whole fits.

    pytest benchmarks/bench_kmeans.py --benchmark-json=kmeans.json
    python benchmarks/report.py kmeans.json

Each timed call runs ``ITERATIONS`` Lloyd iterations from the same initial centres (random
normal data does not converge that fast, and ``n_iter_`` is checked); the report divides by
the iteration count. Floor per iteration: 2*n*k*d flops (assignment) plus one pass over X.

Peers timed when installed (``pip install ".[bench-peers]"``): scikit-learn-intelex's KMeans
(oneDAL) and FAISS's ``faiss.Kmeans`` (Lloyd on all rows: ``max_points_per_centroid`` is set
so that it does not subsample; FAISS has no k-means++, so it is left out of the whole fits).
"""

import importlib.util

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

import fastlatent
from conftest import data, fastlatent_backends, run

ITERATIONS = 10
PEERS = [name for name, module in (("sklearnex", "sklearnex"), ("faiss", "faiss"))
         if importlib.util.find_spec(module) is not None]
IMPLEMENTATIONS = [f"fastlatent-{b}" for b in fastlatent_backends()] + ["sklearn"] + PEERS
SHAPES = [(100_000, 64, 16), (100_000, 128, 256), (1_000_000, 64, 64)]


class _FaissLloyd:
    """faiss.Kmeans behind fit(X): ``max_iter`` Lloyd iterations from ``init`` on every row."""

    def __init__(self, k, init, max_iter, **_):
        self.k, self.init, self.max_iter = k, init, max_iter

    def fit(self, X):
        import faiss

        km = faiss.Kmeans(X.shape[1], self.k, niter=self.max_iter, max_points_per_centroid=X.shape[0],
                          min_points_per_centroid=1, verbose=False)
        km.train(X, init_centroids=self.init)
        self.n_iter_ = len(km.iteration_stats)
        return self


def _estimator(impl, k, **params):
    if impl == "sklearn":
        return SkKMeans(k, **params)
    if impl == "sklearnex":
        from sklearnex.cluster import KMeans as ExKMeans

        return ExKMeans(k, **params)
    if impl == "faiss":
        return _FaissLloyd(k, **params)
    return fastlatent.KMeans(k, backend=impl.removeprefix("fastlatent-"), **params)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_lloyd_iterations(benchmark, impl, n, d, k):
    benchmark.group = f"KMeans Lloyd iteration {n}x{d} K={k} float32"
    benchmark.extra_info["iterations"] = ITERATIONS
    X = data(n, d, np.float32)
    init = X[:k].copy()
    km = _estimator(impl, k, init=init, n_init=1, max_iter=ITERATIONS, tol=0)
    fitted = run(benchmark, lambda: km.fit(X))
    assert fitted.n_iter_ == ITERATIONS


@pytest.mark.parametrize("impl", [impl for impl in IMPLEMENTATIONS if impl != "faiss"])
@pytest.mark.parametrize("n, d, k", SHAPES[:2])
def test_whole_fit(benchmark, impl, n, d, k):
    benchmark.group = f"KMeans fit (k-means++, n_init=1) {n}x{d} K={k} float32"
    X = data(n, d, np.float32)
    run(benchmark, lambda: _estimator(impl, k, n_init=1, random_state=0).fit(X), rounds=2)
