"""Sample Fires and inputs: the one generator that the tests (kernels against the
reference, ``opcheck``, property-based tests) and the benchmarks share, as
PyTorch's OpInfo sample inputs are.

A :class:`FireSample` names a Fire's shape, the layout of its input, the density of
its weights (pruned by magnitude, unstructured or in blocks of 4 output channels)
and whether its convolutions have biases; ``sample.fire()`` and ``sample.input()``
build them, deterministically from ``sample.seed``::

    for sample in squeezenet_samples(batch=16, density=0.1):
        fire, x = sample.fire(), sample.input()
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from .models import FIRE_LAYERS
from .pruning import prune_fire_modules
from .reference import Fire

__all__ = [
    "LAYOUTS",
    "ODD_SHAPES",
    "FireSample",
    "assert_close_to_reference",
    "fire_weights",
    "make_fire",
    "make_input",
    "odd_samples",
    "opcheck_samples",
    "squeezenet_samples",
]


def make_input(n: int, c: int, h: int, w: int, layout: str = "contiguous", seed: int = 0) -> Tensor:
    """An ``(n, c, h, w)`` input in one of :data:`LAYOUTS`: a memory format, or a view
    whose strides no memory format describes."""
    g = torch.Generator().manual_seed(seed)
    return LAYOUTS[layout](n, c, h, w, g)


#: layout name -> (n, c, h, w, generator) -> tensor of that logical shape.
LAYOUTS = {
    "contiguous": lambda n, c, h, w, g: torch.randn(n, c, h, w, generator=g),
    "channels_last": lambda n, c, h, w, g: torch.randn(n, c, h, w, generator=g).to(
        memory_format=torch.channels_last),
    "transposed": lambda n, c, h, w, g: torch.randn(n, c, w, h, generator=g).transpose(2, 3),
    "strided": lambda n, c, h, w, g: torch.randn(n, c, 2 * h, 2 * w, generator=g)[:, :, ::2, ::2],
    "row_crop": lambda n, c, h, w, g: torch.randn(n + 1, c + 3, h + 2, w + 4, generator=g)[
        :n, 2:2 + c, 1:1 + h, 3:3 + w],
    "channel_slice": lambda n, c, h, w, g: torch.randn(n, c + 3, h, w, generator=g)[:, 2:2 + c],
    "expanded": lambda n, c, h, w, g: torch.randn(1, c, h, w, generator=g).expand(n, c, h, w),
    "channels_last_crop": lambda n, c, h, w, g: torch.randn(n, c, h + 2, w + 3, generator=g).to(
        memory_format=torch.channels_last)[:, :, 1:1 + h, 2:2 + w],
    "nhwc_permuted": lambda n, c, h, w, g: torch.randn(n, h, w, c, generator=g).permute(0, 3, 1, 2),
}


def make_fire(
    inplanes: int, squeeze: int, e1: int, e3: int, *, bias: bool = True, density: float = 1.0,
    block: int = 1, seed: int = 0,
) -> Fire:
    """A reference Fire whose weights keep most ReLUs active and outputs O(1)
    (normal with std 1.5 / sqrt(fan-in), biases uniform in [-0.2, 0.5]), pruned by
    magnitude to ``density`` (in blocks of ``block`` output channels)."""
    torch.manual_seed(seed)
    m = Fire(inplanes, squeeze, e1, e3)
    convs = (m.squeeze, m.expand1x1, m.expand3x3)
    with torch.no_grad():
        for conv in convs:
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            conv.weight.normal_(0, 1.5 / fan_in**0.5)
            conv.bias.uniform_(-0.2, 0.5)
    if not bias:
        for conv in convs:
            conv.bias = None
    if density < 1.0:
        prune_fire_modules(m, 1.0 - density, block=block)
    return m


def fire_weights(m: nn.Module) -> tuple:
    """(squeeze weight, bias, expand1x1 weight, bias, expand3x3 weight, bias) of a
    Fire-shaped module: the arguments of ``fire_kernels.fire`` after the input."""
    return (m.squeeze.weight, m.squeeze.bias, m.expand1x1.weight, m.expand1x1.bias,
            m.expand3x3.weight, m.expand3x3.bias)


def assert_close_to_reference(out: Tensor, ref: Tensor) -> None:
    """float32 kernels against the float32 reference: both sum up to 9*S*C products
    in different orders, so the error scales with the output's magnitude."""
    assert out.shape == ref.shape and out.dtype == ref.dtype, (out.shape, out.dtype, ref.shape)
    scale = max(ref.abs().max().item(), 1.0) if ref.numel() else 1.0
    torch.testing.assert_close(out, ref, atol=2e-5 * scale, rtol=1e-4)


