"""The AVX-512 kernels on every x86-64 machine: a test build of the extension
(FIRE_KERNELS_EMULATE_AVX512=1, compiled just in time, cached apart) runs them on
SIMDe's implementation of the AVX-512 intrinsics over AVX2 + FMA, and the kernel
tests run against it in a child process with the AVX-512 path selected. Where the
CPU has AVX-512 the native path runs in the rest of the suite as well; without it,
this is where the AVX-512 path's tile geometry, masked tails and transposes run.
The int8 kernels' AVX-512 VNNI and AVX-VNNI paths run there too (SIMDe's vpdpbusd).
Takes a few minutes on 2 cores, most of it compiling."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fire_kernels as fk

ROOT = Path(__file__).resolve().parent.parent
KERNEL_TESTS = ["tests/test_cpu_kernel.py", "tests/test_sparse.py", "tests/test_network.py",
                "tests/test_regressions.py", "tests/test_int8_kernel.py"]
pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "FIRE_KERNELS_EMULATE_AVX512": "1",
        "FIRE_KERNELS_ISA": "avx512",
        "TORCH_EXTENSIONS_DIR": os.environ.get(
            "FIRE_KERNELS_EMULATE_CACHE", str(Path.home() / ".cache" / "fire_kernels_emulated")),
        "MAX_JOBS": "2",
    }


def _cpu_has_avx2() -> bool:
    try:
        return " avx2 " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


@pytest.mark.skipif(not _cpu_has_avx2(), reason="the emulation runs on AVX2 + FMA")
def test_avx512_kernels_on_the_emulation():
    probe = subprocess.run(
        [sys.executable, "-c", "import fire_kernels as fk; "
         "print(fk._extension.HOW_LOADED, fk.cpu_isa(), "
         "','.join(fk._extension.C.available_int8_paths()))"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800,
    )
    assert probe.stdout.split()[-4:] == [
        "jit", "(emulated_avx512)", "avx512", "avx512_amx,avx512_vnni,avx_vnni,avx2,portable"
    ], probe.stdout + probe.stderr[-3000:]
    proc = subprocess.run(
        # The tests of every ISA path, run for AVX-512 only (the emulation is the
        # point), and the tests that take no ISA (they run the forced avx512).
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *KERNEL_TESTS,
         "-k", "(avx512 or not (avx2 or portable)) and not opcheck and not compile"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=3000,
    )
    report = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 100, report
    print(f"emulated AVX-512: {passed.group(0)}")
