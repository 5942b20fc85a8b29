"""Argument checks of the Fire operators: one checker per op, one message and one
exception type per mistake, whatever the backend.

Every Python entry point (``fire_kernels.functional``, hence ``FusedFire``) and every
fake kernel (``torch.compile``) calls these before anything runs, so eager,
compiled, C++, Triton and reference paths reject the same input with the same
words. The C++ kernels repeat only what they need for memory safety, with the same
wording (``csrc/fire_checks.h``), for callers of ``torch.ops.fire_kernels.*`` that
skip Python.

Kinds of mistake and their exceptions:

* ``TypeError``: a dtype (integer input, a weight's dtype not the input's);
* ``ValueError``: a rank, a shape or a channel count;
* ``RuntimeError``: a device (a weight not on the input's device).

Plain Python comparisons, not ``torch._check``: these run on every forward, and
``torch._check*`` costs ~2 us a call. Only channel counts are compared, which are
static under ``torch.compile``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "check_fire_args",
    "check_fire_input",
    "check_head_args",
    "check_head_sparse_args",
    "check_pack_args",
    "check_pack_conv1x1_args",
    "check_pool_args",
    "check_sparse_args",
    "check_stem_args",
    "conv_size",
    "pooled_size",
]


def check_fire_input(x: Tensor, who: str = "fire", channels: int | None = None) -> None:
    """A floating-point 4-D ``(N, C, H, W)`` input, of ``channels`` channels if given."""
    if not x.is_floating_point():
        raise TypeError(f"{who} expected a floating-point input, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(
            f"{who} expected a 4-D input (N, C, H, W), got {x.dim()}-D of shape {list(x.shape)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{who} expected {channels} input channels, got {x.shape[1]}")


def _check_channels(who: str, c: int, s: int, e1: int, e3: int) -> None:
    if min(c, s, e1, e3) < 1:
        raise ValueError(
            f"{who}: every convolution needs at least one channel; got C={c}, S={s}, "
            f"E1={e1}, E3={e3}"
        )


def _check_tensors(
    who: str, x: Tensor, expected: Sequence[tuple[str, Tensor | None, tuple[int, ...]]]
) -> None:
    """Each (name, tensor or None, shape): the shape given, on x's device, in x's dtype."""
    device, dtype = x.device, x.dtype
    for name, t, shape in expected:
        if t is None:
            continue
        if t.shape != shape:
            raise ValueError(f"{who} expected {name} of shape {list(shape)}, got {list(t.shape)}")
        if t.device != device:
            raise RuntimeError(f"{who}: {name} is on {t.device} but the input is on {device}")
        if t.dtype != dtype:
            raise TypeError(f"{who}: {name} is {t.dtype} but the input is {dtype}")


def check_fire_args(
    x: Tensor,
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
    who: str = "fire",
) -> None:
    """The arguments of ``fire`` (and ``fire_blocksparse``): the input and the
    ``nn.Conv2d`` weights ``(S, C, 1, 1)``, ``(E1, S, 1, 1)``, ``(E3, S, 3, 3)`` and
    biases ``(S,)``, ``(E1,)``, ``(E3,)`` (or None), on its device, in its dtype."""
    if squeeze_weight.dim() != 4 or expand1x1_weight.dim() != 4 or expand3x3_weight.dim() != 4:
        check_fire_input(x, who)
        raise ValueError(
            f"{who} expected 4-D conv weights, got shapes {list(squeeze_weight.shape)}, "
            f"{list(expand1x1_weight.shape)}, {list(expand3x3_weight.shape)}"
        )
    s, c = squeeze_weight.shape[0], squeeze_weight.shape[1]
    check_fire_input(x, who, c)
    e1, e3 = expand1x1_weight.shape[0], expand3x3_weight.shape[0]
    _check_channels(who, c, s, e1, e3)
    _check_tensors(who, x, (
        ("squeeze.weight", squeeze_weight, (s, c, 1, 1)),
        ("expand1x1.weight", expand1x1_weight, (e1, s, 1, 1)),
        ("expand3x3.weight", expand3x3_weight, (e3, s, 3, 3)),
        ("squeeze.bias", squeeze_bias, (s,)),
        ("expand1x1.bias", expand1x1_bias, (e1,)),
        ("expand3x3.bias", expand3x3_bias, (e3,)),
    ))


def pooled_size(size: int, kernel: int, stride: int, ceil_mode: bool) -> int:
    """A dimension of ``size`` pixels after ``nn.MaxPool2d(kernel, stride,
    ceil_mode=ceil_mode)`` (no padding): with ceil_mode the last window may hang
    over the edge, but must start inside."""
    out = (size - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size:
        out -= 1
    return out


def check_pool_args(x: Tensor, kernel: int, stride: int, ceil_mode: bool, who: str) -> None:
    """The max pool an op fuses into its read of the 4-D input ``x``: positive sizes,
    windows that fit. ``kernel == stride == 1``: no pool."""
    if kernel == 1 and stride == 1:
        return
    if kernel < 1 or stride < 1:
        raise ValueError(
            f"{who}: the pool's kernel and stride must be positive, got {kernel} and {stride}"
        )
    h, w = x.shape[2], x.shape[3]
    if min(pooled_size(h, kernel, stride, ceil_mode), pooled_size(w, kernel, stride, ceil_mode)) < 1:
        raise ValueError(
            f"{who}: the input's {h}x{w} pixels are fewer than the pool's {kernel}x{kernel} window"
        )


def check_sparse_args(
    x: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_bias: Tensor | None,
    expand3x3_bias: Tensor | None,
    squeeze_channels: int,
    expand1x1_channels: int,
    expand3x3_channels: int,
    block: int,
    width: int,
    pool: tuple[int, int, bool] = (1, 1, False),
    who: str = "fire_sparse",
) -> None:
    """The arguments of ``fire_sparse`` (``maxpool_fire_sparse`` with its ``pool``:
    kernel, stride, ceil_mode) that do not need the packed weights' values: the
    input, the pool, the channel counts, the biases, the block and the packed width,
    the Fire's (pooled) input's. (That the packed entries fit the shapes is checked
    where they are read, in C++.)"""
    check_fire_input(x, who)
    check_pool_args(x, *pool, who)
    s, e1, e3 = squeeze_channels, expand1x1_channels, expand3x3_channels
    _check_channels(who, x.shape[1], s, e1, e3)
    if block not in (1, 4):
        raise ValueError(f"{who}: block must be 1 or 4, got {block}")
    input_width = pooled_size(x.shape[3], *pool)
    if width != input_width:
        raise ValueError(
            f"{who}: the weights were packed for images {width} wide, the input is "
            f"{input_width} wide"
        )
    _check_tensors(who, x, (
        ("squeeze.bias", squeeze_bias, (s,)),
        ("expand1x1.bias", expand1x1_bias, (e1,)),
        ("expand3x3.bias", expand3x3_bias, (e3,)),
    ))


def check_pack_args(
    squeeze_weight: Tensor, expand1x1_weight: Tensor, expand3x3_weight: Tensor, block: int,
    width: int, who: str = "pack_sparse",
) -> None:
    """The arguments of ``pack_sparse``: a Fire's three conv weights (float32, on the
    CPU, where the sparse kernel runs), the group size and the image width."""
    if block not in (1, 4):
        raise ValueError(f"{who}: block must be 1 or 4, got {block}")
    if width < 1:
        raise ValueError(f"{who}: width must be positive, got {width}")
    if squeeze_weight.dim() != 4 or expand1x1_weight.dim() != 4 or expand3x3_weight.dim() != 4:
        raise ValueError(
            f"{who} expected 4-D conv weights, got shapes {list(squeeze_weight.shape)}, "
            f"{list(expand1x1_weight.shape)}, {list(expand3x3_weight.shape)}"
        )
    s, c = squeeze_weight.shape[0], squeeze_weight.shape[1]
    e1, e3 = expand1x1_weight.shape[0], expand3x3_weight.shape[0]
    for name, t, shape in (
        ("squeeze.weight", squeeze_weight, (s, c, 1, 1)),
        ("expand1x1.weight", expand1x1_weight, (e1, s, 1, 1)),
        ("expand3x3.weight", expand3x3_weight, (e3, s, 3, 3)),
    ):
        if t.shape != shape:
            raise ValueError(f"{who} expected {name} of shape {list(shape)}, got {list(t.shape)}")
        if t.device.type != "cpu":
            raise RuntimeError(f"{who}: {name} is on {t.device}; the sparse kernel runs on the CPU")
        if t.dtype != torch.float32:
            raise TypeError(f"{who}: {name} is {t.dtype}; the sparse kernel runs float32")


def conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """A dimension of ``size`` pixels after a convolution (dilation 1)."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_weight(who: str, x: Tensor, weight: Tensor) -> None:
    if weight.device != x.device:
        raise RuntimeError(f"{who}: weight is on {weight.device} but the input is on {x.device}")
    if weight.dtype != x.dtype:
        raise TypeError(f"{who}: weight is {weight.dtype} but the input is {x.dtype}")


