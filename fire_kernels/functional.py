"""The fused Fire as functions: the one layer that calls ``torch.ops.fire_kernels.*``.

* :func:`fire`: the dense Fire from the plain conv weights, the functional twin of
  :class:`fire_kernels.FusedFire` (as torchvision's ``roi_align`` is of ``RoIAlign``);
* :func:`pack_sparse` and :func:`fire_sparse`: pruned weights packed once, then run
  skipping their zeros (C++, inference);
* :func:`fire_blocksparse`: skipping the 3x3's zero weight blocks (Triton);
* :func:`fire_planned`: what a FusedFire's :class:`~fire_kernels.weight_plan.WeightPlan`
  says to run, for the module.

Each checks its arguments (``fire_kernels.validation``), resolves the backend once
and calls one operator, or the PyTorch reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from . import _extension
from .reference import fire_reference
from .sparse import BlockList, SparsePacked
from .validation import check_fire_args, check_pack_args, check_sparse_args

if TYPE_CHECKING:
    from .weight_plan import WeightPlan

__all__ = [
    "BACKENDS",
    "Backend",
    "fire",
    "fire_blocksparse",
    "fire_planned",
    "fire_sparse",
    "pack_sparse",
    "resolve_backend",
]

_FIRE_OP = torch.ops.fire_kernels.fire.default
_SPARSE_OP = torch.ops.fire_kernels.fire_sparse.default
_BLOCKSPARSE_OP = torch.ops.fire_kernels.fire_blocksparse.default
# The Triton kernels on CPU tensors (Triton's interpreter): same schemas and autograd.
_INTERPRETED_OPS = {
    _FIRE_OP: torch.ops.fire_kernels.fire_interpreted.default,
    _BLOCKSPARSE_OP: torch.ops.fire_kernels.fire_blocksparse_interpreted.default,
}
_PACK_SPARSE_OP = torch.ops.fire_kernels.pack_sparse.default

Backend = Literal["auto", "cpp", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "cpp", "triton", "torch")


def _triton():
    """fire_kernels.triton (imported on first use: it imports triton), or None."""
    try:
        from . import triton as kernels
    except ImportError:
        return None
    kernels.register()
    return kernels


def resolve_backend(backend: str, x: Tensor) -> str:
    """The backend that runs a Fire on ``x``: ``"cpp"``, ``"triton"`` or ``"torch"``.

    ``"auto"`` picks the C++ kernel for float32 CPU tensors, the Triton kernel for
    CUDA tensors and the reference otherwise (including CPU dtypes the C++ kernel
    does not cover, CPU when the extension could not be built, and CUDA without
    Triton). An explicit backend that cannot run ``x`` raises; it never falls back.
    """
    if backend == "auto":
        if x.device.type == "cpu":
            if _extension.C is not None and x.dtype == torch.float32:
                return "cpp"
            _extension.cpu_fallback(x.dtype)  # warns once, or raises (FIRE_KERNELS_REQUIRE_CPP=1)
            return "torch"
        if x.device.type == "cuda" and _triton() is not None:
            return "triton"
        return "torch"
    if backend == "cpp":
        if _extension.C is None:
            raise RuntimeError(
                f"backend='cpp' needs the C++ extension, which is unavailable: {_extension.LOAD_ERROR}"
            )
        if x.device.type != "cpu":
            raise RuntimeError(f"backend='cpp' runs on CPU tensors; the input is on {x.device}")
        if x.dtype != torch.float32:
            raise TypeError(f"backend='cpp' runs float32; the input is {x.dtype}")
        return "cpp"
    if backend == "triton":
        kernels = _triton()
        if kernels is None:
            raise RuntimeError("backend='triton' needs the triton package, which is not installed")
        if x.device.type == "cpu" and not kernels.interpreter_enabled():
            raise RuntimeError(
                "backend='triton' runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1 "
                f"set before triton is imported; the input is on {x.device}"
            )
        if x.device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"backend='triton' runs on CUDA tensors; the input is on {x.device}")
        return "triton"
    if backend == "torch":
        return "torch"
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def _op(op, path: str, x: Tensor):
    """``op``, or its twin for the Triton kernel on CPU tensors (Triton's interpreter,
    whose kernels are registered for the CPU: the op's own CPU kernel is C++)."""
    return _INTERPRETED_OPS[op] if path == "triton" and x.device.type == "cpu" else op


def _dense(path: str, x: Tensor, weights) -> Tensor:
    """The dense Fire on a resolved backend, arguments checked."""
    if path == "torch":
        return fire_reference(x, *weights)
    return _op(_FIRE_OP, path, x)(x, *weights)


def fire(
    x: Tensor,
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """Fire module forward:
    ``cat([relu(conv1x1(s, W_e1) + b_e1), relu(conv3x3(s, W_e3, pad=1) + b_e3)], 1)``
    with ``s = relu(conv1x1(x, W_s) + b_s)``.

    Args:
        x: ``(N, C, H, W)`` input, any strides; the output keeps its memory format.
        squeeze_weight, expand1x1_weight, expand3x3_weight: ``nn.Conv2d`` weights of
            shapes ``(S, C, 1, 1)``, ``(E1, S, 1, 1)``, ``(E3, S, 3, 3)``.
        squeeze_bias, expand1x1_bias, expand3x3_bias: biases or None.
        backend: ``"auto"``, ``"cpp"``, ``"triton"`` or ``"torch"`` (the reference).

    Returns:
        ``(N, E1 + E3, H, W)`` tensor.
    """
    weights = (squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias,
               expand3x3_weight, expand3x3_bias)
    check_fire_args(x, *weights)
    return _dense(resolve_backend(backend, x), x, weights)


def pack_sparse(
    squeeze_weight: Tensor, expand1x1_weight: Tensor, expand3x3_weight: Tensor, block: int,
    width: int,
) -> SparsePacked:
    """A Fire's weights in the sparse kernel's format (``torch.ops.fire_kernels.pack_sparse``)
    for images ``width`` pixels wide: per group of ``block`` (1 or 4) output channels,
    the input positions where any of them has a nonzero weight, with those weights."""
    check_pack_args(squeeze_weight, expand1x1_weight, expand3x3_weight, block, width)
    packed = _PACK_SPARSE_OP(
        squeeze_weight.detach(), expand1x1_weight.detach(), expand3x3_weight.detach(), block, width
    )
    return SparsePacked(
        *packed, block, width, squeeze_weight.shape[0], expand1x1_weight.shape[0],
        expand3x3_weight.shape[0],
    )


def _sparse(x: Tensor, packed: SparsePacked, bs, be1, be3) -> Tensor:
    return _SPARSE_OP(
        x, packed.squeeze_values, packed.squeeze_index, bs, packed.expand_values,
        packed.expand_index, be1, be3, packed.squeeze_channels, packed.expand1x1_channels,
        packed.expand3x3_channels, packed.block, packed.width,
    )


def fire_sparse(
    x: Tensor,
    packed: SparsePacked,
    squeeze_bias: Tensor | None,
    expand1x1_bias: Tensor | None,
    expand3x3_bias: Tensor | None,
) -> Tensor:
    """The Fire from weights packed by :func:`pack_sparse`, skipping their zeros (the
    C++ kernel: CPU, float32, inference only). As zeros are skipped, a NaN or Inf in
    the input reaches only the outputs it has a nonzero weight path to."""
    check_sparse_args(
        x, squeeze_bias, expand1x1_bias, expand3x3_bias, packed.squeeze_channels,
        packed.expand1x1_channels, packed.expand3x3_channels, packed.block, packed.width,
    )
    resolve_backend("cpp", x)  # raises where the C++ kernel cannot run x
    return _sparse(x, packed, squeeze_bias, expand1x1_bias, expand3x3_bias)


def _blocksparse(x: Tensor, weights, blocks: BlockList) -> Tensor:
    return _op(_BLOCKSPARSE_OP, "triton", x)(x, *weights, blocks.blocks, blocks.counts,
                                             blocks.block)


def fire_blocksparse(
    x: Tensor,
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
    blocks: BlockList,
) -> Tensor:
    """The Fire on the Triton kernel, its 3x3 visiting only the weight blocks listed
    in ``blocks`` (from :func:`fire_kernels.sparse.gpu_block_list`)."""
    weights = (squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias,
               expand3x3_weight, expand3x3_bias)
    check_fire_args(x, *weights, who="fire_blocksparse")
    resolve_backend("triton", x)  # raises where the Triton kernel cannot run x
    return _blocksparse(x, weights, blocks)


def fire_planned(x: Tensor, plan: WeightPlan) -> Tensor:
    """``x`` through a FusedFire's plan (inference): its sparse form if it has one,
    else the dense kernel of its backend. For FusedFire, which has checked ``x``
    (``check_fire_input`` against ``plan.in_channels``) and that the plan serves it;
    the plan's weights were checked when it was made."""
    w, form = plan.weights, plan.sparse
    if isinstance(form, SparsePacked):
        return _sparse(x, form, w.squeeze_bias, w.expand1x1_bias, w.expand3x3_bias)
    if isinstance(form, BlockList):
        return _blocksparse(x, w, form)
    return _dense(plan.backend, x, w)
