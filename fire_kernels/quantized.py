"""int8 networks (issue 21): :func:`quantize_network` turns the stem, the Fires and the
classifier head of a model into :class:`QuantizedStem`, :class:`QuantizedFire` and
:class:`QuantizedHead` modules, statically quantized from calibration inputs;
:func:`dequantize_network` turns them back into float fused modules.

The arithmetic is :mod:`fire_kernels.int8_reference`'s: int8 weights per output channel
(symmetric), uint8 activations per tensor with ``scale = max / 255`` of what
calibration saw (zero point 0: every tensor they read or write follows a ReLU, but the
stem's input, an image, which gets the zero point of its range), int32
accumulation and one requantization per output. A Fire's squeeze stays uint8 in the
cache and its concat is written once, uint8; the head never writes its conv's map.

Where tensors change type: a quantized module quantizes a float input itself. A
QuantizedStem or QuantizedFire whose output the next module called consumes, that
module being quantized too (through identities such as an eval ``Dropout`` or what
``fuse_network`` fused away), hands it uint8 as it is; otherwise it dequantizes its
output. So a quantized model takes and returns float32, like the float model; code that
reads an output between two quantized modules (a hook, say) sees uint8.

A stem with padding stays float (its input's zero point could not be folded into the
bias exactly at the border).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import _extension
from . import int8_reference as q8
from .int8_ops import (expand_work_density, int8_sparse_pays, pack_int8_sparse, pack_int8_stem,
                       quad_density, sparse_expands)
from .module import FusedFire, check_sparse_mode
from .network import (FusedAway, FusedConvReluAvgPool, FusedConvReluMaxPool, ProgramStep,
                      fuse_network)
from .weight_plan import SparseMode, note_module_change

__all__ = ["QuantizedFire", "QuantizedHead", "QuantizedStem", "dequantize_network",
           "quantize_network"]

# Modules that hand their input on as the same tensor (in eval mode).
_IDENTITIES = (FusedAway, nn.Identity, nn.Dropout)


class Int8Conv2d(nn.Module):
    """What a quantized module keeps of one convolution: the int8 weight, its float32
    per-output-channel scales and the int32 bias (buffers, so they are in
    ``state_dict``)."""

    def __init__(self, conv: q8.QuantizedConv) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight)
        self.register_buffer("weight_scale", conv.weight_scale)
        self.register_buffer("bias", conv.bias)

    def arithmetic(self, input_scale: float, output_scale: float) -> q8.QuantizedConv:
        """The reference's description, multipliers derived as
        :func:`~fire_kernels.int8_reference.quantize_conv` derives them."""
        return q8.QuantizedConv(self.weight, self.weight_scale, self.bias,
                                q8.requant_multiplier(input_scale, self.weight_scale,
                                                      output_scale))

    def dequantize_into(self, conv: nn.Conv2d, input_scale: float) -> None:
        """Sets the float ``conv``'s weight to ``q * scale`` and its bias to ``q * s_in *
        scale``: the float conv this one computes, up to rounding."""
        scale = self.weight_scale.double()
        with torch.no_grad():
            conv.weight.copy_(self.weight.double() * scale.reshape(-1, 1, 1, 1))
            conv.bias.copy_(self.bias.double() * input_scale * scale)

    def _sources(self) -> list[Tensor]:
        b = self._buffers
        return [b["weight"], b["weight_scale"], b["bias"]]

    def extra_repr(self) -> str:
        o, c, k, _ = self.weight.shape
        return f"{c}, {o}, kernel_size={k}, int8"


class _Prepared(NamedTuple):
    """A quantized module's kernel (an operator), its arguments after the input, and
    what they were made from."""

    sources: list[tuple[Tensor, int]]  # each buffer and its version
    kernel: Callable
    args: list
    input_scale: float
    output_scale: float

    def holds(self, sources: list[Tensor]) -> bool:
        return all(t is kept and t._version == v for t, (kept, v) in zip(sources, self.sources))


class _Int8Module(nn.Module):
    """What QuantizedFire and QuantizedHead share: float64 scale buffers ``input_scale``
    and ``output_scale``, the kernel's arguments derived from the buffers (packed
    weights, Python scalars), made afresh whenever a buffer is replaced or changed, and
    the input's quantization."""

    _CONVS: tuple[str, ...] = ()
    #: Whether the kernel takes the float32 image and quantizes it itself (the stem's, into
    #: its own layout), rather than uint8 or a float input quantized by a step before it.
    _QUANTIZES_IMAGE = False

    def __init__(self, input_scale: float, output_scale: float) -> None:
        super().__init__()
        self.register_buffer("input_scale", torch.tensor(input_scale, dtype=torch.float64))
        self.register_buffer("output_scale", torch.tensor(output_scale, dtype=torch.float64))
        self._packed: _Prepared | None = None

    def _sources(self) -> list[Tensor]:
        """The buffers the kernel's arguments come from (plain dict reads: every call)."""
        b = self._buffers
        sources = [b["input_scale"], b["output_scale"]]
        for name in self._CONVS:
            sources += self._modules[name]._sources()
        return sources

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name != "_packed":  # a setting (float_output, pool, sparse...): programs are stale
            note_module_change()

    def _kernel(self) -> tuple[Callable, list]:
        """The operator to run and its arguments after the input."""
        raise NotImplementedError

    def _program_steps(self, x: Tensor) -> tuple[list[ProgramStep], list[Tensor]] | None:
        """What this module, having just run on ``x``, did in a network program's steps
        (``fire_kernels.network.FusedSequential``): the input quantized where it was
        float32, the kernel (a step of the operator's name), the output dequantized
        where ``float_output``; and the buffers they were made from. None where the
        forward did not run the kernel."""
        prepared = self._packed
        if prepared is None or not self._runs_kernel(x) or not prepared.holds(self._sources()):
            return None
        steps: list[ProgramStep] = []
        if self._QUANTIZES_IMAGE:
            if x.dtype != torch.float32:
                return None
        elif x.dtype == torch.float32:
            steps.append(("quantize", [], [0], [prepared.input_scale]))
        elif x.dtype != torch.uint8:
            return None
        args = prepared.args
        steps.append((prepared.kernel.__name__, [a for a in args if isinstance(a, Tensor)],
                      [int(a) for a in args if isinstance(a, int)],
                      [a for a in args if isinstance(a, float)]))
        if getattr(self, "float_output", False):
            steps.append(("dequantize", [], [], [prepared.output_scale]))
        return steps, [t for t, _ in prepared.sources]

    def _prepared(self) -> _Prepared:
        prepared = self._packed
        sources = self._sources()
        if prepared is None or not prepared.holds(sources):
            prepared = _Prepared([(t, t._version) for t in sources], *self._kernel(),
                                 float(self.input_scale), float(self.output_scale))
            self._packed = prepared
        return prepared

    def _quantized_input(self, x: Tensor, prepared: _Prepared | None) -> Tensor:
        if x.is_floating_point():
            return quantize_activation(
                x, prepared.input_scale if prepared else float(self.input_scale))
        if x.dtype != torch.uint8:
            raise TypeError(f"{type(self).__name__} expected a float or uint8 input, got {x.dtype}")
        return x

    def _runs_kernel(self, x: Tensor) -> bool:
        return _extension.C is not None and x.device.type == "cpu"

    def _handed_on(self, out: Tensor, prepared: _Prepared | None) -> Tensor:
        """``out`` (uint8) as it is, or dequantized where ``float_output``: in one pass
        (uint8 times a Python float is float32), the reference's ``(q - 0) * scale``
        with the same float32 product."""
        if not self.float_output:
            return out
        return out * (prepared.output_scale if prepared else float(self.output_scale))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_packed"] = None  # derived: copies pack their own
        return state


