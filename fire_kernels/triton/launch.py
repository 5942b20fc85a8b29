"""Launching the Triton Fire kernel: configs chosen per shape, scratch, registration."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
from torch import Tensor

from ..ops import output_memory_format
from .fire_kernel import _fire_kernel

__all__ = [
    "FireConfig",
    "block_list",
    "config_for",
    "fire_triton",
    "interpreter_enabled",
    "register",
]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# A test switch, as for the C++ kernels (csrc/fire_ops.cpp).
_DEBUG_NAN_FILL = os.environ.get("FIRE_KERNELS_DEBUG_NAN_FILL") == "1"


def interpreter_enabled() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@dataclass(frozen=True)
class FireConfig:
    """Tile and launch parameters of one kernel launch (see fire_kernel.py)."""

    th: int  # tile rows
    tw: int  # tile columns
    block_c: int  # input channels per squeeze tl.dot
    block_s: int  # squeeze channels per block
    block_e: int  # output channels per block
    e_split: int  # programs sharing one tile's output channels
    num_warps: int
    num_stages: int


def _pow2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(n))


def config_for(
    n: int, c: int, s: int, e1: int, e3: int, h: int, w: int, dtype: torch.dtype, programs: int,
    block: int | None = None,
) -> FireConfig:
    """The launch config for a shape, chosen explicitly (no autotuning, which inside
    torch.compile has reused one config for every shape, pytorch#164124).

    ``programs`` is how many programs keep the device busy (2 per SM); small batches
    split each tile's output channels over several programs to get there. ``block``
    fixes the squeeze and output channel blocks (the block-sparse variant's).
    """
    th, tw = (4, 16) if w >= 32 else (8, 8)  # 64 pixels a tile, a 16-wide halo row when wide
    block_s = block or min(64, _pow2(s))
    block_c = min(64 if dtype != torch.float32 else 32, _pow2(c))
    block_e = block or min(64, _pow2(max(e1, e3)))
    tiles = n * triton.cdiv(h, th) * triton.cdiv(w, tw)
    e_blocks = triton.cdiv(e3, block_e)
    e_split = max(1, min(e_blocks, triton.cdiv(programs, max(1, tiles))))
    # num_warps 4: the flattened 3x3 loop has miscompiled at 8 (pytorch#173068).
    return FireConfig(th, tw, block_c, block_s, block_e, e_split, num_warps=4, num_stages=2)


def _device_programs(x: Tensor) -> int:
    if x.device.type != "cuda":
        return 1  # the interpreter runs programs one after another
    return 2 * torch.cuda.get_device_properties(x.device).multi_processor_count


def block_list(expand3x3_weight: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """The block-sparse variant's lists: for each block of `block` output channels of
    the 3x3, its (tap, squeeze block) pairs with a nonzero weight, as
    tap * squeeze_blocks + squeeze block, nonzero ones first (int32
    [out blocks, 9 * squeeze blocks]), and their counts (int32 [out blocks]). Device
    tensors, computed without a host synchronisation."""
    e3, s = expand3x3_weight.shape[:2]
    eb, sb = triton.cdiv(e3, block), triton.cdiv(s, block)
    nz = torch.zeros(eb * block, sb * block, 9, dtype=torch.bool, device=expand3x3_weight.device)
    nz[:e3, :s] = expand3x3_weight.detach().reshape(e3, s, 9) != 0
    # [out block, tap, squeeze block] -> any weight nonzero
    blocks = nz.view(eb, block, sb, block, 9).any(3).any(1).permute(0, 2, 1).reshape(eb, 9 * sb)
    order = torch.argsort((~blocks).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return order.contiguous(), blocks.sum(1, dtype=torch.int32)


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
) -> Tensor:
    """The fused Fire with the Triton kernel; argument shapes as ``fire_kernels.fire``.

    CUDA tensors, or CPU tensors under the interpreter. float32, float16 and bfloat16
    (float32 accumulation; float32 uses TF32 only where
    ``torch.backends.cuda.matmul.allow_tf32`` allows it). The output has the input's
    memory format. With ``block_list``/``block_counts`` from :func:`block_list` (for
    ``block`` channels), the 3x3 visits only the listed weight blocks.
    """
    if x.device.type == "cpu" and not interpreter_enabled():
        raise RuntimeError(
            "the Triton kernel runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1 "
            f"set before triton is imported; the input is on {x.device}"
        )
    if x.dtype not in _DTYPES:
        raise TypeError(f"the Triton kernel runs float32, float16 or bfloat16; the input is {x.dtype}")
    n, c, h, w = x.shape
    s, e1, e3 = squeeze_weight.shape[0], expand1x1_weight.shape[0], expand3x3_weight.shape[0]
    out = torch.empty((n, e1 + e3, h, w), dtype=x.dtype, device=x.device,
                      memory_format=output_memory_format(x))
    if _DEBUG_NAN_FILL:  # every element the kernel does not write stays NaN
        out.fill_(float("nan"))
    if out.numel() == 0:
        return out
    cfg = config_for(n, c, s, e1, e3, h, w, x.dtype, _device_programs(x), block)
    tiles_w, tiles_h = triton.cdiv(w, cfg.tw), triton.cdiv(h, cfg.th)
    halo_p = triton.next_power_of_2((cfg.th + 2) * (cfg.tw + 2))
    s_blocks = triton.cdiv(s, cfg.block_s)
    grid = (n * tiles_h * tiles_w, cfg.e_split)
    scratch = torch.empty(grid[0] * grid[1] * halo_p * s_blocks * cfg.block_s,
                          dtype=x.dtype, device=x.device)
    tf32 = x.dtype == torch.float32 and x.is_cuda and torch.backends.cuda.matmul.allow_tf32
    biases = [squeeze_bias, expand1x1_bias, expand3x3_bias]
    _fire_kernel[grid](
        x, squeeze_weight.contiguous(), biases[0] if biases[0] is not None else x,
        expand1x1_weight.contiguous(), biases[1] if biases[1] is not None else x,
        expand3x3_weight.contiguous(), biases[2] if biases[2] is not None else x,
        out, scratch,
        block_list if block_list is not None else scratch,
        block_counts if block_counts is not None else scratch,
        h, w, c, s, e1, e3,
        *x.stride(), *out.stride(),
        tiles_w, tiles_h * tiles_w,
        HAS_BS=biases[0] is not None, HAS_B1=biases[1] is not None, HAS_B3=biases[2] is not None,
        TH=cfg.th, TW=cfg.tw, HALO_P=halo_p,
        BLOCK_C=cfg.block_c, BLOCK_S=cfg.block_s, S_BLOCKS=s_blocks,
        BLOCK_E=cfg.block_e, E_SPLIT=cfg.e_split, PRECISION="tf32" if tf32 else "ieee",
        UPCAST=x.dtype == torch.bfloat16 and interpreter_enabled(),
        BLOCK_LIST=block_list is not None,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


_registered = False


def register() -> None:
    """Makes fire_triton the CUDA kernel of torch.ops.fire_kernels.fire and
    fire_blocksparse (once), and, under the interpreter, the CPU kernel of their
    ``_interpreted`` twins.

    ``register_kernel``, not ``triton_op``: the latter breaks torch.compile for the
    op's CPU kernel ("0 active drivers").
    """
    global _registered
    if not _registered:
        torch.library.register_kernel("fire_kernels::fire", "cuda", fire_triton)
        torch.library.register_kernel("fire_kernels::fire_blocksparse", "cuda", fire_triton)
        if interpreter_enabled():
            torch.library.register_kernel("fire_kernels::fire_interpreted", "cpu", fire_triton)
            torch.library.register_kernel(
                "fire_kernels::fire_blocksparse_interpreted", "cpu", fire_triton)
        _registered = True
