"""The one prepared GPU run, checked without a GPU: ``benchmarks/bench_gpu.py --smoke``
end to end (through Triton's interpreter where there is no GPU), and
``benchmarks/run_gpu.sh``: it parses, runs every program under a time limit, and ends
by its deadline, with its report phase, whatever hangs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fire_kernels.benchmarking import FIELDS, read_rows

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent
RUN_GPU = ROOT / "benchmarks" / "run_gpu.sh"
PHASES = ["gpu", "build", "probe", "tests", "bench", "autotune", "report"]


def test_smoke_run_writes_rows_markdown_and_plot(tmp_path):
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--out",
         str(tmp_path), "--run-id", "smoke"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = [line.split()[0] for line in proc.stdout.splitlines()
                if line.startswith(("PASS ", "FAIL "))]
    assert verdicts == ["PASS"] * 4  # the probe: fp16 and fp32, both plans

    with (tmp_path / "results_gpu.csv").open(newline="") as f:
        assert tuple(next(csv.reader(f))) == FIELDS
    rows = read_rows(tmp_path / "results_gpu.csv")
    assert {r["run_id"] for r in rows} == {"smoke"}
    assert all(float(r["value"]) > 0 for r in rows)
    seen = {(r["benchmark"], r["workload"], r["batch"], r["candidate"], r["metric"]) for r in rows}
    for batch in ("1", "8"):
        for cand in ("fused_cl", "eager_nchw", "eager_cl"):
            for metric in ("seconds", "wall_seconds"):
                assert ("bench_gpu/fires", "smoke-fire", batch, cand, metric) in seen
        for cand in ("fused_cl", "eager_cl", "compile_max_autotune"):
            assert ("bench_gpu/autotune", "smoke-fire", batch, cand, "seconds") in seen
        assert ("bench_gpu/probe", "smoke-fire", batch, "fused_cl", "rel_error") in seen
    assert ("bench_gpu/network", "squeezenet1_1", "1", "fused_cl", "seconds") in seen
    assert ("bench_gpu/fires", "device", "", "copy", "bytes_per_second") in seen

    md = (tmp_path / "results_gpu.md").read_text()
    for heading in ("## Probe", "## Fire layers: GPU time", "## Fire layers: wall time",
                    "## SqueezeNet 1.1", "## Against torch.compile max-autotune"):
        assert heading in md
    assert "fused_cl vs eager_cl" in md and "% of roofline" in md
    assert (tmp_path / "gpu_speedup.png").read_bytes().startswith(b"\x89PNG")


def test_run_gpu_sh_parses():
    subprocess.run(["bash", "-n", str(RUN_GPU)], check=True)


def _fakes(tmp_path: Path, **programs: str) -> dict[str, str]:
    """Executables named by the keywords, with those bodies, first on the PATH; the
    environment to run run_gpu.sh with them (and their python3 as its Python)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in programs.items():
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHON": str(bin_dir / "python3"), "OUT": str(tmp_path / "out"),
            "LOG": str(tmp_path / "calls")}


@pytest.mark.parametrize("full", [False, True], ids=["default", "full"])
def test_every_program_runs_under_a_time_limit(tmp_path, full):
    """With ``timeout`` replaced by a stand-in that marks what it starts, every Python
    and nvidia-smi the script starts is marked, within the deadline."""
    env = _fakes(
        tmp_path,
        # timeout [-k SECONDS] LIMIT COMMAND...
        timeout='while [[ $1 == -* ]]; do [[ $1 == -k ]] && shift; shift; done\n'
                'echo "$1" >>"$LOG.limits"; shift\nUNDER_TIMEOUT=1 exec "$@"',
        python3='echo "${UNDER_TIMEOUT:-0} python3 $*" >>"$LOG"',
        **{"nvidia-smi": 'echo "${UNDER_TIMEOUT:-0} nvidia-smi $*" >>"$LOG"'},
    )
    proc = subprocess.run(["bash", str(RUN_GPU), *(["--full"] if full else [])], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls and all(c.startswith("1 ") for c in calls), calls
    text = "\n".join(calls)
    assert "nvidia-smi" in text and "setup.py build_ext --inplace" in text and "-m pytest" in text
    measured = "fires network sparse" if full else "fires network"
    for part in ("probe", measured, "autotune", "report"):
        assert any("bench_gpu.py" in c and c.endswith(part) for c in calls), (part, calls)
    assert all(("--full" in c) == full for c in calls if "bench_gpu.py" in c)
    limits = [int(s) for s in (tmp_path / "calls.limits").read_text().split()]
    assert len(limits) == len(PHASES) and max(limits) <= (570 if full else 285)


def test_hung_phases_are_cut_and_the_report_still_runs(tmp_path):
    """Every program hangs: the script still ends by its deadline with exit status 0,
    summary.txt naming each phase, cut or skipped, the report last."""
    env = _fakes(tmp_path, python3="exec sleep 600", **{"nvidia-smi": "exec sleep 600"})
    env.update(DEADLINE_S="14", RESERVE_S="5")
    start = time.monotonic()
    proc = subprocess.run(["bash", str(RUN_GPU)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - start < 14 + 10
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == PHASES
    assert all("cut at its limit" in line or "skipped" in line for line in summary)
    assert "cut at its limit" in summary[0] and "cut at its limit" in summary[-1]