def _pack(conv: q8.QuantizedConv) -> list[Tensor]:
    return list(torch.ops.fire_kernels.pack_int8(conv.weight, conv.bias, conv.multiplier))


class _SparseInt8Module(_Int8Module):
    """A quantized module with a sparse int8 kernel beside its dense one (the Fire and
    the head; the stem always runs dense)."""

    def __init__(self, input_scale: float, output_scale: float) -> None:
        super().__init__(input_scale, output_scale)
        self._sparse: SparseMode = "auto"

    @property
    def sparse(self) -> SparseMode:
        """``"auto"`` runs the sparse int8 kernel where the pruned weights make it pay
        (:func:`fire_kernels.int8_ops.int8_sparse_pays`), ``True`` always, ``False``
        never."""
        return self._sparse

    @sparse.setter
    def sparse(self, value: SparseMode) -> None:
        self._sparse = check_sparse_mode(value)
        self._packed = None

    def _runs_sparse(self, work_density: Callable[[], float]) -> bool:
        if self._sparse == "auto":
            return int8_sparse_pays(work_density())
        return self._sparse


class QuantizedFire(_SparseInt8Module):
    """A Fire computed in int8 by one fused kernel (``torch.ops.fire_kernels.fire_int8``).

    Children ``squeeze``, ``expand1x1``, ``expand3x3`` (:class:`Int8Conv2d`) and the
    activation scales (float64 buffers ``input_scale``, ``squeeze_scale``,
    ``output_scale``) are its ``state_dict``. Input: float32 (quantized here) or uint8 at
    ``input_scale``; output: uint8 at ``output_scale``, or float32 where
    ``float_output`` (:func:`quantize_network` clears it where a quantized module
    consumes the output). ``pool``: a max pool fused into the input's read, as
    :attr:`FusedFire.pool`.
    """

    _CONVS = ("squeeze", "expand1x1", "expand3x3")

    def __init__(self, fire: q8.QuantizedFire, pool=None, float_output: bool = True) -> None:
        super().__init__(fire.input_scale, fire.output_scale)
        self.squeeze = Int8Conv2d(fire.squeeze)
        self.expand1x1 = Int8Conv2d(fire.expand1x1)
        self.expand3x3 = Int8Conv2d(fire.expand3x3)
        self.register_buffer("squeeze_scale", torch.tensor(fire.squeeze_scale, dtype=torch.float64))
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

    def _sources(self) -> list[Tensor]:
        return [*super()._sources(), self._buffers["squeeze_scale"]]

    def arithmetic(self) -> q8.QuantizedFire:
        """The int8 reference's description of this Fire."""
        s_in, s_sq, s_out = (float(getattr(self, n))
                             for n in ("input_scale", "squeeze_scale", "output_scale"))
        return q8.QuantizedFire(s_in, s_sq, s_out, self.squeeze.arithmetic(s_in, s_sq),
                                self.expand1x1.arithmetic(s_sq, s_out),
                                self.expand3x3.arithmetic(s_sq, s_out))

    def _kernel(self) -> tuple[Callable, list]:
        fire = self.arithmetic()
        convs = (fire.squeeze, fire.expand1x1, fire.expand3x3)
        sizes = [c.weight.shape[0] for c in convs]
        pool = [*((1, 1, False) if self.pool is None else self.pool)]
        if self._runs_sparse(lambda: expand_work_density(fire.expand1x1.weight,
                                                         fire.expand3x3.weight)):
            expands = sparse_expands(fire.expand1x1, fire.expand3x3)
            return (torch.ops.fire_kernels.fire_int8_sparse,
                    [*_pack(fire.squeeze), *expands, *sizes, *pool])
        return torch.ops.fire_kernels.fire_int8, [t for c in convs for t in _pack(c)] + sizes + pool

    def forward(self, x: Tensor) -> Tensor:
        prepared = self._prepared() if self._runs_kernel(x) else None
        xq = self._quantized_input(x, prepared)
        if prepared is not None:
            out = prepared.kernel(xq, *prepared.args)
        else:
            pooled = _max_pool(xq, self.pool) if self.pool is not None else xq
            out = q8.fire_int8_reference(pooled, self.arithmetic())
        return self._handed_on(out, prepared)

    def to_fused(self) -> FusedFire:
        """The float FusedFire of the dequantized weights: the float model this one
        computes, up to rounding."""
        s_in, s_sq = float(self.input_scale), float(self.squeeze_scale)
        fused = FusedFire(self.squeeze.weight.shape[1], self.squeeze.weight.shape[0],
                          self.expand1x1.weight.shape[0], self.expand3x3.weight.shape[0])
        self.squeeze.dequantize_into(fused.squeeze, s_in)
        self.expand1x1.dequantize_into(fused.expand1x1, s_sq)
        self.expand3x3.dequantize_into(fused.expand3x3, s_sq)
        fused.pool = self.pool
        return fused.train(self.training)

    def extra_repr(self) -> str:
        pool = "" if self.pool is None else f", pool={self.pool}"
        return (f"scales=({float(self.input_scale):.4g}, {float(self.squeeze_scale):.4g}, "
                f"{float(self.output_scale):.4g}), float_output={self.float_output}{pool}, "
                f"sparse={self._sparse!r}")


