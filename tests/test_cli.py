"""The fire-kernels command and the runnable examples in python/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fire_kernels as fk
from fire_kernels.benchmarking import FIELDS
from fire_kernels.cli import main

ROOT = Path(__file__).resolve().parent.parent
needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_help_names_every_command():
    proc = run("-m", "fire_kernels", "--help")
    assert proc.returncode == 0
    for command in ("demo", "bench", "info"):
        assert command in proc.stdout
    for command in ("demo", "bench"):
        assert "usage: fire-kernels " + command in run("-m", "fire_kernels", command, "--help").stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["bench", "--batches", "0"], "--batches: expected a positive integer, got 0"),
        (["bench", "--sparsities", "100"], "expected a sparsity in [0, 100), got 100"),
        (["bench", "--layers", "fire42"], "argument --layers: invalid choice: 'fire42'"),
        (["demo", "--threads", "two"], "expected a positive integer, got 'two'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message):
    proc = run("-m", "fire_kernels", *argv)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "fire_kernels" in out and "threads:" in out and "CUDA:" in out and "Triton" in out
    if fk._extension.C is not None:
        assert fk.cpu_isa() in out


@needs_cpp
def test_demo_checks_and_reports(capsys):
    assert main(["demo", "--batches", "1", "2", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out
    for name in ("eager PyTorch", "fused dense", "fused, Fires pruned 90%"):
        assert out.count(name) == 2  # one row per batch
    assert "max |fused - eager|" in out and "Fire weights KB" in out


@needs_cpp
def test_demo_loads_a_torchvision_checkpoint(tmp_path, capsys):
    """torchvision's checkpoints are plain state_dicts with its module names: one saved
    from the bundled model (the same layout) must load; anything else is an error."""
    torch.manual_seed(1)
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(fk.squeezenet1_1().state_dict(), path)
    assert main(["demo", "--weights", str(path), "--batches", "1", "--repeats", "2"]) == 0
    assert f"weights from {path}" in capsys.readouterr().out
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    assert main(["demo", "--weights", str(bad), "--batches", "1"]) == 1
    assert "is not a torchvision SqueezeNet checkpoint" in capsys.readouterr().err
    assert main(["demo", "--weights", str(tmp_path / "missing.pth")]) == 1
    assert "no such file" in capsys.readouterr().err


@needs_cpp
def test_bench_table_csv_and_plot(tmp_path, capsys):
    csv, png = tmp_path / "bench.csv", tmp_path / "bench.png"
    argv = ["bench", "--layers", "v1_1-fire6", "--sparsities", "0", "90", "--repeats", "2",
            "--candidates", "eager_nchw", "fused_nchw", "sparse_cl", "--csv", str(csv),
            "--plot", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "geomean batch 1, 90%: fused_nchw" in out
    lines = csv.read_text().splitlines()
    assert lines[0] == ",".join(FIELDS)  # the one schema of every benchmark
    assert len(lines) == 1 + 2 * 3  # two sparsities x three candidates
    assert png.stat().st_size > 10_000
    assert main(argv) == 0  # appends, header once
    assert len(csv.read_text().splitlines()) == 1 + 2 * 2 * 3


@needs_cpp
@pytest.mark.parametrize(
    "script,expected",
    [
        ("swap_into_model.py", "8 Fire modules replaced by FusedFire"),
        ("microbench.py", "fused, 90 % pruned"),
        ("prune_and_run_sparse.py", "pruned 90%: test accuracy"),
    ],
)
def test_examples_run(script, expected):
    proc = run(str(ROOT / "python" / script))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout
    if script == "prune_and_run_sparse.py":
        # The pruned model must still work: at least 90 % of digits right.
        final = [line for line in proc.stdout.splitlines() if line.startswith("pruned 90%")][0]
        assert float(final.split()[-1].rstrip("%")) >= 90.0
