"""The int8 Fire's integer arithmetic in plain PyTorch: the reference the int8 kernels
must match bit for bit.

Quantization (static, as Deep Compression deploys it):

* **activations** uint8, one affine map per tensor, ``real = scale * (q - zero_point)``;
  a Fire's input, squeeze and output all follow a ReLU, so their zero point is 0 and
  ``scale = max / 255`` of what calibration saw (:func:`activation_scale`);
* **weights** int8, symmetric, one scale per output channel:
  ``q = round(w / scale)`` in ``[-127, 127]`` with ``scale = max|w| / 127``
  (:func:`quantize_weight`; the range is symmetric, -128 is never used); or, with
  ``weight_bits=7``, in ``[-63, 63]``: what CPUs without VNNI multiply fastest with
  no risk of saturation (``csrc/qvec_avx2.h``), as ONNX Runtime's ``reduce_range``;
* **biases** int32 in the accumulator's units, ``round(b / (s_in * s_w))``
  (:func:`quantize_bias`).

A convolution accumulates exactly in integers, ``acc[o] = bias_q[o] +
sum_k w_q[o][k] * (x_q[k] - x_zp)`` (zero padding is ``x_zp``, real zero), and
requantizes each output once (:func:`requantize`):

    out_q = clamp(round_half_even(float32(acc) * M[o]) + out_zp, out_zp if relu else 0, 255)
    M[o]  = float32(s_in * s_w[o] / s_out)        (computed in float64, rounded once)

``float32(acc)`` rounds to nearest even (exact below 2**24, as the vector
conversion instructions round), the product is one float32 multiply, and the
rounding is half to even (what ``vcvtps2dq`` does in the default rounding mode).
The squeeze's uint8 output feeds both expands; both expands requantize to the
Fire's one output scale, so their outputs are one uint8 concat.

Exactness of the reference itself: the accumulations run as float64 convolutions
of integer-valued tensors, exact in any order while every partial sum stays below
2**53: ``|acc| <= 2**31 + 255 * 127 * K`` for K products, so for any K below 10**11.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "QuantizedConv",
    "QuantizedFire",
    "QuantizedHead",
    "QuantizedStem",
    "accumulate",
    "activation_scale",
    "conv_int8_reference",
    "dequantize",
    "fire_int8_reference",
    "head_int8_reference",
    "input_qparams",
    "quantize_activation",
    "quantize_bias",
    "quantize_conv",
    "quantize_fire",
    "quantize_head",
    "quantize_stem",
    "quantize_weight",
    "requant_multiplier",
    "requantize",
    "stem_int8_reference",
]

QMAX_ACTIVATION = 255


def activation_scale(max_value: float) -> float:
    """The uint8 scale of a post-ReLU tensor whose largest value is ``max_value``
    (zero point 0): ``max_value / 255``; 1.0 for a tensor that was never positive
    (any scale represents all-zeros)."""
    if not max_value > 0.0:  # also NaN
        return 1.0
    return float(max_value) / QMAX_ACTIVATION


def input_qparams(min_value: float, max_value: float) -> tuple[float, int]:
    """The uint8 scale and zero point of a network's input, seen within ``[min_value,
    max_value]`` (an image need not follow a ReLU): the range widened to hold 0,
    ``scale = (max - min) / 255``, ``zero_point = round(-min / scale)``; (1.0, 0) for
    a range of zeros."""
    lo, hi = min(0.0, float(min_value)), max(0.0, float(max_value))
    if not hi - lo > 0.0:  # also NaN
        return 1.0, 0
    scale = (hi - lo) / QMAX_ACTIVATION
    return scale, min(QMAX_ACTIVATION, max(0, round(-lo / scale)))


def quantize_activation(x: Tensor, scale: float, zero_point: int = 0) -> Tensor:
    """uint8 ``clamp(round_half_even(x / scale) + zero_point, 0, 255)``, NaN to 0."""
    q = torch.round(x.float() / scale).nan_to_num_(nan=-float(zero_point)) + zero_point
    return q.clamp_(0, QMAX_ACTIVATION).to(torch.uint8)


def dequantize(q: Tensor, scale: float, zero_point: int = 0) -> Tensor:
    """float32 ``scale * (q - zero_point)``."""
    return (q.float() - zero_point) * scale


def quantize_weight(w: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """A conv weight ``(O, ...)`` as int8 values in ``[-qmax, qmax]``, ``qmax = 2**(bits-1)
    - 1`` (127, or 63 for 7 bits), and float32 scales ``(O,)``: symmetric, per output
    channel, ``scale = max|w[o]| / qmax`` (1.0 for an all-zero channel, a pruned one)."""
    if bits not in (7, 8):
        raise ValueError(f"quantize_weight: expected 7 or 8 bits, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    amax = w.detach().float().abs().reshape(w.shape[0], -1).amax(1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.round(w.detach().float() / scale.reshape(-1, *([1] * (w.dim() - 1))))
    return q.clamp_(-qmax, qmax).to(torch.int8), scale


QMAX_BIAS = 2**30


def quantize_bias(b: Tensor | None, input_scale: float, weight_scale: Tensor) -> Tensor:
    """The int32 bias in accumulator units, ``round_half_even(b / (s_in * s_w))``
    (zeros for no bias), saturated to ``[-2**30, 2**30]``: with at most 33000 products
    of 255 * 127 added (the kernels check it), the accumulator then fits int32. A bias
    of 2**30 units, a billion times its conv's product step, is far from what a
    calibrated network holds."""
    if b is None:
        return torch.zeros(weight_scale.shape[0], dtype=torch.int32)
    unit = input_scale * weight_scale.double()
    q = torch.round(b.detach().double() / unit)
    return q.clamp_(-QMAX_BIAS, QMAX_BIAS).to(torch.int32)


class QuantizedConv(NamedTuple):
    """One convolution of an int8 network: int8 weights (per-channel symmetric), int32
    bias, and the float32 requantization multipliers ``M[o]`` from its input scale
    to its output scale."""

    weight: Tensor  # int8 (O, C, k, k)
    weight_scale: Tensor  # float32 (O,)
    bias: Tensor  # int32 (O,)
    multiplier: Tensor  # float32 (O,)


def quantize_conv(weight: Tensor, bias: Tensor | None, input_scale: float,
                  output_scale: float, weight_bits: int = 8) -> QuantizedConv:
    """The int8 form of a conv whose input has ``input_scale`` and whose (post-ReLU)
    output is to have ``output_scale``."""
    wq, ws = quantize_weight(weight, weight_bits)
    return QuantizedConv(wq, ws, quantize_bias(bias, input_scale, ws),
                         requant_multiplier(input_scale, ws, output_scale))


def requant_multiplier(input_scale: float, weight_scale: Tensor, output_scale: float) -> Tensor:
    """float32 ``M[o] = s_in * s_w[o] / s_out``, computed in float64 and rounded once."""
    return (input_scale * weight_scale.double() / output_scale).float()


def accumulate(xq: Tensor, x_zero_point: int, conv: QuantizedConv, padding: int = 0,
               stride: int = 1) -> Tensor:
    """The exact int64 accumulators ``bias + sum w_q * (x_q - x_zp)`` of ``conv`` on the
    uint8 ``xq`` (NCHW), zero padding being ``x_zp`` (real zero)."""
    acc = F.conv2d(xq.double() - x_zero_point, conv.weight.double(), conv.bias.double(),
                   stride=stride, padding=padding)
    return acc.to(torch.int64)


def requantize(acc: Tensor, multiplier: Tensor, output_zero_point: int = 0,
               relu: bool = True) -> Tensor:
    """uint8 ``clamp(round_half_even(float32(acc) * M[o]) + zp, zp if relu else 0, 255)``
    for accumulators ``(N, O, H, W)`` and multipliers ``(O,)``."""
    scaled = acc.to(torch.float32) * multiplier.float().reshape(1, -1, 1, 1)
    q = torch.round(scaled) + output_zero_point
    return q.clamp_(output_zero_point if relu else 0, QMAX_ACTIVATION).to(torch.uint8)


def conv_int8_reference(xq: Tensor, x_zero_point: int, conv: QuantizedConv, padding: int = 0,
                        stride: int = 1, output_zero_point: int = 0, relu: bool = True) -> Tensor:
    """One int8 conv (+ ReLU): uint8 NCHW in, uint8 NCHW out."""
    acc = accumulate(xq, x_zero_point, conv, padding, stride)
    return requantize(acc, conv.multiplier, output_zero_point, relu)


class QuantizedFire(NamedTuple):
    """A Fire's int8 form: its three convs and the scales they map between (zero points
    are all 0: every one of these tensors follows a ReLU)."""

    input_scale: float
    squeeze_scale: float
    output_scale: float
    squeeze: QuantizedConv
    expand1x1: QuantizedConv
    expand3x3: QuantizedConv


def quantize_fire(weights, input_scale: float, squeeze_scale: float, output_scale: float,
                  weight_bits: int = 8) -> QuantizedFire:
    """The int8 form of a Fire's float ``weights`` (squeeze weight and bias, expand1x1
    weight and bias, expand3x3 weight and bias, as ``FireWeights``) for calibrated
    scales of its input, its squeeze output and its (concat) output."""
    ws, bs, we1, be1, we3, be3 = weights
    return QuantizedFire(
        input_scale, squeeze_scale, output_scale,
        quantize_conv(ws, bs, input_scale, squeeze_scale, weight_bits),
        quantize_conv(we1, be1, squeeze_scale, output_scale, weight_bits),
        quantize_conv(we3, be3, squeeze_scale, output_scale, weight_bits),
    )


def fire_int8_reference(xq: Tensor, fire: QuantizedFire) -> Tensor:
    """The int8 Fire on a uint8 NCHW input: the squeeze requantized to uint8, both
    expands from it requantized to the one output scale, concatenated (uint8)."""
    s = conv_int8_reference(xq, 0, fire.squeeze)
    return torch.cat([conv_int8_reference(s, 0, fire.expand1x1),
                      conv_int8_reference(s, 0, fire.expand3x3, padding=1)], 1)


class QuantizedHead(NamedTuple):
    """A classifier head's int8 form (conv 1x1, ReLU, global average pool): its conv
    and the scales of its input and of the conv's (post-ReLU) output map."""

    input_scale: float
    output_scale: float
    conv: QuantizedConv