class QuantizedHead(_SparseInt8Module):
    """A classifier head, ``AdaptiveAvgPool2d(1)(ReLU(Conv2d 1x1(x)))``, in int8 by one
    kernel (``torch.ops.fire_kernels.head_int8``): float32 ``(N, O, 1, 1)`` out, the
    conv's map never written. Buffers ``weight`` (int8), ``weight_scale``, ``bias``
    (int32), ``input_scale`` and ``output_scale`` (the conv's post-ReLU map's, to which
    each pixel's outputs are requantized before the average)."""

    def __init__(self, head: q8.QuantizedHead) -> None:
        super().__init__(head.input_scale, head.output_scale)
        self.conv = Int8Conv2d(head.conv)

    _CONVS = ("conv",)

    @classmethod
    def from_fused(cls, head: FusedConvReluAvgPool, input_scale: float, output_scale: float,
                   weight_bits: int = 8) -> QuantizedHead:
        bias = None if head.bias is None else head.bias.detach()
        quantized = q8.quantize_head(head.weight.detach(), bias, input_scale, output_scale,
                                     weight_bits)
        return cls(quantized).train(head.training)

    def arithmetic(self) -> q8.QuantizedHead:
        s_in, s_out = float(self.input_scale), float(self.output_scale)
        return q8.QuantizedHead(s_in, s_out, self.conv.arithmetic(s_in, s_out))

    def _kernel(self) -> tuple[Callable, list]:
        head = self.arithmetic()
        c = head.conv
        sizes = [c.weight.shape[0], head.output_scale]
        if self._runs_sparse(lambda: quad_density(c.weight)):
            return (torch.ops.fire_kernels.head_int8_sparse,
                    [*pack_int8_sparse(c.weight, c.bias, c.multiplier), *sizes])
        return torch.ops.fire_kernels.head_int8, _pack(c) + sizes

    def forward(self, x: Tensor) -> Tensor:
        prepared = self._prepared() if self._runs_kernel(x) else None
        xq = self._quantized_input(x, prepared)
        if prepared is not None:
            return prepared.kernel(xq, *prepared.args)
        return q8.head_int8_reference(xq, self.arithmetic())

    def to_fused(self) -> FusedConvReluAvgPool:
        """The float head of the dequantized weights."""
        o, c = self.conv.weight.shape[:2]
        fused = FusedConvReluAvgPool.from_conv(nn.Conv2d(c, o, 1))
        self.conv.dequantize_into(fused, float(self.input_scale))
        return fused.train(self.training)

    def extra_repr(self) -> str:
        return (f"scales=({float(self.input_scale):.4g}, {float(self.output_scale):.4g}), "
                f"relu, global_avg_pool, sparse={self._sparse!r}")


