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
* ``fire_int8_sparse``: ``fire_int8`` with its expands pruned: the squeeze packed as for
  ``fire_int8``, both expands as one sparse 3x3 conv of the ``E1 + E3`` concat channels
  (the 1x1's weights at the centre tap; :func:`pack_int8_sparse`), zero weights
  skipped a channel quad at a time. Bit for bit ``fire_int8``.
* ``head_int8``: the int8 classifier head, conv 1x1 (packed) + ReLU + global average
  pool, uint8 in, float32 ``(N, O, 1, 1)`` out: each pixel's output requantized to
  uint8 at ``output_scale``, summed exactly, scaled once; bit for bit
  :func:`fire_kernels.int8_reference.head_int8_reference` (CPU; inference only).
* ``head_int8_sparse``: ``head_int8`` with its conv pruned (:func:`pack_int8_sparse`).
* ``stem_int8``: a network's first layer in int8, conv k x k stride s (no padding) +
  ReLU + max pool, its weights packed by :func:`pack_int8_stem`, uint8 channels-last
  out, on an image: float32, quantized here (as
  ``quantize_uint8`` with ``input_scale`` and ``input_zero_point``, straight into the
  kernel's layout), or uint8 quantized with ``input_zero_point`` (an image need not
  follow a ReLU); bit for bit :func:`fire_kernels.int8_reference.stem_int8_reference`
  of the quantized image (CPU; inference only).
* ``quantize_uint8``: a float32 tensor as uint8 with a zero point, in its memory
  format: :func:`fire_kernels.int8_reference.quantize_activation` bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from . import _extension
from .ops import inference_only
from .validation import check_pool_args, pooled_size

__all__ = ["INT8_SPARSE_MAX_WORK_DENSITY", "SparseInt8Conv", "expand_work_density", "fire_int8",
           "fire_int8_sparse", "head_int8", "head_int8_sparse", "int8_sparse_pays", "pack_int8",
           "pack_int8_sparse", "pack_int8_stem", "packed_int8_size", "quad_density",
           "sparse_expands", "stem_int8"]

#: Per int8 path, the largest work density (nonzero weight quads over all,
#: :func:`quad_density`) at which the sparse int8 kernels beat the dense ones
#: (``benchmarks/bench_sparse_int8.py``: SqueezeNet's 16 Fires and head, each path forced
#: in turn, 2 threads, batch 1 and 16, geomean speedups of sparse over dense). AMX (an
#: Intel Xeon): its dense tile multiplies leave the sparse kernels behind down to about 98 %
#: unstructured: 0.46-0.65x at 0.35 nonzero quads, 0.70-0.78x at 0.19, 0.95-1.14x at 0.08
#: (two runs). AVX-512 VNNI (an AMD Zen 4, since the sparse kernels' loads are aligned; three
#: runs): 0.79-1.02x at 0.59 (80 % unstructured), 1.13-1.43x at 0.35 (90 %), 1.55-1.90x at
#: 0.19 (95 %); before, on the Xeon, 1.01-1.04x at 0.35. AVX-VNNI (the Xeon, unaligned):
#: 1.22-1.32x at 0.35, 1.62-1.69x at 0.19. AVX2 (three instructions a dot; the Zen 4, two
#: runs): 1.14-1.18x at 0.59, 1.52-1.69x at 0.35, 2.27-2.39x at 0.19.
INT8_SPARSE_MAX_WORK_DENSITY = {"avx512_amx": 0.06, "avx512_vnni": 0.4, "avx_vnni": 0.4,
                                "avx2": 0.5, "portable": 0.5}

_lib = torch.library.Library("fire_kernels", "FRAGMENT")
_lib.define("pack_int8(Tensor weight, Tensor bias, Tensor multiplier) -> (Tensor, Tensor, Tensor)")
_lib.define(
    "fire_int8(Tensor x, Tensor squeeze, Tensor squeeze_bias, Tensor squeeze_multiplier, "
    "Tensor expand1x1, Tensor expand1x1_bias, Tensor expand1x1_multiplier, Tensor expand3x3, "
    "Tensor expand3x3_bias, Tensor expand3x3_multiplier, int squeeze_channels, "
    "int expand1x1_channels, int expand3x3_channels, int pool_kernel=1, int pool_stride=1, "
    "bool pool_ceil_mode=False) -> Tensor"
)
_lib.define(
    "fire_int8_sparse(Tensor x, Tensor squeeze, Tensor squeeze_bias, Tensor squeeze_multiplier, "
    "Tensor expand_rows, Tensor expand_entries, Tensor expand_values, Tensor expand_bias, "
    "Tensor expand_multiplier, int squeeze_channels, int expand1x1_channels, "
    "int expand3x3_channels, int pool_kernel=1, int pool_stride=1, bool pool_ceil_mode=False) "
    "-> Tensor"
)
_lib.define("head_int8(Tensor x, Tensor weight, Tensor bias, Tensor multiplier, "
            "int out_channels, float output_scale) -> Tensor")
_lib.define("head_int8_sparse(Tensor x, Tensor rows, Tensor entries, Tensor values, Tensor bias, "
            "Tensor multiplier, int out_channels, float output_scale) -> Tensor")
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


@torch.library.register_fake("fire_kernels::fire_int8_sparse")
def _fire_int8_sparse_fake(x, squeeze, squeeze_bias, squeeze_multiplier, expand_rows,
                           expand_entries, expand_values, expand_bias, expand_multiplier,
                           squeeze_channels, expand1x1_channels, expand3x3_channels,
                           pool_kernel=1, pool_stride=1, pool_ceil_mode=False):
    return _fire_int8_fake(x, squeeze, squeeze_bias, squeeze_multiplier, None, None, None, None,
                           None, None, squeeze_channels, expand1x1_channels, expand3x3_channels,
                           pool_kernel, pool_stride, pool_ceil_mode)


inference_only("fire_int8_sparse")


@torch.library.register_fake("fire_kernels::head_int8")
def _head_int8_fake(x, weight, bias, multiplier, out_channels, output_scale):
    if x.dtype != torch.uint8:
        raise TypeError(f"head_int8: expected a uint8 input, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"head_int8: expected a 4-D input (N, C, H, W), got {x.dim()}-D")
    return x.new_empty((x.shape[0], out_channels, 1, 1), dtype=torch.float32)


inference_only("head_int8")


@torch.library.register_fake("fire_kernels::head_int8_sparse")
def _head_int8_sparse_fake(x, rows, entries, values, bias, multiplier, out_channels,
                           output_scale):
    return _head_int8_fake(x, None, bias, multiplier, out_channels, output_scale)


inference_only("head_int8_sparse")


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


def pack_int8_stem(weight: Tensor, bias: Tensor,
                   multiplier: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A stem's int8 weights ``(O, C, k, k)``, int32 bias and float32 multipliers
    ``(O,)`` as ``stem_int8`` reads them: by window row, ``[Op/16][k][K/4][16][4]`` with
    ``K`` = ``k*C`` rounded up to 4, row ``dy``'s byte ``dx*C + c`` the weight of tap
    ``(dy, dx)`` and channel ``c`` (the image's pixels are ``C`` bytes, so a window's row
    is ``k*C`` contiguous ones; the rest weigh zero); bias and multipliers as
    :func:`pack_int8`'s."""
    if weight.dtype != torch.int8 or weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"pack_int8_stem: expected square int8 conv weights (O, C, k, k), "
                         f"got {weight.dtype} {tuple(weight.shape)}")
    o, c, k, _ = weight.shape
    padded, row = _round_up(o, 16), _round_up(k * c, 4)
    rows = torch.zeros(padded, k, row, dtype=torch.int8)
    rows[:o, :, :k * c] = weight.permute(0, 2, 3, 1).reshape(o, k, k * c)
    packed = rows.reshape(padded // 16, 16, k, row // 4, 4).permute(0, 2, 3, 1, 4)
    pad = (0, padded - o)
    return (packed.contiguous().flatten(), torch.nn.functional.pad(bias, pad),
            torch.nn.functional.pad(multiplier, pad))


class SparseInt8Conv(NamedTuple):
    """A pruned int8 conv in the sparse kernels' format (``csrc/int8_kernel.h``,
    ``Int8Sparse``): per output channel ``o``, entries ``rows[o]:rows[o+1]``, each a
    channel quad and tap holding a nonzero weight (``entries = quad << 4 | tap``) with
    the quad's 4 weights as one int32 (``values``), and the int32 bias and float32
    multipliers unpadded."""

    rows: Tensor
    entries: Tensor
    values: Tensor
    bias: Tensor
    multiplier: Tensor


def _weight_quads(weight: Tensor) -> Tensor:
    """``weight`` (O, C, k, k) int8 as int32 quads ``[O][k*k][C4/4]``, channels padded
    with zeros to a multiple of 4 (byte ``i`` of a quad: channel ``4*quad + i``)."""
    o, c, k, _ = weight.shape
    padded = weight.new_zeros((o, _round_up(c, 4), k, k))
    padded[:, :c] = weight
    quads = padded.reshape(o, -1, 4, k * k).permute(0, 3, 1, 2).reshape(-1)
    return quads.view(torch.int32).reshape(o, k * k, -1)


def quad_density(weight: Tensor) -> float:
    """The fraction of a conv's (output channel, tap, channel quad) weight quads that
    hold a nonzero weight: the sparse int8 kernels' work as a fraction of the dense."""
    quads = _weight_quads(weight)
    return float((quads != 0).sum()) / max(quads.numel(), 1)


def expand_work_density(expand1x1_weight: Tensor, expand3x3_weight: Tensor) -> float:
    """A Fire's expands' nonzero weight quads over all of them (:func:`quad_density` of
    both together): the sparse Fire kernel's expand work as a fraction of the dense."""
    quads = [_weight_quads(w) for w in (expand1x1_weight, expand3x3_weight)]
    total = sum(q.numel() for q in quads)
    return float(sum((q != 0).sum() for q in quads)) / max(total, 1)


def int8_sparse_pays(work_density: float, path: str | None = None) -> bool:
    """Whether the sparse int8 kernel beats the dense one at this work density on an int8
    ``path`` (default: the one the kernels run now; :data:`INT8_SPARSE_MAX_WORK_DENSITY`)."""
    if path is None:
        path = _extension.C.current_int8_path() if _extension.C is not None else "portable"
    return work_density <= INT8_SPARSE_MAX_WORK_DENSITY[path]


def pack_int8_sparse(weight: Tensor, bias: Tensor, multiplier: Tensor) -> SparseInt8Conv:
    """A conv's int8 weights ``(O, C, k, k)``, int32 bias and float32 multipliers
    ``(O,)`` in the sparse kernels' format (:class:`SparseInt8Conv`)."""
    if weight.dtype != torch.int8 or weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"pack_int8_sparse: expected square int8 conv weights (O, C, k, k), "
                         f"got {weight.dtype} {tuple(weight.shape)}")
    if weight.shape[2] ** 2 > 16:
        raise ValueError(f"pack_int8_sparse: at most 16 taps (k <= 4), got k = {weight.shape[2]}")
    quads = _weight_quads(weight)
    nonzero = quads != 0
    counts = nonzero.flatten(1).sum(1)
    rows = torch.zeros(weight.shape[0] + 1, dtype=torch.int32)
    rows[1:] = counts.cumsum(0)
    _, tap, quad = nonzero.nonzero(as_tuple=True)  # per channel: taps outer, quads inner
    entries = (quad << 4 | tap).to(torch.int32)
    return SparseInt8Conv(rows, entries, quads[nonzero].contiguous(),
                          bias.to(torch.int32).contiguous(),
                          multiplier.to(torch.float32).contiguous())


def sparse_expands(expand1x1, expand3x3) -> SparseInt8Conv:
    """A Fire's two expands (:class:`~fire_kernels.int8_reference.QuantizedConv`) as
    the one sparse 3x3 conv of ``fire_int8_sparse``: the 1x1's weights at the centre
    tap, concat channels in order."""
    w1 = expand1x1.weight
    centred = w1.new_zeros((w1.shape[0], w1.shape[1], 3, 3))
    centred[:, :, 1, 1] = w1[:, :, 0, 0]
    return pack_int8_sparse(torch.cat([centred, expand3x3.weight]),
                            torch.cat([expand1x1.bias, expand3x3.bias]),
                            torch.cat([expand1x1.multiplier, expand3x3.multiplier]))


def fire_int8(xq: Tensor, fire, pool: tuple[int, int, bool] = (1, 1, False)) -> Tensor:
    """The fused int8 Fire of a :class:`~fire_kernels.int8_reference.QuantizedFire` on
    the uint8 input ``xq``, max-pooled by ``pool`` (kernel, stride, ceil_mode) first
    (packs its convs on every call: a convenience for tests and one-off use)."""
    convs = [pack_int8(c.weight, c.bias, c.multiplier)
             for c in (fire.squeeze, fire.expand1x1, fire.expand3x3)]
    return torch.ops.fire_kernels.fire_int8(
        xq, *convs[0], *convs[1], *convs[2], fire.squeeze.weight.shape[0],
        fire.expand1x1.weight.shape[0], fire.expand3x3.weight.shape[0], *pool)


def fire_int8_sparse(xq: Tensor, fire, pool: tuple[int, int, bool] = (1, 1, False)) -> Tensor:
    """:func:`fire_int8` on the sparse kernel (packs on every call, as it)."""
    squeeze = pack_int8(fire.squeeze.weight, fire.squeeze.bias, fire.squeeze.multiplier)
    return torch.ops.fire_kernels.fire_int8_sparse(
        xq, *squeeze, *sparse_expands(fire.expand1x1, fire.expand3x3),
        fire.squeeze.weight.shape[0], fire.expand1x1.weight.shape[0],
        fire.expand3x3.weight.shape[0], *pool)


def head_int8(xq: Tensor, head) -> Tensor:
    """The int8 head of a :class:`~fire_kernels.int8_reference.QuantizedHead` on the
    uint8 input ``xq`` (packs its conv on every call, as :func:`fire_int8`)."""
    c = head.conv
    return torch.ops.fire_kernels.head_int8(xq, *pack_int8(c.weight, c.bias, c.multiplier),
                                            c.weight.shape[0], head.output_scale)


def head_int8_sparse(xq: Tensor, head) -> Tensor:
    """:func:`head_int8` on the sparse kernel (packs on every call, as it)."""
    c = head.conv
    return torch.ops.fire_kernels.head_int8_sparse(
        xq, *pack_int8_sparse(c.weight, c.bias, c.multiplier), c.weight.shape[0],
        head.output_scale)


def stem_int8(x: Tensor, stem) -> Tensor:
    """The int8 stem of a :class:`~fire_kernels.int8_reference.QuantizedStem` on the
    image ``x``, float32 or quantized uint8 (packs its conv on every call, as
    :func:`fire_int8`)."""
    c = stem.conv
    return torch.ops.fire_kernels.stem_int8(
        x, *pack_int8_stem(c.weight, c.bias, c.multiplier), c.weight.shape[0], c.weight.shape[2],
        stem.stride, stem.input_scale, stem.input_zero_point, *stem.pool)

