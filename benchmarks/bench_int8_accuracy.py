"""int8 error against PyTorch's own int8, over many networks: quantize_network vs torch.ao.

One network's largest deviation from its float output is a draw of how its weights
happen to round (benchmarks/HISTORY.md, "int8"), so this compares the two quantizers over
``--seeds`` randomly initialised networks each, every one calibrated on the same seeded
images for both (``quantize_network``; torch.ao FX with the x86 backend's default qconfig
mapping, as ``benchmarking.torch_int8_model``), and reports the median over the seeds of
two errors against the float model on held-out images: the largest deviation relative to
the largest output, and the RMS error relative to the RMS output; and on how many seeds
ours is no worse.

    python benchmarks/bench_int8_accuracy.py --seeds 10
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

import fire_kernels as fk
from fire_kernels.benchmarking import cpu_model, torch_int8_model

NETWORKS = {"squeezenet1_0": fk.squeezenet1_0, "squeezenet1_1": fk.squeezenet1_1}


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(largest deviation / largest output, RMS deviation / RMS output)."""
    dev = out - ref
    return (float(dev.abs().max() / ref.abs().max()),
            float(dev.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=96, help="image height and width")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_model()}, torch {torch.__version__}; {args.seeds} seeds, {args.classes} "
          f"classes, {args.size}x{args.size} images; median over the seeds\n")
    print("| network | largest deviation: ours | PyTorch int8 | ours no worse | "
          "RMS error: ours | PyTorch int8 | ours no worse |")
    print("|---|---|---|---|---|---|---|")
    size = args.size
    for name in args.networks:
        ours, theirs = [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = NETWORKS[name](num_classes=args.classes).eval()
            g = torch.Generator().manual_seed(1000 + seed)
            calibration = [torch.randn(4, 3, size, size, generator=g) for _ in range(4)]
            x = torch.randn(8, 3, size, size, generator=g)
            with torch.no_grad():
                ref = model(x)
                ours.append(errors(fk.quantize_network(copy.deepcopy(model), calibration)(x), ref))
                theirs.append(errors(torch_int8_model(model, x, calibration)(x), ref))
        cells = []
        for k in range(2):
            a, b = [e[k] for e in ours], [e[k] for e in theirs]
            wins = sum(u <= v for u, v in zip(a, b))
            cells += [f"{statistics.median(a):.4f}", f"{statistics.median(b):.4f}",
                      f"{wins} of {len(a)}"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