class QuantizedStem(_Int8Module):
    """A network's first layer, ``MaxPool2d(ReLU(Conv2d(x)))`` without padding, in int8
    by one kernel (``torch.ops.fire_kernels.stem_int8``). Buffers: the conv's (``conv``,
    :class:`Int8Conv2d`), ``input_scale`` and ``input_zero_point`` (the image's range
    need not start at 0) and ``output_scale``. Input: float32, quantized here; output as
    :class:`QuantizedFire`'s (``float_output``)."""

    _CONVS = ("conv",)
    _QUANTIZES_IMAGE = True

    def __init__(self, stem: q8.QuantizedStem, float_output: bool = True) -> None:
        super().__init__(stem.input_scale, stem.output_scale)
        self.conv = Int8Conv2d(stem.conv)
        self.register_buffer("input_zero_point", torch.tensor(stem.input_zero_point))
        self.stride = stem.stride
        self.pool = stem.pool
        self.float_output = float_output

    @classmethod
    def from_fused(cls, stem: FusedConvReluMaxPool, input_scale: float, input_zero_point: int,
                   output_scale: float, weight_bits: int = 8) -> QuantizedStem:
        bias = None if stem.bias is None else stem.bias.detach()
        quantized = q8.quantize_stem(stem.weight.detach(), bias, input_scale, input_zero_point,
                                     output_scale, stem.stride[0], stem.pool, weight_bits)
        return cls(quantized).train(stem.training)

    @staticmethod
    def supports(stem: FusedConvReluMaxPool) -> bool:
        """Whether the int8 kernel can stand for this stem: a square kernel of at most
        11, equal strides, no padding, dilation or groups."""
        k = stem.kernel_size
        return (k[0] == k[1] <= 11 and stem.stride[0] == stem.stride[1]
                and tuple(stem.padding) == (0, 0) and tuple(stem.dilation) == (1, 1)
                and stem.groups == 1)

    def _sources(self) -> list[Tensor]:
        return [*super()._sources(), self._buffers["input_zero_point"]]

    def arithmetic(self) -> q8.QuantizedStem:
        s_in, s_out = float(self.input_scale), float(self.output_scale)
        return q8.QuantizedStem(s_in, int(self.input_zero_point), s_out,
                                self.conv.arithmetic(s_in, s_out), self.stride, self.pool)

    def _kernel(self) -> tuple[Callable, list]:
        stem = self.arithmetic()
        c = stem.conv
        w = c.weight
        return torch.ops.fire_kernels.stem_int8, [
            *pack_int8_stem(c.weight, c.bias, c.multiplier), w.shape[0], w.shape[2], stem.stride,
            stem.input_scale, stem.input_zero_point, *stem.pool]

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_floating_point():
            raise TypeError(f"QuantizedStem expected a float input, got {x.dtype}")
        if self._runs_kernel(x) and x.dtype == torch.float32:
            # The kernel quantizes the image itself, into its own layout.
            prepared = self._prepared()
            return self._handed_on(prepared.kernel(x, *prepared.args), prepared)
        stem = self.arithmetic()
        xq = q8.quantize_activation(x, stem.input_scale, stem.input_zero_point)
        return self._handed_on(q8.stem_int8_reference(xq, stem), None)

    def to_fused(self) -> FusedConvReluMaxPool:
        """The float stem of the dequantized weights."""
        o, c, k, _ = self.conv.weight.shape
        fused = FusedConvReluMaxPool.from_modules(nn.Conv2d(c, o, k, stride=self.stride), None)
        fused.pool = self.pool
        self.conv.dequantize_into(fused, float(self.input_scale))
        return fused.train(self.training)

    def extra_repr(self) -> str:
        return (f"scales=({float(self.input_scale):.4g}, zero point "
                f"{int(self.input_zero_point)}, {float(self.output_scale):.4g}), "
                f"stride={self.stride}, relu, max_pool={self.pool}, "
                f"float_output={self.float_output}")