def quantize_head(weight: Tensor, bias: Tensor | None, input_scale: float, output_scale: float,
                  weight_bits: int = 8) -> QuantizedHead:
    """The int8 form of a head whose 1x1 conv has float ``weight`` and ``bias``."""
    return QuantizedHead(input_scale, output_scale,
                         quantize_conv(weight, bias, input_scale, output_scale, weight_bits))


def head_int8_reference(xq: Tensor, head: QuantizedHead) -> Tensor:
    """The int8 head on a uint8 NCHW input, float32 ``(N, O, 1, 1)``: each pixel's conv
    output requantized to uint8 (the ReLU is the clamp at 0), summed exactly over the
    pixels, and the sums scaled once, ``float32(sum) * float32(s_out / (H*W))``."""
    q = conv_int8_reference(xq, 0, head.conv)
    pixels = xq.shape[2] * xq.shape[3]
    factor = torch.tensor(head.output_scale / pixels, dtype=torch.float64).float()
    sums = q.sum((2, 3), dtype=torch.int64)
    return (sums.float() * factor).reshape(*sums.shape, 1, 1)


class QuantizedStem(NamedTuple):
    """A network's first layer in int8, ``MaxPool2d(ReLU(Conv2d(x)))`` (no padding; pool
    ``(1, 1, False)`` for none): its input's scale and zero point, its (post-ReLU)
    output's scale, its conv and the geometry."""

    input_scale: float
    input_zero_point: int
    output_scale: float
    conv: QuantizedConv
    stride: int
    pool: tuple[int, int, bool]


def quantize_stem(weight: Tensor, bias: Tensor | None, input_scale: float,
                  input_zero_point: int, output_scale: float, stride: int,
                  pool: tuple[int, int, bool] = (1, 1, False),
                  weight_bits: int = 8) -> QuantizedStem:
    """The int8 form of a stem whose conv has float ``weight`` and ``bias``."""
    conv = quantize_conv(weight, bias, input_scale, output_scale, weight_bits)
    return QuantizedStem(input_scale, int(input_zero_point), output_scale, conv, int(stride),
                         tuple(pool))


def stem_int8_reference(xq: Tensor, stem: QuantizedStem) -> Tensor:
    """The int8 stem on a uint8 NCHW input (zero point ``stem.input_zero_point``): the
    conv accumulated exactly, requantized to uint8 (the ReLU is the clamp at 0), then
    max-pooled (uint8 max commutes with the monotonic requantization)."""
    y = conv_int8_reference(xq, stem.input_zero_point, stem.conv, stride=stem.stride)
    kernel, stride, ceil_mode = stem.pool
    if kernel == 1 and stride == 1:
        return y
    return F.max_pool2d(y.float(), kernel, stride, ceil_mode=ceil_mode).to(torch.uint8)

