"""int8 networks (issue 21): :func:`quantize_network` turns the Fires of a model into
:class:`QuantizedFire` modules, statically quantized from calibration inputs, and
:func:`dequantize_network` turns them back into float :class:`FusedFire` modules.

The arithmetic is :mod:`fire_kernels.int8_reference`'s: int8 weights per output channel
(symmetric), uint8 activations per tensor (zero point 0: a Fire's input, squeeze and
output all follow a ReLU) with ``scale = max / 255`` of what calibration saw, int32
accumulation and one requantization per output. A Fire's squeeze stays uint8 in the
cache and its concat is written once, uint8.

Where tensors change type: a QuantizedFire quantizes a float input itself (from the
stem, say) and hands uint8 straight to a QuantizedFire that follows it (through the
pools ``fuse_network`` fused into it, which commute with a monotonic quantization); the
last of a run of them dequantizes its output for the float layers after it. So a
quantized model takes and returns float32, like the float model.

Not yet quantized (they run float, fused as ``fuse_network`` fuses them): the stem
and the classifier.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import _extension
from . import int8_reference as q8
from .module import FusedFire
from .network import FusedAway, fuse_network

__all__ = ["QuantizedFire", "dequantize_network", "quantize_network"]


class Int8Conv2d(nn.Module):
    """What a QuantizedFire keeps of one convolution: the int8 weight, its float32
    per-output-channel scales and the int32 bias (buffers, so they are in
    ``state_dict``)."""

    def __init__(self, conv: q8.QuantizedConv) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight)
        self.register_buffer("weight_scale", conv.weight_scale)
        self.register_buffer("bias", conv.bias)

    def extra_repr(self) -> str:
        o, c, k, _ = self.weight.shape
        return f"{c}, {o}, kernel_size={k}, int8"


class _Prepared(NamedTuple):
    """A QuantizedFire's kernel arguments after the input, and what they were made from."""

    sources: list[tuple[Tensor, int]]  # each buffer and its version
    args: list
    input_scale: float
    output_scale: float

    def holds(self, sources: list[Tensor]) -> bool:
        return all(t is kept and t._version == v for t, (kept, v) in zip(sources, self.sources))


