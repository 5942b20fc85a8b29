"""The fused C++ kernel against the PyTorch reference: SqueezeNet's layers, odd
shapes, memory formats and views, on every ISA path."""

from __future__ import annotations

import os

import pytest
import torch

import fire_kernels as fk
from conftest import SQUEEZENET_LAYERS
from fire_kernels.testing import (
    LAYOUTS,
    FireSample,
    assert_close_to_reference,
    fire_weights,
    make_fire,
    odd_samples,
)

pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")

FORMATS = [torch.contiguous_format, torch.channels_last]


def run_cpp(x: torch.Tensor, m: torch.nn.Module) -> torch.Tensor:
    return fk.fire(x, *fire_weights(m), backend="cpp")


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("sample", SQUEEZENET_LAYERS)
def test_squeezenet_layers(sample, batch, isa):
    m = sample.fire()
    for layout in ("contiguous", "channels_last"):
        x = sample.replace(n=batch, layout=layout).input()
        out = run_cpp(x, m)
        assert out.is_contiguous(memory_format=fk.ops.output_memory_format(x))
        assert_close_to_reference(out, m(x))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("sample", odd_samples(), ids=str)
def test_odd_shapes(sample, layout, isa):
    sample = sample.replace(layout=layout)
    m, x = sample.fire(), sample.input()
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


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_and_views(layout, isa):
    """Memory formats and views no memory format describes; the output keeps the
    input's memory format (what ATen suggests for it)."""
    sample = FireSample(2, 12, 5, 6, 10, 8, 9, layout=layout)
    m, x = sample.fire(), sample.input()
    assert x.shape == (2, 12, 8, 9)
    out = run_cpp(x, m)
    assert_close_to_reference(out, m(x))
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


def _packings(run) -> int:
    """How many times the C++ op packed weights while `run()` ran (torch.profiler
    sees each packing as a fire_kernels::pack_weights event)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    return sum(e.name == "fire_kernels::pack_weights" for e in prof.events())


def test_weights_packed_once_per_layout(isa):
    """Each kernel family reads its own packed copy of the weights: alternating
    NCHW and channels-last inputs keeps both cached (packed once each), and an
    in-place weight change repacks, so the next call sees it."""
    m = make_fire(16, 8, 12, 20)
    x = torch.randn(2, 16, 7, 9)
    inputs = [x, x.to(memory_format=torch.channels_last)]
    fk.refresh_packed_weights()

    def run_all(repeats):
        for _ in range(repeats):
            for xi in inputs:
                assert_close_to_reference(run_cpp(xi, m), m(xi))

    with torch.no_grad():
        assert _packings(lambda: run_all(3)) == 2
        m.expand3x3.weight.mul_(-1)
        assert _packings(lambda: run_all(2)) == 2


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


def test_outputs_start_as_nan_under_the_debug_switch():
    """conftest.py turns FIRE_KERNELS_DEBUG_NAN_FILL on for the whole suite: the op
    fills its output with NaN before the kernel writes it, so that an element never
    written cannot pass for ReLU's 0 in any comparison with the reference."""
    assert os.environ.get("FIRE_KERNELS_DEBUG_NAN_FILL") == "1"
    m = make_fire(8, 4, 6, 6)
    x = torch.randn(1, 8, 5, 5)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = run_cpp(x, m)
    assert "aten::fill_" in {e.name for e in prof.events()}
    assert not out.isnan().any()
