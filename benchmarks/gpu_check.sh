#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU (the lent H200) from the repository root,
# with the wheels of benchmarks/gpu_wheels.sh carried in .whl/. Under 10 minutes on one H200:
#   1. the GPU tests on the device: SIMSEARCH_REQUIRE_GPU=1 pytest -m "gpu or cuda", every failure
#      reported, 4 xdist workers where pytest-xdist is installed (every GPU
#      kernel against numpy, the 16-thread concurrency tests, a Collection on the GPU backend);
#   2. benchmarks/bench_gpu.py: text -> signature (>= 2 GB of text), simsearch dedup end to end,
#      exact kNN 1M x 128 with 10k queries; the GPU against numba on this box's cores, same run.
# Everything it prints also goes to $OUT (the device tool's output folder) or ./gpu-check-out.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_check: installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
{
    date -u; nvidia-smi; python3 --version
    python3 -c "import cupy, numba, numba_cuda, numpy; print('cupy', cupy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)"
    python3 -c "from simsearch.backends import get_backend, resolve_backend_name; print(get_backend('cupy').device, '| auto =', resolve_backend_name('auto'))"
} 2>&1 | tee "$out/env.txt"
rc=0
# Every failure is reported (no -x): a device run is scarce, so one broken kernel must not hide the
# next. Each test has its own limit; GPU_TEST_S and GPU_BENCH_S bound the two parts.
xdist=()
python3 -c "import xdist" 2>/dev/null && xdist=(-n "${GPU_TEST_WORKERS:-4}")
SIMSEARCH_REQUIRE_GPU=1 timeout "${GPU_TEST_S:-330}" python3 -m pytest -m "gpu or cuda" -q -p no:cacheprovider \
    "${xdist[@]}" --timeout 120 --tb=short -rfE --durations=15 --junitxml="$out/pytest_gpu.xml" \
    2>&1 | tee "$out/pytest_gpu.txt" || rc=1
timeout "${GPU_BENCH_S:-240}" python3 benchmarks/bench_gpu.py "$@" 2>&1 | tee "$out/bench_gpu.txt" || rc=1
exit "$rc"
