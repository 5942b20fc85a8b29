"""Seeing and requiring the fast path: fk.cpu_kernel_available(), the warning when
backend="auto" runs the reference for a dtype the C++ kernel does not run,
FIRE_KERNELS_REQUIRE_CPP=1, and ATEN_CPU_CAPABILITY capping the ISA."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

import fire_kernels as fk
from fire_kernels import _extension
from fire_kernels.testing import make_fire

needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Forget which dtypes were warned about, so each test sees its first warning."""
    monkeypatch.setattr(_extension, "_warned_dtypes", set())
    monkeypatch.delenv(_extension.REQUIRE_CPP_ENV, raising=False)


def test_cpu_kernel_available_says_whether_the_cpp_kernels_run(monkeypatch):
    assert fk.cpu_kernel_available() == (fk._extension.C is not None)
    assert "cpu_kernel_available" in fk.__all__
    monkeypatch.setattr(_extension, "C", None)
    assert fk.cpu_kernel_available() is False


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_auto_warns_once_when_the_dtype_runs_the_reference(dtype, fresh_warnings):
    ref = make_fire(8, 4, 4, 4).to(dtype)
    m = fk.FusedFire.from_fire(ref)
    x = torch.randn(1, 8, 5, 5, dtype=dtype)
    with pytest.warns(RuntimeWarning, match=(
            rf"backend='auto' runs the PyTorch reference \(no fused kernel\) for {dtype} CPU "
            r"tensors: the C\+\+ kernel runs torch.float32 \(on CUDA the Triton kernel runs "
            r"float32, float16 and bfloat16\)")):
        out = m(x)
    torch.testing.assert_close(out, ref(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second call is silent
        m(x)
        fk.fire(x, ref.squeeze.weight, ref.squeeze.bias, ref.expand1x1.weight, ref.expand1x1.bias,
                ref.expand3x3.weight, ref.expand3x3.bias)


@needs_cpp
def test_float32_and_explicit_torch_backend_do_not_warn(fresh_warnings):
    x = torch.randn(1, 8, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fk.FusedFire.from_fire(make_fire(8, 4, 4, 4))(x)
        fk.FusedFire.from_fire(make_fire(8, 4, 4, 4).half(), backend="torch")(x.half())


@needs_cpp
def test_require_cpp_turns_the_dtype_fallback_into_an_error(fresh_warnings, monkeypatch):
    monkeypatch.setenv("FIRE_KERNELS_REQUIRE_CPP", "1")
    m = fk.FusedFire.from_fire(make_fire(8, 4, 4, 4).half())
    with pytest.raises(_extension.FallbackError, match=(
            r"FIRE_KERNELS_REQUIRE_CPP=1 forbids running the PyTorch reference, which "
            r"backend='auto' would run here: the C\+\+ kernel runs torch.float32 CPU tensors, "
            r"not torch.float16")):
        m(torch.randn(1, 8, 5, 5, dtype=torch.float16))
    m.backend = "torch"  # asked for by name: not a fallback
    m(torch.randn(1, 8, 5, 5, dtype=torch.float16))
    fk.FusedFire.from_fire(make_fire(8, 4, 4, 4))(torch.randn(1, 8, 5, 5))  # the C++ kernel


@pytest.mark.parametrize("require", ["", "1"])
def test_integer_input_gets_the_checkers_error_not_a_fallback(require, fresh_warnings, monkeypatch):
    monkeypatch.setenv("FIRE_KERNELS_REQUIRE_CPP", require)
    m = fk.FusedFire.from_fire(make_fire(8, 4, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="torch.int64"):
            m(torch.ones(1, 8, 5, 5, dtype=torch.int64))


def test_require_cpp_turns_a_missing_extension_into_an_error(fresh_warnings, monkeypatch):
    monkeypatch.setattr(_extension, "C", None)
    monkeypatch.setattr(_extension, "LOAD_ERROR", "simulated: no compiler")
    m = fk.FusedFire.from_fire(make_fire(8, 4, 4, 4))
    x = torch.randn(1, 8, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned at import only, not per call
        m(x)
    monkeypatch.setenv("FIRE_KERNELS_REQUIRE_CPP", "1")
    with pytest.raises(RuntimeError, match=(
            r"FIRE_KERNELS_REQUIRE_CPP=1 forbids running the PyTorch reference, which "
            r"backend='auto' would run here: the C\+\+ kernels are unavailable: simulated: "
            r"no compiler")):
        m(x)


def run_isa(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import fire_kernels as fk\n" + code],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@needs_cpp
@pytest.mark.parametrize(
    "capability,cap",
    [("default", "portable"), ("avx2", "avx2"), ("avx512", "avx512"), ("sse9", "avx512"), ("", "avx512")],
)
def test_aten_cpu_capability_caps_the_isa(capability, cap):
    """PyTorch's own switch caps our kernels too; values PyTorch ignores (it warns about
    them) leave the choice to the CPU."""
    order = ["portable", "avx2", "avx512"]
    cpu = [isa for isa in fk.available_cpu_isas()]  # this process has no cap set
    if "ATEN_CPU_CAPABILITY" in os.environ:
        pytest.skip("ATEN_CPU_CAPABILITY is set for the whole run")
    expected = [isa for isa in cpu if order.index(isa) <= order.index(cap)]
    proc = run_isa("print(fk.cpu_isa(), ','.join(fk.available_cpu_isas()))",
                   ATEN_CPU_CAPABILITY=capability)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [expected[0], ",".join(expected)]


@needs_cpp
def test_an_isa_above_the_cap_raises():
    if "avx2" not in fk.available_cpu_isas():
        pytest.skip("this CPU runs neither AVX2 nor AVX-512")
    code = ("try:\n    fk.set_cpu_isa('avx2')\nexcept RuntimeError as e:\n    print(e)\n"
            "print(fk.cpu_isa())")
    proc = run_isa(code, ATEN_CPU_CAPABILITY="default")
    assert proc.returncode == 0, proc.stderr
    assert ("ATEN_CPU_CAPABILITY caps the kernels at 'portable', below 'avx2'; available: "
            "portable") in proc.stdout
    assert proc.stdout.strip().endswith("portable")
    proc = run_isa("print(fk.cpu_isa())", ATEN_CPU_CAPABILITY="avx2", FIRE_KERNELS_ISA="portable")
    assert proc.stdout.strip() == "portable"  # below the cap: FIRE_KERNELS_ISA still chooses
