"""Weights may change at any time, through any of the tensors they are computed from
(SPEC §3): parametrizations (torch.ao.pruning's masks, weight norm), .data swaps,
in-place edits, load_state_dict. The next forward uses the current values, on every
backend and layout, dense or sparse; the weight plan is never stale."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import fire_kernels as fk
from fire_kernels.testing import assert_close_to_reference, make_fire

CONVS = ("squeeze", "expand1x1", "expand3x3")


def _backends() -> list[str]:
    names = ["torch"] + ["cpp"] * (fk._extension.C is not None)
    try:
        from fire_kernels.triton import interpreter_enabled
    except ImportError:
        return names
    return names + ["triton"] * (torch.cuda.is_available() or interpreter_enabled())


BACKENDS = _backends()
LAYOUTS = ["contiguous", "channels_last"]


class Mask(nn.Module):
    """A weight times a 0/1 mask buffer, as torch.ao.pruning's FakeSparsity."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check(fused: nn.Module, ref: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert_close_to_reference(fused(x), ref(x))


def _input(layout: str, c: int = 16) -> torch.Tensor:
    x = torch.randn(2, c, 7, 9, device=_device())
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sparse", ["auto", True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_parametrized_masks_changed_in_place(backend, sparse, layout):
    """Masks held by a parametrization, changed in place (a sparsifier's step), and
    the parametrization's original scaled in place: the next forward sees both."""
    ref = make_fire(16, 16, 16, 16).to(_device())
    for name in CONVS:
        conv = getattr(ref, name)
        parametrize.register_parametrization(conv, "weight", Mask(torch.ones_like(conv.weight)))
    fused = fk.FusedFire.from_fire(ref, backend=backend, sparse=sparse)
    x = _input(layout)
    _check(fused, ref, x)
    with torch.no_grad():
        for name in CONVS:  # prune 95 %: sparse now pays
            mask = getattr(ref, name).parametrizations.weight[0].mask
            mask.mul_(torch.rand_like(mask) < 0.05)
    _check(fused, ref, x)
    with torch.no_grad():
        ref.expand3x3.parametrizations.weight.original.mul_(-2.0)
    _check(fused, ref, x)


def _magnitude_sparsifier():
    """A torch.ao.pruning sparsifier for conv weights: BaseSparsifier's machinery
    (a FakeSparsity parametrization holding a mask buffer, updated in place by each
    step) with a magnitude rule. torch's own WeightNormSparsifier takes 2-D (Linear)
    weights only: on a conv's 4-D weight its avg_pool2d fails (torch 2.13)."""
    from torch.ao.pruning import BaseSparsifier

    class MagnitudeSparsifier(BaseSparsifier):
        def update_mask(self, module, tensor_name, sparsity_level, **kwargs):
            mask = getattr(module.parametrizations, tensor_name)[0].mask
            w = getattr(module.parametrizations, tensor_name).original.detach().abs()
            k = int(sparsity_level * w.numel())
            mask.fill_(1)
            if k:
                mask.view(-1)[w.view(-1).argsort()[:k]] = 0

    return MagnitudeSparsifier(defaults={"sparsity_level": 0.5})


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_ao_sparsifier(backend):
    """A torch.ao.pruning sparsifier: prepare, step, forward, step, forward."""
    model = nn.Sequential(make_fire(16, 16, 16, 16)).to(_device())
    sparsifier = _magnitude_sparsifier()
    sparsifier.prepare(model, [{"tensor_fqn": f"0.{name}.weight"} for name in CONVS])
    ref = model[0]
    fused = fk.FusedFire.from_fire(ref, backend=backend)
    x = _input("contiguous")
    for level in (0.5, 0.95):
        for group in sparsifier.groups:
            group["sparsity_level"] = level
        sparsifier.step()
        _check(fused, ref, x)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sparse", ["auto", True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_data_swaps_and_state_dicts(backend, sparse, layout):
    """A weight swapped through ``.data`` (a new storage, the version unchanged),
    ``load_state_dict`` and an optimizer step: no refresh needed for any of them."""
    ref = make_fire(16, 16, 16, 16, density=0.1).to(_device())
    fused = fk.FusedFire.from_fire(ref, backend=backend, sparse=sparse)
    x = _input(layout)
    _check(fused, ref, x)
    ref.expand3x3.weight.data = torch.randn_like(ref.expand3x3.weight) * 0.1
    _check(fused, ref, x)
    ref.load_state_dict(make_fire(16, 16, 16, 16, density=0.1, seed=4).state_dict())
    _check(fused, ref, x)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    fused(x.requires_grad_()).square().mean().backward()
    opt.step()
    _check(fused, ref, x.detach())


@pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
def test_dense_and_sparse_see_a_data_swap_alike():
    """Both the C++ op's own cache (dense) and the module's plan (sparse) key on data
    pointers, so they react the same way to a weight swapped through .data."""
    ref = make_fire(16, 16, 16, 16, density=0.05)
    x = _input("contiguous")
    for sparse in (False, True):
        fused = fk.FusedFire.from_fire(copy.deepcopy(ref), sparse=sparse)
        with torch.no_grad():
            fused(x)  # makes the plan (and the C++ op's packing)
        new = torch.randn_like(fused.squeeze.weight)
        fused.squeeze.weight.data = new
        with torch.no_grad():
            expected = fk.fire_reference(x, new, *[t for t in (
                fused.squeeze.bias, fused.expand1x1.weight, fused.expand1x1.bias,
                fused.expand3x3.weight, fused.expand3x3.bias)])
            assert_close_to_reference(fused(x), expected)
