"""The int8 operators ``torch.ops.fire_kernels.*`` (issue 21): schemas and fake kernels.

* ``pack_int8``: a conv's int8 weights ``(O, C, k, k)`` (k = 1 or 3), int32 bias and
  float32 requantization multipliers ``(O,)`` in the int8 kernels' layout: weights
  ``[Op/16][k*k][C4/4][16][4]`` (``Op``, ``C4``: O and C rounded up to 16 and 4), bias
  and multipliers zero-padded to ``Op`` (``csrc/int8_kernel.h``).
* ``fire_int8``: the fused int8 Fire on a uint8 input (zero point 0) from packed
  convs: squeeze requantized to uint8, both expands to the one output scale, a uint8
  channels-last concat; optionally of the max-pooled input (``nn.MaxPool2d(kernel,
  stride, ceil_mode)``, no padding), the pool fused into the squeeze's read. Bit for bit :func:`fire_kernels.int8_reference.fire_int8_reference`
  (CPU; inference only).
* ``head_int8``: the int8 classifier head, conv 1x1 (packed) + ReLU + global average
  pool, uint8 in, float32 ``(N, O, 1, 1)`` out: each pixel's output requantized to
  uint8 at ``output_scale``, summed exactly, scaled once; bit for bit
  :func:`fire_kernels.int8_reference.head_int8_reference` (CPU; inference only).
* ``stem_int8``: a network's first layer in int8, conv k x k stride s (no padding) +
  ReLU + max pool, uint8 channels-last out, on an image: float32, quantized here (as
  ``quantize_uint8`` with ``input_scale`` and ``input_zero_point``, straight into the
  kernel's layout), or uint8 quantized with ``input_zero_point`` (an image need not
  follow a ReLU); bit for bit :func:`fire_kernels.int8_reference.stem_int8_reference`
  of the quantized image (CPU; inference only).
* ``quantize_uint8``: a float32 tensor as uint8 with a zero point, in its memory
  format: :func:`fire_kernels.int8_reference.quantize_activation` bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ops import inference_only
from .validation import check_pool_args, pooled_size

__all__ = ["fire_int8", "head_int8", "pack_int8", "packed_int8_size", "stem_int8"]

_lib = torch.library.Library("fire_kernels", "FRAGMENT")
_lib.define("pack_int8(Tensor weight, Tensor bias, Tensor multiplier) -> (Tensor, Tensor, Tensor)")
_lib.define(
    "fire_int8(Tensor x, Tensor squeeze, Tensor squeeze_bias, Tensor squeeze_multiplier, "
    "Tensor expand1x1, Tensor expand1x1_bias, Tensor expand1x1_multiplier, Tensor expand3x3, "
    "Tensor expand3x3_bias, Tensor expand3x3_multiplier, int squeeze_channels, "
    "int expand1x1_channels, int expand3x3_channels, int pool_kernel=1, int pool_stride=1, "
    "bool pool_ceil_mode=False) -> Tensor"
)
_lib.define("head_int8(Tensor x, Tensor weight, Tensor bias, Tensor multiplier, "
            "int out_channels, float output_scale) -> Tensor")
_lib.define("stem_int8(Tensor x, Tensor weight, Tensor bias, Tensor multiplier, "
            "int out_channels, int kernel, int stride, float input_scale, int input_zero_point, "
            "int pool_kernel=1, int pool_stride=1, bool pool_ceil_mode=False) -> Tensor")
_lib.define("quantize_uint8(Tensor x, float scale, int zero_point=0) -> Tensor")


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def packed_int8_size(out_channels: int, in_channels: int, taps: int) -> tuple[int, int]:
    """Elements of a packed conv's weights and of its padded bias (and multipliers)."""
    padded = _round_up(out_channels, 16)
    return padded * taps * _round_up(in_channels, 4), padded


@torch.library.register_fake("fire_kernels::pack_int8")
def _pack_int8_fake(weight: Tensor, bias: Tensor, multiplier: Tensor):
    if (weight.dim() != 4 or weight.shape[2] != weight.shape[3]
            or not 1 <= weight.shape[2] <= 11):
        raise ValueError(f"pack_int8: expected a square conv weight (O, C, k, k), k <= 11, got "
                         f"{tuple(weight.shape)}")
    o, c, k, _ = weight.shape
    n_weights, n_bias = packed_int8_size(o, c, k * k)
    return (weight.new_empty((n_weights,)), bias.new_empty((n_bias,)),
            multiplier.new_empty((n_bias,)))


