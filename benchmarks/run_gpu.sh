#!/usr/bin/env bash
# The GPU check in one command (issues #4 and #7): the CUDA tests, then the GPU
# benchmark. Everything it prints and writes lands in $OUT (default benchmarks/gpu_out):
# tests.log, bench.log, results_gpu.csv, results_gpu.md, gpu_speedup.png.
# Run from the repository root after `pip install --no-build-isolation -e .`.
set -uo pipefail
out="${OUT:-benchmarks/gpu_out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -m pytest -q tests/test_triton.py tests/test_op.py tests/test_module.py 2>&1 | tee "$out/tests.log"
python benchmarks/bench_gpu.py --csv "$out/results_gpu.csv" --markdown "$out/results_gpu.md" \
  --plot "$out/gpu_speedup.png" "$@" 2>&1 | tee "$out/bench.log"
