"""fastlatent.dask against dask-ml's KMeans on the same LocalCluster and data, and against the
single-machine estimators: seconds per iteration (fixed init, tol=0, ``ITERATIONS`` iterations
per timed fit; the report divides by the count, so per-fit costs -- persisting X, the column
variances, the final assignment -- are spread over the iterations).

    pytest benchmarks/bench_dask.py --benchmark-json=dask.json
    python benchmarks/report.py dask.json

The cluster: 2 worker processes x 1 thread (Dask sets OMP_NUM_THREADS=1 in each), loopback; X
is a persisted Dask array in 8 row blocks. The single-machine estimators run in this process
with the native backend's threads on the same cores (the workers idle meanwhile). dask-ml is
optional (``pip install dask-ml``); its rows are skipped without it.
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastlatent  # noqa: E402
import fastlatent.dask  # noqa: E402
from conftest import data, run  # noqa: E402

ITERATIONS = 10
N_BLOCKS = 8
KMEANS_SHAPES = [(1_000_000, 64, 64), (200_000, 32, 16)]
MIXTURE_SHAPES = [(1_000_000, 64, 16, "diag"), (200_000, 16, 16, "full")]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def _dask_data(X):
    return da.from_array(X, chunks=(-(-X.shape[0] // N_BLOCKS), X.shape[1])).persist()


@pytest.mark.parametrize("impl", ["fastlatent.dask", "dask-ml", "fastlatent (single machine)"])
@pytest.mark.parametrize("n, d, k", KMEANS_SHAPES)
def test_kmeans_iterations(benchmark, client, impl, n, d, k):
    benchmark.group = f"KMeans Lloyd iteration {n}x{d} K={k} float32, {N_BLOCKS} blocks"
    benchmark.extra_info["iterations"] = ITERATIONS
    X = data(n, d, np.float32)
    init = X[:k].copy()
    if impl == "fastlatent (single machine)":
        km = fastlatent.KMeans(k, init=init, n_init=1, max_iter=ITERATIONS, tol=0)
        fitted = run(benchmark, lambda: km.fit(X), rounds=2)
    else:
        X_dask = _dask_data(X)
        if impl == "dask-ml":
            dask_ml_cluster = pytest.importorskip("dask_ml.cluster")
            km = dask_ml_cluster.KMeans(k, init=init, max_iter=ITERATIONS, tol=0)
        else:
            km = fastlatent.dask.KMeans(k, init=init, n_init=1, max_iter=ITERATIONS, tol=0)
        fitted = run(benchmark, lambda: km.fit(X_dask), rounds=2)
    assert fitted.n_iter_ == ITERATIONS


@pytest.mark.parametrize("impl", ["fastlatent.dask", "fastlatent (single machine)"])
@pytest.mark.parametrize("n, d, k, covariance_type", MIXTURE_SHAPES)
def test_mixture_iterations(benchmark, client, impl, n, d, k, covariance_type):
    benchmark.group = f"GaussianMixture EM iteration {n}x{d} K={k} {covariance_type} float32, {N_BLOCKS} blocks"
    benchmark.extra_info["iterations"] = ITERATIONS
    X = data(n, d, np.float32)
    rng = np.random.default_rng(1)
    means = X[rng.choice(n, k, replace=False)]
    precisions = {"full": np.stack([np.eye(d)] * k), "diag": np.ones((k, d))}[covariance_type]
    params = dict(
        covariance_type=covariance_type,
        weights_init=np.full(k, 1 / k),
        means_init=means,
        precisions_init=precisions,
        max_iter=ITERATIONS,
        tol=0,
    )
    if impl == "fastlatent.dask":
        gm, X_fit = fastlatent.dask.GaussianMixture(k, **params), _dask_data(X)
    else:
        gm, X_fit = fastlatent.GaussianMixture(k, **params), X
    fitted = run(benchmark, lambda: gm.fit(X_fit), rounds=2)
    assert fitted.n_iter_ == ITERATIONS
