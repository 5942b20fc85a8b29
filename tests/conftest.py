"""Shared fixtures and sample inputs for the fire_kernels test suite."""

from __future__ import annotations

import os

import torch

# Without a GPU the Triton kernel runs in Triton's interpreter on CPU tensors; it
# must be switched on before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The kernels fill their outputs with NaN before writing them, so that an element
# they never write fails the comparison with the reference (whose value there is
# often ReLU's 0). Read once, when the kernels first run.
os.environ["FIRE_KERNELS_DEBUG_NAN_FILL"] = "1"

import pytest  # noqa: E402

import fire_kernels as fk
from fire_kernels.testing import squeezenet_samples

# The 16 Fire layers of SPEC §4 (batch 1), one test id each.
SQUEEZENET_LAYERS = [pytest.param(sample, id=sample.name) for sample in squeezenet_samples()]


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


@pytest.fixture(autouse=True)
def _ieee_float32():
    """float32 convolutions without TF32, restored after: every test compares against
    a float32 reference with float32 tolerances, and on a GPU cuDNN (the reference)
    and the Triton kernel (:func:`fire_kernels.triton.conv_tf32`) would otherwise both
    round their inputs to TF32, each in its own way. A no-op on CPU tensors.

    Through the legacy switch, which sets conv and RNN alike (to "none", no TF32):
    torch 2.13 raises wherever the legacy flag is read (torch.export does, on entry)
    while either of them is "ieee" or they differ."""
    cudnn = torch.backends.cudnn
    before = cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision
    cudnn.allow_tf32 = False
    yield
    cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = before
