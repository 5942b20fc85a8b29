"""The timing helpers every benchmark shares (fire_kernels.benchmarking)."""

from __future__ import annotations

from collections import Counter

import subprocess

import pytest
import torch

import fire_kernels as fk
from fire_kernels import benchmarking
from fire_kernels.benchmarking import (
    FIELDS,
    _commit,
    ResultsCsv,
    environment,
    interleaved_medians,
    read_rows,
    time_outside_kernels,
)
from fire_kernels.testing import assert_close_to_reference, make_fire


def test_interleaved_medians_varies_the_order():
    """Every function is timed `repeats` times, and each follows every other one
    several times: a call pays for what its predecessor left behind (cold caches,
    a sleeping thread pool), so a fixed order would bias one candidate."""
    n, repeats = 4, 40
    calls: list[int] = []
    times = interleaved_medians([lambda k=k: calls.append(k) for k in range(n)],
                                warmup=1, repeats=repeats)
    assert len(times) == n and all(t >= 0 for t in times)
    timed = calls[n:]  # after one warm-up call each
    assert Counter(timed) == {k: repeats for k in range(n)}
    follows = Counter(zip(timed, timed[1:]))
    assert all(follows[(a, b)] >= 5 for a in range(n) for b in range(n) if a != b), follows


def test_pause_and_timer():
    """The pause is slept before each call, outside the time measured; a timer
    replaces the wall clock."""
    (t,) = interleaved_medians([lambda: None], warmup=0, repeats=3, pause=0.02)
    assert t < 0.01
    assert interleaved_medians([lambda: None], warmup=0, repeats=3, timer=lambda fn: 7.0) == [7.0]


def test_results_csv_one_schema(tmp_path):
    """Every row has the same columns, naming the commit, run, machine and date;
    a file with other columns is refused rather than mixed."""
    path = tmp_path / "results.csv"
    env = environment("test", threads=1)
    assert env["commit"] and env["run_id"] and env["machine"] and env["date"]
    out = ResultsCsv(path)
    out.add_times(env, {"a": 1.5, "b": 2.0}, workload="w", batch=1)
    out.add_times(env, {"a": 1.0}, workload="w", batch=16)
    rows = read_rows(path, candidate="a")
    assert [r["batch"] for r in rows] == ["1", "16"]
    assert rows[0]["metric"] == "seconds" and float(rows[0]["value"]) == 1.5
    assert path.read_text().splitlines()[0] == ",".join(FIELDS)
    other = tmp_path / "old.csv"
    other.write_text("date,seconds\n2026-01-01,1.0\n")
    with pytest.raises(ValueError, match="other columns"):
        ResultsCsv(other)


@pytest.mark.skipif(not fk.cpu_kernel_available(), reason="C++ extension unavailable")
def test_time_outside_kernels_skips_them_only_while_timing():
    ref = make_fire(64, 16, 64, 64).eval()
    fused = fk.FusedFire.from_fire(ref)
    x = torch.randn(2, 64, 32, 32)
    full, bare = time_outside_kernels(fused, x, repeats=5)
    assert 0 < bare < full
    with torch.no_grad():  # the kernels run again afterwards
        assert_close_to_reference(fused(x), ref(x))


def test_commit_is_dirty_with_changed_code_not_with_new_results(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "results.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = _commit(tmp_path)
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (tmp_path / "benchmarks" / "results.csv").write_text("a\nb\n")  # a run appended rows
    assert _commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert _commit(tmp_path) == clean + "-dirty"


@pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
def test_int8_candidates_run_and_stay_close_to_the_float_model():
    """bench_network's int8 section: ours, ONNX Runtime int8 (if installed) and PyTorch
    int8, each calibrated on the same images, close to the float model; their errors
    are what relative_errors reports."""
    torch.manual_seed(0)
    model = fk.squeezenet1_1(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    calibration = benchmarking.calibration_batches(n=2, batch=2, size=64)
    runs = benchmarking.make_candidates(model, x, benchmarking.INT8_CANDIDATES, 2, calibration)
    assert {"quantized_network", "torch_int8"} <= set(runs)
    errors = benchmarking.relative_errors(model, x, runs, floor=0.0)
    assert all(0.0 < e < 0.1 for e in errors.values()), errors
    times = benchmarking.time_checked(model, x, runs, 2, pause=0.0, tolerance=0.1)
    assert set(times) == set(runs) and all(t > 0 for t in times.values())
