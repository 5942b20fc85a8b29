"""The ``fire-kernels`` command (also ``python -m fire_kernels``)."""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from . import _extension
from .models import squeezenet1_1
from .module import FusedFire, fuse_fire_modules
from .benchmarking import interleaved_medians


def _demo(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"fire_kernels demo: SqueezeNet 1.1 (bundled, random weights), batch {args.batch}, "
        f"224x224, {torch.get_num_threads()} threads, C++ extension: "
        f"{_extension.HOW_LOADED or 'unavailable (' + str(_extension.LOAD_ERROR) + ')'}"
    )
    eager = squeezenet1_1().eval()
    fused = fuse_fire_modules(copy.deepcopy(eager))
    n_fused = sum(isinstance(m, FusedFire) for m in fused.modules())
    x = torch.randn(args.batch, 3, 224, 224)
    cl = torch.channels_last
    runs = {
        "eager NCHW": (eager, x),
        "eager channels_last": (copy.deepcopy(eager).to(memory_format=cl), x.to(memory_format=cl)),
        "fused channels_last": (fused.to(memory_format=cl), x.to(memory_format=cl)),
    }
    with torch.no_grad():
        reference = eager(x)
        out = fused(x.to(memory_format=cl))
        err = (out - reference).abs().max().item()
        agree = (out.argmax(1) == reference.argmax(1)).float().mean().item()
        print(f"swapped {n_fused} Fire modules for FusedFire; max |fused - eager| = {err:.2e}, "
              f"top-1 agreement {agree:.0%}")
        if err > 1e-3 * max(1.0, reference.abs().max().item()):
            print("error: the fused model disagrees with the reference", file=sys.stderr)
            return 1
        times = interleaved_medians(
            [lambda m=m, t=t: m(t) for m, t in runs.values()], repeats=args.repeats
        )
    base = times[1]
    print(f"\n{'model':<22}{'ms / batch':>12}{'vs eager channels_last':>25}")
    for name, t in zip(runs, times):
        print(f"{name:<22}{t * 1e3:>12.2f}{base / t:>24.2f}x")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fire-kernels", description="Fused SqueezeNet Fire kernels for PyTorch."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="swap FusedFire into SqueezeNet 1.1, check it against eager PyTorch, time both",
        description="Builds the bundled SqueezeNet 1.1 with random weights, swaps every Fire "
        "for FusedFire, checks the outputs against eager PyTorch and prints the speedup "
        "(medians of interleaved runs).",
    )
    demo.add_argument("--batch", type=int, default=1, help="images per batch (default 1)")
    demo.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    demo.add_argument("--repeats", type=int, default=30, help="timed runs (default 30)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
