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

A sparse form is packed for one image width, so a module fed several widths keeps a
plan per width (:attr:`WeightPlan.family`, the last :data:`MAX_WIDTHS`), made from
the same sources and settings: going back to a width does not decide and pack again.

Weights made under ``torch.inference_mode()`` have no version counter: their plans
hold for one call only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import is_
from typing import Literal, NamedTuple, Union

import torch
from torch import Tensor, nn

from . import functional as F
from .sparse import (
    BlockList,
    SparsePacked,
    TritonForm,
    choose_block,
    choose_conv_block,
    conv_sparse_pays,
    gpu_block_list,
    sparse_pays,
)
from .validation import check_fire_args, check_head_args, pooled_size

__all__ = [
    "MAX_WIDTHS",
    "FireWeights",
    "SparseForm",
    "SparseMode",
    "WeightPlan",
    "conv_weight",
    "effective_weights",
    "generations",
    "invalidate_plans",
    "keep_newest",
    "make_head_plan",
    "make_plan",
    "note_module_change",
    "sources_of",
]

#: What inference runs instead of the dense op: C++ sparse packs, or the Triton
#: kernel's packed weights (and block list).
SparseForm = Union[SparsePacked, TritonForm]
#: FusedFire's ``sparse`` argument: ``"auto"`` (where it pays), True (always) or False.
SparseMode = Union[Literal["auto"], bool]

# Bumped by invalidate_plans(): every plan made before is stale.
_generation = 0
# Bumped by note_module_change(): every network program (fire_kernels.network) made
# before is stale, but not the plans.
_module_generation = 0


def invalidate_plans() -> None:
    """Makes every FusedFire make its plan afresh at its next forward."""
    global _generation
    _generation += 1


def note_module_change(*_hook_args) -> None:
    """Records that a module's parameters, buffers, submodules or settings may have
    changed: called by nn.Module's global registration hooks and by the fused modules'
    ``__setattr__``, so that a network program, which runs its layers without asking
    their modules, is made afresh."""
    global _module_generation
    _module_generation += 1


def generations() -> tuple[int, int]:
    """What a network program was made under (plans and modules as they were)."""
    return _generation, _module_generation


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
    """How a fused module runs its weights on one backend, and what that was made from.

    Attributes:
        backend: the resolved backend, ``"cpp"``, ``"triton"`` or ``"torch"``, for
            inputs on ``device`` of ``dtype``.
        weights: the effective weights (the convs' own tensors where not computed):
            a Fire's :class:`FireWeights`, or a conv's (weight, bias).
        sparse: what inference runs instead of the dense op: a sparse form, the
            Triton kernel's packed weights, or None (the dense op).
        input_width: the input width the sparse form was packed for (None: any).
        sources, versions, data, generation: what the plan was made from (see the
            module docstring): the tensors, their versions and data pointers (a
            ``.data`` swap changes the pointer, not the version); ``versions`` is
            None for inference tensors (no counter).
        family: input width -> the plan for that width, of the same sources and
            settings (this one included; shared by all of them), for a per-width
            sparse form; empty otherwise.
    """

    backend: str
    device: torch.device
    dtype: torch.dtype
    weights: tuple
    sparse: object | None
    input_width: int | None
    sources: list[Tensor]
    versions: list[int] | None
    data: list[int]
    generation: int
    family: dict[int, WeightPlan] = field(default_factory=dict)

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
        return self.input_width is None or (x.dim() == 4 and x.shape[3] == self.input_width)


    def for_width(self, x: Tensor, sources: list[Tensor]) -> WeightPlan | None:
        """The plan of this one's family for ``x``'s width, if one was made and still
        holds."""
        plan = self.family.get(x.shape[-1]) if x.dim() == 4 else None
        return plan if plan is not None and plan.made_from(sources) and plan.serves(x) else None

    def join_family(self, earlier: WeightPlan | None, sources: list[Tensor]) -> None:
        """Adds this plan, packed for another width than ``earlier`` (the module's
        previous plan), to ``earlier``'s family if that still holds for ``sources``
        (the same weights and settings: a change of setting drops the module's plan),
        keeping the last :data:`MAX_WIDTHS` widths."""
        if self.input_width is None or not self.cacheable:
            return
        if earlier is not None and earlier.input_width is not None and earlier.made_from(sources):
            self.family = earlier.family
        keep_newest(self.family, self.input_width, self)


