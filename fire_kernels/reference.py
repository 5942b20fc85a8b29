"""The plain PyTorch Fire module: the reference every kernel is tested against.

``Fire`` is torchvision's ``torchvision.models.squeezenet.Fire`` (same constructor,
child names and forward), so its ``state_dict`` keys are torchvision's.
``fire_reference`` is the same computation as a function of the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Fire", "fire_reference"]


def fire_reference(
    x: Tensor,
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
) -> Tensor:
    """``cat([relu(conv1x1(s)), relu(conv3x3(s, pad=1))], 1)`` with ``s = relu(conv1x1(x))``."""
    s = F.relu(F.conv2d(x, squeeze_weight, squeeze_bias))
    return torch.cat(
        [
            F.relu(F.conv2d(s, expand1x1_weight, expand1x1_bias)),
            F.relu(F.conv2d(s, expand3x3_weight, expand3x3_bias, padding=1)),
        ],
        1,
    )


class Fire(nn.Module):
    """SqueezeNet's Fire module exactly as torchvision defines it."""

    def __init__(
        self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int
    ) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )
