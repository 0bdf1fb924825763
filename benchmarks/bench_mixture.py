"""GaussianMixture against scikit-learn: seconds per EM iteration, every covariance type.

    pytest benchmarks/bench_mixture.py --benchmark-json=gmm.json
    python benchmarks/report.py gmm.json

Each timed call runs ``ITERATIONS`` EM iterations (tol=0, so none stops early) from the same
'random_from_data' initialisation; the report divides by the iteration count. Floor per
iteration for 'full': about 3*n*k*d^2 flops (E-step through the Cholesky factors, M-step's
weighted outer products).
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import fastlatent
from conftest import data, run

ITERATIONS = 10
# The GMM ops reach the native backends later; time the fastest one that has them.
IMPLEMENTATIONS = [f"fastlatent-{fastlatent.ops.select_backend('auto', np.ones((1, 1)), op='gmm_e_step')[0]}", "sklearn"]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_em_iterations(benchmark, impl, covariance_type):
    n, d, k = 100_000, 32, 16
    benchmark.group = f"GaussianMixture EM iteration {n}x{d} K={k} {covariance_type} float64"
    benchmark.extra_info["iterations"] = ITERATIONS
    X = data(n, d, np.float64)
    params = dict(n_components=k, covariance_type=covariance_type, max_iter=ITERATIONS, tol=0,
                  init_params="random_from_data", random_state=0)
    if impl == "sklearn":
        gmm = SkGaussianMixture(**params)
    else:
        gmm = fastlatent.GaussianMixture(backend=impl.removeprefix("fastlatent-"), **params)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return gmm.fit(X)

    assert run(benchmark, fit, rounds=2).n_iter_ == ITERATIONS
