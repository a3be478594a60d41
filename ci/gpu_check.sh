#!/usr/bin/env bash
# The cuda backend on a real NVIDIA GPU: the CUDA tests with the default launch geometry, then
# benchmarks/gpu_bench.py (linear_forward vs cuBLAS SGEMM with TF32 off, adam_update vs PyTorch's
# fused Adam and the copy bandwidth), ending with a table of ratios.
#
#   bash ci/gpu_check.sh [--quick] [--sweep]     # extra arguments go to gpu_bench.py
#
# Needs: numba with numba-cuda, PyTorch with CUDA (baselines), pytest; CuPy is used when present.
# Runs from the source tree (PYTHONPATH), so nothing is installed. Set OUT to keep the logs.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$(mktemp -d)}"
# ci/numpy_compat: aliases for NumPy names that an older numba-cuda still registers (see the file)
export PYTHONPATH="$PWD:$PWD/ci/numpy_compat${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
python3 -c "import numba, numba_cuda, numpy; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)" || true
python3 -c "from numba import cuda; d = cuda.get_current_device(); print('numba sees', d.name, 'cc', d.compute_capability)"
status=0
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/gpu_tests.log" || status=$?
python3 benchmarks/gpu_bench.py --json "$out/gpu_bench.json" "$@" 2>&1 | tee "$out/gpu_bench.log" || status=$?
exit $status
