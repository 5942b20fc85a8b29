"""The operators ``torch.ops.fire_kernels.*``: schemas, argument checks, fake kernels, autograd.

* ``fire``: the fused Fire from the plain conv weights (dense).
* ``pack_sparse``: a Fire's weights in the sparse kernels' format (plain tensors).
* ``fire_sparse``: the fused Fire from packed sparse weights (inference, CPU).
* ``fire_blocksparse``: the fused Fire skipping the 3x3's zero weight blocks, given
  their list (CUDA, Triton).
* ``fire_interpreted``, ``fire_blocksparse_interpreted``: the Triton kernels of the
  two above on CPU tensors under Triton's interpreter (tests without a GPU).
* ``fire_packed`` (and its ``_interpreted`` twin): the Triton kernel from weights
  packed once per weight version (``fire_kernels.triton.pack_triton_weights``), what
  a FusedFire's plan runs on a GPU so that no forward packs (inference).
* ``maxpool_fire``, ``maxpool_fire_sparse``: ``fire`` and ``fire_sparse`` of the
  max-pooled input (``nn.MaxPool2d(kernel, stride, ceil_mode)``, no padding), the
  pool fused into the squeeze's read (CPU): the pooled tensor is never written.

The operators of the layers around the Fires are in ``fire_kernels.network_ops``.

The device kernels are registered elsewhere: the CPU kernels in C++
(``csrc/*.cpp``, ``TORCH_LIBRARY_IMPL``), the CUDA kernel in Triton. The
schemas are defined here, in Python, so the operators exist (for
``torch.compile`` and for CUDA) even when the C++ extension is not built.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import (
    check_fire_args,
    check_fire_input,
    check_pack_args,
    check_pool_args,
    check_sparse_args,
    pooled_size,
)

__all__ = ["inference_only", "output_memory_format"]

_lib = torch.library.Library("fire_kernels", "DEF")
_FIRE_ARGS = (
    "Tensor x, Tensor squeeze_weight, Tensor? squeeze_bias, Tensor expand1x1_weight, "
    "Tensor? expand1x1_bias, Tensor expand3x3_weight, Tensor? expand3x3_bias"
)
_BLOCK_ARGS = "Tensor block_list, Tensor block_counts, int block"
_POOL_ARGS = "int pool_kernel, int pool_stride, bool pool_ceil_mode"
_SPARSE_ARGS = (
    "Tensor x, Tensor squeeze_values, Tensor squeeze_index, Tensor? squeeze_bias, "
    "Tensor expand_values, Tensor expand_index, Tensor? expand1x1_bias, Tensor? expand3x3_bias, "
    "int squeeze_channels, int expand1x1_channels, int expand3x3_channels, int block, int width"
)
# fire_interpreted and fire_blocksparse_interpreted: the Triton kernels of fire and
# fire_blocksparse on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1),
# whose CPU kernel is the Triton launcher instead of C++. The same schemas, fake
# kernels and autograd, so that the interpreter, which is how the Triton path is
# tested without a GPU, goes the way GPU users' calls go.
for _name in ("fire", "fire_interpreted"):
    _lib.define(f"{_name}({_FIRE_ARGS}) -> Tensor")
for _name in ("fire_blocksparse", "fire_blocksparse_interpreted"):
    _lib.define(f"{_name}({_FIRE_ARGS}, {_BLOCK_ARGS}) -> Tensor")
_lib.define(
    "pack_sparse(Tensor squeeze_weight, Tensor expand1x1_weight, Tensor expand3x3_weight, "
    "int block, int width) -> (Tensor, Tensor, Tensor, Tensor)"
)
_lib.define(f"fire_sparse({_SPARSE_ARGS}) -> Tensor")
_lib.define(f"maxpool_fire({_FIRE_ARGS}, {_POOL_ARGS}) -> Tensor")
for _name in ("fire_packed", "fire_packed_interpreted"):
    _lib.define(
        f"{_name}(Tensor x, Tensor squeeze, Tensor squeeze_bias, Tensor expand1x1, "
        "Tensor expand1x1_bias, Tensor expand3x3, Tensor expand3x3_bias, int squeeze_channels, "
        "int expand1x1_channels, int expand3x3_channels, Tensor? block_list, "
        "Tensor? block_counts) -> Tensor"
    )
_lib.define(f"maxpool_fire_sparse({_SPARSE_ARGS}, {_POOL_ARGS}) -> Tensor")


def output_memory_format(x: Tensor) -> torch.memory_format:
    """The memory format of the kernels' output for input ``x``: channels last where
    ``x``'s strides are like channels last, as ATen's ``Tensor::suggest_memory_format``
    decides (``is_channels_last_strides_2d_s4`` in c10/core/MemoryFormat.h), which the
    C++ and Triton kernels call; this fake-kernel twin must agree with it exactly."""
    n_c_h_w = x.shape
    strides = x.stride()
    if x.dim() != 4 or strides[1] == 0:
        return torch.contiguous_format
    smallest = 0
    for d in (1, 3, 2, 0):  # the dims from innermost to outermost in channels last
        if n_c_h_w[d] == 0 or strides[d] < smallest:
            return torch.contiguous_format
        if d == 0 and smallest == strides[1]:
            return torch.contiguous_format  # ambiguous (N,1,1,1)-like: NCHW by default
        smallest = strides[d] * max(1, n_c_h_w[d])
    return torch.channels_last


def _empty_output(x: Tensor, channels, pool: tuple[int, int, bool] = (1, 1, False)) -> Tensor:
    """The kernels' output: (N, channels, H, W) in the input's memory format, H and
    W pooled by ``pool`` (kernel, stride, ceil_mode)."""
    n, _, h, w = x.shape
    return torch.empty(
        (n, channels, pooled_size(h, *pool), pooled_size(w, *pool)), dtype=x.dtype,
        device=x.device, memory_format=output_memory_format(x),
    )


def _fire_fake(
    x: Tensor,
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
) -> Tensor:
    check_fire_args(
        x, squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias, expand3x3_weight,
        expand3x3_bias,
    )
    return _empty_output(x, expand1x1_weight.shape[0] + expand3x3_weight.shape[0])


def _setup_context(ctx, inputs, output) -> None:
    x, ws, bs, we1, be1, we3, be3 = inputs
    ctx.has_bias = (bs is not None, be1 is not None, be3 is not None)
    ctx.save_for_backward(x, ws, bs, we1, be1, we3, be3, output)


def _conv_backward(
    grad: Tensor, inp: Tensor, weight: Tensor, has_bias: bool, padding: int, mask: list[bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    bias_sizes = [weight.shape[0]] if has_bias else None
    gi, gw, gb = torch.ops.aten.convolution_backward(
        grad, inp, weight, bias_sizes, [1, 1], [padding, padding], [1, 1], False, [0, 0], 1,
        [mask[0], mask[1], mask[2] and has_bias],
    )
    return gi, gw, gb


def _fire_grads(x: Tensor, weights, out: Tensor, grad_out: Tensor, has_bias, needs):
    """Gradients of the Fire with input x (ws, bs, we1, be1, we3, be3 = weights) from
    aten ops: the squeeze activation is recomputed (13 % of the forward MACs) rather
    than kept, and the expands' ReLU masks come from the output (``relu(z) > 0``
    exactly where ``z > 0``)."""
    ws, bs, we1, be1, we3, be3 = weights
    has_bs, has_be1, has_be3 = has_bias
    need_x, need_ws, need_bs, need_we1, need_be1, need_we3, need_be3 = needs
    e1 = we1.shape[0]
    s = torch.relu(torch.nn.functional.conv2d(x, ws, bs))
    g = grad_out * (out > 0)
    need_s = need_x or need_ws or need_bs
    gs1, gwe1, gbe1 = _conv_backward(g[:, :e1], s, we1, has_be1, 0, [need_s, need_we1, need_be1])
    gs3, gwe3, gbe3 = _conv_backward(g[:, e1:], s, we3, has_be3, 1, [need_s, need_we3, need_be3])
    gx = gws = gbs = None
    if need_s:
        gs = (gs1 + gs3) * (s > 0)
        gx, gws, gbs = _conv_backward(gs, x, ws, has_bs, 0, [need_x, need_ws, need_bs])
    return gx, gws, gbs, gwe1, gbe1, gwe3, gbe3


def _backward(ctx, grad_out: Tensor):
    x, *weights, out = ctx.saved_tensors
    return _fire_grads(x, weights, out, grad_out, ctx.has_bias, ctx.needs_input_grad[:7])


def _maxpool_fire_fake(x, ws, bs, we1, be1, we3, be3, pool_kernel, pool_stride, pool_ceil_mode):
    check_fire_args(x, ws, bs, we1, be1, we3, be3, who="maxpool_fire")
    check_pool_args(x, pool_kernel, pool_stride, pool_ceil_mode, "maxpool_fire")
    pool = (pool_kernel, pool_stride, pool_ceil_mode)
    return _empty_output(x, we1.shape[0] + we3.shape[0], pool)


def _maxpool_setup_context(ctx, inputs, output) -> None:
    _setup_context(ctx, inputs[:7], output)
    ctx.pool = inputs[7:]


def _maxpool_backward(ctx, grad_out: Tensor):
    """The Fire's gradients at the pooled input, then the pool's: max pooling
    sends each gradient to the window's maximum (aten's max_pool2d indices)."""
    x, *weights, out = ctx.saved_tensors
    kernel, stride, ceil_mode = ctx.pool
    pool_args = ([kernel] * 2, [stride] * 2, [0, 0], [1, 1], ceil_mode)
    pooled, indices = torch.ops.aten.max_pool2d_with_indices(x, *pool_args)
    grads = _fire_grads(pooled, weights, out, grad_out, ctx.has_bias, ctx.needs_input_grad[:7])
    gx = grads[0]
    if gx is not None:
        gx = torch.ops.aten.max_pool2d_with_indices_backward(gx, x, *pool_args, indices)
    return (gx, *grads[1:], None, None, None)


def _fire_blocksparse_fake(x, ws, bs, we1, be1, we3, be3, block_list, block_counts, block):
    return _fire_fake(x, ws, bs, we1, be1, we3, be3)


def _blocksparse_setup_context(ctx, inputs, output) -> None:
    _setup_context(ctx, inputs[:7], output)


def _blocksparse_backward(ctx, grad_out):
    # The same function as fire's, so the same gradients; none for the lists.
    return (*_backward(ctx, grad_out), None, None, None)


for _name in ("fire", "fire_interpreted"):
    torch.library.register_fake(f"fire_kernels::{_name}", _fire_fake)
    torch.library.register_autograd(f"fire_kernels::{_name}", _backward,
                                    setup_context=_setup_context)
for _name in ("fire_blocksparse", "fire_blocksparse_interpreted"):
    torch.library.register_fake(f"fire_kernels::{_name}", _fire_blocksparse_fake)
    torch.library.register_autograd(f"fire_kernels::{_name}", _blocksparse_backward,
                                    setup_context=_blocksparse_setup_context)


@torch.library.register_fake("fire_kernels::pack_sparse")
def _pack_sparse_fake(squeeze_weight, expand1x1_weight, expand3x3_weight, block, width):
    check_pack_args(squeeze_weight, expand1x1_weight, expand3x3_weight, block, width)
    # The number of entries depends on the weights' values.
    ctx = torch.library.get_ctx()
    s, e = squeeze_weight.shape[0], expand1x1_weight.shape[0] + expand3x3_weight.shape[0]
    s_entries, e_entries = ctx.new_dynamic_size(), ctx.new_dynamic_size()
    groups_s, groups_e = -(-s // block), -(-e // block)
    f32 = dict(dtype=torch.float32, device=squeeze_weight.device)
    i32 = dict(dtype=torch.int32, device=squeeze_weight.device)
    return (
        squeeze_weight.new_empty((s_entries * block,), **f32),
        squeeze_weight.new_empty((groups_s + 1 + s_entries,), **i32),
        squeeze_weight.new_empty((e_entries * block,), **f32),
        squeeze_weight.new_empty((groups_e + 1 + e_entries,), **i32),
    )


torch.library.register_fake("fire_kernels::maxpool_fire", _maxpool_fire_fake)
torch.library.register_autograd("fire_kernels::maxpool_fire", _maxpool_backward,
                                setup_context=_maxpool_setup_context)


@torch.library.register_fake("fire_kernels::fire_sparse")
def _fire_sparse_fake(
    x, squeeze_values, squeeze_index, squeeze_bias, expand_values, expand_index, expand1x1_bias,
    expand3x3_bias, squeeze_channels, expand1x1_channels, expand3x3_channels, block, width,
):
    check_sparse_args(
        x, squeeze_bias, expand1x1_bias, expand3x3_bias, squeeze_channels, expand1x1_channels,
        expand3x3_channels, block, width,
    )
    return _empty_output(x, expand1x1_channels + expand3x3_channels)


@torch.library.register_fake("fire_kernels::maxpool_fire_sparse")
def _maxpool_fire_sparse_fake(
    x, squeeze_values, squeeze_index, squeeze_bias, expand_values, expand_index, expand1x1_bias,
    expand3x3_bias, squeeze_channels, expand1x1_channels, expand3x3_channels, block, width,
    pool_kernel, pool_stride, pool_ceil_mode,
):
    pool = (pool_kernel, pool_stride, pool_ceil_mode)
    check_sparse_args(
        x, squeeze_bias, expand1x1_bias, expand3x3_bias, squeeze_channels, expand1x1_channels,
        expand3x3_channels, block, width, pool, who="maxpool_fire_sparse",
    )
    return _empty_output(x, expand1x1_channels + expand3x3_channels, pool)


def inference_only(op: str) -> None:
    """Registers an autograd formula for ``op`` that says it has none: its weights are
    packed (plain tensors, not the Parameters), so no gradient could reach them."""

    def backward(ctx, grad_out):
        raise RuntimeError(
            f"{op} is inference-only (its weights are packed); train with the dense op "
            "(the fused modules do so whenever gradients are needed)"
        )

    torch.library.register_autograd(
        f"fire_kernels::{op}", backward, setup_context=lambda ctx, inputs, output: None
    )


def _fire_packed_fake(x, squeeze, squeeze_bias, expand1x1, expand1x1_bias, expand3x3,
                      expand3x3_bias, squeeze_channels, expand1x1_channels, expand3x3_channels,
                      block_list, block_counts):
    check_fire_input(x, "fire_packed")
    return _empty_output(x, expand1x1_channels + expand3x3_channels)


for _name in ("fire_packed", "fire_packed_interpreted"):
    torch.library.register_fake(f"fire_kernels::{_name}", _fire_packed_fake)
    inference_only(_name)
inference_only("fire_sparse")
inference_only("maxpool_fire_sparse")
