"""The benchmark scripts run end to end on tiny settings and print their tables (a
section of bench_network.py once lost its body to a bad edit, and nothing noticed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import fire_kernels as fk

pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                          text=True, timeout=600, check=True)
    return done.stdout


def test_bench_sparse_int8_prints_a_speedup_and_the_auto_choice():
    out = run("bench_sparse_int8.py", "--paths", "avx2", "--layers", "v1_1-fire9", "head",
              "--batches", "1", "--sparsities", "97", "--repeats", "2", "--threads", "1")
    row = re.search(r"\| avx2 \| 97 % \| 1 \| (0\.\d\d) \| (\d+\.\d\d)x \(.*\) \| (yes|no) \|", out)
    assert row, out
    assert 0.05 < float(row[1]) < 0.2  # 1 - 0.97**4 of the quads, about
    assert row[3] == "yes"  # avx2 runs sparse below 0.5 nonzero quads


def test_bench_int8_accuracy_compares_with_pytorch_int8():
    out = run("bench_int8_accuracy.py", "--networks", "squeezenet1_1", "--seeds", "2",
              "--size", "48", "--threads", "1")
    row = re.search(r"\| squeezenet1_1 \| (\S+) \| (\S+) \| (\d) of 2 \| (\S+) \| (\S+) \| (\d) of 2 \|",
                    out)
    assert row, out
    assert all(0 < float(row[k]) < 0.2 for k in (1, 2, 4, 5))


def test_bench_network_runs_both_sections(tmp_path):
    csv = tmp_path / "results.csv"
    out = run("bench_network.py", "--networks", "squeezenet1_1", "--batches", "1", "--pruning",
              "dense", "--candidates", "fused_network", "eager_cl", "--repeats", "2",
              "--threads", "1", "--csv", str(csv))
    assert re.search(r"\| squeezenet1_1 \| 1 \| dense \| [\d.]+ \| [\d.]+ \|  \| [\d.]+x \|", out), out
    assert re.search(r"\| squeezenet1_1 \| 1 \| dense \| [\d.]+ \| ", out.split("relative error")[1])
    assert "of the forward outside the fused kernels" in out
    rows = csv.read_text().splitlines()
    assert any(",int8," in r for r in rows) and any(",float32," in r for r in rows)
