#!/usr/bin/env bash
# Issue 19's one prepared GPU run: every GPU check in one command that ends within
# DEADLINE_S (default 285 s) on a bare H100/H200, cold caches included. Everything lands
# in $OUT (default benchmarks/gpu_out), five files, as the device tool returns at most
# eight: run.log (every phase's output), summary.txt (each phase's outcome and seconds),
# results_gpu.csv (the rows, flushed as measured), results_gpu.md and gpu_speedup.png.
#
#   bash benchmarks/run_gpu.sh          # the one-shot run
#   bash benchmarks/run_gpu.sh --full   # the long sweep (bench_gpu.py --full), within 570 s
#   COMMIT=abc123 bash benchmarks/run_gpu.sh   # the commit the rows name, over what git
#                                              # says (a copied .git may be stale or absent)
#
# Phases, in order, with the seconds estimated for a bare H100 (not measured: no GPU run
# has happened yet; summary.txt gives the real ones). Each is bounded by its own limit and
# by the deadline less RESERVE_S kept for the report, so a hang costs one phase, not the
# run; one that fails or is cut is noted and the next runs. The script exits 0: what the
# phases left in $OUT is the result.
#   gpu       ~1   nvidia-smi
#   build     ~50  the C++ extension, in place: importing fire_kernels would otherwise build
#                  it just in time in every phase, though the GPU run uses none of its kernels
#   probe     ~30  versions; the largest configs compiled (12 Triton kernels) and run once,
#                  fp16 and fp32, against float64, outputs poisoned with NaN
#   tests     ~40  the CUDA tests: CUDA-only, module, op and compile tests
#   bench     ~40  bench_gpu.py fires network (6 more Triton kernels; sparse with --full)
#   autotune  <=75 bench_gpu.py autotune: torch.compile max-autotune (cold compiles of ~15-30 s
#                  each), two layers at batch 256 then 1, as far as its limit allows
#   report    ~8   bench_gpu.py report: results_gpu.md and gpu_speedup.png, printed last
set -uo pipefail
cd "$(dirname "$0")/.."
full=0
[[ "${1:-}" == --full ]] && full=1
out="${OUT:-benchmarks/gpu_out}"
deadline="${DEADLINE_S:-$((full ? 570 : 285))}"
reserve="${RESERVE_S:-25}"
# The device machine's Python is python3 (there may be no `python`).
export PYTHON="${PYTHON:-python3}" PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
: >"$out/run.log"
: >"$out/summary.txt"

phase() {  # phase NAME CAP COMMAND...: COMMAND for at most CAP seconds, and never past the
           # deadline (less the report's reserve), its output appended to run.log
  local name=$1 cap=$2 keep=$reserve
  shift 2
  [[ $name == report ]] && keep=0
  local limit=$((deadline - keep - SECONDS))
  ((cap < limit)) && limit=$cap
  if ((limit < 5)); then
    echo "$name: skipped, the deadline is near" | tee -a "$out/summary.txt"
    return
  fi
  echo "== $name: at most $limit s" | tee -a "$out/run.log"
  local start=$SECONDS from
  from=$(stat -c %s "$out/run.log")
  # A file, not a pipe: a process that outlived its phase could hold a pipe open.
  # timeout signals the command's whole process group (pytest's and inductor's workers).
  timeout -k 5 "$limit" "$@" >>"$out/run.log" 2>&1
  local rc=$? outcome
  case $rc in
    0) outcome=ok ;;
    124 | 137) outcome="cut at its limit" ;;
    *) outcome="failed (exit $rc)" ;;
  esac
  tail -c +$((from + 1)) "$out/run.log" | tail -n 12 | cut -c 1-240
  echo "$name: $outcome after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

# The CUDA-only tests (named cuda), test_triton.py's module, gradient and host-sync tests,
# and the Triton cases of the weight-source and hardening tests: on a GPU, all on CUDA.
# In parallel where pytest-xdist is installed: compiling kernels is most of their time.
run_tests() {
  local opts=()
  "$PYTHON" -c "import xdist" 2>/dev/null && opts+=(-n 8)
  "$PYTHON" -c "import pytest_timeout" 2>/dev/null && opts+=(--timeout 120)
  "$PYTHON" -m pytest -q -rs -p no:cacheprovider "${opts[@]}" \
    tests/test_triton.py tests/test_weight_sources.py tests/test_hardening.py \
    -k "cuda or module or gradients or host_sync or (triton and not test_triton.py)"
}
export -f run_tests

bench=("$PYTHON" benchmarks/bench_gpu.py --out "$out" --run-id "$(date +%Y%m%dT%H%M%S)-$$")
measured=(fires network)
((full)) && bench+=(--full) && measured+=(sparse)
phase gpu 30 bash -c "nvidia-smi && nvidia-smi --format=csv \
  --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu"
phase build 150 env MAX_JOBS="$(nproc)" "$PYTHON" setup.py build_ext --inplace
phase probe 75 env FIRE_KERNELS_DEBUG_NAN_FILL=1 "${bench[@]}" probe
phase tests 75 bash -c run_tests
phase bench $((full ? 400 : 110)) "${bench[@]}" "${measured[@]}"
phase autotune $((full ? 150 : 75)) "${bench[@]}" autotune
phase report 60 "${bench[@]}" report
echo "== summary ($SECONDS s)"
cat "$out/summary.txt"
[[ -f "$out/results_gpu.md" ]] && cat "$out/results_gpu.md"
exit 0
