"""How the C++ extension is found: prebuilt (unless built against another torch), else
built just in time, else the reference with one warning that says why (no compiler, a
CPU that is not x86-64, a failed build). Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# Hides the prebuilt fire_kernels._C from the import system: as if it was never built.
BLOCK_PREBUILT = textwrap.dedent(
    """
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "fire_kernels._C":
                raise ModuleNotFoundError("hidden by the test", name=name)
    sys.meta_path.insert(0, _Block())
    """
)


def _extension_state() -> str:
    """The state of the extension in this checkout's own interpreter."""
    import fire_kernels as fk

    return fk._extension.STATUS.state


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_isa_environment_variable():
    proc = run_python(
        "import fire_kernels as fk; print(fk.cpu_isa())", FIRE_KERNELS_ISA="portable"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "portable"


def test_bad_isa_environment_variable_raises_not_crashes():
    code = "import fire_kernels as fk\ntry:\n    fk.cpu_isa()\nexcept RuntimeError as e:\n    print(e)"
    proc = run_python(code, FIRE_KERNELS_ISA="mmx")
    assert proc.returncode == 0, proc.stderr
    assert "unknown ISA 'mmx'" in proc.stdout


# Imports the package recording its warnings, checks the reference runs (and that
# backend="cpp" raises), and prints the fire_kernels warnings, one per line.
IMPORT_AND_RUN_REFERENCE = textwrap.dedent(
    """
    import sys, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fire_kernels as fk
        import torch
        m = fk.FusedFire(8, 4, 4, 4)
        x = torch.randn(1, 8, 5, 5)
        ref = fk.Fire(8, 4, 4, 4)
        ref.load_state_dict(m.state_dict())
        torch.testing.assert_close(m(x), ref(x))
    assert fk._extension.C is None and not fk.cpu_kernel_available()
    assert fk._extension.STATUS.state == "unavailable"
    m.backend = "cpp"
    try:
        m(x)
    except RuntimeError as e:
        print("raised:", e)
    print("loaded _C:", "fire_kernels._C" in sys.modules)
    for w in caught:
        if "fire_kernels" in str(w.message):
            print("warning:", w.category.__name__, w.message)
    """
)


def fire_kernels_warnings(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("warning:")]


def test_falls_back_to_reference_with_one_warning_when_build_fails(tmp_path):
    """A compiler that answers --version (torch checks it) but fails every compile."""
    cxx = tmp_path / "broken-c++"
    cxx.write_text('#!/bin/sh\n[ "$1" = --version ] && exec c++ --version\n'
                   'echo "simulated compile error" >&2\nexit 1\n')
    cxx.chmod(0o755)
    proc = run_python(BLOCK_PREBUILT + IMPORT_AND_RUN_REFERENCE, CXX=str(cxx),
                      TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"), MAX_JOBS="2")
    assert proc.returncode == 0, proc.stderr
    assert "raised: backend='cpp' needs the C++ extension" in proc.stdout
    (warning,) = fire_kernels_warnings(proc.stdout)
    assert warning.startswith("warning: RuntimeWarning fire_kernels: the C++ kernels are "
                              "unavailable, so backend='auto' runs the PyTorch reference")
    assert ("Cause: the prebuilt C++ extension is missing; just-in-time build: RuntimeError: "
            "Error building extension 'fire_kernels_C'") in warning


def test_without_a_compiler_one_warning_says_so(tmp_path):
    proc = run_python(BLOCK_PREBUILT + IMPORT_AND_RUN_REFERENCE, CXX="/nonexistent/g++",
                      TORCH_EXTENSIONS_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (warning,) = fire_kernels_warnings(proc.stdout)
    assert "just-in-time build: no C++ compiler (/nonexistent/g++ not found" in warning
    assert list(tmp_path.iterdir()) == []  # no build was even started


def test_on_a_cpu_that_is_not_x86_64_one_warning_says_so(tmp_path):
    """Neither the prebuilt module nor a build is tried (their vector code is x86's)."""
    code = "import platform\nplatform.machine = lambda: 'aarch64'\n" + IMPORT_AND_RUN_REFERENCE
    proc = run_python(code, TORCH_EXTENSIONS_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (warning,) = fire_kernels_warnings(proc.stdout)
    assert warning.endswith("Cause: the C++ kernels need an x86-64 CPU; this machine is aarch64")
    assert "loaded _C: False" in proc.stdout and list(tmp_path.iterdir()) == []


def test_setup_builds_no_extension_on_a_cpu_that_is_not_x86_64():
    code = textwrap.dedent(
        """
        import platform, runpy, setuptools
        platform.machine = lambda: "aarch64"
        setuptools.setup = lambda **kw: print("extensions:", len(kw["ext_modules"]))
        runpy.run_path("setup.py")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "need an x86-64 CPU; this machine is aarch64: building without them" in proc.stdout
    assert proc.stdout.strip().endswith("extensions: 0")


def test_prebuilt_module_of_another_torch_is_not_loaded(tmp_path):
    """The record beside the module names the torch it was built against; under another
    torch (simulated by changing torch.__version__) the module is never imported (it
    could fail with an undefined symbol, or worse) and one warning says to rebuild."""
    if _extension_state() != "prebuilt":
        pytest.skip("no prebuilt module in this checkout")
    code = "import torch\ntorch.__version__ = '2.0.0'\n" + IMPORT_AND_RUN_REFERENCE
    proc = run_python(code, CXX="false", TORCH_EXTENSIONS_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (warning,) = fire_kernels_warnings(proc.stdout)
    assert (f"the prebuilt C++ extension was built against torch {torch.__version__}, but torch "
            "2.0.0 is running, so it was not loaded: rebuild it against this torch") in warning
    assert "loaded _C: False" in proc.stdout


JIT_CHECK = textwrap.dedent(
    """
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch, fire_kernels as fk
    assert fk._extension.HOW_LOADED == "jit", fk._extension.LOAD_ERROR
    assert fk._extension.STATUS.state == "just-in-time"
    ref = fk.Fire(16, 8, 8, 8)
    m = fk.FusedFire.from_fire(ref, backend="cpp")
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-4)
    print("jit ok", fk.cpu_isa())
    for w in caught:
        if "fire_kernels" in str(w.message):
            print("warning:", w.message)
    """
)


def test_just_in_time_build(tmp_path):
    """Without the prebuilt module the package compiles csrc/ with ninja (about a
    minute on 2 cores), then runs the same kernels; a prebuilt module built against
    another torch is replaced the same way (the build is cached: seconds), with one
    warning that says to rebuild it."""
    proc = run_python(BLOCK_PREBUILT + JIT_CHECK, TORCH_EXTENSIONS_DIR=str(tmp_path), MAX_JOBS="2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "jit ok" in proc.stdout and fire_kernels_warnings(proc.stdout) == []
    assert "the prebuilt C++ extension is missing; building it just in time" in proc.stderr
    if _extension_state() != "prebuilt":
        return
    code = "import torch\ntorch.__version__ = '2.0.0'\n" + JIT_CHECK
    proc = run_python(code, TORCH_EXTENSIONS_DIR=str(tmp_path), MAX_JOBS="2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "jit ok" in proc.stdout
    (warning,) = fire_kernels_warnings(proc.stdout)
    assert "but torch 2.0.0 is running, so it was not loaded: rebuild it" in warning
    assert warning.endswith("built it just in time instead")
