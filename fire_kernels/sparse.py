"""Running a Fire's pruned weights sparse: when it pays, in which format, and packing.

The sparse kernel (``torch.ops.fire_kernels.fire_sparse``) skips zero weights. It
groups output channels by ``block`` (1, or 4 that share their nonzero positions) and
does work in proportion to the *entries* of the packed weights: nonzero weights for
block 1, nonzero blocks x 4 for block 4. Whether that beats the dense fused kernel
depends on this "work density"; the crossovers below were measured on the project's
CPU (``benchmarks/bench_sparse.py``, see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "GPU_BLOCK",
    "GPU_MAX_BLOCK_DENSITY",
    "BlockList",
    "gpu_block_list",
    "SPARSE_MAX_WORK_DENSITY",
    "SparseConv1x1",
    "SparsePacked",
    "TritonForm",
    "choose_block",
    "choose_conv_block",
    "conv_sparse_pays",
    "packed_conv1x1_nbytes",
    "packed_nbytes",
    "sparse_pays",
    "work_density",
]

#: The largest work density (block -> fraction of the dense MACs) at which the sparse
#: kernel still beats the dense fused kernel.
SPARSE_MAX_WORK_DENSITY = {1: 0.35, 4: 0.65}

#: The GPU kernel's weight blocks: this many squeeze x output channels at one tap.
GPU_BLOCK = 16
#: The largest fraction of nonzero GPU blocks at which the block-sparse Triton kernel
#: is used. A guess until measured on a GPU (the issue that measures it is blocked on
#: hardware): below half the blocks, the skipped dots should outweigh the lists.
GPU_MAX_BLOCK_DENSITY = 0.5

# Block 4 is used when the zeros are that well aligned to blocks of 4 channels:
# its entries do at most this much more work than block 1's.
_BLOCK4_MAX_EXTRA_WORK = 1.15


class SparsePacked(NamedTuple):
    """A Fire's weights packed for the sparse kernel (``fire_kernels.functional.pack_sparse``):
    the arguments ``torch.ops.fire_kernels.fire_sparse`` takes besides the input and
    the biases."""

    squeeze_values: Tensor
    squeeze_index: Tensor
    expand_values: Tensor
    expand_index: Tensor
    block: int
    width: int
    squeeze_channels: int
    expand1x1_channels: int
    expand3x3_channels: int


def _expand_matrix(expand1x1_weight: Tensor, expand3x3_weight: Tensor) -> Tensor:
    """The two expands as one (E1 + E3, S, 9) conv, the 1x1 as the centre tap."""
    e1, s = expand1x1_weight.shape[:2]
    w1 = torch.zeros(e1, s, 9, dtype=expand1x1_weight.dtype, device=expand1x1_weight.device)
    w1[:, :, 4] = expand1x1_weight.detach().reshape(e1, s)
    return torch.cat([w1, expand3x3_weight.detach().reshape(expand3x3_weight.shape[0], s, 9)])


def _entries(w: Tensor, block: int) -> int:
    """Entries of a (O, positions...) weight packed in groups of `block` channels:
    the (group, position) pairs where any channel of the group is nonzero."""
    nz = w.reshape(w.shape[0], -1) != 0
    groups = -(-nz.shape[0] // block)
    padded = torch.zeros(groups * block, nz.shape[1], dtype=torch.bool, device=nz.device)
    padded[: nz.shape[0]] = nz
    return int(padded.view(groups, block, -1).any(1).sum())


def work_density(
    squeeze_weight: Tensor, expand1x1_weight: Tensor, expand3x3_weight: Tensor, block: int
) -> float:
    """The sparse kernel's MACs as a fraction of the dense kernel's (every weight is
    one MAC per pixel, so this is entries x block / weights)."""
    expand = _expand_matrix(expand1x1_weight, expand3x3_weight)
    dense = squeeze_weight.numel() + expand1x1_weight.numel() + expand3x3_weight.numel()
    entries = _entries(squeeze_weight, block) + _entries(expand, block)
    # The 1x1 as the centre tap adds no work: its off-centre positions are zero.
    return entries * block / dense


def _block_for(density) -> int:
    """4 if the zeros come in blocks of 4 output channels (as ``block=4`` pruning
    leaves them): its entries do little more work than single channels'; else 1."""
    return 4 if density(4) <= _BLOCK4_MAX_EXTRA_WORK * density(1) else 1


