"""The C++ kernels under AddressSanitizer + UndefinedBehaviorSanitizer: a build of the
extension with both (FIRE_KERNELS_SANITIZE=1, compiled just in time, cached apart)
runs the kernel tests in a child process with the ASan runtime preloaded; any report
fails the child. Takes a few minutes on 2 cores (most of it compiling)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL_TESTS = ["tests/test_cpu_kernel.py", "tests/test_sparse.py", "tests/test_network.py",
                "tests/test_errors.py", "tests/test_regressions.py"]


def _gcc_library(name: str) -> str | None:
    try:
        path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                              text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


def _preload() -> str | None:
    """The ASan runtime, and libstdc++ before torch loads it: Python is not a C++
    program, so otherwise ASan cannot find the real __cxa_throw and aborts on the
    first C++ exception (every TORCH_CHECK that fails)."""
    libs = [_gcc_library("libasan.so"), _gcc_library("libstdc++.so")]
    return None if None in libs else " ".join(libs)


@pytest.mark.skipif(_preload() is None, reason="gcc's libasan is not installed")
def test_kernel_tests_pass_under_asan_and_ubsan(tmp_path):
    env = {
        **os.environ,
        "FIRE_KERNELS_SANITIZE": "1",
        "LD_PRELOAD": _preload(),
        # Python and torch, not instrumented, "leak" on exit and mismatch their own
        # allocators as far as ASan can tell: only our code is under scrutiny.
        "ASAN_OPTIONS": "detect_leaks=0:alloc_dealloc_mismatch=0:new_delete_type_mismatch=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "TORCH_EXTENSIONS_DIR": os.environ.get(
            "FIRE_KERNELS_SANITIZE_CACHE", str(Path.home() / ".cache" / "fire_kernels_sanitize")),
        "MAX_JOBS": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *KERNEL_TESTS,
         "-k", "not opcheck and not compile"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000,
    )
    report = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    assert "AddressSanitizer" not in report and "runtime error:" not in report, report
    assert "passed" in proc.stdout
