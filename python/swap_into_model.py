"""Swap FusedFire into a SqueezeNet and check it computes the same, faster.

Uses torchvision's SqueezeNet 1.1 when torchvision is installed (with its pretrained
weights if you pass --pretrained and they are cached or downloadable), else the
bundled copy with torchvision's layout. Run: python python/swap_into_model.py
"""

from __future__ import annotations

import argparse
import copy

import torch

import fire_kernels as fk
from fire_kernels.benchmarking import interleaved_medians


def build_model(pretrained: bool) -> tuple[torch.nn.Module, str]:
    try:
        import torchvision

        weights = "DEFAULT" if pretrained else None
        return torchvision.models.squeezenet1_1(weights=weights), "torchvision"
    except Exception as e:  # not installed, or built for another torch
        print(f"torchvision unavailable ({type(e).__name__}); using the bundled SqueezeNet 1.1")
        return fk.squeezenet1_1(), "fire_kernels bundled"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", action="store_true", help="torchvision's ImageNet weights")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    eager, source = build_model(args.pretrained)
    eager = eager.eval().to(memory_format=torch.channels_last)
    fused = fk.fuse_fire_modules(copy.deepcopy(eager))  # in place, same state_dict keys
    n_fused = sum(isinstance(m, fk.FusedFire) for m in fused.modules())
    print(f"{source} SqueezeNet 1.1: {n_fused} Fire modules replaced by FusedFire")
    assert list(fused.state_dict()) == list(eager.state_dict())

    x = torch.randn(args.batch, 3, 224, 224).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, out = eager(x), fused(x)
        print(f"max |fused - eager| = {(out - ref).abs().max().item():.2e}, "
              f"same top-1: {bool((out.argmax(1) == ref.argmax(1)).all())}")
        t_eager, t_fused = interleaved_medians([lambda: eager(x), lambda: fused(x)], repeats=30)
    print(f"eager {t_eager * 1e3:.2f} ms, fused {t_fused * 1e3:.2f} ms per batch of {args.batch}: "
          f"{t_eager / t_fused:.2f}x (channels-last, 2 threads)")


if __name__ == "__main__":
    main()
