"""Magnitude pruning of a model's Fire modules, and a report of what it saved.

``prune_fire_modules(model, 0.9)`` zeroes the 90 % smallest weights of every Fire's
convolutions, in place; ``block=4`` prunes whole blocks of 4 output channels at the
same input position (XNNPACK/TVM "4x1" blocks), which the sparse kernel runs faster
per nonzero. Models pruned with ``torch.nn.utils.prune`` work too: their masks are
respected and extended. ``sparsity_report(model)`` tells, per Fire and in total,
nonzeros, density and packed bytes against dense bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from .module import fire_like_modules
from .sparse import choose_block, choose_conv_block, packed_conv1x1_nbytes, packed_nbytes
from .weight_plan import conv_weight

__all__ = [
    "prune_fire_modules",
    "prune_network",
    "sparsity_report",
    "SparsityReport",
    "FireSparsity",
    "ConvSparsity",
    "CONV_NAMES",
]

CONV_NAMES = ("squeeze", "expand1x1", "expand3x3")


def _block_shape(block: int | tuple[int, int]) -> tuple[int, int]:
    """(output channels, input channels) of a pruning block."""
    return (block, 1) if isinstance(block, int) else (int(block[0]), int(block[1]))


def _block_scores(w: Tensor, block: tuple[int, int]) -> Tensor:
    """The mean |w| of each block of bo output x bi input channels at one kernel
    position (blocks at the channel edges may be partial): shape
    (ceil(O / bo), ceil(I / bi), kh * kw)."""
    bo, bi = block
    out, inp = w.shape[:2]
    go, gi = -(-out // bo), -(-inp // bi)
    a = w.detach().abs().reshape(out, inp, -1)
    padded = torch.zeros(go * bo, gi * bi, a.shape[2], dtype=a.dtype, device=a.device)
    padded[:out, :inp] = a
    ones = torch.zeros_like(padded[:, :, :1])
    ones[:out, :inp] = 1
    sums = padded.view(go, bo, gi, bi, -1).sum((1, 3))
    counts = ones.view(go, bo, gi, bi, 1).sum((1, 3))
    return sums / counts


def _mask_from_scores(keep: Tensor, w: Tensor, block: tuple[int, int]) -> Tensor:
    """A 0/1 mask of w's shape from a keep-mask over the blocks."""
    bo, bi = block
    out, inp = w.shape[:2]
    full = keep.repeat_interleave(bo, 0).repeat_interleave(bi, 1)[:out, :inp]
    return full.reshape(w.shape).to(w.dtype)


def _apply_mask(conv: nn.Conv2d, mask: Tensor) -> None:
    if hasattr(conv, "weight_mask"):
        # Pruned with torch.nn.utils.prune: add ours to its mask container.
        torch_prune.custom_from_mask(conv, "weight", mask)
    else:
        with torch.no_grad():
            conv.weight.mul_(mask)


