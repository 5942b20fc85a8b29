"""Launching the Triton Fire kernels: the plan chosen per shape, weights packed once,
block lists, registration.

Everything that decides how a Fire runs is a pure function of the shapes, the dtype
and the SM count (:func:`weight_layout`, :func:`config_for`, :func:`kernel_launches`),
so the launcher, the compile-time resource check (``benchmarks/gpu_resources.py``) and
the data-movement model (``benchmarks/gpu_model.py``) all see the same configs.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import NamedTuple

import torch
import triton
from torch import Tensor

from ..ops import output_memory_format
from .fire_kernel import _expand_kernel, _squeeze_kernel

__all__ = [
    "LIST_BLOCK",
    "TARGET_PROGRAMS_PER_SM",
    "FireConfig",
    "KernelLaunch",
    "TritonWeights",
    "WeightLayout",
    "block_list",
    "block_list_density",
    "config_for",
    "conv_tf32",
    "fire_triton",
    "fire_triton_packed",
    "interpreter_enabled",
    "kernel_launches",
    "pack_triton_weights",
    "register",
    "scratch_numel",
    "weight_layout",
]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# A test switch, as for the C++ kernels (csrc/fire_ops.cpp).
_DEBUG_NAN_FILL = os.environ.get("FIRE_KERNELS_DEBUG_NAN_FILL") == "1"

#: The expand grid :func:`config_for` aims for, in programs per SM: it shrinks channel
#: blocks, then tiles, until tiles x output-channel shares reach this many times the SM
#: count, so that small batches still fill the GPU.
TARGET_PROGRAMS_PER_SM = 2
#: Output channels x squeeze channels of one block of the block-sparse variant's lists.
LIST_BLOCK = 16
_MAX_BLOCK = 64


def interpreter_enabled() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _cdiv(n: int, m: int) -> int:
    # Not triton.cdiv: a @jit function, some microseconds a call from Python.
    return -(-n // m)


def _round_up(n: int, m: int) -> int:
    return _cdiv(n, m) * m


def _dividing_block(n: int, most: int) -> int:
    """The largest of 16, 32, 64 (at most `most`) dividing n rounded up to 16: the
    channel block that pads n least."""
    padded = _round_up(n, 16)
    block = 16
    while block * 2 <= most and padded % (block * 2) == 0:
        block *= 2
    return block


@dataclass(frozen=True)
class WeightLayout:
    """How a Fire's channels are blocked and padded; depends on channel counts and
    dtype only, so weights are packed once whatever the input's size."""

    block_c: int  # input channels per squeeze tl.dot
    block_s: int  # squeeze channels per block
    block_e: int  # the largest output-channel block a config may use
    c_pad: int
    s_pad: int
    e1_pad: int
    e3_pad: int


def weight_layout(c: int, s: int, e1: int, e3: int, dtype: torch.dtype) -> WeightLayout:
    """Channel blocks that pad no SqueezeNet layer: 16/32/64 as they divide the count.

    Squeeze blocks of at most 32 (16 in float32) and input-channel blocks of at most
    32 in float32: the squeeze block is the K of every expand tl.dot, and wider ones
    took 230-255 registers a thread in the (since removed) fused kernel
    (benchmarks/gpu_resources.py), a step from spilling.
    """
    wide = dtype != torch.float32
    block_c = _dividing_block(c, _MAX_BLOCK if wide else 32)
    block_s = _dividing_block(s, 32 if wide else 16)
    block_e = min(_MAX_BLOCK, max(16, triton.next_power_of_2(max(e1, e3))))
    return WeightLayout(block_c, block_s, block_e, _round_up(c, block_c), _round_up(s, 16),
                        _round_up(e1, block_e), _round_up(e3, block_e))


@dataclass(frozen=True)
class FireConfig:
    """One Fire's launch plan (see fire_kernel.py): the squeeze kernel over ``tiles``
    programs, then the expand kernel over ``tiles`` x ``e_split``."""

    block_m: int  # pixels per tile (of both kernels), flat over rows and images
    tiles: int  # tiles covering the input's pixels
    e_split: int  # expand programs sharing one tile's output-channel blocks
    block_c: int  # input channels per squeeze tl.dot
    block_s: int  # squeeze channels per block
    block_e: int  # output channels per expand block
    num_warps: int
    num_stages: int


