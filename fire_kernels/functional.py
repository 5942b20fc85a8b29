"""The fused Fire as functions: the one layer that calls ``torch.ops.fire_kernels.*``.

* :func:`fire`: the dense Fire from the plain conv weights, the functional twin of
  :class:`fire_kernels.FusedFire` (as torchvision's ``roi_align`` is of ``RoIAlign``);
* :func:`pack_sparse` and :func:`fire_sparse`: pruned weights packed once, then run
  skipping their zeros (C++, inference);
* :func:`fire_blocksparse`: skipping the 3x3's zero weight blocks (Triton);
* :func:`conv_relu_maxpool` (a network's stem), :func:`conv1x1_relu_avgpool`,
  :func:`pack_sparse_conv1x1` and :func:`conv1x1_relu_avgpool_sparse` (its
  classifier head);
* :func:`fire_planned`, :func:`head_planned`: what a fused module's
  :class:`~fire_kernels.weight_plan.WeightPlan` says to run, for the modules.

Each checks its arguments (``fire_kernels.validation``), resolves the backend once
and calls one operator, or the PyTorch reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from . import _extension
from . import network_ops as _network_ops  # noqa: F401 - defines the network operators
from .reference import fire_reference
from .sparse import BlockList, SparseConv1x1, SparsePacked, TritonForm
from .validation import (
    check_fire_args,
    check_head_args,
    check_head_sparse_args,
    check_pack_args,
    check_pack_conv1x1_args,
    check_pool_args,
    check_sparse_args,
    check_stem_args,
)

if TYPE_CHECKING:
    from .weight_plan import WeightPlan

__all__ = [
    "BACKENDS",
    "Backend",
    "Pool",
    "conv1x1_relu_avgpool",
    "conv1x1_relu_avgpool_sparse",
    "conv_relu_maxpool",
    "fire",
    "fire_blocksparse",
    "fire_planned",
    "fire_sparse",
    "head_planned",
    "pack_sparse",
    "pack_sparse_conv1x1",
    "resolve_backend",
]

_FIRE_OP = torch.ops.fire_kernels.fire.default
_SPARSE_OP = torch.ops.fire_kernels.fire_sparse.default
_BLOCKSPARSE_OP = torch.ops.fire_kernels.fire_blocksparse.default
_PACKED_OP = torch.ops.fire_kernels.fire_packed.default
# The Triton kernels on CPU tensors (Triton's interpreter): same schemas and autograd.
_INTERPRETED_OPS = {
    _FIRE_OP: torch.ops.fire_kernels.fire_interpreted.default,
    _BLOCKSPARSE_OP: torch.ops.fire_kernels.fire_blocksparse_interpreted.default,
    _PACKED_OP: torch.ops.fire_kernels.fire_packed_interpreted.default,
}
_PACK_SPARSE_OP = torch.ops.fire_kernels.pack_sparse.default
_MAXPOOL_FIRE_OP = torch.ops.fire_kernels.maxpool_fire.default
_MAXPOOL_SPARSE_OP = torch.ops.fire_kernels.maxpool_fire_sparse.default
_STEM_OP = torch.ops.fire_kernels.conv_relu_maxpool.default
_HEAD_OP = torch.ops.fire_kernels.conv1x1_relu_avgpool.default
_HEAD_SPARSE_OP = torch.ops.fire_kernels.conv1x1_relu_avgpool_sparse.default
_PACK_CONV1X1_OP = torch.ops.fire_kernels.pack_sparse_conv1x1.default

Backend = Literal["auto", "cpp", "triton", "torch"]
#: A max pool fused into a Fire's read of its input: (kernel, stride, ceil_mode) of
#: ``nn.MaxPool2d`` (no padding).
Pool = tuple[int, int, bool]
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


def _max_pool(x: Tensor, pool: Pool) -> Tensor:
    kernel, stride, ceil_mode = pool
    return torch.nn.functional.max_pool2d(x, kernel, stride, ceil_mode=ceil_mode)


def _dense(path: str, x: Tensor, weights, pool: Pool | None = None) -> Tensor:
    """The dense Fire (of the max-pooled x, with ``pool``) on a resolved backend,
    arguments checked. The pool is fused into the C++ kernel; elsewhere it runs first."""
    if path == "cpp" and pool is not None:
        return _MAXPOOL_FIRE_OP(x, *weights, *pool)
    if pool is not None:
        x = _max_pool(x, pool)
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
    pool: Pool | None = None,
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
        pool: ``(kernel, stride, ceil_mode)``: the Fire of ``nn.MaxPool2d(kernel,
            stride, ceil_mode=ceil_mode)(x)`` instead, the pool fused into the C++
            kernel's read of x (the pooled tensor is never written).

    Returns:
        ``(N, E1 + E3, H, W)`` tensor (H, W pooled with ``pool``).
    """
    weights = (squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias,
               expand3x3_weight, expand3x3_bias)
    who = "fire" if pool is None else "maxpool_fire"
    check_fire_args(x, *weights, who=who)
    if pool is not None:
        check_pool_args(x, *pool, who)
    return _dense(resolve_backend(backend, x), x, weights, pool)


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


def _sparse(x: Tensor, packed: SparsePacked, bs, be1, be3, pool: Pool | None = None) -> Tensor:
    args = (
        x, packed.squeeze_values, packed.squeeze_index, bs, packed.expand_values,
        packed.expand_index, be1, be3, packed.squeeze_channels, packed.expand1x1_channels,
        packed.expand3x3_channels, packed.block, packed.width,
    )
    return _SPARSE_OP(*args) if pool is None else _MAXPOOL_SPARSE_OP(*args, *pool)