class QuantizedFire(nn.Module):
    """A Fire computed in int8 by one fused kernel (``torch.ops.fire_kernels.fire_int8``).

    Children ``squeeze``, ``expand1x1``, ``expand3x3`` (:class:`Int8Conv2d`) and the
    activation scales (float64 buffers ``input_scale``, ``squeeze_scale``,
    ``output_scale``) are its ``state_dict``; the kernels' packed weights are derived
    from them and made afresh whenever they change. Input: float32 (quantized here) or
    uint8 at ``input_scale``; output: uint8 at ``output_scale``, or float32 where
    ``float_output`` (set by :func:`quantize_network` for the last Fire of a run).
    ``pool``: a max pool fused into the input's read, as :attr:`FusedFire.pool`.
    """

    def __init__(self, fire: q8.QuantizedFire, pool=None, float_output: bool = True) -> None:
        super().__init__()
        self.squeeze = Int8Conv2d(fire.squeeze)
        self.expand1x1 = Int8Conv2d(fire.expand1x1)
        self.expand3x3 = Int8Conv2d(fire.expand3x3)
        for name in ("input_scale", "squeeze_scale", "output_scale"):
            self.register_buffer(name, torch.tensor(getattr(fire, name), dtype=torch.float64))
        self._packed: _Prepared | None = None
        self.pool = pool
        self.float_output = float_output

    @property
    def pool(self):
        """A max pool fused into the input's read, ``(kernel, stride, ceil_mode)``, or None."""
        return self._pool

    @pool.setter
    def pool(self, value) -> None:
        self._pool = None if value is None else (int(value[0]), int(value[1]), bool(value[2]))
        self._packed = None

    @classmethod
    def from_fused(cls, fire: FusedFire, input_scale: float, squeeze_scale: float,
                   output_scale: float, weight_bits: int = 8) -> QuantizedFire:
        weights = []
        for conv in (fire.squeeze, fire.expand1x1, fire.expand3x3):
            weights += [conv.weight.detach(), None if conv.bias is None else conv.bias.detach()]
        quantized = q8.quantize_fire(weights, input_scale, squeeze_scale, output_scale,
                                     weight_bits)
        return cls(quantized, fire.pool).train(fire.training)

    def arithmetic(self) -> q8.QuantizedFire:
        """The int8 reference's description of this Fire (multipliers derived from the
        scales as :func:`~fire_kernels.int8_reference.quantize_conv` derives them)."""
        s_in, s_sq, s_out = (float(getattr(self, n))
                             for n in ("input_scale", "squeeze_scale", "output_scale"))

        def conv(m: Int8Conv2d, s_from: float, s_to: float) -> q8.QuantizedConv:
            return q8.QuantizedConv(m.weight, m.weight_scale, m.bias,
                                    q8.requant_multiplier(s_from, m.weight_scale, s_to))

        return q8.QuantizedFire(s_in, s_sq, s_out, conv(self.squeeze, s_in, s_sq),
                                conv(self.expand1x1, s_sq, s_out),
                                conv(self.expand3x3, s_sq, s_out))

    def _sources(self) -> list[Tensor]:
        """The buffers the packs are made from (plain dict reads: this runs every call)."""
        convs = self._modules
        return [self._buffers["input_scale"], self._buffers["squeeze_scale"],
                self._buffers["output_scale"],
                *(convs[c]._buffers[n] for c in ("squeeze", "expand1x1", "expand3x3")
                  for n in ("weight", "weight_scale", "bias"))]

    def _prepared(self) -> _Prepared:
        """The kernel's arguments, made afresh when a buffer was replaced or changed."""
        prepared = self._packed
        sources = self._sources()
        if prepared is None or not prepared.holds(sources):
            fire = self.arithmetic()
            packs = [torch.ops.fire_kernels.pack_int8(c.weight, c.bias, c.multiplier)
                     for c in (fire.squeeze, fire.expand1x1, fire.expand3x3)]
            channels = [c.weight.shape[0] for c in (fire.squeeze, fire.expand1x1, fire.expand3x3)]
            pool = (1, 1, False) if self.pool is None else self.pool
            prepared = _Prepared([(t, t._version) for t in sources],
                                 [t for p in packs for t in p] + channels + list(pool),
                                 fire.input_scale, fire.output_scale)
            self._packed = prepared
        return prepared

    def forward(self, x: Tensor) -> Tensor:
        on_cpu = _extension.C is not None and x.device.type == "cpu"
        prepared = self._prepared() if on_cpu else None
        if x.is_floating_point():
            xq = quantize_activation(
                x, prepared.input_scale if prepared else float(self.input_scale))
        elif x.dtype == torch.uint8:
            xq = x
        else:
            raise TypeError(f"QuantizedFire expected a float or uint8 input, got {x.dtype}")
        if prepared is not None:
            out = torch.ops.fire_kernels.fire_int8(xq, *prepared.args)
        else:
            pooled = _max_pool(xq, self.pool) if self.pool is not None else xq
            out = q8.fire_int8_reference(pooled, self.arithmetic())
        if self.float_output:
            # One pass (uint8 times a Python float is float32): the reference's
            # (q - 0) * scale, with the same float32 product.
            return out * (prepared.output_scale if prepared else float(self.output_scale))
        return out

    def to_fused(self) -> FusedFire:
        """The float FusedFire of the dequantized weights (``w = q * scale``, ``b = q *
        s_in * scale``): the float model this one computes, up to rounding."""
        s_in, s_sq = float(self.input_scale), float(self.squeeze_scale)
        fused = FusedFire(self.squeeze.weight.shape[1], self.squeeze.weight.shape[0],
                          self.expand1x1.weight.shape[0], self.expand3x3.weight.shape[0])
        with torch.no_grad():
            for conv, m, s in ((fused.squeeze, self.squeeze, s_in),
                               (fused.expand1x1, self.expand1x1, s_sq),
                               (fused.expand3x3, self.expand3x3, s_sq)):
                scale = m.weight_scale.double()
                conv.weight.copy_(m.weight.double() * scale.reshape(-1, 1, 1, 1))
                conv.bias.copy_(m.bias.double() * s * scale)
        fused.pool = self.pool
        return fused.train(self.training)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_packed"] = None  # derived: copies pack their own
        return state

    def extra_repr(self) -> str:
        pool = "" if self.pool is None else f", pool={self.pool}"
        return (f"scales=({float(self.input_scale):.4g}, {float(self.squeeze_scale):.4g}, "
                f"{float(self.output_scale):.4g}), float_output={self.float_output}{pool}")