def check_stem_args(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int, pool_kernel: int,
    pool_stride: int, pool_ceil_mode: bool, who: str = "conv_relu_maxpool",
) -> None:
    """The arguments of ``conv_relu_maxpool``: the input, a square conv weight
    ``(O, C, k, k)`` for its channels, the bias, a stride and padding whose output
    has at least one pixel, and a pool that fits that output."""
    check_fire_input(x, who)
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[0] < 1:
        raise ValueError(
            f"{who} expected a square conv weight [O, C, k, k], got {list(weight.shape)}"
        )
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{who} expected {weight.shape[1]} input channels, got {x.shape[1]}")
    if stride < 1 or padding < 0:
        raise ValueError(
            f"{who}: stride must be positive and padding not negative, got {stride} and {padding}"
        )
    k, (h, w) = weight.shape[2], x.shape[2:]
    if h + 2 * padding < k or w + 2 * padding < k:
        raise ValueError(
            f"{who}: the input's {h}x{w} pixels (padded by {padding}) are fewer than the "
            f"conv's {k}x{k} window"
        )
    if pool_kernel < 1 or pool_stride < 1:
        raise ValueError(
            f"{who}: the pool's kernel and stride must be positive, got {pool_kernel} and "
            f"{pool_stride}"
        )
    hc, wc = conv_size(h, k, stride, padding), conv_size(w, k, stride, padding)
    pool = (pool_kernel, pool_stride, pool_ceil_mode)
    if min(pooled_size(hc, *pool), pooled_size(wc, *pool)) < 1:
        raise ValueError(
            f"{who}: the conv's {hc}x{wc} output is smaller than the pool's "
            f"{pool_kernel}x{pool_kernel} window"
        )
    _check_tensors(who, x, (("bias", bias, (weight.shape[0],)),))
    _check_weight(who, x, weight)