def choose_block(squeeze_weight: Tensor, expand1x1_weight: Tensor, expand3x3_weight: Tensor) -> int:
    """The sparse kernel's group size for a Fire's weights: 4 or 1 (:func:`_block_for`)."""
    return _block_for(lambda b: work_density(squeeze_weight, expand1x1_weight, expand3x3_weight, b))


def sparse_pays(
    squeeze_weight: Tensor, expand1x1_weight: Tensor, expand3x3_weight: Tensor
) -> int | None:
    """The block to run these weights sparse with, or None if dense is faster."""
    block = choose_block(squeeze_weight, expand1x1_weight, expand3x3_weight)
    density = work_density(squeeze_weight, expand1x1_weight, expand3x3_weight, block)
    return block if density <= SPARSE_MAX_WORK_DENSITY[block] else None


class SparseConv1x1(NamedTuple):
    """A 1x1 conv's weights packed for the sparse head kernel
    (``fire_kernels.functional.pack_sparse_conv1x1``)."""

    values: Tensor
    index: Tensor
    block: int
    out_channels: int


def conv_work_density(weight: Tensor, block: int) -> float:
    """The sparse 1x1 kernel's MACs as a fraction of the dense one's."""
    return _entries(weight, block) * block / weight.numel()


def choose_conv_block(weight: Tensor) -> int:
    """The sparse kernel's group size for a 1x1 conv's weight: 4 or 1."""
    return _block_for(lambda b: conv_work_density(weight, b))


def conv_sparse_pays(weight: Tensor) -> int | None:
    """The block to run a 1x1 conv's weight sparse with, or None if dense is faster."""
    block = choose_conv_block(weight)
    return block if conv_work_density(weight, block) <= SPARSE_MAX_WORK_DENSITY[block] else None


def _packed_nbytes(w: Tensor, block: int) -> int:
    """Bytes of one packed conv: per entry a 4-byte position and `block` 4-byte
    values, per group a 4-byte start (plus one)."""
    groups = -(-w.shape[0] // block)
    return _entries(w, block) * (4 + 4 * block) + 4 * (groups + 1)


def packed_nbytes(
    squeeze_weight: Tensor, expand1x1_weight: Tensor, expand3x3_weight: Tensor, block: int
) -> int:
    """Bytes of a Fire's packed weights (the squeeze, and both expands as one conv)."""
    expand = _expand_matrix(expand1x1_weight, expand3x3_weight)
    return _packed_nbytes(squeeze_weight, block) + _packed_nbytes(expand, block)


def packed_conv1x1_nbytes(weight: Tensor, block: int) -> int:
    """Bytes of a 1x1 conv's packed weights (``pack_sparse_conv1x1``)."""
    return _packed_nbytes(weight, block)


class BlockList(NamedTuple):
    """The arguments ``fire_blocksparse`` takes besides the weights (see
    ``fire_kernels.triton.block_list``)."""

    blocks: Tensor
    counts: Tensor
    block: int


def gpu_block_list(expand3x3_weight: Tensor, force: bool) -> BlockList | None:
    """The 3x3's nonzero blocks for the block-sparse Triton kernel, or None when
    too many blocks are nonzero for skipping to pay (unless ``force``). Deciding that
    reads the density from the device, one host synchronisation: call it where the
    weights change (a weight plan is made), never in a forward."""
    from .triton import block_list, block_list_density

    blocks, counts = block_list(expand3x3_weight, GPU_BLOCK)
    density = block_list_density(counts, expand3x3_weight.shape[1])
    if not force and density > GPU_MAX_BLOCK_DENSITY:
        return None
    return BlockList(blocks, counts, GPU_BLOCK)


class TritonForm(NamedTuple):
    """What a weight plan keeps for the Triton kernel: the weights packed in the
    input's dtype (``fire_kernels.triton.TritonWeights``), and the 3x3's block list
    where the block-sparse variant runs."""

    weights: tuple
    blocks: BlockList | None