def quantize_activation(x: Tensor, scale: float, zero_point: int = 0) -> Tensor:
    """uint8 ``clamp(round_half_even(x / scale) + zero_point, 0, 255)`` in ``x``'s memory
    format (the C++ operator where it can run, else the reference)."""
    if _extension.C is not None and x.device.type == "cpu" and x.dtype == torch.float32:
        return torch.ops.fire_kernels.quantize_uint8(x, scale, zero_point)
    return q8.quantize_activation(x, scale, zero_point)


def _max_pool(x: Tensor, pool) -> Tensor:
    """``nn.MaxPool2d(kernel, stride, ceil_mode=ceil_mode)`` of ``x``, whatever its dtype
    (through float32, exact for uint8: torch's uint8 pool fails on large inputs)."""
    kernel, stride, ceil_mode = pool
    return F.max_pool2d(x.float(), kernel, stride, ceil_mode=ceil_mode).to(x.dtype)


class _Calibration:
    """Forward hooks over one model while calibration batches run through it: the
    ranges each quantized module's scales come from (a Fire's input before its fused
    pool, squeeze and output; a stem's input, both ends, and conv map after ReLU; a
    head's input and conv map after ReLU), and, from the first batch, which module
    consumed each stem's and Fire's output next (the tensors' identity through the
    identities between)."""

    def __init__(self, model: nn.Module) -> None:
        self.units = [m for m in model.modules() if isinstance(m, (FusedFire, FusedConvReluAvgPool))
                      or (isinstance(m, FusedConvReluMaxPool) and QuantizedStem.supports(m))]
        self.maxima = {id(m): [0.0, 0.0, 0.0] for m in self.units}
        self.input_min = {id(m): 0.0 for m in self.units}
        self.calls: list[tuple[nn.Module, int]] | None = []  # (module, id of its input)
        self.outputs: dict[int, int] = {}  # id(stem or Fire) -> id of its output, first batch
        unit_ids = {id(m) for m in self.units}
        watched = [m for m in model.modules() if id(m) in unit_ids or not any(m.children())]
        self.handles = [m.register_forward_pre_hook(self._called) for m in watched]
        self.handles += [m.register_forward_hook(self._observe) for m in self.units]

    def _called(self, module: nn.Module, inputs) -> None:
        if self.calls is not None and inputs and isinstance(inputs[0], Tensor):
            self.calls.append((module, id(inputs[0])))

    def _observe(self, module: nn.Module, inputs, output: Tensor) -> None:
        x = inputs[0]
        if isinstance(module, FusedFire):
            pooled = x if module.pool is None else _max_pool(x, module.pool)
            inner = torch.relu(F.conv2d(pooled, module.squeeze.weight, module.squeeze.bias))
        else:  # a stem or a head: its conv's map, which it requantizes
            inner = torch.relu(F.conv2d(x, module.weight, module.bias, module.stride))
        if isinstance(module, FusedConvReluAvgPool):
            output = inner
        elif self.calls is not None:
            self.outputs[id(module)] = id(output)
        maxima = self.maxima[id(module)]
        for k, t in enumerate((x, inner, output)):
            if t.numel():
                maxima[k] = max(maxima[k], float(t.max()))
        if x.numel():
            self.input_min[id(module)] = min(self.input_min[id(module)], float(x.min()))

    def batch_done(self) -> None:
        if self.calls is not None:
            self.producer_of = self._consumed_quantized()
            self.calls = None

    def _consumed_quantized(self) -> dict[int, nn.Module]:
        """id of each Fire or head that takes a stem's or Fire's output as it is, as the
        next module called after it (only identities between) -> that producer."""
        producer_of = {}
        for k, (module, _) in enumerate(self.calls):
            out = self.outputs.get(id(module))
            if out is None:
                continue
            for later, seen in self.calls[k + 1:]:
                if seen != out:
                    break
                if isinstance(later, (FusedFire, FusedConvReluAvgPool)):
                    producer_of[id(later)] = module
                    break
                if not isinstance(later, _IDENTITIES):
                    break
        return producer_of

    def _scales(self, m: nn.Module) -> list[float]:
        """The uint8 scales of what unit ``m`` reads, computes inside and writes: a stem
        writes its conv's map (pooled by a max); a head reads and requantizes its input
        and conv map."""
        return [q8.activation_scale(v) for v in self.maxima[id(m)]]

    def _output_scale(self, m: nn.Module) -> float:
        scales = self._scales(m)
        return scales[1] if isinstance(m, FusedConvReluMaxPool) else scales[2]

    def quantized(self, m: nn.Module, weight_bits: int) -> nn.Module:
        """The quantized module standing for unit ``m``, with the ranges seen. A module
        handed uint8 reads it at the scale its producer wrote it with (the producer's
        output is its input, but a floor-mode pool between can drop the producer's
        largest value from what this module saw)."""
        scales = self._scales(m)
        producer = self.producer_of.get(id(m))
        if producer is not None:
            scales[0] = self._output_scale(producer)
        if isinstance(m, FusedFire):
            q = QuantizedFire.from_fused(m, *scales, weight_bits=weight_bits)
        elif isinstance(m, FusedConvReluMaxPool):
            s_in, zero_point = q8.input_qparams(self.input_min[id(m)], self.maxima[id(m)][0])
            q = QuantizedStem.from_fused(m, s_in, zero_point, scales[1], weight_bits=weight_bits)
        else:
            return QuantizedHead.from_fused(m, scales[0], scales[1], weight_bits=weight_bits)
        q.float_output = not any(p is m for p in self.producer_of.values())
        return q

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def quantize_network(model: nn.Module, calibration: Iterable[Tensor], *,
                     weight_bits: int = 8, sparse: SparseMode = "auto") -> nn.Module:
    """Quantizes, in place, the stem, every Fire and the classifier head of ``model`` to
    int8 and returns ``model``.

    The model is first fused with :func:`fuse_network` (what it already fused stays);
    then each input of ``calibration`` (an iterable of input batches, float32)
    runs through it once, in eval mode without gradients, while the maxima of what
    the stem, each Fire and the head read and write are recorded; each is then replaced
    by a :class:`QuantizedStem`, :class:`QuantizedFire` or :class:`QuantizedHead` with
    those scales. The model still takes and returns float32.

    Args:
        weight_bits: 8 (int8 weights in [-127, 127]), or 7 ([-63, 63]): on CPUs without
            VNNI, 7-bit weights run AVX2's faster 8-bit product, which could saturate
            with 8-bit weights (``csrc/qvec_avx2.h``); ONNX Runtime's ``reduce_range``.

    Raises:
        ValueError: the model has no Fire or head, or ``calibration`` gave no input.
    """
    check_sparse_mode(sparse)
    fuse_network(model)  # idempotent: fuses what is not yet (pools into Fires, the head)
    calib = _Calibration(model)
    if not calib.units:
        calib.remove()
        raise ValueError("quantize_network: the model has no stem, Fire module or classifier "
                         "head to quantize")
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in calibration:
                model(batch)
                calib.batch_done()
    finally:
        calib.remove()
        model.train(training)
    if calib.calls is not None:
        raise ValueError("quantize_network: the calibration iterable gave no input")
    replacements = {id(m): calib.quantized(m, weight_bits) for m in calib.units}
    for q in replacements.values():
        if isinstance(q, (QuantizedFire, QuantizedHead)):
            q.sparse = sparse
    _replace(model, replacements)
    return model


def _replace(model: nn.Module, replacements: dict[int, nn.Module]) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in replacements:
                setattr(parent, name, replacements[id(child)])


def dequantize_network(model: nn.Module) -> nn.Module:
    """Replaces, in place, every quantized module of ``model`` by the float fused module
    of its dequantized weights (:meth:`QuantizedFire.to_fused`,
    :meth:`QuantizedHead.to_fused`, :meth:`QuantizedStem.to_fused`) and returns ``model``."""
    _replace(model, {id(m): m.to_fused() for m in model.modules()
                     if isinstance(m, (QuantizedStem, QuantizedFire, QuantizedHead))})
    return model
