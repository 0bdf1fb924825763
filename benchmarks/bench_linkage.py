"""Hierarchical clustering against scikit-learn and fastcluster: time and peak memory.

    pytest benchmarks/bench_linkage.py --benchmark-json=linkage.json
    python benchmarks/bench_linkage.py linkage.json     # the table: seconds, peak MB, ratios

Each case runs in a fresh Python process (so that one case's memory does not count in the
next): the child builds the data and imports, resets its peak resident size (``5`` into
/proc/self/clear_refs), runs the clustering once and reports the call's wall time, the peak
resident size during the call (VmHWM, imports and data included) and how far it rose above the
resident size before the call (what the call itself added). pytest-benchmark times the whole child (start-up included);
the table uses the child's own figures. One round per case: scikit-learn's Ward of 20,000 x 64
takes ~45 s.

Implementations: ``fastlatent-<backend>`` (``fastlatent.linkage``), ``sklearn``
(``AgglomerativeClustering(linkage=...).fit``, which builds the same full tree), ``fastcluster``
(``linkage_vector``, its memory-saving O(n d) routine, when ``pip install fastcluster`` is there:
the optional ``bench`` extra). Cases: 20,000 x 64 Ward and single for all; 100,000 x 64 Ward and
single for fastlatent alone (scikit-learn would need ~40 GB). FASTLATENT_BENCH_LARGE=0 skips them.
Data: standard normal float64 (random data has no clusters to exploit: a worst case for the
nearest-neighbour chain, whose chains are longest there).

Floor: the Ward chain makes ~3 nearest-neighbour searches per merge over the m clusters still
active, ~3 n^2/2 distance evaluations of d multiply-adds: 3.8e10 at 20,000 x 64, a pass over
m*d float32 each (Ward screens in float32). Prim's single linkage: n^2/2 distances, 1.3e10
multiply-adds in float64.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import fastlatent_backends

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    impl, method, n, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    X = np.random.default_rng(0).standard_normal((n, d))
    if impl == "sklearn":
        from sklearn.cluster import AgglomerativeClustering
        call = lambda: AgglomerativeClustering(n_clusters=2, linkage=method).fit(X)
    elif impl == "fastcluster":
        import fastcluster
        call = lambda: fastcluster.linkage_vector(X, method=method)
    else:
        import fastlatent
        backend = impl.removeprefix("fastlatent-")
        call = lambda: fastlatent.linkage(X, method, backend=backend)
    def status(field):  # kB, from /proc/self/status
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident size
    before = status("VmRSS")
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    peak = status("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "extra_mb": (peak - before) / 1024}))
    """
)


def _have(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def measure(impl, method, n, d):
    """(seconds, peak MB, MB above the pre-call peak) of one clustering in a fresh process."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, impl, method, str(n), str(d)],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


PEERS = ["sklearn"] + (["fastcluster"] if _have("fastcluster") else [])
IMPLEMENTATIONS = [f"fastlatent-{b}" for b in fastlatent_backends()] + PEERS
LARGE = os.environ.get("FASTLATENT_BENCH_LARGE", "1") != "0"


def _case(benchmark, impl, method, n, d):
    benchmark.group = f"linkage {method} {n}x{d} float64"
    result = benchmark.pedantic(measure, args=(impl, method, n, d), rounds=1, iterations=1)
    benchmark.extra_info.update(result)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("method", ["ward", "single"])
def test_linkage_20000x64(benchmark, impl, method):
    _case(benchmark, impl, method, 20_000, 64)


@pytest.mark.skipif(not LARGE, reason="FASTLATENT_BENCH_LARGE=0")
@pytest.mark.parametrize("impl", [f"fastlatent-{b}" for b in fastlatent_backends()])
@pytest.mark.parametrize("method", ["ward", "single"])
def test_linkage_100000x64(benchmark, impl, method):
    _case(benchmark, impl, method, 100_000, 64)


def table(path):
    """Markdown table from a --benchmark-json file: the child's seconds and memory, ratios."""
    with open(path) as f:
        report = json.load(f)
    rows = {}
    for bench in report["benchmarks"]:
        rows.setdefault(bench["group"], {})[bench["params"]["impl"]] = bench["extra_info"]
    print("| case | implementation | seconds | peak RSS (MB) | added by the call (MB) | vs sklearn | vs fastcluster |")
    print("|---|---|---|---|---|---|---|")
    for group, impls in rows.items():
        for impl, info in sorted(impls.items(), key=lambda kv: kv[1]["seconds"]):
            ratios = []
            for peer in ("sklearn", "fastcluster"):
                base = impls.get(peer)
                ratios.append(f"{base['seconds'] / info['seconds']:.1f}x" if base else "-")
            print(f"| {group} | {impl} | {info['seconds']:.2f} | {info['peak_mb']:.0f} | "
                  f"{info['extra_mb']:.0f} | {ratios[0]} | {ratios[1]} |")


if __name__ == "__main__":
    table(sys.argv[1])
