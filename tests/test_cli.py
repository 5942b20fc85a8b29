"""The fire-kernels command and the runnable examples in python/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fire_kernels as fk
from fire_kernels import benchmarking, cli
from fire_kernels.benchmarking import FIELDS
from fire_kernels.cli import main
from fire_kernels.int8_ops import INT8_SPARSE_MAX_WORK_DENSITY

ROOT = Path(__file__).resolve().parent.parent
needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


def run(*args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


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


def test_version():
    proc = run("-m", "fire_kernels", "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"fire-kernels {fk.__version__} (torch {torch.__version__})"


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fire_kernels {fk.__version__}: torch {torch.__version__}")
    assert f"threads: {torch.get_num_threads()}" in out and "CUDA:" in out and "Triton" in out
    status = fk._extension.STATUS
    if fk.cpu_kernel_available():
        assert f"C++ kernels: {status.state} ({status.path}, built with torch" in out
        assert (f"ISA in use: {fk.cpu_isa()}; available: {', '.join(fk.available_cpu_isas())}"
                in out)
        c = fk._extension.C
        threshold = INT8_SPARSE_MAX_WORK_DENSITY[c.current_int8_path()]
        assert (f"int8 kernels: {c.current_int8_path()} (sparse at most {threshold:.2f} nonzero "
                f"weight quads); available: {', '.join(c.available_int8_paths())}" in out)
    else:
        assert f"C++ kernels: unavailable ({status.reason})" in out


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fire_kernels"] == fk.__version__ and report["torch"] == str(torch.__version__)
    assert report["threads"] == torch.get_num_threads()
    kernel = report["cpu_kernel"]
    assert kernel["state"] in ("prebuilt", "just-in-time", "unavailable")
    assert kernel["available"] == fk.cpu_kernel_available()
    if fk.cpu_kernel_available():
        assert kernel["isa"] == fk.cpu_isa() and kernel["isas_available"] == fk.available_cpu_isas()
        assert kernel["int8_path"] == fk._extension.C.available_int8_paths()[0]
        assert kernel["int8_sparse_max_work_density"] == INT8_SPARSE_MAX_WORK_DENSITY[
            kernel["int8_path"]]
        assert kernel["built_with_torch"] == str(torch.__version__)
    else:
        assert kernel["reason"] and kernel["isa"] is None
    try:
        import triton
    except ImportError:
        assert report["triton"] is None
    else:
        assert report["triton"] == triton.__version__
    assert set(report["env"]) == {"FIRE_KERNELS_ISA", "ATEN_CPU_CAPABILITY", "FIRE_KERNELS_REQUIRE_CPP"}


def test_info_when_the_extension_is_unavailable(monkeypatch, capsys):
    """It says why; under FIRE_KERNELS_REQUIRE_CPP=1 it also fails, for CI and deployments."""
    status = fk._extension.Status("unavailable", None, None, "simulated: no compiler")
    monkeypatch.setattr(fk._extension, "C", None)
    monkeypatch.setattr(fk._extension, "LOAD_ERROR", status.reason)
    monkeypatch.setattr(fk._extension, "STATUS", status)
    monkeypatch.delenv("FIRE_KERNELS_REQUIRE_CPP", raising=False)
    assert main(["info"]) == 0
    assert "C++ kernels: unavailable (simulated: no compiler)" in capsys.readouterr().out
    monkeypatch.setenv("FIRE_KERNELS_REQUIRE_CPP", "1")
    assert main(["info", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["cpu_kernel"]["reason"] == "simulated: no compiler"
    assert captured.err == ("fire-kernels: error: FIRE_KERNELS_REQUIRE_CPP=1, but the C++ kernels "
                            "are unavailable\n")


@needs_cpp
@pytest.mark.parametrize("isa,message", [
    ("mmx", "FIRE_KERNELS_ISA='mmx': unknown ISA 'mmx'; expected 'auto' or one of: "),
    ("AVX2", "FIRE_KERNELS_ISA='AVX2': unknown ISA 'AVX2'"),
])
def test_bad_isa_under_info_is_one_line(isa, message):
    proc = run("-m", "fire_kernels", "info", env={"FIRE_KERNELS_ISA": isa})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"fire-kernels: error: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_an_unexpected_error_is_one_line_unless_traceback_is_asked(monkeypatch, capsys):
    def broken(args):
        raise ValueError("something broke\nsecond line")

    monkeypatch.setattr(cli, "_info", broken)
    assert main(["info"]) == 1
    assert capsys.readouterr().err == ("fire-kernels: error: ValueError: something broke "
                                       "(--traceback shows where)\n")
    with pytest.raises(ValueError, match="something broke"):
        main(["--traceback", "info"])


@needs_cpp
def test_demo_checks_and_reports(capsys):
    """Rows a newcomer can read: time, speedup, the error against eager PyTorch on the
    same weights (no top-1 agreement of random weights), one line saying what it means."""
    torch.set_num_threads(1)  # the default is PyTorch's own: the demo must keep it
    assert main(["demo", "--batches", "1", "2", "--repeats", "2"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "RANDOM weights" in out and ", 1 threads, C++ kernels: " in out
    assert torch.get_num_threads() == 1
    for name in ("eager PyTorch", "fused network", "fused, pruned 90%", "int8 network",
                 "int8, pruned 90%"):
        assert len([line for line in out.splitlines() if line.startswith(name)]) == 2  # per batch
    assert out.count("rel. error") == 3 and "weights KB" in out and "top-1" not in out
    kb = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("fused")]
    assert kb[1] < kb[0] / 3  # the pruned network's weights, packed sparse
    rows = [line.split() for line in out.splitlines() if line.startswith("fused")]
    assert all(float(row[-2]) < 1e-4 for row in rows), rows  # the error column
    int8 = [line.split() for line in out.splitlines() if line.startswith("int8")]
    assert all(1e-4 < float(row[-2]) < 0.1 for row in int8), int8  # int8 rounding
    assert all(float(row[-1]) < kb[0] / 3 for row in int8)  # a byte a weight, not four
    assert [line for line in out.splitlines() if line.startswith("rel. error: ")]
    assert "[" not in captured.err  # no progress bar off a terminal


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
def test_bench_writes_no_file_unless_asked_and_draws_progress_only_on_a_terminal(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    argv = ["bench", "--layers", "v1_1-fire6", "--repeats", "2", "--candidates", "eager_nchw",
            "fused_nchw"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "1 threads; ms per call" in captured.out and torch.get_num_threads() == 1
    assert list(tmp_path.iterdir()) == [] and captured.err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    assert "] 1/1 done" in capsys.readouterr().err


def test_bench_plot_without_matplotlib_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["bench", "--candidates", "eager_nchw", "--plot", str(tmp_path / "p.png")]) == 1
    assert capsys.readouterr().err == ("fire-kernels: error: --plot needs matplotlib (pip install "
                                       "matplotlib, or fire_kernels[bench])\n")


def test_bench_candidate_that_cannot_run_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["bench", "--candidates", "eager_nchw", "onnxruntime"]) == 1
    assert capsys.readouterr().err == (
        "fire-kernels: error: candidate onnxruntime needs the onnxruntime package (pip install "
        "onnx onnxruntime, or fire_kernels[bench])\n")
    monkeypatch.setattr(fk._extension, "C", None)
    monkeypatch.setattr(fk._extension, "LOAD_ERROR", "simulated")
    assert main(["bench", "--candidates", "eager_nchw", "fused_cl"]) == 1
    assert capsys.readouterr().err == ("fire-kernels: error: candidate fused_cl needs the C++ "
                                       "kernels, which are unavailable: simulated (see "
                                       "fire-kernels info)\n")
    assert main(["demo"]) == 1
    assert "error: the demo needs the C++ kernels" in capsys.readouterr().err


@needs_cpp
def test_bench_candidate_that_disagrees_with_eager_is_one_line(monkeypatch, capsys):
    class Wrong(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x) + 1

    monkeypatch.setattr(benchmarking, "fused_copy", lambda model, sparse="auto": Wrong(model))
    assert main(["bench", "--layers", "v1_1-fire9", "--repeats", "2", "--candidates",
                 "eager_nchw", "fused_nchw"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fire-kernels: error: v1_1-fire9, batch 1, sparsity 0%: fused_nchw "
                          "disagrees with eager PyTorch: rel. error")
    assert len(err.splitlines()) == 1


@needs_cpp
def test_bench_table_csv_and_plot(tmp_path, capsys):
    csv, png = tmp_path / "bench.csv", tmp_path / "bench.png"
    argv = ["bench", "--layers", "v1_1-fire6", "--sparsities", "0", "90", "--repeats", "2",
            "--candidates", "eager_nchw", "fused_nchw", "sparse_cl", "--csv", str(csv),
            "--plot", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "geomean over the layers, batch 1, 90%: fused_nchw" in out
    lines = csv.read_text().splitlines()
    assert lines[0] == ",".join(FIELDS)  # the one schema of every benchmark
    assert len(lines) == 1 + 2 * 3  # two sparsities x three candidates
    assert png.stat().st_size > 10_000
    assert main(argv) == 0  # appends, header once
    assert len(csv.read_text().splitlines()) == 1 + 2 * 2 * 3


@needs_cpp
def test_bench_whole_networks(tmp_path, capsys):
    """--networks alone: whole SqueezeNets (no default layers), dense and pruned, in the
    table and the CSV (one row per candidate), with fuse_network among the candidates."""
    csv = tmp_path / "bench.csv"
    assert main(["bench", "--networks", "squeezenet1_1", "--sparsities", "0", "90",
                 "--repeats", "2", "--candidates", "eager_cl", "fused_network",
                 "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("squeezenet1_1")]
    assert [row[2] for row in rows] == ["0%", "90%"] and "v1_1-fire2" not in out
    assert "geomean" not in out  # over layers only
    assert len(csv.read_text().splitlines()) == 1 + 2 * 2


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
        # Quantized, each stays within a point of its float model (same test images).
        acc = {m[1]: float(m[2]) for m in re.finditer(
            r"^ *([a-z0-9 ]+): test accuracy ([0-9.]+)%, batch 64", proc.stdout, re.M)}
        assert set(acc) == {"dense", "pruned", "dense int8", "pruned int8"}, proc.stdout
        assert abs(acc["dense int8"] - acc["dense"]) <= 1.0
        assert abs(acc["pruned int8"] - acc["pruned"]) <= 1.0
