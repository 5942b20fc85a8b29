"""The fused C++ kernel against the PyTorch reference: SqueezeNet's layers, odd
shapes, memory formats and views, on every ISA path."""

from __future__ import annotations

import pytest
import torch

import fire_kernels as fk
from conftest import ODD_SHAPES, SQUEEZENET_LAYERS, assert_close_to_reference, fire_weights, make_fire

pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")

FORMATS = [torch.contiguous_format, torch.channels_last]


def run_cpp(x: torch.Tensor, m: torch.nn.Module) -> torch.Tensor:
    return fk.fire(x, *fire_weights(m), backend="cpp")


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("cfg,hw", SQUEEZENET_LAYERS)
def test_squeezenet_layers(cfg, hw, batch, isa):
    m = make_fire(*cfg)
    for fmt in FORMATS:
        x = torch.randn(batch, cfg[0], hw, hw).to(memory_format=fmt)
        out = run_cpp(x, m)
        assert out.is_contiguous(memory_format=fmt)
        assert_close_to_reference(out, m(x))




@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_odd_shapes(shape, fmt, isa):
    n, c, s, e1, e3, h, w = shape
    m = make_fire(c, s, e1, e3, seed=sum(shape))
    x = torch.randn(n, c, h, w).to(memory_format=fmt)
    assert_close_to_reference(run_cpp(x, m), m(x))


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
def test_no_bias(fmt, isa):
    m = make_fire(24, 8, 16, 16, bias=False)
    x = torch.randn(2, 24, 9, 10).to(memory_format=fmt)
    assert_close_to_reference(run_cpp(x, m), m(x))


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
def test_channels_last_weights(fmt):
    """After ``model.to(memory_format=torch.channels_last)`` the conv weights are
    channels-last too. Both kernels must read them right, and the channels-last
    one, which reads only its cached packed copy, must not copy them on every
    call (it did: 0.6 ms of a SqueezeNet 1.1 forward)."""
    m = make_fire(24, 16, 32, 48).to(memory_format=torch.channels_last)
    assert not m.expand3x3.weight.is_contiguous()
    x = torch.randn(2, 24, 9, 10).to(memory_format=fmt)
    assert_close_to_reference(run_cpp(x, m), m(x))
    if fmt == torch.channels_last:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run_cpp(x, m)
        assert [e.name for e in prof.events() if e.name in ("aten::clone", "aten::copy_")] == []


def _views(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Non-contiguous inputs of the same logical shape (N, 12, 8, 9)."""
    big = torch.randn(3, 20, 17, 19)
    return {
        "row_crop": big[:2, 3:15, 2:10, 5:14],
        "strided": big[:2, :12, ::2, ::2][:, :, :8, :9],
        "transposed_hw": torch.randn(2, 12, 9, 8).transpose(2, 3),
        "channel_slice": torch.randn(2, 30, 8, 9)[:, 7:19],
        "expanded_batch": torch.randn(1, 12, 8, 9).expand(2, 12, 8, 9),
        "channels_last_crop": torch.randn(2, 12, 10, 12).to(memory_format=torch.channels_last)[
            :, :, 1:9, 2:11
        ],
        "nhwc_permuted": torch.randn(2, 8, 9, 12).permute(0, 3, 1, 2),
    }


@pytest.mark.parametrize("view", list(_views(torch.empty(0))))
def test_views(view, isa):
    x = _views(torch.empty(0))[view]
    assert x.shape == (2, 12, 8, 9)
    m = make_fire(12, 5, 6, 10)
    out = run_cpp(x, m)
    assert_close_to_reference(out, m(x))
    # The output keeps the input's memory format (PyTorch's suggestion for it).
    assert out.is_contiguous(memory_format=fk.ops.output_memory_format(x))


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
def test_batch_zero(fmt):
    m = make_fire(8, 4, 4, 4)
    x = torch.randn(0, 8, 5, 5).to(memory_format=fmt)
    out = run_cpp(x, m)
    assert out.shape == (0, 8, 5, 5)


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts_agree(threads, batch, fmt, isa):
    """torch.set_num_threads governs the kernel, and every split of the work (bands
    of pixels, or one image's squeeze shared by all threads and its output channels
    split between them) gives bit-identical results."""
    m = make_fire(32, 16, 40, 56)
    x = torch.randn(batch, 32, 21, 21).to(memory_format=fmt)
    torch.set_num_threads(1)
    expected = run_cpp(x, m)
    torch.set_num_threads(threads)
    torch.testing.assert_close(run_cpp(x, m), expected, atol=0, rtol=0)


def test_weights_packed_once_per_layout(isa):
    """Each kernel family reads its own packed copy of the weights: alternating
    NCHW and channels-last inputs keeps both cached (packed once each), and an
    in-place weight change repacks, so the next call sees it."""
    m = make_fire(16, 8, 12, 20)
    x = torch.randn(2, 16, 7, 9)
    inputs = [x, x.to(memory_format=torch.channels_last)]
    fk.refresh_packed_weights()
    before = fk._extension.C.pack_count()
    with torch.no_grad():
        for _ in range(3):
            for xi in inputs:
                assert_close_to_reference(run_cpp(xi, m), m(xi))
        assert fk._extension.C.pack_count() - before == 2
        m.expand3x3.weight.mul_(-1)
        for xi in inputs:
            assert_close_to_reference(run_cpp(xi, m), m(xi))
        assert fk._extension.C.pack_count() - before == 4


def test_nan_and_inf_propagate_like_reference():
    m = make_fire(8, 4, 6, 6)
    x = torch.randn(1, 8, 6, 6)
    x[0, 2, 3, 3] = float("nan")
    x[0, 5, 0, 0] = float("inf")
    for fmt in FORMATS:
        xf = x.to(memory_format=fmt)
        out, ref = run_cpp(xf, m), m(xf)
        assert torch.equal(out.isnan(), ref.isnan())
        finite = ~ref.isnan()
        assert_close_to_reference(out[finite], ref[finite])
