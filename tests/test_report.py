"""The README's results table and benchmarks/RESULTS.md are what report.py makes from
benchmarks/results.csv: no figure typed by hand, none drifting from the rows."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_results_tables_are_made_from_the_recorded_rows():
    proc = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("up to date from commit "), proc.stdout


def test_a_hand_edited_figure_is_caught(tmp_path, monkeypatch, capsys):
    """The check fails once a table differs from what the rows give."""
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    readme = (ROOT / "README.md").read_text()
    assert report.BEGIN in readme
    edited = tmp_path / "README.md"
    edited.write_text(readme.replace(report.BEGIN, report.BEGIN + "\n| typed by hand | 9.99x |", 1))
    monkeypatch.setattr(report, "README", edited)
    monkeypatch.setattr(sys, "argv", ["report.py", "--check"])
    assert report.main() == 1
    assert "out of date" in capsys.readouterr().out
    assert "typed by hand" in edited.read_text()  # --check changes nothing
