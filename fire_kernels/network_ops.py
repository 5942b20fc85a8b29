"""The operators of a network's layers around its Fires: schemas, fake kernels, autograd.

* ``conv_relu_maxpool``: a convolution + bias + ReLU + ``nn.MaxPool2d`` (a network's
  stem: SqueezeNet's conv1 -> ReLU -> MaxPool2d), the conv's output never written;
  the output is channels last, the layout the fused network runs in.
* ``conv1x1_relu_avgpool``: a 1x1 convolution + bias + ReLU + global average pool
  (SqueezeNet's classifier: conv10 -> ReLU -> AdaptiveAvgPool2d(1)), ``(N, O, 1, 1)``,
  the conv's output never written.
* ``pack_sparse_conv1x1`` and ``conv1x1_relu_avgpool_sparse``: the classifier's
  pruned weights packed once, then run skipping their zeros (inference).

CPU kernels in C++ (``csrc/network_ops.cpp``, ``csrc/pack_sparse.cpp``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ops import inference_only
from .validation import (
    check_head_args,
    check_head_sparse_args,
    check_pack_conv1x1_args,
    check_stem_args,
    conv_size,
    pooled_size,
)

__all__: list[str] = []

_lib = torch.library.Library("fire_kernels", "FRAGMENT")
_lib.define(
    "conv_relu_maxpool(Tensor x, Tensor weight, Tensor? bias, int stride, int padding, "
    "int pool_kernel, int pool_stride, bool pool_ceil_mode) -> Tensor"
)
_lib.define("conv1x1_relu_avgpool(Tensor x, Tensor weight, Tensor? bias) -> Tensor")
_lib.define(
    "conv1x1_relu_avgpool_sparse(Tensor x, Tensor values, Tensor index, Tensor? bias, "
    "int out_channels, int block) -> Tensor"
)
_lib.define("pack_sparse_conv1x1(Tensor weight, int block) -> (Tensor, Tensor)")


@torch.library.register_fake("fire_kernels::conv_relu_maxpool")
def _stem_fake(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_ceil_mode):
    check_stem_args(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_ceil_mode)
    k, pool = weight.shape[2], (pool_kernel, pool_stride, pool_ceil_mode)
    h, w = (pooled_size(conv_size(d, k, stride, padding), *pool) for d in x.shape[2:])
    return torch.empty((x.shape[0], weight.shape[0], h, w), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last)


def _stem_setup_context(ctx, inputs, output) -> None:
    x, weight, bias, *ctx.args = inputs
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, bias)


def _stem_backward(ctx, grad_out: Tensor):
    """The conv recomputed, the pool's gradient to each window's maximum (aten's
    indices), through the ReLU, then the conv's."""
    x, weight, bias = ctx.saved_tensors
    stride, padding, kernel, pool_stride, ceil_mode = ctx.args
    conv = torch.nn.functional.conv2d(x, weight, bias, stride, padding)
    relu = torch.relu(conv)
    pool_args = ([kernel] * 2, [pool_stride] * 2, [0, 0], [1, 1], ceil_mode)
    _, indices = torch.ops.aten.max_pool2d_with_indices(relu, *pool_args)
    g = torch.ops.aten.max_pool2d_with_indices_backward(grad_out, relu, *pool_args, indices)
    g = g * (conv > 0)
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = torch.ops.aten.convolution_backward(
        g, x, weight, [weight.shape[0]] if ctx.has_bias else None, [stride] * 2, [padding] * 2,
        [1, 1], False, [0, 0], 1, [need_x, need_w, need_b and ctx.has_bias],
    )
    return gx, gw, gb, None, None, None, None, None


torch.library.register_autograd(
    "fire_kernels::conv_relu_maxpool", _stem_backward, setup_context=_stem_setup_context
)


@torch.library.register_fake("fire_kernels::conv1x1_relu_avgpool")
def _head_fake(x, weight, bias):
    check_head_args(x, weight, bias)
    return x.new_empty((x.shape[0], weight.shape[0], 1, 1))


def _head_setup_context(ctx, inputs, output) -> None:
    x, weight, bias = inputs
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, bias)


def _head_backward(ctx, grad_out: Tensor):
    """The mean's gradient spread over the pixels, through the recomputed ReLU,
    then the 1x1 conv's."""
    x, weight, bias = ctx.saved_tensors
    conv = torch.nn.functional.conv2d(x, weight, bias)
    g = grad_out.expand_as(conv) / (x.shape[2] * x.shape[3]) * (conv > 0)
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = torch.ops.aten.convolution_backward(
        g, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [0, 0], [1, 1], False,
        [0, 0], 1, [need_x, need_w, need_b and ctx.has_bias],
    )
    return gx, gw, gb


torch.library.register_autograd(
    "fire_kernels::conv1x1_relu_avgpool", _head_backward, setup_context=_head_setup_context
)


@torch.library.register_fake("fire_kernels::conv1x1_relu_avgpool_sparse")
def _head_sparse_fake(x, values, index, bias, out_channels, block):
    check_head_sparse_args(x, bias, out_channels, block)
    return x.new_empty((x.shape[0], out_channels, 1, 1))


inference_only("conv1x1_relu_avgpool_sparse")


@torch.library.register_fake("fire_kernels::pack_sparse_conv1x1")
def _pack_conv1x1_fake(weight, block):
    check_pack_conv1x1_args(weight, block)
    entries = torch.library.get_ctx().new_dynamic_size()  # depends on the values
    groups = -(-weight.shape[0] // block)
    return (
        weight.new_empty((entries * block,), dtype=torch.float32),
        weight.new_empty((groups + 1 + entries,), dtype=torch.int32),
    )
