"""Shared fixtures and sample inputs for the fire_kernels test suite."""

from __future__ import annotations

import os

import torch

# Without a GPU the Triton kernel runs in Triton's interpreter on CPU tensors; it
# must be switched on before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import fire_kernels as fk
from fire_kernels.benchmarking import LAYERS

# The 16 Fire layers of SPEC §4 as (inplanes, squeeze, expand1x1, expand3x3), H = W.
SQUEEZENET_LAYERS = [pytest.param(cfg, hw, id=name) for name, (cfg, hw) in LAYERS.items()]


ODD_SHAPES = [
    # (N, C, S, E1, E3, H, W)
    (1, 3, 1, 1, 1, 1, 1),  # everything minimal
    (2, 3, 2, 5, 7, 1, 1),  # 1x1 images: every 3x3 tap but the centre is padding
    (1, 3, 16, 64, 64, 1, 37),  # one row
    (1, 3, 16, 64, 64, 37, 1),  # one column
    (3, 7, 5, 7, 13, 9, 11),  # channel counts that fill no tile
    (1, 64, 1, 3, 5, 8, 8),  # squeeze of 1
    (1, 33, 64, 70, 50, 70, 70),  # many bands per image, band edges inside rows
    (1, 20, 8, 24, 40, 2, 300),  # wide strip: bands inside one long row
    (5, 40, 24, 8, 16, 5, 3),  # more images than bands
]


def make_fire(
    inplanes: int, squeeze: int, e1: int, e3: int, *, bias: bool = True, seed: int = 0
) -> fk.Fire:
    """A reference Fire with weights that keep most ReLUs active and outputs O(1)."""
    torch.manual_seed(seed)
    m = fk.Fire(inplanes, squeeze, e1, e3)
    if not bias:
        for conv in (m.squeeze, m.expand1x1, m.expand3x3):
            conv.bias = None
    with torch.no_grad():
        for conv in (m.squeeze, m.expand1x1, m.expand3x3):
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            conv.weight.normal_(0, 1.5 / fan_in**0.5)
            if conv.bias is not None:
                conv.bias.uniform_(-0.2, 0.5)
    return m


def fire_weights(m: torch.nn.Module) -> tuple:
    return (
        m.squeeze.weight,
        m.squeeze.bias,
        m.expand1x1.weight,
        m.expand1x1.bias,
        m.expand3x3.weight,
        m.expand3x3.bias,
    )


def assert_close_to_reference(out: torch.Tensor, ref: torch.Tensor) -> None:
    """float32 kernels vs the float32 reference: both sum up to 9*S*C products in
    different orders, so the error scales with the output's magnitude."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    scale = max(ref.abs().max().item(), 1.0) if ref.numel() else 1.0
    torch.testing.assert_close(out, ref, atol=2e-5 * scale, rtol=1e-4)


ALL_ISAS = ("avx512", "avx2", "portable")


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """Runs a test once per vector ISA of the CPU kernels (skipped, with the reason
    shown, where this CPU cannot execute it), then restores 'auto'."""
    if fk._extension.C is None:
        pytest.skip(f"C++ extension unavailable: {fk._extension.LOAD_ERROR}")
    if request.param not in fk.available_cpu_isas():
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    fk.set_cpu_isa(request.param)
    yield request.param
    fk.set_cpu_isa("auto")


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
