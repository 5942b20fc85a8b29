"""Bad input raises a clear Python exception naming expected and received; it never
crashes the process. Backends that cannot run raise instead of falling back."""

from __future__ import annotations

import pytest
import torch

import fire_kernels as fk
from fire_kernels.testing import fire_weights, make_fire

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
    """Arguments (input, weights...) that are each wrong in one way, with the
    exception and message every backend must raise for them."""
    x = torch.randn(1, 64, 4, 4)
    w = list(w)
    at = lambda k, t: (x, *w[:k], t, *w[k + 1:])  # noqa: E731 - w with argument k replaced
    return {
        "3x3 of wrong size": (at(4, torch.randn(64, 16, 5, 5)), ValueError,
                              r"fire expected expand3x3.weight of shape \[64, 16, 3, 3\], "
                              r"got \[64, 16, 5, 5\]"),
        "bias of wrong size": (at(3, torch.randn(65)), ValueError,
                               r"fire expected expand1x1.bias of shape \[64\], got \[65\]"),
        "input of other channels": ((torch.randn(1, 63, 4, 4), *w), ValueError,
                                    "fire expected 64 input channels, got 63"),
        "3-D weight": (at(0, torch.randn(16, 64, 1)), ValueError,
                       r"fire expected 4-D conv weights, got shapes \[16, 64, 1\], "),
        "weight of another dtype": (at(2, w[2].double()), TypeError,
                                    "fire: expand1x1.weight is torch.float64 but the input is "
                                    "torch.float32"),
        "3-D input": ((x[0], *w), ValueError,
                      r"fire expected a 4-D input \(N, C, H, W\), got 3-D of shape \[64, 4, 4\]"),
        "integer input": ((x.int(), *w), TypeError,
                          "fire expected a floating-point input, got torch.int32"),
        "no squeeze channels": (at(0, torch.randn(0, 64, 1, 1)), ValueError,
                                "fire: every convolution needs at least one channel; got C=64, "
                                "S=0, E1=64, E3=64"),
    }


@pytest.mark.parametrize("mistake", list(_mistakes(fire_weights(fk.FusedFire(64, 16, 64, 64)))))
@pytest.mark.parametrize("backend", _backends())
def test_same_error_on_every_backend(fused, mistake, backend):
    """One checker: a mistake raises the same exception type with the same message
    whichever backend would have run it."""
    args, error, message = _mistakes(fire_weights(fused))[mistake]
    with pytest.raises(error, match=message):
        fk.fire(*args, backend=backend)


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
@pytest.mark.parametrize("mistake", list(_mistakes(fire_weights(fk.FusedFire(64, 16, 64, 64)))))
def test_op_called_directly_says_what_python_says(fused, mistake):
    """The C++ kernel checks by itself, for callers of torch.ops.fire_kernels.fire
    that skip Python, with the Python checker's exception type and words."""
    from fire_kernels.validation import check_fire_args

    args, error, message = _mistakes(fire_weights(fused))[mistake]
    with pytest.raises(error, match=message) as python:
        check_fire_args(*args)
    with pytest.raises(error) as cpp:
        torch.ops.fire_kernels.fire(*args)
    assert str(cpp.value) == str(python.value)


@needs_cpp
def test_op_called_directly_rejects_what_only_python_routes_away(fused):
    """Arguments the Python layer would send elsewhere (float64 to the reference)
    reach the C++ kernel only through the op: it says what it runs."""
    w = [t.double() for t in fire_weights(fused)]
    with pytest.raises(TypeError, match="fire: the CPU kernel runs float32; the input is torch.float64"):
        torch.ops.fire_kernels.fire(torch.randn(1, 64, 4, 4, dtype=torch.float64), *w)


@needs_cpp
def test_sparse_op_called_directly_says_what_python_says(fused):
    from fire_kernels.functional import pack_sparse
    from fire_kernels.validation import check_pack_args, check_sparse_args

    ws, bs, we1, be1, we3, be3 = fire_weights(fused)
    p = pack_sparse(ws, we1, we3, 1, 4)
    x = torch.randn(1, 64, 4, 4)
    sparse_mistakes = {
        "width": (x[..., :3], bs, be1, be3, 16, 64, 64, 1, 4),
        "block": (x, bs, be1, be3, 16, 64, 64, 2, 4),
        "bias": (x, bs[:3], be1, be3, 16, 64, 64, 1, 4),
        "3-D input": (x[0], bs, be1, be3, 16, 64, 64, 1, 4),
    }
    for name, (xi, b0, b1, b3, s, e1, e3, block, width) in sparse_mistakes.items():
        with pytest.raises((TypeError, ValueError, RuntimeError)) as python:
            check_sparse_args(xi, b0, b1, b3, s, e1, e3, block, width)
        with pytest.raises(type(python.value)) as cpp:
            torch.ops.fire_kernels.fire_sparse(xi, p.squeeze_values, p.squeeze_index, b0,
                                               p.expand_values, p.expand_index, b1, b3, s, e1, e3,
                                               block, width)
        assert str(cpp.value) == str(python.value), name
    pack_mistakes = {
        "block": (ws, we1, we3, 3, 4),
        "width": (ws, we1, we3, 1, 0),
        "shape": (ws, we1, we3[:, :5], 1, 4),
        "dtype": (ws, we1.double(), we3, 1, 4),
    }
    for name, args in pack_mistakes.items():
        with pytest.raises((TypeError, ValueError, RuntimeError)) as python:
            check_pack_args(*args)
        with pytest.raises(type(python.value)) as cpp:
            torch.ops.fire_kernels.pack_sparse(*args)
        assert str(cpp.value) == str(python.value), name


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        fk.FusedFire(8, 4, 4, 4, backend="gpu")


@needs_cpp
def test_cpp_backend_rejects_float64():
    m = fk.FusedFire(8, 4, 4, 4, backend="cpp").double()
    with pytest.raises(TypeError, match="backend='cpp' runs float32; the input is torch.float64"):
        m(torch.randn(1, 8, 4, 4, dtype=torch.float64))


def test_auto_runs_float64_with_the_reference(monkeypatch):
    """backend="auto" runs the reference for float64 on CPU, saying so once."""
    monkeypatch.setattr(fk._extension, "_warned_dtypes", set())
    ref = make_fire(8, 4, 4, 4).double()
    m = fk.FusedFire.from_fire(ref)
    x = torch.randn(1, 8, 5, 5, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="runs the PyTorch reference .* for torch.float64"):
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
