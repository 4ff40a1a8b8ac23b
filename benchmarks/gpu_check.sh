#!/usr/bin/env bash
# One GPU session's checks in one call, at most 9 minutes (each step has its own time limit): environment,
# the kernel and loss tests with the real kernels, the tile tuning at d = 512, the loss benchmark at d = 512.
# Raw output goes to $OUT (default benchmarks/results/gpu_run); copy what matters into benchmarks/results/.
#
#     OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Runs from the repository root on a machine that already has torch with CUDA and triton (no install step:
# the package is used in place through PYTHONPATH). Inf-CL is timed only if `inf_cl` imports there.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu_run}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.current.sm,temperature.gpu --format=csv
  python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/environment.txt"

timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/test_kernels.py tests/test_losses.py 2>&1 \
  | tee "$OUT/gpu_tests.log"
timeout 150 python3 benchmarks/tune_contrastive_blocks.py --B 32768 --d 512 2>&1 | tee "$OUT/tune_d512.md"
timeout 270 python3 benchmarks/bench_contrastive_loss.py --out "$OUT" --dims 512 \
  --fused-batch-sizes 131072 --largest-stop 1048576 --largest-max-seconds 10 2>&1 | tee "$OUT/bench.log"
