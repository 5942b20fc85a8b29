"""CPU benchmark of the dense fused Fire against its baselines (SPEC §5).

Per Fire layer of SqueezeNet 1.0 and 1.1 (SPEC §4) and per whole network, at each
batch size: FusedFire (NCHW and channels-last inputs) against eager PyTorch (NCHW,
channels-last), ``torch.compile`` of the eager module and ONNX Runtime's CPU execution
provider (its default settings), all timed interleaved in this one process (medians,
fire_kernels.benchmarking). Prints markdown tables and appends every measurement to
the results CSV (``benchmarks/results.csv``; ``benchmarks/report.py`` makes the
README's table from it).

    python benchmarks/bench_cpu.py                       # all 16 layers + networks, batch 1 and 16
    python benchmarks/bench_cpu.py --layers v1_1-fire2 --batches 1 --no-compile --no-onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

import fire_kernels as fk
from fire_kernels.benchmarking import (
    LAYERS,
    ResultsCsv,
    environment,
    geomean,
    make_candidates,
    matmul_peak_gflops,
    time_checked,
)
from fire_kernels.testing import squeezenet_samples

NETWORKS = {"squeezenet1_1": fk.squeezenet1_1, "squeezenet1_0": fk.squeezenet1_0}
RESULTS = Path(__file__).with_name("results.csv")


def measure(model: nn.Module, x: torch.Tensor, args: argparse.Namespace) -> dict[str, float]:
    names = ["fused_nchw", "fused_cl", "eager_nchw", "eager_cl"]
    names += ["compile"] * args.compile + ["onnxruntime"] * args.onnx
    runs = make_candidates(model, x, names, args.threads)
    return time_checked(model, x, runs, args.repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=40, help="timed runs per candidate")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false")
    parser.add_argument("--csv", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops()
    env = environment("bench_cpu", threads=args.threads)
    out = ResultsCsv(args.csv)
    print(f"# CPU benchmark, {env['date']}, commit {env['commit']}: {env['machine']}, "
          f"{args.threads} threads, torch {env['torch']}, ISA {env['isa']}, "
          f"torch.mm peak {peak:.0f} GFLOP/s")
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    out.append([dict(env, workload="torch.mm", candidate="torch.mm", metric="gflops", value=peak)])

    def record(workload, batch, times, macs=""):
        out.add_times(env, times, workload=workload, batch=batch, dtype="float32", sparsity=0,
                      structure="dense", macs=macs)

    for batch in args.batches:
        table = []
        for sample in squeezenet_samples(batch):
            if sample.name not in args.layers:
                continue
            t = measure(sample.fire().eval(), sample.input(), args)
            table.append((sample.name, t, 2 * sample.macs / 1e9))
            record(sample.name, batch, t, sample.macs)
        print_layer_table(batch, table, peak)
        net_table = []
        for name in args.networks:
            torch.manual_seed(0)
            t = measure(NETWORKS[name]().eval(), torch.randn(batch, 3, 224, 224), args)
            net_table.append((name, t))
            record(name, batch, t)
        print_network_table(batch, net_table)
    print(f"appended the rows to {args.csv}")
    return 0


def print_layer_table(batch: int, table, peak: float) -> None:
    if not table:
        return
    names = list(table[0][1])
    others = [n for n in names if not n.startswith("fused")]
    print(f"## Fire layers, batch {batch} (ms; ratios = baseline time / fused time)\n")
    header = ["layer", *names, "fused GFLOP/s", "% peak", "NCHW: vs eager", "CL: vs eager CL",
              "best fused vs " + ", ".join(o for o in others if o not in ("eager_nchw",))]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    ratios: dict[str, list[float]] = {}
    for name, t, gflop in table:
        best = min(t["fused_nchw"], t["fused_cl"])
        r = {"nchw": t["eager_nchw"] / t["fused_nchw"], "cl": t["eager_cl"] / t["fused_cl"]}
        for o in others:
            r[o] = t[o] / best
        for k, v in r.items():
            ratios.setdefault(k, []).append(v)
        cells = [name, *(f"{t[n] * 1e3:.3f}" for n in names), f"{gflop / best:.0f}",
                 f"{100 * gflop / best / peak:.0f}", f"{r['nchw']:.2f}x", f"{r['cl']:.2f}x",
                 ", ".join(f"{r[o]:.2f}x" for o in others if o != "eager_nchw")]
        print("| " + " | ".join(cells) + " |")
    print("\ngeomean: " + ", ".join(f"{k} {geomean(v):.2f}x (min {min(v):.2f}x)"
                                   for k, v in ratios.items()) + "\n")


def print_network_table(batch: int, table) -> None:
    if not table:
        return
    names = list(table[0][1])
    print(f"## Whole networks, batch {batch} (ms; rest of the network eager)\n")
    header = ["network", *names, "fused_cl vs eager_cl", "fused_nchw vs eager_nchw"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, t in table:
        cells = [name, *(f"{t[n] * 1e3:.2f}" for n in names),
                 f"{t['eager_cl'] / t['fused_cl']:.2f}x", f"{t['eager_nchw'] / t['fused_nchw']:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    print()


if __name__ == "__main__":
    sys.exit(main())