def fire_sparse(
    x: Tensor,
    packed: SparsePacked,
    squeeze_bias: Tensor | None,
    expand1x1_bias: Tensor | None,
    expand3x3_bias: Tensor | None,
    *,
    pool: Pool | None = None,
) -> Tensor:
    """The Fire from weights packed by :func:`pack_sparse`, skipping their zeros (the
    C++ kernel: CPU, float32, inference only); ``pool`` as for :func:`fire` (the
    weights then packed for the pooled width). As zeros are skipped, a NaN or Inf in
    the input reaches only the outputs it has a nonzero weight path to."""
    check_sparse_args(
        x, squeeze_bias, expand1x1_bias, expand3x3_bias, packed.squeeze_channels,
        packed.expand1x1_channels, packed.expand3x3_channels, packed.block, packed.width,
        pool or (1, 1, False), who="fire_sparse" if pool is None else "maxpool_fire_sparse",
    )
    resolve_backend("cpp", x)  # raises where the C++ kernel cannot run x
    return _sparse(x, packed, squeeze_bias, expand1x1_bias, expand3x3_bias, pool)


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


def conv_relu_maxpool(
    x: Tensor, weight: Tensor, bias: Tensor | None, *, stride: int, padding: int,
    pool_kernel: int, pool_stride: int, pool_ceil_mode: bool, backend: Backend = "auto",
) -> Tensor:
    """``max_pool2d(relu(conv2d(x, weight, bias, stride, padding)), pool_kernel,
    pool_stride, ceil_mode=pool_ceil_mode)``: a network's stem in one kernel (C++),
    the conv's output never written. ``weight`` is square ``(O, C, k, k)``; the
    output is channels last, the layout the rest of a fused network runs in."""
    args = (stride, padding, pool_kernel, pool_stride, pool_ceil_mode)
    check_stem_args(x, weight, bias, *args)
    if resolve_backend(backend, x) == "cpp":
        return _STEM_OP(x, weight, bias, *args)
    conv = torch.nn.functional.conv2d(x, weight, bias, stride, padding)
    out = _max_pool(torch.relu(conv), (pool_kernel, pool_stride, pool_ceil_mode))
    return out.contiguous(memory_format=torch.channels_last)


def conv1x1_relu_avgpool(
    x: Tensor, weight: Tensor, bias: Tensor | None, *, backend: Backend = "auto"
) -> Tensor:
    """``adaptive_avg_pool2d(relu(conv2d(x, weight, bias)), 1)``, ``(N, O, 1, 1)``: a
    classifier head in one kernel (C++), the conv's output never written."""
    check_head_args(x, weight, bias)
    if resolve_backend(backend, x) == "cpp":
        return _HEAD_OP(x, weight, bias)
    return _head_reference(x, weight, bias)


def _head_reference(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return torch.relu(torch.nn.functional.conv2d(x, weight, bias)).mean((2, 3), keepdim=True)


def pack_sparse_conv1x1(weight: Tensor, block: int) -> SparseConv1x1:
    """A 1x1 conv's weight ``(O, C, 1, 1)`` in the sparse kernel's format: per group
    of ``block`` (1 or 4) output channels, the input channels where any of them has
    a nonzero weight, with those weights."""
    check_pack_conv1x1_args(weight, block)
    values, index = _PACK_CONV1X1_OP(weight.detach(), block)
    return SparseConv1x1(values, index, block, weight.shape[0])


def conv1x1_relu_avgpool_sparse(x: Tensor, packed: SparseConv1x1, bias: Tensor | None) -> Tensor:
    """:func:`conv1x1_relu_avgpool` from weights packed by :func:`pack_sparse_conv1x1`,
    skipping their zeros (C++, CPU, float32, inference only)."""
    check_head_sparse_args(x, bias, packed.out_channels, packed.block)
    resolve_backend("cpp", x)
    return _HEAD_SPARSE_OP(x, packed.values, packed.index, bias, packed.out_channels,
                           packed.block)


def fire_planned(x: Tensor, plan: WeightPlan, pool: Pool | None = None) -> Tensor:
    """``x`` through a FusedFire's plan (inference): its sparse form if it has one,
    else the dense kernel of its backend. For FusedFire, which has checked ``x``
    (``check_fire_input`` against the weights' channels) and that the plan serves it;
    the plan's weights were checked when it was made."""
    w, form = plan.weights, plan.sparse
    if isinstance(form, SparsePacked):
        return _sparse(x, form, w.squeeze_bias, w.expand1x1_bias, w.expand3x3_bias, pool)
    if isinstance(form, TritonForm):
        if pool is not None:
            x = _max_pool(x, pool)
        blocks = form.blocks
        return _op(_PACKED_OP, "triton", x)(
            x, *form.weights, w.squeeze_weight.shape[0], w.expand1x1_weight.shape[0],
            w.expand3x3_weight.shape[0], None if blocks is None else blocks.blocks,
            None if blocks is None else blocks.counts,
        )
    return _dense(plan.backend, x, w, pool)


def head_planned(x: Tensor, plan: WeightPlan) -> Tensor:
    """``x`` through a fused classifier head's plan (inference): sparse if it has a
    sparse form, else dense; checks as for :func:`fire_planned`."""
    weight, bias = plan.weights
    if plan.sparse is not None:
        packed = plan.sparse
        return _HEAD_SPARSE_OP(x, packed.values, packed.index, bias, packed.out_channels,
                               packed.block)
    if plan.backend == "cpp":
        return _HEAD_OP(x, weight, bias)
    return _head_reference(x, weight, bias)
