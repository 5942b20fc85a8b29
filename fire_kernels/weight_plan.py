"""A FusedFire's weight plan: what it runs for its current weights, and what that was
made from.

Deciding how to run a Fire's weights (dense, or sparse where the zeros pay) and
packing them costs far more than a small layer's kernel, so a FusedFire keeps the
outcome in one :class:`WeightPlan` and reuses it while it holds:

* the **sources**, every tensor the effective weights are computed from (the convs'
  parameters and buffers, those of their submodules too: a parametrization's
  ``original``, a pruning mask), are the same objects at the same versions (every
  in-place change through autograd-visible ops bumps a version: optimizer steps,
  ``load_state_dict``, ``w.mul_(mask)`` under ``no_grad``);
* :func:`invalidate_plans` (``fire_kernels.refresh_packed_weights``) has not been
  called since, for writes through ``.data``, which bypass version counters;
* the input has the device type and dtype the backend was chosen for and, for a
  sparse form packed per image width, that width.

Weights made under ``torch.inference_mode()`` have no version counter: their plans
hold for one call only.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import is_
from typing import Literal, NamedTuple, Union

import torch
from torch import Tensor, nn

from . import functional as F
from .sparse import BlockList, SparsePacked, choose_block, gpu_block_list, sparse_pays
from .validation import check_fire_args

__all__ = [
    "FireWeights",
    "SparseForm",
    "SparseMode",
    "WeightPlan",
    "conv_weight",
    "effective_weights",
    "invalidate_plans",
    "make_plan",
    "sources_of",
]

#: What inference runs instead of the dense kernel: C++ sparse packs or Triton block lists.
SparseForm = Union[SparsePacked, BlockList]
#: FusedFire's ``sparse`` argument: ``"auto"`` (where it pays), True (always) or False.
SparseMode = Union[Literal["auto"], bool]

# Bumped by invalidate_plans(): every plan made before is stale.
_generation = 0


def invalidate_plans() -> None:
    """Makes every FusedFire make its plan afresh at its next forward."""
    global _generation
    _generation += 1


class FireWeights(NamedTuple):
    """The six tensors a Fire computes with, as its convs' forwards would use them."""

    squeeze_weight: Tensor
    squeeze_bias: Tensor | None
    expand1x1_weight: Tensor
    expand1x1_bias: Tensor | None
    expand3x3_weight: Tensor
    expand3x3_bias: Tensor | None


def conv_weight(conv: nn.Module, name: str = "weight") -> Tensor | None:
    """The weight (or bias) ``conv.forward`` would use. For a conv pruned with
    ``torch.nn.utils.prune`` that is ``weight_orig * weight_mask``, which its forward
    pre-hook only computes when the conv itself is called (FusedFire never calls it)."""
    p = conv._parameters.get(name)
    if p is not None:
        return p
    orig, mask = conv._parameters.get(name + "_orig"), conv._buffers.get(name + "_mask")
    if orig is not None and mask is not None:
        return orig * mask
    return getattr(conv, name)  # None (no bias), or a parametrization's result


def effective_weights(squeeze: nn.Module, expand1x1: nn.Module, expand3x3: nn.Module) -> FireWeights:
    """The Fire's weights and biases as its three convs compute them now."""
    return FireWeights(
        conv_weight(squeeze), conv_weight(squeeze, "bias"),
        conv_weight(expand1x1), conv_weight(expand1x1, "bias"),
        conv_weight(expand3x3), conv_weight(expand3x3, "bias"),
    )


def sources_of(convs: tuple[nn.Module, ...]) -> list[Tensor]:
    """Every parameter and buffer the convs' effective weights can be computed from,
    their submodules' (parametrizations) included, in a fixed order.

    Plain loops over the modules' own dicts: this runs on every inference forward
    (0.5 us for three plain convs; ``Module.parameters()`` costs several times that)."""
    tensors: list[Tensor] = []
    for conv in convs:
        for module in conv.modules() if conv._modules else (conv,):
            for d in (module._parameters, module._buffers):
                for t in d.values():
                    if t is not None:  # bias=False convs keep a None bias
                        tensors.append(t)
    return tensors


