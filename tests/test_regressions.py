"""Named regression tests: each is a mismatch or crash that the property-based tests
(test_properties.py) found once, kept as a plain test so it stays fixed."""

from __future__ import annotations

import pytest
import torch

import fire_kernels as fk
from fire_kernels.testing import assert_close_to_reference, make_fire

needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


@needs_cpp
@pytest.mark.parametrize("sparse", ["auto", True])
def test_module_without_biases_in_inference(sparse):
    """FusedFire over bias=False convs crashed in inference ('NoneType' has no
    '_version'): the packed-weight cache keyed on every parameter, None biases too."""
    ref = make_fire(5, 3, 4, 4, bias=False)
    fused = fk.FusedFire.from_fire(ref, sparse=sparse)
    for n in (0, 2):
        x = torch.randn(n, 5, 6, 7)
        with torch.no_grad():
            assert_close_to_reference(fused(x), ref(x))
