"""SqueezeNet 1.0 and 1.1 as torchvision builds them (``torchvision.models.squeezenet``).

Module names, shapes and initialisation match torchvision, so its checkpoints
(``squeezenet1_0-b66bff10.pth``, ``squeezenet1_1-b8a52dc0.pth``) load unchanged with
``load_state_dict``; torchvision itself is not needed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import init

from ..reference import Fire

__all__ = [
    "FIRE_CONFIGS",
    "FIRE_LAYERS",
    "FIRE_SPATIAL",
    "SqueezeNet",
    "squeezenet1_0",
    "squeezenet1_1",
]

# (inplanes, squeeze, expand1x1, expand3x3) of fire2 .. fire9, per version: the same
# but for fire2's input (conv1 has 96 channels in 1.0, 64 in 1.1).
_FIRE_1_0 = [
    (96, 16, 64, 64),
    (128, 16, 64, 64),
    (128, 32, 128, 128),
    (256, 32, 128, 128),
    (256, 48, 192, 192),
    (384, 48, 192, 192),
    (384, 64, 256, 256),
    (512, 64, 256, 256),
]
FIRE_CONFIGS: dict[str, list[tuple[int, int, int, int]]] = {
    "1_0": _FIRE_1_0,
    "1_1": [(64, 16, 64, 64), *_FIRE_1_0[1:]],
}

# Height = width of the input of fire2 .. fire9 for a 224x224 image.
FIRE_SPATIAL: dict[str, list[int]] = {
    "1_0": [54, 54, 54, 27, 27, 27, 27, 13],
    "1_1": [55, 55, 27, 27, 13, 13, 13, 13],
}

#: The 16 Fire layers of SPEC §4 at 224x224: name ("v1_0-fire2" ...) -> ((inplanes,
#: squeeze, expand1x1, expand3x3), H = W of its input).
FIRE_LAYERS: dict[str, tuple[tuple[int, int, int, int], int]] = {
    f"v{version}-fire{k + 2}": (cfg, hw)
    for version, cfgs in FIRE_CONFIGS.items()
    for k, (cfg, hw) in enumerate(zip(cfgs, FIRE_SPATIAL[version]))
}


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Module):
    """torchvision's ``SqueezeNet(version, num_classes, dropout)``."""

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if version not in FIRE_CONFIGS:
            raise ValueError(f"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected")
        self.num_classes = num_classes
        fires = [Fire(*cfg) for cfg in FIRE_CONFIGS[version]]
        if version == "1_0":
            stem: list[nn.Module] = [nn.Conv2d(3, 96, kernel_size=7, stride=2)]
            body = [*fires[:3], _pool(), *fires[3:7], _pool(), fires[7]]
        else:
            stem = [nn.Conv2d(3, 64, kernel_size=3, stride=2)]
            body = [*fires[:2], _pool(), *fires[2:4], _pool(), *fires[4:]]
        self.features = nn.Sequential(*stem, nn.ReLU(inplace=True), _pool(), *body)
        final_conv = nn.Conv2d(512, self.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)


def squeezenet1_0(num_classes: int = 1000, dropout: float = 0.5) -> SqueezeNet:
    """SqueezeNet 1.0 (Iandola et al., 2016) with random weights."""
    return SqueezeNet("1_0", num_classes, dropout)


def squeezenet1_1(num_classes: int = 1000, dropout: float = 0.5) -> SqueezeNet:
    """SqueezeNet 1.1 (2.4x fewer MACs than 1.0, same accuracy) with random weights."""
    return SqueezeNet("1_1", num_classes, dropout)
