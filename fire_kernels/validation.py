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

__all__ = ["check_fire_args", "check_fire_input", "check_pack_args", "check_sparse_args"]


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
    who: str = "fire_sparse",
) -> None:
    """The arguments of ``fire_sparse`` that do not need the packed weights' values:
    the input, the channel counts, the biases, the block and the packed width. (That
    the packed entries fit the shapes is checked where they are read, in C++.)"""
    check_fire_input(x, who)
    s, e1, e3 = squeeze_channels, expand1x1_channels, expand3x3_channels
    _check_channels(who, x.shape[1], s, e1, e3)
    if block not in (1, 4):
        raise ValueError(f"{who}: block must be 1 or 4, got {block}")
    if width != x.shape[3]:
        raise ValueError(
            f"{who}: the weights were packed for images {width} wide, the input is "
            f"{x.shape[3]} wide"
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
