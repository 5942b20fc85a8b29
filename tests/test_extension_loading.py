"""How the C++ extension is found: prebuilt, else built just in time, else the
reference with one warning. Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Hides the prebuilt fire_kernels._C from the import system.
BLOCK_PREBUILT = textwrap.dedent(
    """
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "fire_kernels._C":
                raise ImportError("prebuilt extension hidden by the test")
    sys.meta_path.insert(0, _Block())
    """
)


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


def test_falls_back_to_reference_with_one_warning_when_build_fails(tmp_path):
    code = BLOCK_PREBUILT + textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import fire_kernels as fk
        import torch
        assert fk._extension.C is None
        assert len([w for w in caught if "could not be loaded or built" in str(w.message)]) == 1
        m = fk.FusedFire(8, 4, 4, 4)
        x = torch.randn(1, 8, 5, 5)
        ref = fk.Fire(8, 4, 4, 4)
        ref.load_state_dict(m.state_dict())
        torch.testing.assert_close(m(x), ref(x))
        m.backend = "cpp"
        try:
            m(x)
        except RuntimeError as e:
            print("raised:", e)
        """
    )
    proc = run_python(code, CXX="false", TORCH_EXTENSIONS_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "raised: backend='cpp' needs the C++ extension" in proc.stdout


def test_just_in_time_build(tmp_path):
    """Without the prebuilt module the package compiles csrc/ with ninja (about a
    minute on 2 cores), then runs the same kernels."""
    code = BLOCK_PREBUILT + textwrap.dedent(
        """
        import torch, fire_kernels as fk
        assert fk._extension.HOW_LOADED == "jit", fk._extension.LOAD_ERROR
        ref = fk.Fire(16, 8, 8, 8)
        m = fk.FusedFire.from_fire(ref, backend="cpp")
        x = torch.randn(2, 16, 9, 9)
        torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-4)
        print("jit ok", fk.cpu_isa())
        """
    )
    proc = run_python(code, TORCH_EXTENSIONS_DIR=str(tmp_path), MAX_JOBS="2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "jit ok" in proc.stdout
