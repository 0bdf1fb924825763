#!/usr/bin/env bash
# Everything a session with a GPU should run, in one call of the device tool (its image has
# torch, CuPy, Numba, scikit-learn, pytest, pytest-benchmark, hypothesis; nothing downloads):
#   run(command="bash benchmarks/gpu_session.sh", timeout_s=600)
# Builds in place (16 cores), prints the backends, runs the gpu-marked tests, then the GPU
# benchmarks; logs and the benchmark JSON go to $OUT (or ./gpu-out without the device tool).
# STAGES="tests bench" (default both) picks stages; BENCH="bench_precision.py ..." the files.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=16
STAGES=${STAGES-tests bench}
BENCH=${BENCH:-bench_precision.py bench_kmeans.py bench_distances.py bench_mixture.py bench_silhouette.py bench_snnl.py}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
time python3 -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
python3 -c "import fastlatent; fastlatent.show_backends()" | tee -a "$OUT/gpu.txt"

if [[ " $STAGES " == *" tests "* ]]; then
  timeout 300 python3 -m pytest tests -m gpu -q -rf --maxfail=40 -p no:cacheprovider 2>&1 \
    | tee "$OUT/gpu_tests.log" | tail -60
fi
if [[ " $STAGES " == *" bench "* ]]; then
  # fastlatent on cuda and the GPU peers only (the CPU peers were timed on the CPU machine).
  FASTLATENT_BENCH_BACKENDS=cuda timeout 240 python3 -m pytest $(printf 'benchmarks/%s ' $BENCH) -q \
    -k "not sklearn and not scipy and not fastcluster" -p no:cacheprovider \
    --benchmark-json="$OUT/gpu_bench.json" >"$OUT/gpu_bench.log" 2>&1
  tail -5 "$OUT/gpu_bench.log"
  python3 benchmarks/report.py "$OUT/gpu_bench.json" | tee "$OUT/gpu_bench.md"
fi