@dataclass(eq=False)
class WeightPlan:
    """How a FusedFire runs its weights on one backend, and what that was made from.

    Attributes:
        backend: the resolved backend, ``"cpp"``, ``"triton"`` or ``"torch"``, for
            inputs on ``device`` of ``dtype``.
        weights: the effective weights (the convs' own tensors where not computed).
        plain: the weights are the convs' own Parameters (not computed from them), so
            autograd may use them as they are.
        sparse: what inference runs instead of the dense kernel, or None (dense).
        in_channels: the input channels the weights take.
        sources, versions, data, generation: what the plan was made from (see the
            module docstring): the tensors, their versions and data pointers (a
            ``.data`` swap changes the pointer, not the version); ``versions`` is
            None for inference tensors (no counter).
    """

    backend: str
    device: torch.device
    dtype: torch.dtype
    weights: FireWeights
    plain: bool
    sparse: SparseForm | None
    in_channels: int
    sources: list[Tensor]
    versions: list[int] | None
    data: list[int]
    generation: int

    @property
    def cacheable(self) -> bool:
        """Whether the plan can outlive its call (its sources have version counters)."""
        return self.versions is not None

    def made_from(self, sources: list[Tensor]) -> bool:
        """Whether ``sources`` (from :func:`sources_of`) are still what the plan was
        made from, unchanged."""
        return (
            self.versions is not None
            and self.generation == _generation
            and len(sources) == len(self.sources)
            and all(map(is_, sources, self.sources))  # the very tensors: ids can be reused
            and [t._version for t in sources] == self.versions
            and [t.data_ptr() for t in sources] == self.data
        )

    def serves(self, x: Tensor) -> bool:
        """Whether the plan was made for inputs like ``x`` (device, dtype and, for a
        per-width sparse form, width)."""
        if x.dtype is not self.dtype or x.device != self.device:
            return False
        return not isinstance(self.sparse, SparsePacked) or (
            x.dim() == 4 and x.shape[3] == self.sparse.width
        )


def _is_inference(t: Tensor) -> bool:
    return t.is_inference()


def make_plan(
    convs: tuple[nn.Module, nn.Module, nn.Module], backend: str, sparse: SparseMode, x: Tensor,
    sources: list[Tensor],
) -> WeightPlan:
    """The plan for running the Fire of ``convs`` (squeeze, expand1x1, expand3x3) on
    inputs like ``x`` with ``backend`` (unresolved) and ``sparse`` (``"auto"``, True or
    False, see FusedFire), from its current ``sources``."""
    with torch.no_grad():  # computed weights (masks, parametrizations) without a graph
        weights = effective_weights(*convs)
    check_fire_args(x, *weights)
    path = F.resolve_backend(backend, x)
    ws, _, we1, _, we3, _ = weights
    form: SparseForm | None = None
    if path == "cpp" and sparse is not False:
        block = choose_block(ws, we1, we3) if sparse is True else sparse_pays(ws, we1, we3)
        if block is not None:
            form = F.pack_sparse(ws, we1, we3, block, x.shape[3])
    elif path == "triton" and sparse is not False:
        form = gpu_block_list(we3, force=sparse is True)
    inference = any(map(_is_inference, sources))
    return WeightPlan(
        backend=path,
        device=x.device,
        dtype=x.dtype,
        weights=weights,
        plain=all(c._parameters.get("weight") is w for c, w in zip(convs, (ws, we1, we3))),
        sparse=form,
        in_channels=ws.shape[1],
        sources=sources,
        versions=None if inference else [t._version for t in sources],
        data=[t.data_ptr() for t in sources],
        generation=_generation,
    )