def _lowest(scores: Sequence[Tensor], amount: float) -> list[Tensor]:
    """Keep-masks dropping the round(amount * total) lowest scores across `scores`
    (ties broken by position, so the count is exact)."""
    flat = torch.cat([s.flatten() for s in scores])
    k = round(amount * flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    return list(torch.split(keep, [s.numel() for s in scores]))


def prune_fire_modules(
    model: nn.Module,
    amount: float,
    *,
    block: int | tuple[int, int] = 1,
    scope: Literal["layer", "global"] = "layer",
    convs: Iterable[str] = CONV_NAMES,
) -> nn.Module:
    """Prunes every Fire-shaped module of ``model`` (``Fire``, ``FusedFire`` or any class
    of that structure, ``model`` itself included) by weight magnitude, in place.

    Args:
        amount: fraction of weights (or blocks) to zero, in [0, 1].
        block: 1 for unstructured pruning; 4 to prune blocks of 4 consecutive output
            channels at one input position (what the CPU sparse kernel runs fastest);
            a pair ``(out, in)``, e.g. ``(16, 16)``, to prune blocks of `out` output x
            `in` input channels at one kernel position (what the GPU kernel skips).
            Blocks are scored by their mean magnitude.
        scope: ``"layer"`` prunes each conv by ``amount``; ``"global"`` ranks the
            weights of all selected convs of all Fires together, so that ``amount``
            holds for them as a whole.
        convs: which of ``squeeze``, ``expand1x1``, ``expand3x3`` to prune.

    Exactly ``round(amount * n)`` of a conv's ``n`` weights (blocks) are zeroed with
    ``scope="layer"``, the smallest first (weights already zero count among them).
    ``amount`` counts blocks, so partial blocks at the channel edges make the density
    of weights differ slightly from ``1 - amount``.

    Returns:
        ``model``.
    """
    convs = tuple(convs)
    unknown = set(convs) - set(CONV_NAMES)
    if unknown:
        raise ValueError(f"unknown convs {sorted(unknown)}; expected some of {CONV_NAMES}")
    targets = [getattr(fire, name) for _, fire in fire_like_modules(model) for name in convs]
    return _prune(model, targets, amount, block, scope)


def prune_network(
    model: nn.Module,
    amount: float,
    *,
    block: int | tuple[int, int] = 1,
    scope: Literal["layer", "global"] = "layer",
    min_in_channels: int = 4,
) -> nn.Module:
    """Prunes every convolution of ``model`` by weight magnitude, in place: the
    Fires' and the others (a classifier's), as :func:`prune_fire_modules` prunes a
    Fire's. A convolution from fewer than ``min_in_channels`` input channels (a
    stem on an image's 3) stays dense: its few weights are much of the network's
    accuracy and little of its work. Returns ``model``."""
    targets = [m for m in model.modules()
               if isinstance(m, nn.Conv2d) and m.in_channels >= min_in_channels]
    return _prune(model, targets, amount, block, scope)


def _prune(model: nn.Module, targets: list[nn.Module], amount: float,
           block: int | tuple[int, int], scope: str) -> nn.Module:
    """Zeroes, by magnitude, ``amount`` of the weights (blocks) of each conv of
    ``targets`` (scope "layer") or of all together (scope "global")."""
    if not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    if not (block in (1, 4) or (isinstance(block, tuple) and len(block) == 2
                                and all(isinstance(b, int) and b >= 1 for b in block))):
        raise ValueError(f"block must be 1, 4 or a pair of positive ints (out, in), got {block!r}")
    shape = _block_shape(block)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if not targets:
        return model
    weights = [conv_weight(c) for c in targets]
    scores = [_block_scores(w, shape) for w in weights]
    if scope == "global":
        keeps = _lowest(scores, amount)
    else:
        keeps = [_lowest([s], amount)[0] for s in scores]
    for conv, w, s, keep in zip(targets, weights, scores, keeps):
        _apply_mask(conv, _mask_from_scores(keep.view_as(s), w, shape))
    return model


@dataclass
class FireSparsity:
    """One Fire's weights: nonzeros and bytes, dense and packed."""

    name: str
    numel: dict[str, int]
    nonzeros: dict[str, int]
    dense_bytes: int
    packed_bytes: int
    block: int

    @property
    def density(self) -> float:
        return sum(self.nonzeros.values()) / max(1, sum(self.numel.values()))


@dataclass
class ConvSparsity:
    """One convolution outside the Fires (a stem, a classifier): nonzeros and bytes.
    Only 1x1 convolutions have a sparse kernel (the classifier head's); the others'
    packed bytes are their dense bytes."""

    name: str
    numel: int
    nonzeros: int
    dense_bytes: int
    packed_bytes: int
    block: int

    @property
    def density(self) -> float:
        return self.nonzeros / max(1, self.numel)


@dataclass
class SparsityReport:
    """Per-Fire, per-convolution and total sparsity of a model (``str()`` gives a table)."""

    fires: list[FireSparsity] = field(default_factory=list)
    convs: list[ConvSparsity] = field(default_factory=list)

    @property
    def dense_bytes(self) -> int:
        return sum(f.dense_bytes for f in (*self.fires, *self.convs))

    @property
    def packed_bytes(self) -> int:
        return sum(f.packed_bytes for f in (*self.fires, *self.convs))

    @property
    def density(self) -> float:
        total = sum(sum(f.numel.values()) for f in self.fires) + sum(c.numel for c in self.convs)
        nonzero = (sum(sum(f.nonzeros.values()) for f in self.fires)
                   + sum(c.nonzeros for c in self.convs))
        return nonzero / max(1, total)

    def __str__(self) -> str:
        lines = [
            f"{'Fire':<28}{'squeeze':>10}{'expand1x1':>11}{'expand3x3':>11}"
            f"{'density':>9}{'dense KB':>10}{'packed KB':>11}{'block':>7}"
        ]
        for f in self.fires:
            nz = "".join(
                f"{f.nonzeros[n]:>{w}}" for n, w in zip(CONV_NAMES, (10, 11, 11))
            )
            lines.append(
                f"{f.name:<28}{nz}{f.density:>9.1%}{f.dense_bytes / 1024:>10.1f}"
                f"{f.packed_bytes / 1024:>11.1f}{f.block:>7}"
            )
        if self.convs:
            lines.append(f"{'other convolution':<28}{'nonzeros':>32}")
        for c in self.convs:
            lines.append(
                f"{c.name:<28}{c.nonzeros:>32}{c.density:>9.1%}{c.dense_bytes / 1024:>10.1f}"
                f"{c.packed_bytes / 1024:>11.1f}{c.block:>7}"
            )
        lines.append(
            f"{'total':<28}{'':>32}{self.density:>9.1%}{self.dense_bytes / 1024:>10.1f}"
            f"{self.packed_bytes / 1024:>11.1f}"
        )
        return "\n".join(lines)


def sparsity_report(model: nn.Module, *, block: int | None = None) -> SparsityReport:
    """Nonzeros, density and weight bytes of every Fire-shaped module of ``model``,
    and of every other convolution.

    "dense" bytes are the float32 weights and biases; "packed" bytes are what the
    sparse kernels keep (values, positions and group starts, see ``pack_sparse``, plus
    the biases), with ``block`` as given or as the fused modules would choose it.
    """
    report = SparsityReport()
    in_fires = set()
    for name, fire in fire_like_modules(model):
        convs = [getattr(fire, n) for n in CONV_NAMES]
        in_fires.update(map(id, convs))
        w = {n: conv_weight(c) for n, c in zip(CONV_NAMES, convs)}
        bias_bytes = sum(4 * c.bias.numel() for c in convs if c.bias is not None)
        b = block if block is not None else choose_block(w["squeeze"], w["expand1x1"], w["expand3x3"])
        report.fires.append(
            FireSparsity(
                name=name or type(fire).__name__,
                numel={n: t.numel() for n, t in w.items()},
                nonzeros={n: int(torch.count_nonzero(t)) for n, t in w.items()},
                dense_bytes=4 * sum(t.numel() for t in w.values()) + bias_bytes,
                packed_bytes=packed_nbytes(w["squeeze"], w["expand1x1"], w["expand3x3"], b)
                + bias_bytes,
                block=b,
            )
        )
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d) or id(conv) in in_fires:
            continue
        w = conv_weight(conv)
        bias_bytes = 4 * conv.bias.numel() if conv.bias is not None else 0
        dense = 4 * w.numel() + bias_bytes
        if conv.kernel_size == (1, 1):
            b = block if block is not None else choose_conv_block(w)
            packed = packed_conv1x1_nbytes(w, b) + bias_bytes
        else:
            b, packed = 1, dense
        report.convs.append(ConvSparsity(name, w.numel(), int(torch.count_nonzero(w)), dense,
                                         packed, b))
    return report