@torch.library.register_fake("fire_kernels::fire_int8")
def _fire_int8_fake(x, squeeze, squeeze_bias, squeeze_multiplier, expand1x1, expand1x1_bias,
                    expand1x1_multiplier, expand3x3, expand3x3_bias, expand3x3_multiplier,
                    squeeze_channels, expand1x1_channels, expand3x3_channels, pool_kernel=1,
                    pool_stride=1, pool_ceil_mode=False):
    if x.dtype != torch.uint8:
        raise TypeError(f"fire_int8: expected a uint8 input, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"fire_int8: expected a 4-D input (N, C, H, W), got {x.dim()}-D")
    check_pool_args(x, pool_kernel, pool_stride, pool_ceil_mode, "fire_int8")
    pool = (pool_kernel, pool_stride, pool_ceil_mode)
    n, h, w = x.shape[0], pooled_size(x.shape[2], *pool), pooled_size(x.shape[3], *pool)
    return torch.empty((n, expand1x1_channels + expand3x3_channels, h, w), dtype=x.dtype,
                       device=x.device, memory_format=torch.channels_last)


inference_only("fire_int8")


@torch.library.register_fake("fire_kernels::head_int8")
def _head_int8_fake(x, weight, bias, multiplier, out_channels, output_scale):
    if x.dtype != torch.uint8:
        raise TypeError(f"head_int8: expected a uint8 input, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"head_int8: expected a 4-D input (N, C, H, W), got {x.dim()}-D")
    return x.new_empty((x.shape[0], out_channels, 1, 1), dtype=torch.float32)


inference_only("head_int8")


@torch.library.register_fake("fire_kernels::stem_int8")
def _stem_int8_fake(x, weight, bias, multiplier, out_channels, kernel, stride, input_scale,
                    input_zero_point, pool_kernel=1, pool_stride=1, pool_ceil_mode=False):
    if x.dtype not in (torch.float32, torch.uint8):
        raise TypeError(f"stem_int8: expected a float32 or uint8 input, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"stem_int8: expected a 4-D input (N, C, H, W), got {x.dim()}-D")
    conv_h, conv_w = ((size - kernel) // stride + 1 for size in x.shape[2:])
    pool = (pool_kernel, pool_stride, pool_ceil_mode)
    return torch.empty((x.shape[0], out_channels, pooled_size(conv_h, *pool),
                        pooled_size(conv_w, *pool)), dtype=torch.uint8, device=x.device,
                       memory_format=torch.channels_last)


inference_only("stem_int8")


@torch.library.register_fake("fire_kernels::quantize_uint8")
def _quantize_uint8_fake(x: Tensor, scale: float, zero_point: int = 0) -> Tensor:
    if x.dtype != torch.float32:
        raise TypeError(f"quantize_uint8: expected a float32 input, got {x.dtype}")
    return torch.empty_like(x, dtype=torch.uint8)


inference_only("quantize_uint8")


def pack_int8(weight: Tensor, bias: Tensor, multiplier: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.ops.fire_kernels.pack_int8``: see the module's docstring."""
    return torch.ops.fire_kernels.pack_int8(weight, bias, multiplier)


def fire_int8(xq: Tensor, fire, pool: tuple[int, int, bool] = (1, 1, False)) -> Tensor:
    """The fused int8 Fire of a :class:`~fire_kernels.int8_reference.QuantizedFire` on
    the uint8 input ``xq``, max-pooled by ``pool`` (kernel, stride, ceil_mode) first
    (packs its convs on every call: a convenience for tests and one-off use)."""
    convs = [pack_int8(c.weight, c.bias, c.multiplier)
             for c in (fire.squeeze, fire.expand1x1, fire.expand3x3)]
    return torch.ops.fire_kernels.fire_int8(
        xq, *convs[0], *convs[1], *convs[2], fire.squeeze.weight.shape[0],
        fire.expand1x1.weight.shape[0], fire.expand3x3.weight.shape[0], *pool)


def head_int8(xq: Tensor, head) -> Tensor:
    """The int8 head of a :class:`~fire_kernels.int8_reference.QuantizedHead` on the
    uint8 input ``xq`` (packs its conv on every call, as :func:`fire_int8`)."""
    c = head.conv
    return torch.ops.fire_kernels.head_int8(xq, *pack_int8(c.weight, c.bias, c.multiplier),
                                            c.weight.shape[0], head.output_scale)


def stem_int8(x: Tensor, stem) -> Tensor:
    """The int8 stem of a :class:`~fire_kernels.int8_reference.QuantizedStem` on the
    image ``x``, float32 or quantized uint8 (packs its conv on every call, as
    :func:`fire_int8`)."""
    c = stem.conv
    return torch.ops.fire_kernels.stem_int8(
        x, *pack_int8(c.weight, c.bias, c.multiplier), c.weight.shape[0], c.weight.shape[2],
        stem.stride, stem.input_scale, stem.input_zero_point, *stem.pool)

