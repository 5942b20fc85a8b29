"""Property-based tests: random Fires, inputs, layouts, densities and backends against
the plain PyTorch reference (hypothesis).

The "ci" profile (default) runs a bounded number of examples; the "long" one is a
command away and runs at least 10,000:

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py -q

Every mismatch found becomes a named regression test in test_regressions.py.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fire_kernels as fk
from fire_kernels.testing import LAYOUTS, FireSample, assert_close_to_reference

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
@st.composite
def fire_cases(draw, max_channels=600, max_side=80, max_batch=5, max_elements=3_000_000):
    """A FireSample of any shape, layout, density, pruning block and bias."""
    c = draw(st.integers(1, max_channels))
    s = draw(st.integers(1, min(128, max_channels)))
    e1 = draw(st.integers(1, max_channels))
    e3 = draw(st.integers(1, max_channels))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    n = draw(st.integers(0, max_batch))
    # Keep each example to a few milliseconds of reference work.
    while n * max(c, e1 + e3) * h * w > max_elements and max(h, w) > 1:
        h, w = max(1, h // 2), max(1, w // 2)
    return FireSample(
        n, c, s, e1, e3, h, w,
        layout=draw(st.sampled_from(list(LAYOUTS))),
        bias=draw(st.booleans()),
        density=draw(st.sampled_from([1.0, 0.6, 0.3, 0.1, 0.02, 0.0])),
        block=draw(st.sampled_from([1, 4])),
        seed=draw(st.integers(0, 2**16)),
    )


def check(case: FireSample, run) -> None:
    m, x = case.fire(), case.input()
    with torch.no_grad():
        assert_close_to_reference(run(x, m), m(x))


@needs_cpp
@given(case=fire_cases(), isa=st.sampled_from(fk.available_cpu_isas() if fk._extension.C else ["none"]))
def test_cpp_kernels_match_reference(case, isa):
    """The C++ kernels (dense, or sparse when the weights are sparse) on any shape,
    layout, density and ISA."""
    fk.set_cpu_isa(isa)
    try:
        check(case, lambda x, m: fk.FusedFire.from_fire(m, sparse="auto")(x))
    finally:
        fk.set_cpu_isa("auto")


@needs_cpp
@given(case=fire_cases())
def test_forced_sparse_kernel_matches_reference(case):
    check(case, lambda x, m: fk.FusedFire.from_fire(m, sparse=True)(x))


@needs_cpp
@given(case=fire_cases())
def test_forced_dense_kernel_matches_reference(case):
    check(case, lambda x, m: fk.FusedFire.from_fire(m, sparse=False)(x))


triton_ok = False
try:
    from fire_kernels.triton import interpreter_enabled

    triton_ok = torch.cuda.is_available() or interpreter_enabled()
except ImportError:
    pass


@pytest.mark.skipif(not triton_ok, reason="no GPU and Triton's interpreter is off")
# The interpreter takes ~0.5 s an example: 12 in CI, 400 in the long profile.
@settings(max_examples=min(settings().max_examples // 8, 12 if settings().max_examples <= 100 else 400))
@given(case=fire_cases(max_channels=40, max_side=11, max_batch=2))
def test_triton_kernel_matches_reference(case):
    """The Triton kernel (through the interpreter without a GPU: small sizes)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def run(x, m):
        return fk.FusedFire.from_fire(m.to(device), backend="triton")(x.to(device)).cpu()

    check(case, run)
