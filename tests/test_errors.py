"""Bad input raises a clear Python exception naming expected and received; it never
crashes the process. Backends that cannot run raise instead of falling back."""

from __future__ import annotations

import pytest
import torch

import fire_kernels as fk
from conftest import fire_weights, make_fire

needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


@pytest.fixture
def fused():
    return fk.FusedFire.from_fire(make_fire(64, 16, 64, 64))


def test_wrong_channel_count(fused):
    with pytest.raises(ValueError, match="FusedFire expected 64 input channels, got 63"):
        fused(torch.randn(1, 63, 8, 8))


@pytest.mark.parametrize("shape", [(64, 8, 8), (1, 64, 8), (1, 1, 64, 8, 8)])
def test_wrong_rank(fused, shape):
    with pytest.raises(ValueError, match=r"expected a 4-D input \(N, C, H, W\), got \d-D"):
        fused(torch.randn(shape))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_dtype(fused, dtype):
    with pytest.raises(TypeError, match="expected a floating-point input, got torch."):
        fused(torch.zeros(1, 64, 4, 4, dtype=dtype))


def test_weight_dtype_mismatch(fused):
    with pytest.raises(TypeError, match="is torch.float32 but the input is torch.float64"):
        fk.fire(torch.randn(1, 64, 4, 4, dtype=torch.float64), *fire_weights(fused))


def test_device_mismatch(fused):
    x = torch.randn(1, 64, 4, 4, device="meta")
    with pytest.raises(RuntimeError, match="squeeze.weight is on cpu but the input is on meta"):
        fk.fire(x, *fire_weights(fused))


def _backends() -> list[str]:
    """Every backend that can run a float32 CPU tensor here."""
    names = ["auto", "torch"]
    if fk._extension.C is not None:
        names.append("cpp")
    try:
        from fire_kernels.triton import interpreter_enabled
    except ImportError:
        return names
    return names + ["triton"] * interpreter_enabled()


def _mistakes(w: tuple) -> dict[str, tuple]:
    """(input, weights...) arguments that are each wrong in one way."""
    x = torch.randn(1, 64, 4, 4)
    w = list(w)
    at = lambda k, t: (x, *w[:k], t, *w[k + 1:])  # noqa: E731 - w with argument k replaced
    return {
        "3x3 of wrong size": at(4, torch.randn(64, 16, 5, 5)),
        "bias of wrong size": at(3, torch.randn(65)),
        "squeeze for other channels": (torch.randn(1, 63, 4, 4), *w),
        "3-D weight": at(0, torch.randn(16, 64, 1)),
        "weight of another dtype": at(2, w[2].double()),
        "3-D input": (x[0], *w),
        "integer input": (x.int(), *w),
        "no squeeze channels": at(0, torch.randn(0, 64, 1, 1)),
    }


@pytest.mark.parametrize("mistake", list(_mistakes(fire_weights(fk.FusedFire(64, 16, 64, 64)))))
def test_same_error_on_every_backend(fused, mistake):
    """One checker: a mistake raises the same exception type with the same message
    whichever backend would have run it."""
    args = _mistakes(fire_weights(fused))[mistake]
    raised = {}
    for backend in _backends():
        with pytest.raises((TypeError, ValueError, RuntimeError)) as info:
            fk.fire(*args, backend=backend)
        raised[backend] = (type(info.value), str(info.value))
    assert len(set(raised.values())) == 1, raised


def test_weight_shape_mismatch(fused):
    w = list(fire_weights(fused))
    w[4] = torch.randn(64, 16, 5, 5)
    expected = r"fire expected expand3x3.weight of shape \[64, 16, 3, 3\], got \[64, 16, 5, 5\]"
    with pytest.raises(ValueError, match=expected):
        fk.fire(torch.randn(1, 64, 4, 4), *w)
    w = list(fire_weights(fused))
    w[3] = torch.randn(65)
    with pytest.raises(ValueError, match=r"expand1x1.bias of shape \[64\], got \[65\]"):
        fk.fire(torch.randn(1, 64, 4, 4), *w)


@needs_cpp
@pytest.mark.parametrize(
    "bad",
    [
        lambda x, w: (x[0], *w),  # 3-D input
        lambda x, w: (x[:, :10], *w),  # wrong channels
        lambda x, w: (x.double(), *w),  # dtype
        lambda x, w: (x, w[0][:, :, :1, :1].expand(16, 64, 3, 3), *w[1:]),  # 3x3 squeeze
        lambda x, w: (x, w[0], w[1][:3], *w[2:]),  # bias size
        lambda x, w: (x.int(), *w),  # integer input
    ],
)
def test_op_called_directly_checks_in_cpp(fused, bad):
    """The C++ kernel validates by itself, for callers that skip the Python layer."""
    args = bad(torch.randn(1, 64, 4, 4), fire_weights(fused))
    with pytest.raises(RuntimeError, match="fire"):
        torch.ops.fire_kernels.fire(*args)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        fk.FusedFire(8, 4, 4, 4, backend="gpu")


@needs_cpp
def test_cpp_backend_rejects_float64():
    m = fk.FusedFire(8, 4, 4, 4, backend="cpp").double()
    with pytest.raises(TypeError, match="backend='cpp' runs float32; the input is torch.float64"):
        m(torch.randn(1, 8, 4, 4, dtype=torch.float64))


def test_auto_runs_float64_with_the_reference():
    ref = make_fire(8, 4, 4, 4).double()
    m = fk.FusedFire.from_fire(ref)
    x = torch.randn(1, 8, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), ref(x))


def test_cpp_backend_raises_when_extension_missing(monkeypatch):
    monkeypatch.setattr(fk._extension, "C", None)
    monkeypatch.setattr(fk._extension, "LOAD_ERROR", "simulated")
    m = fk.FusedFire.from_fire(make_fire(8, 4, 4, 4))
    x = torch.randn(1, 8, 5, 5)
    with pytest.raises(RuntimeError, match=r"needs the C\+\+ extension, which is unavailable: simulated"):
        m.backend = "cpp"
        m(x)
    m.backend = "auto"  # auto uses the reference instead
    torch.testing.assert_close(m(x), fk.fire_reference(x, *fire_weights(m)))


@needs_cpp
def test_unknown_or_unsupported_isa():
    with pytest.raises(RuntimeError, match="unknown ISA 'sse9'"):
        fk.set_cpu_isa("sse9")
    if "avx512" not in fk.available_cpu_isas():
        with pytest.raises(RuntimeError, match="cannot run the 'avx512' kernels"):
            fk.set_cpu_isa("avx512")
    assert fk.cpu_isa() == fk.available_cpu_isas()[0]
