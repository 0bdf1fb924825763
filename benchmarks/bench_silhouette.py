"""silhouette_score against scikit-learn, the issue's anchor shape: N=20,000, D=64, 10 clusters.

    pytest benchmarks/bench_silhouette.py --benchmark-json=silhouette.json
    python benchmarks/report.py silhouette.json

Floor: n^2 d / 2 pair terms, each computed once for both of its rows: n^2 d flops
(2.6e10 here: 0.36 s at 71 GFLOP/s float64), plus a sqrt per pair for euclidean.
"""

import numpy as np
import pytest
from sklearn.metrics import silhouette_score as sk_silhouette_score

import fastlatent
from conftest import data, fastlatent_backends, run

IMPLEMENTATIONS = [f"fastlatent-{b}" for b in fastlatent_backends()] + ["sklearn"]
N, D, K = 20_000, 64, 10


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_silhouette_score(benchmark, impl, metric, dtype):
    benchmark.group = f"silhouette_score {N}x{D} K={K} {metric} {np.dtype(dtype).name}"
    X = data(N, D, dtype)
    labels = np.random.default_rng(1).integers(0, K, N)
    if impl == "sklearn":
        score = run(benchmark, lambda: sk_silhouette_score(X, labels, metric=metric), rounds=1)
    else:
        backend = impl.removeprefix("fastlatent-")
        score = run(benchmark, lambda: fastlatent.silhouette_score(X, labels, metric=metric, backend=backend))
    assert -1.0 <= score <= 1.0
