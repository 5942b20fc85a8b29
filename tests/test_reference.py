"""The reference Fire and the bundled SqueezeNets are torchvision's."""

from __future__ import annotations

import pytest
import torch

import fire_kernels as fk
from fire_kernels.testing import fire_weights, make_fire


@pytest.mark.parametrize(
    "builder,params", [(fk.squeezenet1_0, 1_248_424), (fk.squeezenet1_1, 1_235_496)]
)
def test_squeezenet_matches_torchvision(builder, params):
    """Parameter counts are torchvision's published ones; names follow its layout."""
    model = builder()
    assert sum(p.numel() for p in model.parameters()) == params
    keys = list(model.state_dict())
    assert keys[:2] == ["features.0.weight", "features.0.bias"]
    assert "features.3.squeeze.weight" in keys and "features.3.expand3x3.bias" in keys
    assert keys[-2:] == ["classifier.1.weight", "classifier.1.bias"]
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_squeezenet_rejects_unknown_version():
    with pytest.raises(ValueError, match="Unsupported SqueezeNet version 2_0"):
        fk.SqueezeNet("2_0")


@pytest.mark.parametrize("bias", [True, False])
def test_functional_reference_is_the_module(bias):
    m = make_fire(12, 4, 6, 8, bias=bias)
    x = torch.randn(2, 12, 5, 7)
    torch.testing.assert_close(fk.fire_reference(x, *fire_weights(m)), m(x), atol=0, rtol=0)


def test_reference_backend_is_the_reference():
    ref = make_fire(12, 4, 6, 8)
    m = fk.FusedFire.from_fire(ref, backend="torch")
    x = torch.randn(2, 12, 5, 7)
    torch.testing.assert_close(m(x), ref(x), atol=0, rtol=0)
