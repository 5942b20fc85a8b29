"""Hardening: NaN and Inf, degenerate and huge shapes, memory, and threads."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import fire_kernels as fk
from fire_kernels.testing import assert_close_to_reference, fire_weights, make_fire

needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
FORMATS = [torch.contiguous_format, torch.channels_last]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


# ---------------------------------------------------------------- NaN and Inf


@needs_cpp
@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
def test_sparse_nan_follows_the_nonzero_weights(fmt):
    """The sparse kernel skips zero weights, so a NaN reaches exactly the outputs it
    reaches through nonzero weights (a dense conv would also spread it through the
    zeros, NaN * 0 = NaN): the documented difference of running pruned weights sparse."""
    m = make_fire(12, 6, 8, 8)
    fk.prune_fire_modules(m, 0.8)
    fused = fk.FusedFire.from_fire(m, sparse=True)
    x = torch.randn(1, 12, 7, 7)
    x[0, 3, 2, 4] = float("nan")
    with torch.no_grad():
        out = fused(x.to(memory_format=fmt))
        bad = F.conv2d(x.isnan().float(), (m.squeeze.weight != 0).float()) > 0
        reach1 = F.conv2d(bad.float(), (m.expand1x1.weight != 0).float()) > 0
        reach3 = F.conv2d(bad.float(), (m.expand3x3.weight != 0).float(), padding=1) > 0
    assert torch.equal(out.isnan(), torch.cat([reach1, reach3], 1))
    # Elsewhere the input's NaN has no path through nonzero weights: the output is
    # the reference's on any finite value there.
    finite = ~out.isnan()
    with torch.no_grad():
        assert_close_to_reference(out[finite], m(x.nan_to_num(0.0))[finite])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, NaN * x
def test_triton_nan_and_inf_like_reference():
    pytest.importorskip("triton")
    from fire_kernels.triton import fire_triton, interpreter_enabled

    if not (torch.cuda.is_available() or interpreter_enabled()):
        pytest.skip("no GPU and Triton's interpreter is off")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    m = make_fire(8, 16, 16, 16).to(device)
    x = torch.randn(1, 8, 6, 6, device=device)
    x[0, 1, 2, 2] = float("nan")
    x[0, 5, 4, 0] = float("inf")
    with torch.no_grad():
        out, ref = fire_triton(x, *fire_weights(m)), m(x)
    assert torch.equal(out.isnan(), ref.isnan())
    assert torch.equal(out.isinf(), ref.isinf())


# ---------------------------------------------------------------- shapes


@needs_cpp
@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("sparse", [False, True])
def test_long_strips_and_single_channels(fmt, sparse):
    for shape in [(1, 1, 1, 4096), (2, 1, 4096, 1), (1, 3, 1, 1)]:
        n, c, h, w = shape
        m = make_fire(c, 1 if c == 1 else 4, 8, 8)
        if sparse:
            fk.prune_fire_modules(m, 0.5)
        fused = fk.FusedFire.from_fire(m, sparse=sparse)
        x = torch.randn(*shape).to(memory_format=fmt)
        with torch.no_grad():
            assert_close_to_reference(fused(x), m(x))


@needs_cpp
def test_output_too_large_to_allocate_is_an_error():
    """An input whose output cannot be allocated (a broadcast view of 10^10 pixels,
    whose output would need 2.5 TB): a Python exception, not a crash."""
    m = make_fire(1, 2, 30, 34)
    x = torch.zeros(1, 1, 1, 1).expand(1, 1, 100_000, 100_000)
    with pytest.raises(RuntimeError, match="can't allocate memory: you tried to allocate 2560000000000 bytes"):
        fk.fire(x, *fire_weights(m), backend="cpp")


# ---------------------------------------------------------------- memory


def _fused_and_input(mode: str, inplanes: int, squeeze: int, expand: int, batch: int, side: int):
    """A FusedFire running `mode` ("nchw", "channels_last" or "sparse": pruned to
    90 % and run sparse) and an input for it."""
    m = make_fire(inplanes, squeeze, expand, expand)
    if mode == "sparse":
        fk.prune_fire_modules(m, 0.9)
    fused = fk.FusedFire.from_fire(m, sparse=mode == "sparse")
    x = torch.randn(batch, inplanes, side, side)
    if mode == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    return fused, x


@needs_cpp
@pytest.mark.parametrize("mode", ["nchw", "channels_last", "sparse"])
def test_forward_allocates_only_its_output(mode):
    """The fused op allocates one tensor from PyTorch's allocator, its output (its
    other memory is bounded per-thread scratch, reused from call to call)."""
    fused, x = _fused_and_input(mode, 16, 8, 16, batch=4, side=10)
    with torch.no_grad():
        out = fused(x)  # warm: packing and scratch happen once
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    profile_memory=True) as prof:
            fused(x)
    op = "fire_kernels::fire_sparse" if mode == "sparse" else "fire_kernels::fire"
    events = [e for e in prof.key_averages() if e.key == op]
    assert events, [e.key for e in prof.key_averages()]
    assert events[0].cpu_memory_usage == out.numel() * out.element_size()


@needs_cpp
@pytest.mark.parametrize("mode", ["nchw", "channels_last", "sparse"])
def test_no_memory_growth_over_10000_forwards(mode):
    fused, x = _fused_and_input(mode, 8, 4, 8, batch=2, side=6)
    with torch.no_grad():
        for _ in range(1000):
            fused(x)
        before = rss_bytes()
        for _ in range(10_000):
            fused(x)
        grown = rss_bytes() - before
    assert grown < 1 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 forwards"


# ---------------------------------------------------------------- threads


@needs_cpp
def test_thread_count_changes_between_calls():
    m = make_fire(24, 16, 24, 40)
    fk.prune_fire_modules(m, 0.0)
    x = torch.randn(3, 24, 15, 17)
    torch.set_num_threads(1)
    with torch.no_grad():
        expected = [fk.FusedFire.from_fire(m, sparse=s)(x) for s in (False, True)]
        for threads in (2, 3, 1, 4, 2):
            torch.set_num_threads(threads)
            for s, e in zip((False, True), expected):
                torch.testing.assert_close(fk.FusedFire.from_fire(m, sparse=s)(x), e,
                                           atol=0, rtol=0)


@needs_cpp
def test_threads_editing_weights_while_others_run():
    """Forwards (sparse, repacking on every edit) in several threads while another
    thread edits the weights."""
    ref = make_fire(16, 8, 16, 16)
    fk.prune_fire_modules(ref, 0.9)
    fused = fk.FusedFire.from_fire(ref, sparse=True)
    x = torch.randn(2, 16, 8, 8)
    stop = threading.Event()

    def forward():
        with torch.no_grad():
            while not stop.is_set():
                fused(x)

    def edit():
        with torch.no_grad():
            for _ in range(50):
                ref.expand3x3.weight.mul_(-1.0)

    workers = [threading.Thread(target=forward) for _ in range(4)]
    for t in workers:
        t.start()
    editor = threading.Thread(target=edit)
    editor.start()
    editor.join()
    stop.set()
    for t in workers:
        t.join()
    # A forward overlapping an edit may read half-edited weights (as eager PyTorch
    # would); what must never happen is a crash, or a packing that stays stale once
    # the edits stop.
    with torch.no_grad():
        for _ in range(3):
            assert_close_to_reference(fused(x), ref(x))