@dataclass(frozen=True)
class FireSample:
    """One Fire and its input: ``(n, c, s, e1, e3, h, w)``, the input's layout, the
    weights' density and pruning block, biases or none, and the seed of both."""

    n: int
    c: int
    s: int
    e1: int
    e3: int
    h: int
    w: int
    layout: str = "contiguous"
    density: float = 1.0
    block: int = 1
    bias: bool = True
    seed: int = 0
    name: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, self.c, self.s, self.e1, self.e3, self.h, self.w)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense Fire: (C*S + S*E1 + 9*S*E3) per pixel."""
        return self.n * self.h * self.w * self.s * (self.c + self.e1 + 9 * self.e3)

    def fire(self) -> Fire:
        return make_fire(self.c, self.s, self.e1, self.e3, bias=self.bias, density=self.density,
                         block=self.block, seed=self.seed)

    def input(self) -> Tensor:
        return make_input(self.n, self.c, self.h, self.w, self.layout, self.seed)

    def replace(self, **changes) -> FireSample:
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        parts = [self.name or "x".join(map(str, self.shape)), self.layout]
        if self.density < 1.0:
            parts.append(f"density{self.density:g}" + (f"-block{self.block}" if self.block > 1 else ""))
        if not self.bias:
            parts.append("nobias")
        return "-".join(parts)


def squeezenet_samples(batch: int = 1, **fields) -> list[FireSample]:
    """The 16 Fire layers of SqueezeNet 1.0 and 1.1 at 224x224 (SPEC §4), named
    ``v1_0-fire2`` ... ``v1_1-fire9``."""
    return [FireSample(batch, *cfg, hw, hw, name=name, **{"seed": k, **fields})
            for k, (name, (cfg, hw)) in enumerate(FIRE_LAYERS.items())]


#: Shapes that stress the kernels' edges, as (N, C, S, E1, E3, H, W).
ODD_SHAPES = [
    (1, 3, 1, 1, 1, 1, 1),  # everything minimal
    (2, 3, 2, 5, 7, 1, 1),  # 1x1 images: every 3x3 tap but the centre is padding
    (1, 3, 16, 64, 64, 1, 37),  # one row
    (1, 3, 16, 64, 64, 37, 1),  # one column
    (3, 7, 5, 7, 13, 9, 11),  # channel counts that fill no tile
    (1, 64, 1, 3, 5, 8, 8),  # squeeze of 1
    (1, 33, 64, 70, 50, 70, 70),  # many bands per image, band edges inside rows
    (1, 20, 8, 24, 40, 2, 300),  # wide strip: bands inside one long row
    (5, 40, 24, 8, 16, 5, 3),  # more images than bands
    (0, 8, 4, 4, 4, 5, 5),  # no images
]


def odd_samples(**fields) -> list[FireSample]:
    """:data:`ODD_SHAPES` as samples."""
    return [FireSample(*shape, **{"seed": sum(shape), **fields}) for shape in ODD_SHAPES]


def opcheck_samples() -> Iterator[FireSample]:
    """Small samples covering layouts, no biases, batch 0 and odd sizes: what
    ``torch.library.opcheck`` runs every operator on."""
    yield FireSample(2, 10, 6, 7, 9, 5, 6)
    yield FireSample(2, 10, 6, 7, 9, 5, 6, layout="channels_last")
    yield FireSample(1, 10, 6, 7, 9, 1, 7, layout="strided")
    yield FireSample(3, 5, 3, 4, 4, 4, 4, bias=False)
    yield FireSample(0, 10, 6, 7, 9, 3, 3)