def quantize_activation(x: Tensor, scale: float) -> Tensor:
    """uint8 ``clamp(round_half_even(x / scale), 0, 255)`` in ``x``'s memory format
    (the C++ operator where it can run, else the reference)."""
    if _extension.C is not None and x.device.type == "cpu" and x.dtype == torch.float32:
        return torch.ops.fire_kernels.quantize_uint8(x, scale)
    return q8.quantize_activation(x, scale)


def _max_pool(x: Tensor, pool) -> Tensor:
    """``nn.MaxPool2d(kernel, stride, ceil_mode=ceil_mode)`` of ``x``, whatever its dtype
    (through float32, exact for uint8: torch's uint8 pool fails on large inputs)."""
    kernel, stride, ceil_mode = pool
    return F.max_pool2d(x.float(), kernel, stride, ceil_mode=ceil_mode).to(x.dtype)


class _RangeObserver:
    """The largest value seen of a Fire's input (before its fused pool), its squeeze
    (after ReLU) and its output, over the calibration forwards."""

    def __init__(self, fire: FusedFire) -> None:
        self.fire = fire
        self.maxima = [0.0, 0.0, 0.0]
        self.handle = fire.register_forward_hook(self)

    def __call__(self, fire: FusedFire, inputs, output: Tensor) -> None:
        x = inputs[0]
        pooled = x if fire.pool is None else _max_pool(x, fire.pool)
        squeeze = torch.relu(F.conv2d(pooled, fire.squeeze.weight, fire.squeeze.bias))
        for k, t in enumerate((x, squeeze, output)):
            if t.numel():
                self.maxima[k] = max(self.maxima[k], float(t.max()))


def _run_successors(model: nn.Module) -> None:
    """Sets each QuantizedFire's ``float_output``: False where the next module of its
    ``nn.Sequential`` (past the identities ``fuse_network`` left) is a QuantizedFire,
    which takes its uint8 output as is."""
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = [m for m in seq.children() if not isinstance(m, (FusedAway, nn.Identity))]
        for m, after in zip(children, children[1:] + [None]):
            if isinstance(m, QuantizedFire):
                m.float_output = not isinstance(after, QuantizedFire)


def quantize_network(model: nn.Module, calibration: Iterable[Tensor], *,
                     weight_bits: int = 8) -> nn.Module:
    """Quantizes, in place, every Fire of ``model`` to int8 and returns ``model``.

    The model is first fused with :func:`fuse_network` (unless it already holds fused
    Fires); then each input of ``calibration`` (an iterable of input batches, float32)
    runs through it once, in eval mode without gradients, while each Fire's input,
    squeeze and output maxima are recorded; each Fire is then replaced by a
    :class:`QuantizedFire` with those scales. The model still takes and returns
    float32.

    Args:
        weight_bits: 8 (int8 weights in [-127, 127]), or 7 ([-63, 63]): on CPUs without
            VNNI, 7-bit weights run AVX2's faster 8-bit product, which could saturate
            with 8-bit weights (``csrc/qvec_avx2.h``); ONNX Runtime's ``reduce_range``.

    Raises:
        ValueError: the model has no Fire, or ``calibration`` gave no input.
    """
    if not any(isinstance(m, FusedFire) for m in model.modules()):
        fuse_network(model)
    observers = [_RangeObserver(m) for m in model.modules() if isinstance(m, FusedFire)]
    if not observers:
        raise ValueError("quantize_network: the model has no Fire module to quantize")
    training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in calibration:
                model(batch)
                seen += 1
    finally:
        for obs in observers:
            obs.handle.remove()
        model.train(training)
    if seen == 0:
        raise ValueError("quantize_network: the calibration iterable gave no input")
    replacements = {
        id(obs.fire): QuantizedFire.from_fused(
            obs.fire, *(q8.activation_scale(v) for v in obs.maxima), weight_bits=weight_bits)
        for obs in observers
    }
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in replacements:
                setattr(parent, name, replacements[id(child)])
    _run_successors(model)
    return model


def dequantize_network(model: nn.Module) -> nn.Module:
    """Replaces, in place, every :class:`QuantizedFire` of ``model`` by the float
    :class:`FusedFire` of its dequantized weights (:meth:`QuantizedFire.to_fused`) and
    returns ``model``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, QuantizedFire):
                setattr(parent, name, child.to_fused())
    return model