def config_for(
    n: int, c: int, s: int, e1: int, e3: int, h: int, w: int, dtype: torch.dtype, sm_count: int,
    *, block_sparse: bool = False,
) -> FireConfig:
    """The launch plan for a shape on a GPU with ``sm_count`` SMs, chosen explicitly
    (no autotuning, which inside torch.compile has reused one config for every
    shape, pytorch#164124) and without device queries, so tools can ask it for any GPU.

    128-pixel tiles and the widest output-channel blocks the layout allows, shrunk
    (blocks to 32, then tiles to 16) until tiles x channel blocks cover
    ``TARGET_PROGRAMS_PER_SM * sm_count`` programs. Measured on an H200 in float16
    (``benchmarks/tune_gpu.py``): at batch 1, 16-wide blocks split over more programs
    were up to 1.5x slower than 32-wide ones.
    ``block_sparse``: the variant with block lists (blocks of ``LIST_BLOCK``).
    """
    layout = weight_layout(c, s, e1, e3, dtype)
    block_s = LIST_BLOCK if block_sparse else layout.block_s
    block_e = LIST_BLOCK if block_sparse else layout.block_e
    target = TARGET_PROGRAMS_PER_SM * sm_count
    pixels = n * h * w
    block_m = 128
    # num_warps 4: the flattened 3x3 loop has miscompiled at 8 in Inductor's conv
    # template (pytorch#173068).
    common = dict(block_c=layout.block_c, block_s=block_s, num_warps=4, num_stages=2)
    tiles = _cdiv(pixels, block_m)
    e_blocks = max(_cdiv(e1, block_e), _cdiv(e3, block_e))
    narrowest = min(block_e, 32)
    while tiles * e_blocks < target and (block_e > narrowest or block_m > 16):
        if block_e > narrowest:
            block_e //= 2
            e_blocks = max(_cdiv(e1, block_e), _cdiv(e3, block_e))
        else:
            block_m //= 2
            tiles = _cdiv(pixels, block_m)
    e_split = min(e_blocks, _cdiv(target, tiles))
    return FireConfig(block_m, tiles, e_split, block_e=block_e, **common)


def scratch_numel(cfg: FireConfig, layout: WeightLayout, pixels: int) -> int:
    """Elements of the squeeze buffer: the squeeze of every pixel, rounded up to whole
    tiles (the squeeze kernel stores whole tiles)."""
    return _round_up(pixels, cfg.block_m) * layout.s_pad


class TritonWeights(NamedTuple):
    """A Fire's weights as the kernels read them (:func:`pack_triton_weights`): zero
    padded to the :class:`WeightLayout`, in the input's dtype; biases float32."""

    squeeze: Tensor  # [C_pad, S_pad]: W_s transposed
    squeeze_bias: Tensor  # [S_pad]
    expand1x1: Tensor  # [S_pad, E1_pad]: W_1 transposed
    expand1x1_bias: Tensor  # [E1_pad]
    expand3x3: Tensor  # [9, S_pad, E3_pad]: tap dy * 3 + dx, then W_3 transposed
    expand3x3_bias: Tensor  # [E3_pad]


def pack_triton_weights(
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
    dtype: torch.dtype | None = None,
) -> TritonWeights:
    """The weights in the kernels' layout, ``dtype`` (default: the weights') for the
    matrices. Device ops only, no host synchronisation; the caller packs once per
    weight version and passes the result as ``fire_triton(..., weights=)``."""
    s, c = squeeze_weight.shape[:2]
    e1, e3 = expand1x1_weight.shape[0], expand3x3_weight.shape[0]
    dtype = dtype or squeeze_weight.dtype
    lay = weight_layout(c, s, e1, e3, dtype)
    dev = squeeze_weight.device

    def matrix(weight: Tensor, shape: tuple[int, ...]) -> Tensor:
        packed = torch.zeros(shape, dtype=dtype, device=dev)
        view = packed[tuple(slice(0, k) for k in weight.shape)]
        view.copy_(weight)
        return packed

    def bias(b: Tensor | None, size: int, padded: int) -> Tensor:
        packed = torch.zeros(padded, dtype=torch.float32, device=dev)
        if b is not None:
            packed[:size].copy_(b.detach())
        return packed

    ws = squeeze_weight.detach().reshape(s, c).t()
    we1 = expand1x1_weight.detach().reshape(e1, s).t()
    we3 = expand3x3_weight.detach().reshape(e3, s, 9).permute(2, 1, 0)
    return TritonWeights(
        matrix(ws, (lay.c_pad, lay.s_pad)), bias(squeeze_bias, s, lay.s_pad),
        matrix(we1, (lay.s_pad, lay.e1_pad)), bias(expand1x1_bias, e1, lay.e1_pad),
        matrix(we3, (9, lay.s_pad, lay.e3_pad)), bias(expand3x3_bias, e3, lay.e3_pad),
    )


