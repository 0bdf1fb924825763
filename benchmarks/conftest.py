import os

import numpy as np
from fastlatent.backends import is_available


def data(n, d, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


def fastlatent_backends():
    """Backends to time: the native ones by default (Numba and NumPy are fallbacks and
    references, and slow at these sizes); FASTLATENT_BENCH_BACKENDS=cpu,numba picks others."""
    chosen = os.environ.get("FASTLATENT_BENCH_BACKENDS", "cuda,cpu").split(",")
    return [b for b in chosen if is_available(b)]


def run(benchmark, fn, rounds=3):
    """Time ``fn`` (one warm-up call, then ``rounds`` timed calls) and return its result."""
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
