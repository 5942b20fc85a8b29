"""Bundled model definitions (torchvision-compatible, no torchvision dependency)."""

from .squeezenet import (
    FIRE_CONFIGS,
    FIRE_LAYERS,
    FIRE_SPATIAL,
    SqueezeNet,
    squeezenet1_0,
    squeezenet1_1,
)

__all__ = [
    "FIRE_CONFIGS",
    "FIRE_LAYERS",
    "FIRE_SPATIAL",
    "SqueezeNet",
    "squeezenet1_0",
    "squeezenet1_1",
]
