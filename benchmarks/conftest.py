import numpy as np
from fastlatent.backends import is_available


def data(n, d, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


def fastlatent_backends():
    """Backends worth timing here (the NumPy reference is a correctness tool, not a peer)."""
    return [b for b in ("cuda", "cpu", "numba") if is_available(b)]


def run(benchmark, fn, rounds=3):
    """Time ``fn`` (one warm-up call, then ``rounds`` timed calls) and return its result."""
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
