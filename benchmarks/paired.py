"""Paired timings on a noisy machine: fastlatent and scikit-learn fits alternate, five pairs,
medians and the range of the paired ratios (a slow spell hits both sides of a pair).

    python benchmarks/paired.py mixture     # GaussianMixture EM iterations, 100,000x32, K=16
    python benchmarks/paired.py mixture float32   # the same on float32 data
    python benchmarks/paired.py kmeans      # KMeans Lloyd iterations at bench_kmeans.py's shapes
    python benchmarks/paired.py kmeans sklearnex  # the same against scikit-learn-intelex

Each fit runs 10 iterations (tol=0, the same initialisation on both sides); times are per
iteration. pytest-benchmark (bench_mixture.py, bench_kmeans.py) times each side in a block.
"""

import statistics
import sys
import time
import warnings

import numpy as np
from sklearn.cluster import KMeans as SkKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import fastlatent

ITERATIONS, PAIRS = 10, 5


def paired(name, ours, theirs, peer="scikit-learn"):
    ours()  # warm-up
    times = []
    for _ in range(PAIRS):
        pair = []
        for fit in (ours, theirs):
            start = time.perf_counter()
            fit()
            pair.append((time.perf_counter() - start) / ITERATIONS)
        times.append(pair)
    a = statistics.median(t[0] for t in times)
    b = statistics.median(t[1] for t in times)
    ratios = [t[1] / t[0] for t in times]
    print(f"{name}: fastlatent {a * 1e3:.1f} ms, {peer} {b * 1e3:.1f} ms per iteration, "
          f"ratio {b / a:.2f} (pairs {min(ratios):.1f}-{max(ratios):.1f})")


def mixture(dtype="float64"):
    X = np.random.default_rng(0).standard_normal((100_000, 32)).astype(dtype)
    for covariance_type in ("full", "tied", "diag", "spherical"):
        params = dict(n_components=16, covariance_type=covariance_type, max_iter=ITERATIONS, tol=0,
                      init_params="random_from_data", random_state=0)
        paired(f"GaussianMixture {covariance_type} 100000x32 K=16 {dtype}",
               lambda: fastlatent.GaussianMixture(**params).fit(X), lambda: SkGaussianMixture(**params).fit(X))
    # The image-embedding workflow's model (../shared/WORKFLOWS.md): tied, 40 components.
    X = np.random.default_rng(0).standard_normal((100_000, 128))
    for dtype in (np.float64, np.float32):
        Xd = X.astype(dtype)
        params = dict(n_components=40, covariance_type="tied", max_iter=ITERATIONS, tol=0,
                      init_params="random_from_data", random_state=0)
        paired(f"GaussianMixture tied 100000x128 K=40 {np.dtype(dtype).name}",
               lambda: fastlatent.GaussianMixture(**params).fit(Xd), lambda: SkGaussianMixture(**params).fit(Xd))


def kmeans(peer="sklearn"):
    """``python benchmarks/paired.py kmeans sklearnex`` pairs with scikit-learn-intelex instead."""
    if peer == "sklearnex":
        from sklearnex.cluster import KMeans as PeerKMeans
    else:
        PeerKMeans = SkKMeans
    for n, d, k in ((100_000, 64, 16), (100_000, 128, 256), (1_000_000, 64, 64)):
        X = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
        params = dict(init=X[:k].copy(), n_init=1, max_iter=ITERATIONS, tol=0)
        paired(f"KMeans {n}x{d} K={k} float32", lambda: fastlatent.KMeans(k, **params).fit(X),
               lambda: PeerKMeans(k, **params).fit(X), "scikit-learn" if peer == "sklearn" else peer)


if __name__ == "__main__":
    warnings.simplefilter("ignore", ConvergenceWarning)
    {"mixture": mixture, "kmeans": kmeans}[sys.argv[1] if len(sys.argv) > 1 else "mixture"](*sys.argv[2:])
