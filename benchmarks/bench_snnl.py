"""Soft nearest neighbour loss: fastlatent's streaming kernels against the torch B x B reference.

    pytest benchmarks/bench_snnl.py --benchmark-json=snnl.json     # times, side by side
    python benchmarks/report.py snnl.json
    python benchmarks/bench_snnl.py [--sizes 4096,32768]           # time and peak memory table

The torch reference is the published formula (Agarap's pt-snnl, cleverhans) on a B x B matrix:
distances by a matrix product, exp, masks, row sums, autograd for the gradient; torch uses all
the cores (torch.set_num_threads(os.cpu_count())). Floor: 2 B^2 D flops for the loss, 6 B^2 D
with the gradient (two passes over the tiles plus the gradient product), plus B^2 (loss) or
3 B^2 (gradient) exponentials; ~150-190 GFLOP/s float32 on the 2-core reference machine.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

import fastlatent
from fastlatent import ops

try:
    from conftest import fastlatent_backends, run
except ImportError:  # run as a script from elsewhere
    sys.path.insert(0, os.path.dirname(__file__))
    from conftest import fastlatent_backends, run

D = 128
TEMPERATURE = 1.0


def batch(n, d=D, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, n_classes, n)


def torch_reference(X, y, metric, gradient):
    """The B x B torch implementation users run today (returns the loss, and grad if asked)."""
    import torch

    Xt = torch.from_numpy(X).requires_grad_(gradient)
    if metric == "cosine":
        U = torch.nn.functional.normalize(Xt, dim=1)
        distances = 1 - U @ U.T
    else:
        squared = (Xt * Xt).sum(1)
        distances = (squared[:, None] + squared[None, :] - 2 * Xt @ Xt.T).clamp_min(0)
    yt = torch.from_numpy(y)
    same = (yt[:, None] == yt[None, :]).to(Xt.dtype)
    weights = torch.exp(-distances / TEMPERATURE) * (1 - torch.eye(len(X), dtype=Xt.dtype))
    pick = weights / (1e-5 + weights.sum(1, keepdim=True))
    loss = torch.mean(-torch.log(1e-5 + (pick * same).sum(1)))
    if gradient:
        loss.backward()
        return loss.item(), Xt.grad
    return loss.item()


def ours(X, y, metric, gradient, backend="cpu"):
    return ops.snnl_loss_and_grad(X, y, TEMPERATURE, metric, gradient=gradient, backend=backend)


IMPLEMENTATIONS = [f"fastlatent-{b}" for b in fastlatent_backends()] + ["torch"]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "forward+backward"])
def test_snnl(benchmark, impl, metric, gradient):
    n = 4096
    benchmark.group = f"SNNL {'forward+backward' if gradient else 'forward'} {metric} B={n} D={D} float32"
    X, y = batch(n)
    if impl == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(os.cpu_count())
        run(benchmark, lambda: torch_reference(X, y, metric, gradient))
    else:
        run(benchmark, lambda: ours(X, y, metric, gradient, impl.removeprefix("fastlatent-")))


# ---- script mode: time and peak resident memory, one process per measurement ----------------

def _measure(impl, n, metric, gradient, repeats):
    X, y = batch(n)
    fn = (lambda: torch_reference(X, y, metric, gradient)) if impl == "torch" else (
        lambda: ours(X, y, metric, gradient, impl))
    if impl == "torch":
        import torch

        torch.set_num_threads(os.cpu_count())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, after data and imports
    fn()  # warm-up (and the peak)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(f"{min(times)} {(peak - base) / 1024}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4096,32768")
    parser.add_argument("--impls", default="cpu,torch")
    parser.add_argument("--metric", default="sqeuclidean")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        impl, n, metric, gradient = args.child
        _measure(impl, int(n), metric, gradient == "1", args.repeats)
        return
    print(f"load average: {os.getloadavg()}, {os.cpu_count()} cores, D={D}, float32, {args.metric}")
    print("| B | pass | implementation | best of %d (s) | peak extra memory (MiB) | GFLOP/s |" % args.repeats)
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        for gradient in (False, True):
            for impl in args.impls.split(","):
                if impl == "torch" and n * n * 4 * 8 > 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"):
                    print(f"| {n} | {'fwd+bwd' if gradient else 'fwd'} | torch | skipped (B x B does not fit) | | |")
                    continue
                out = subprocess.run(
                    [sys.executable, __file__, "--child", impl, str(n), args.metric, "1" if gradient else "0",
                     "--repeats", str(args.repeats)],
                    capture_output=True, text=True, check=True,
                ).stdout.split()
                seconds, mib = float(out[0]), float(out[1])
                flops = (6 if gradient else 2) * n * n * D
                print(f"| {n} | {'fwd+bwd' if gradient else 'fwd'} | {impl} | {seconds:.3f} | {mib:.0f} | "
                      f"{flops / seconds / 1e9:.0f} |", flush=True)


if __name__ == "__main__":
    main()