def block_list(expand3x3_weight: Tensor, block: int = LIST_BLOCK) -> tuple[Tensor, Tensor]:
    """The block-sparse variant's lists: for each block of `block` output channels of
    the 3x3, its (tap, squeeze block) pairs with a nonzero weight, as
    tap * squeeze_blocks + squeeze block, nonzero ones first (int32
    [out blocks, 9 * squeeze blocks]), and their counts (int32 [out blocks]).

    Fixed-size device tensors made by device ops: no host synchronisation, so it may
    run inside a CUDA graph or a forward. Whether skipping pays is a separate
    question (:func:`block_list_density`)."""
    e3, s = expand3x3_weight.shape[:2]
    eb, sb = triton.cdiv(e3, block), triton.cdiv(s, block)
    nz = torch.zeros(eb * block, sb * block, 9, dtype=torch.bool, device=expand3x3_weight.device)
    nz[:e3, :s] = expand3x3_weight.detach().reshape(e3, s, 9) != 0
    # [out block, tap, squeeze block] -> any weight nonzero
    blocks = nz.view(eb, block, sb, block, 9).any(3).any(1).permute(0, 2, 1).reshape(eb, 9 * sb)
    order = torch.argsort((~blocks).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return order.contiguous(), blocks.sum(1, dtype=torch.int32)


def block_list_density(counts: Tensor, squeeze_channels: int) -> float:
    """The fraction of the 3x3's blocks that are nonzero, from :func:`block_list`'s
    counts. Reads a device value: one host synchronisation, so call it where the
    weights change (when packing), never in a forward."""
    total = counts.numel() * 9 * triton.cdiv(squeeze_channels, LIST_BLOCK)
    return int(counts.sum()) / max(1, total)


@dataclass(frozen=True)
class KernelLaunch:
    """One kernel launch: ``kernel[grid](*args, **meta)``."""

    kernel: object
    grid: tuple[int, ...]
    args: tuple
    meta: dict


class _Launch(NamedTuple):
    """A launch but for its tensors: ``kernel[grid](*tensors, *scalars, **meta)``."""

    kernel: object
    grid: tuple[int, ...]
    scalars: tuple
    meta: dict


def _launches(
    cfg: FireConfig, x_shape: tuple[int, ...], x_stride: tuple[int, ...],
    out_stride: tuple[int, ...], e1: int, e3: int, s_pad: int, e1_pad: int, e3_pad: int,
    s_rows: int, block_sparse: bool, precision: str, upcast: bool,
) -> tuple[_Launch, _Launch]:
    """The squeeze launch and the expand launch, from shapes and strides only; their
    tensors are :func:`_tensor_args`'. ``s_rows``: the buffer's rows per squeeze block."""
    n, c, h, w = x_shape
    sizes = (n * h * w, h * w)
    meta = dict(
        BLOCK_M=cfg.block_m, BLOCK_S=cfg.block_s, S_BLOCKS=s_pad // cfg.block_s, S_PAD=s_pad,
        PRECISION=precision, UPCAST=upcast, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return (
        _Launch(_squeeze_kernel, (cfg.tiles,), (*sizes, w, c, *x_stride, s_rows),
                dict(meta, BLOCK_C=cfg.block_c)),
        _Launch(_expand_kernel, (cfg.tiles, cfg.e_split),
                (*sizes, h, w, e1, e3, *out_stride, s_rows),
                dict(meta, BLOCK_E=cfg.block_e, E1_PAD=e1_pad, E3_PAD=e3_pad,
                     BLOCK_LIST=block_sparse)),
    )


def _tensor_args(
    x: Tensor, out: Tensor, scratch: Tensor, blocks: Tensor | None, counts: Tensor | None,
    squeeze: Tensor, squeeze_bias: Tensor, expand1x1: Tensor, expand1x1_bias: Tensor,
    expand3x3: Tensor, expand3x3_bias: Tensor,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The tensor arguments of the squeeze launch and of the expand launch, in order."""
    # Without lists the kernels never read these pointers: any tensor will do.
    lists = (blocks if blocks is not None else scratch, counts if counts is not None else scratch)
    return ((x, squeeze, squeeze_bias, scratch),
            (scratch, expand1x1, expand1x1_bias, expand3x3, expand3x3_bias, out, *lists))


def _upcast(dtype: torch.dtype) -> bool:
    """The kernels' UPCAST: bfloat16 under the interpreter (see fire_kernel.py)."""
    return dtype == torch.bfloat16 and interpreter_enabled()


def kernel_launches(
    cfg: FireConfig, x: Tensor, out: Tensor, e1: int, weights: TritonWeights, scratch: Tensor,
    blocks: Tensor | None, counts: Tensor | None, precision: str,
) -> list[KernelLaunch]:
    """The two launches of a Fire with ``e1`` 1x1 output channels: the squeeze, then
    the expands. Reads only the tensors' shapes, strides, dtypes and addresses, so
    meta tensors do for compiling without a GPU."""
    s_pad = weights.squeeze.shape[1]
    static = _launches(cfg, tuple(x.shape), x.stride(), out.stride(), e1, out.shape[1] - e1,
                       s_pad, weights.expand1x1.shape[1], weights.expand3x3.shape[2],
                       scratch.numel() // s_pad, blocks is not None, precision,
                       _upcast(x.dtype))
    tensors = _tensor_args(x, out, scratch, blocks, counts, *weights)
    return [KernelLaunch(s.kernel, s.grid, (*t, *s.scalars), s.meta)
            for s, t in zip(static, tensors)]


def conv_tf32() -> bool:
    """Whether float32 runs on TF32 tensor cores: the switch cuDNN convolutions follow
    (``torch.backends.cudnn.conv.fp32_precision``, which the older
    ``torch.backends.cudnn.allow_tf32`` sets), not the matmul one."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None:
        return conv.fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


def fire_triton(
    x: Tensor,
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
    block_list: Tensor | None = None,
    block_counts: Tensor | None = None,
    block: int | None = None,
    *,
    weights: TritonWeights | None = None,
    sm_count: int | None = None,
) -> Tensor:
    """The fused Fire with the Triton kernels; argument shapes as ``fire_kernels.fire``.

    CUDA tensors, or CPU tensors under the interpreter. float32, float16 and bfloat16
    (float32 accumulation; float32 uses TF32 where cuDNN convolutions would,
    :func:`conv_tf32`). The output has the input's memory format.

    Args:
        block_list, block_counts, block: the block-sparse variant, from
            :func:`block_list` (``block`` must be ``LIST_BLOCK``): the 3x3 visits only
            the listed weight blocks.
        weights: the weights already packed by :func:`pack_triton_weights` in ``x``'s
            dtype; the weight tensors are then read for their shapes only. Without
            it they are packed on every call (device copies).
        sm_count: SMs to plan for (default: the device's; 1 under the interpreter,
            which runs programs one after another).
    """
    _check_launch(x, block_list, block_counts, block)
    if weights is None:
        weights = pack_triton_weights(squeeze_weight, squeeze_bias, expand1x1_weight,
                                      expand1x1_bias, expand3x3_weight, expand3x3_bias, x.dtype)
    return fire_triton_packed(
        x, *weights, squeeze_weight.shape[0], expand1x1_weight.shape[0],
        expand3x3_weight.shape[0], block_list, block_counts, sm_count=sm_count,
    )


def _check_launch(x: Tensor, block_list: Tensor | None, block_counts: Tensor | None,
                  block: int | None) -> None:
    if x.device.type == "cpu" and not interpreter_enabled():
        raise RuntimeError(
            "the Triton kernel runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1 "
            f"set before triton is imported; the input is on {x.device}"
        )
    if x.dtype not in _DTYPES:
        raise TypeError(f"the Triton kernel runs float32, float16 or bfloat16; the input is {x.dtype}")
    if (block_list is None) != (block_counts is None) or (
            block_list is not None and block not in (None, LIST_BLOCK)):
        raise ValueError(f"block_list and block_counts go together, for blocks of {LIST_BLOCK}; "
                         f"got block={block}")


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    # A device query costs microseconds; a device's SM count never changes.
    return torch.cuda.get_device_properties(device_index).multi_processor_count


class _Plan(NamedTuple):
    """All of a forward that depends on shapes alone, made once per shape
    (:func:`_plan`): each launch as its launcher (``kernel[grid]``), the scalar
    arguments after its tensors, and its meta-parameters."""

    weight_shapes: tuple[tuple[int, ...], ...]  # the packs that fit: W_s, W_1, W_3
    memory_format: torch.memory_format  # the output's
    scratch_numel: int
    launches: tuple[tuple[object, tuple, dict], ...]  # squeeze, expand


# Planned on every call (device query, layout, config, launch arguments), a forward
# spent about 110 us of host time beyond its two launches on the H200 machine
# (tune_gpu.py overhead), which made batch 1 slower than eager PyTorch's Fire: plans are
# made once per key instead. The SM count stands for the device (a plan holds no device
# or tensor); the strides decide the output's memory format and are launch arguments.
# Bounded, for callers whose shapes keep changing.
@functools.lru_cache(maxsize=512)
def _plan(shape: torch.Size, stride: tuple[int, ...], dtype: torch.dtype, s: int, e1: int,
          e3: int, sm_count: int, block_sparse: bool, precision: str) -> _Plan:
    n, c, h, w = shape
    layout = weight_layout(c, s, e1, e3, dtype)
    cfg = config_for(n, c, s, e1, e3, h, w, dtype, sm_count, block_sparse=block_sparse)
    fmt = output_memory_format(torch.empty_strided(shape, stride, dtype=dtype, device="meta"))
    out_stride = torch.empty((n, e1 + e3, h, w), dtype=dtype, device="meta",
                             memory_format=fmt).stride()
    numel = scratch_numel(cfg, layout, n * h * w)
    launches = _launches(cfg, tuple(shape), stride, out_stride, e1, e3, layout.s_pad,
                         layout.e1_pad, layout.e3_pad, numel // layout.s_pad, block_sparse,
                         precision, _upcast(dtype))
    weight_shapes = ((layout.c_pad, layout.s_pad), (layout.s_pad, layout.e1_pad),
                     (9, layout.s_pad, layout.e3_pad))
    return _Plan(weight_shapes, fmt, numel,
                 tuple((k.kernel[k.grid], k.scalars, k.meta) for k in launches))


def fire_triton_packed(
    x: Tensor,
    squeeze: Tensor,
    squeeze_bias: Tensor,
    expand1x1: Tensor,
    expand1x1_bias: Tensor,
    expand3x3: Tensor,
    expand3x3_bias: Tensor,
    squeeze_channels: int,
    expand1x1_channels: int,
    expand3x3_channels: int,
    block_list: Tensor | None = None,
    block_counts: Tensor | None = None,
    *,
    sm_count: int | None = None,
) -> Tensor:
    """The fused Fire from weights packed by :func:`pack_triton_weights` (the six
    tensors of :class:`TritonWeights`) for a Fire of these channel counts: the kernel
    of ``torch.ops.fire_kernels.fire_packed``, which a FusedFire's weight plan calls so
    that no forward packs. Otherwise as :func:`fire_triton`."""
    _check_launch(x, block_list, block_counts, None)
    n, c, h, w = x.shape
    s, e1, e3 = squeeze_channels, expand1x1_channels, expand3x3_channels
    if n * h * w * (e1 + e3) == 0:  # nothing to launch (and no plan for no pixels)
        return torch.empty((n, e1 + e3, h, w), dtype=x.dtype, device=x.device,
                           memory_format=output_memory_format(x))
    if sm_count is None:
        sm_count = _sm_count(x.device.index) if x.is_cuda else 1
    precision = "tf32" if x.dtype == torch.float32 and x.is_cuda and conv_tf32() else "ieee"
    plan = _plan(x.shape, x.stride(), x.dtype, s, e1, e3, sm_count, block_list is not None,
                 precision)
    if squeeze.dtype != x.dtype or (
            (squeeze.shape, expand1x1.shape, expand3x3.shape) != plan.weight_shapes):
        raise ValueError(
            f"packed weights of {tuple(squeeze.shape)} {squeeze.dtype} do not fit this Fire's "
            f"{x.dtype} layout {plan.weight_shapes}: pack them again"
        )
    out = torch.empty((n, e1 + e3, h, w), dtype=x.dtype, device=x.device,
                      memory_format=plan.memory_format)
    if _DEBUG_NAN_FILL:  # every element the kernel does not write stays NaN
        out.fill_(float("nan"))
    scratch = torch.empty(plan.scratch_numel, dtype=x.dtype, device=x.device)
    tensors = _tensor_args(x, out, scratch, block_list, block_counts, squeeze, squeeze_bias,
                           expand1x1, expand1x1_bias, expand3x3, expand3x3_bias)
    for (launch, scalars, meta), args in zip(plan.launches, tensors):
        launch(*args, *scalars, **meta)
    return out


_registered = False


def register() -> None:
    """Makes the launchers the CUDA kernels of torch.ops.fire_kernels.fire,
    fire_blocksparse and fire_packed (once), and, under the interpreter, the CPU
    kernels of their ``_interpreted`` twins.

    ``register_kernel``, not ``triton_op``: the latter breaks torch.compile for the
    op's CPU kernel ("0 active drivers").
    """
    global _registered
    if not _registered:
        kernels = (("fire", fire_triton), ("fire_blocksparse", fire_triton),
                   ("fire_packed", fire_triton_packed))
        for op, kernel in kernels:
            torch.library.register_kernel(f"fire_kernels::{op}", "cuda", kernel)
            if interpreter_enabled():
                torch.library.register_kernel(f"fire_kernels::{op}_interpreted", "cpu", kernel)
        _registered = True