def check_head_args(
    x: Tensor, weight: Tensor, bias: Tensor | None, who: str = "conv1x1_relu_avgpool"
) -> None:
    """The arguments of ``conv1x1_relu_avgpool``: the input, a 1x1 conv weight
    ``(O, C, 1, 1)`` for its channels, the bias."""
    check_fire_input(x, who)
    if weight.dim() != 4 or weight.shape[2:] != (1, 1) or weight.shape[0] < 1:
        raise ValueError(
            f"{who} expected a 1x1 conv weight [O, C, 1, 1], got {list(weight.shape)}"
        )
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{who} expected {weight.shape[1]} input channels, got {x.shape[1]}")
    _check_tensors(who, x, (("bias", bias, (weight.shape[0],)),))
    _check_weight(who, x, weight)


def check_head_sparse_args(
    x: Tensor, bias: Tensor | None, out_channels: int, block: int,
    who: str = "conv1x1_relu_avgpool_sparse",
) -> None:
    """The arguments of ``conv1x1_relu_avgpool_sparse`` that do not need the packed
    weights' values: the input, the output channels, the block, the bias."""
    check_fire_input(x, who)
    if out_channels < 1:
        raise ValueError(f"{who}: out_channels must be positive, got {out_channels}")
    if block not in (1, 4):
        raise ValueError(f"{who}: block must be 1 or 4, got {block}")
    _check_tensors(who, x, (("bias", bias, (out_channels,)),))


def check_pack_conv1x1_args(weight: Tensor, block: int, who: str = "pack_sparse_conv1x1") -> None:
    """The arguments of ``pack_sparse_conv1x1``: a float32 CPU 1x1 conv weight, the
    group size."""
    if block not in (1, 4):
        raise ValueError(f"{who}: block must be 1 or 4, got {block}")
    if weight.dim() != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(
            f"{who} expected a 1x1 conv weight [O, C, 1, 1], got {list(weight.shape)}"
        )
    if weight.device.type != "cpu":
        raise RuntimeError(f"{who}: weight is on {weight.device}; the sparse kernel runs on the CPU")
    if weight.dtype != torch.float32:
        raise TypeError(f"{who}: weight is {weight.dtype}; the sparse kernel runs float32")