#: Image widths a module keeps sparse plans for (each holds a packed copy of its
#: nonzero weights).
MAX_WIDTHS = 4


def keep_newest(family: dict, key, member) -> None:
    """Sets ``family[key] = member`` as the newest entry, dropping the oldest ones
    past :data:`MAX_WIDTHS` (a plan's or a network program's family)."""
    family.pop(key, None)
    family[key] = member
    while len(family) > MAX_WIDTHS:
        del family[next(iter(family))]


def _is_inference(t: Tensor) -> bool:
    return t.is_inference()


def _plan(path: str, x: Tensor, weights: tuple, form, input_width: int | None,
          sources: list[Tensor]) -> WeightPlan:
    inference = any(map(_is_inference, sources))
    return WeightPlan(
        backend=path,
        device=x.device,
        dtype=x.dtype,
        weights=weights,
        sparse=form,
        input_width=input_width if form is not None else None,
        sources=sources,
        versions=None if inference else [t._version for t in sources],
        data=[t.data_ptr() for t in sources],
        generation=_generation,
    )


def make_plan(
    convs: tuple[nn.Module, nn.Module, nn.Module], backend: str, sparse: SparseMode, x: Tensor,
    sources: list[Tensor], pool: tuple[int, int, bool] | None = None,
) -> WeightPlan:
    """The plan for running the Fire of ``convs`` (squeeze, expand1x1, expand3x3) on
    inputs like ``x`` (max-pooled first by ``pool``: kernel, stride, ceil_mode) with
    ``backend`` (unresolved) and ``sparse`` (``"auto"``, True or False, see
    FusedFire), from its current ``sources``."""
    with torch.no_grad():  # computed weights (masks, parametrizations) without a graph
        weights = effective_weights(*convs)
    check_fire_args(x, *weights)
    path = F.resolve_backend(backend, x)
    ws, _, we1, _, we3, _ = weights
    form: SparseForm | None = None
    if path == "cpp" and sparse is not False:
        block = choose_block(ws, we1, we3) if sparse is True else sparse_pays(ws, we1, we3)
        if block is not None:
            width = x.shape[3] if pool is None else pooled_size(x.shape[3], *pool)
            form = F.pack_sparse(ws, we1, we3, block, width)
    elif path == "triton":
        from .triton import pack_triton_weights

        blocks = gpu_block_list(we3, force=sparse is True) if sparse is not False else None
        form = TritonForm(pack_triton_weights(*weights, dtype=x.dtype), blocks)
    return _plan(path, x, weights, form, x.shape[3] if path == "cpp" else None, sources)


def make_head_plan(
    conv: nn.Module, backend: str, sparse: SparseMode, x: Tensor, sources: list[Tensor]
) -> WeightPlan:
    """The plan for running a 1x1 conv + ReLU + global average pool (the classifier
    head, ``conv``'s weights) on inputs like ``x``: dense, or its weights packed for
    the sparse kernel where that pays (``sparse`` as for FusedFire)."""
    with torch.no_grad():
        weights = (conv_weight(conv), conv_weight(conv, "bias"))
    check_head_args(x, *weights)
    path = F.resolve_backend(backend, x)
    form = None
    if path == "cpp" and sparse is not False:
        block = choose_conv_block(weights[0]) if sparse is True else conv_sparse_pays(weights[0])
        if block is not None:
            form = F.pack_sparse_conv1x1(weights[0], block)
    return _plan(path, x, weights, form, None, sources)
