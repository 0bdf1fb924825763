"""Fits on a native backend run BLAS on one thread (fastlatent/_threads.py), and give the
threads back afterwards; the NumPy backend keeps them."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastlatent as fl


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_kmeans_fit_limits_blas_threads_only_while_it_runs(rng):
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library visible to threadpoolctl")
    X = rng.normal(size=(50, 3))
    seen = {}

    def init(X, n_clusters, random_state):  # called inside the fit
        seen["native"] = _blas_threads()
        return X[:n_clusters]

    fl.KMeans(2, init=init, n_init=1, backend="cpu" if "cpu" in fl.available_backends() else "numba").fit(X)
    if "cpu" in fl.available_backends():
        assert seen["native"] == [1] * len(before)
    fl.KMeans(2, init=init, n_init=1, backend="numpy").fit(X)
    assert seen["native"] == before
    assert _blas_threads() == before
