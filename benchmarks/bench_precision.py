"""GPU only: KMeans Lloyd iterations in each precision, data on the device (issue #9's shapes).

    pytest benchmarks/bench_precision.py --benchmark-json=precision.json
    python benchmarks/report.py precision.json

Every implementation runs ``ITERATIONS`` iterations from the same initial centres on the same
CuPy array; the torch baseline is its GEMM + argmin + update per iteration (float32, TF32 off).
Flash-KMeans and TorchGMM (issue #9's peers) are not wired in yet. Skipped without the cuda
backend; never run so far (no GPU was lent to the session that wrote it). The exact-fp32 floor
per iteration: max(2 N K D / 51.5 TFLOP/s, 4 N D / 3.0 TB/s) on an H100.
"""

import numpy as np
import pytest

import fastlatent
from conftest import run
from fastlatent.backends import is_available

pytestmark = pytest.mark.skipif(not is_available("cuda"), reason="needs the cuda backend")

ITERATIONS = 10
SHAPES = [(1_000_000, 64, 64), (1_000_000, 128, 1024), (10_000_000, 64, 256), (1_000_000, 768, 1000)]
IMPLEMENTATIONS = ["fastlatent-exact", "fastlatent-tf32", "fastlatent-bf16", "torch"]


def _device_data(n, d):
    import cupy

    return cupy.random.default_rng(0).standard_normal((n, d), dtype=cupy.float32)


def _torch_lloyd(X, init, iterations):
    torch = pytest.importorskip("torch")
    torch.backends.cuda.matmul.allow_tf32 = False
    X = torch.from_dlpack(X)
    centers = torch.from_dlpack(init).clone()
    for _ in range(iterations):
        keys = (centers * centers).sum(1)[None, :] - 2 * X @ centers.T
        labels = keys.argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=centers.shape[0]).clamp(min=1)
        centers = sums / counts[:, None]
    torch.cuda.synchronize()
    return centers


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_lloyd_iterations_on_the_gpu(benchmark, impl, n, d, k):
    import cupy

    benchmark.group = f"KMeans Lloyd iteration on the GPU {n}x{d} K={k} float32"
    benchmark.extra_info["iterations"] = ITERATIONS
    X = _device_data(n, d)
    init = X[:k].copy()
    if impl == "torch":
        run(benchmark, lambda: _torch_lloyd(X, init, ITERATIONS))
    else:
        precision = impl.removeprefix("fastlatent-")
        km = fastlatent.KMeans(k, init=init, n_init=1, max_iter=ITERATIONS, tol=0, precision=precision)

        def fit():
            fitted = km.fit(X)
            cupy.cuda.get_current_stream().synchronize()
            return fitted

        assert run(benchmark, fit).n_iter_ == ITERATIONS
