"""Sparsity sweep of the sparse fused Fire kernel (SPEC §5, issue #3).

For each SqueezeNet Fire layer, batch size, sparsity and structure (unstructured, or
blocks of 4 output channels), the layer is pruned by magnitude and these run on the
same (zeroed) weights, interleaved in one process:

  eager_nchw, eager_cl   the dense PyTorch Fire, NCHW / channels last
  dense_nchw             the dense fused kernel (FusedFire, sparse=False)
  sparse_nchw, sparse_cl the sparse fused kernel (FusedFire, sparse=True)
  fused_nchw             FusedFire's automatic choice (sparse="auto")
  csr                    what a user would try with torch.sparse: the 1x1 convs as
                         CSR @ activations, the 3x3 as CSR @ im2col
  onnxruntime            ONNX Runtime's CPU execution provider (dense)

plus whole SqueezeNet 1.1 with its Fires pruned. Prints markdown tables, appends to the
results CSV (``benchmarks/results.csv``) and draws speedup against sparsity.

    python benchmarks/bench_sparse.py --plot benchmarks/sparse_speedup.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

import fire_kernels as fk
from fire_kernels.benchmarking import (
    LAYERS,
    ResultsCsv,
    environment,
    geomean,
    make_candidates,
    plot_speedups,
    time_checked,
)
from fire_kernels.testing import squeezenet_samples

STRUCTURES = {"unstructured": 1, "block4": 4}
RESULTS = Path(__file__).with_name("results.csv")


def measure(model: nn.Module, x: Tensor, args, repeats: int) -> dict[str, float]:
    names = ["eager_nchw", "eager_cl", "dense_nchw", "sparse_nchw", "sparse_cl", "fused_nchw"]
    names += ["csr"] * args.csr + ["onnxruntime"] * args.onnx
    runs = make_candidates(model, x, names, args.threads)
    return time_checked(model, x, runs, repeats)


RATIOS = {  # column -> (baseline, candidate)
    "sparse vs eager": ("eager_nchw", "sparse_nchw"),
    "sparse vs eager (CL)": ("eager_cl", "sparse_cl"),
    "sparse vs dense fused": ("dense_nchw", "sparse_nchw"),
    "auto vs dense fused": ("dense_nchw", "fused_nchw"),
    "sparse vs csr": ("csr", "sparse_nchw"),
    "sparse vs onnxruntime": ("onnxruntime", "sparse_nchw"),
}


def print_layer_tables(results, args) -> None:
    """Markdown tables per (batch, structure): geomean and minimum over the layers."""
    for batch in args.batches:
        for structure in args.structures:
            print(f"## Fire layers, batch {batch}, {structure} (ratios = baseline time / candidate time)\n")
            names = [n for n in RATIOS if all(b in results[(batch, structure, args.sparsities[0], args.layers[0])] for b in RATIOS[n])]
            print("| sparsity | " + " | ".join(f"{n} (geomean, min)" for n in names) + " |")
            print("|---|" + "---|" * len(names))
            for sp in args.sparsities:
                cells = []
                for n in names:
                    base, cand = RATIOS[n]
                    r = [results[(batch, structure, sp, layer)][base] / results[(batch, structure, sp, layer)][cand] for layer in args.layers]
                    cells.append(f"{geomean(r):.2f}x ({min(r):.2f}x)")
                print(f"| {sp}% | " + " | ".join(cells) + " |")
            print()


def print_network_table(net_results) -> None:
    if not net_results:
        return
    print("## SqueezeNet 1.1, Fires pruned (rest of the network dense, eager)\n")
    names = list(next(iter(net_results.values())))
    print("| batch | sparsity | structure | " + " | ".join(f"{n} ms" for n in names) + " | sparse_cl vs eager_cl | sparse_nchw vs eager_nchw |")
    print("|---|---|---|" + "---|" * (len(names) + 2))
    for (batch, sp, structure), t in net_results.items():
        print(f"| {batch} | {sp}% | {structure} | " + " | ".join(f"{t[n] * 1e3:.2f}" for n in names)
              + f" | {t['eager_cl'] / t['sparse_cl']:.2f}x | {t['eager_nchw'] / t['sparse_nchw']:.2f}x |")
    print()


def plot(results, args, path: Path) -> None:
    """Speedup over eager PyTorch (NCHW, same zeroed weights) against sparsity, geomean
    over the layers: the fused sparse kernel per structure, and the alternatives."""
    lines = [  # (structure, candidate, label)
        ("block4", "sparse_nchw", "fused sparse, blocks of 4"),
        ("unstructured", "sparse_nchw", "fused sparse, unstructured"),
        ("unstructured", "dense_nchw", "fused dense (same weights)"),
        ("unstructured", "onnxruntime", "ONNX Runtime (dense)"),
        ("unstructured", "csr", "torch CSR, unstructured"),
    ]
    batch = args.batches[0]
    series = {}
    for structure, cand, label in lines:
        keys = [[(batch, structure, sp, layer) for layer in args.layers] for sp in args.sparsities]
        if structure in args.structures and all(cand in results[k] for ks in keys for k in ks):
            series[label] = (args.sparsities, [
                geomean(results[k]["eager_nchw"] / results[k][cand] for k in ks) for ks in keys])
    plot_speedups(series, path, xlabel="sparsity (%)", ylabel="speedup over eager PyTorch (x)",
                  title=f"fire_kernels sparse Fire, batch {batch}, geomean over "
                        f"{len(args.layers)} Fire layers, {args.threads} threads")
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    parser.add_argument("--sparsities", nargs="*", type=int, default=[50, 70, 80, 90, 95, 98])
    parser.add_argument("--structures", nargs="*", default=list(STRUCTURES), choices=list(STRUCTURES))
    parser.add_argument("--network-sparsity", type=int, default=90)
    parser.add_argument("--no-network", dest="network", action="store_false")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="timed runs at batch 1 (fewer for larger batches)")
    parser.add_argument("--no-csr", dest="csr", action="store_false")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false")
    parser.add_argument("--csv", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    env = environment("bench_sparse", threads=args.threads)
    out = ResultsCsv(args.csv)
    print(f"# Sparse CPU benchmark, {env['date']}, commit {env['commit']}: {env['machine']}, "
          f"{args.threads} threads, torch {env['torch']}, ISA {env['isa']}")
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    def record(workload, batch, structure, sparsity, times, macs=""):
        out.add_times(env, times, workload=workload, batch=batch, dtype="float32",
                      sparsity=sparsity, structure=structure, macs=macs)

    results = {}
    total = len(args.batches) * len(args.structures) * len(args.sparsities) * len(args.layers)
    done = 0
    for batch in args.batches:
        repeats = args.repeats if batch == 1 else max(5, args.repeats // 3)
        for structure in args.structures:
            for sp in args.sparsities:
                for sample in squeezenet_samples(batch, density=1 - sp / 100,
                                                 block=STRUCTURES[structure]):
                    if sample.name not in args.layers:
                        continue
                    t = measure(sample.fire().eval(), sample.input(), args, repeats)
                    results[(batch, structure, sp, sample.name)] = t
                    record(sample.name, batch, structure, sp, t, sample.macs)
                    done += 1
                    if sys.stderr.isatty():
                        print(f"\r  {done}/{total} measured", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print_layer_tables(results, args)

    net_results = {}
    if args.network:
        for batch in args.batches:
            for structure in args.structures:
                torch.manual_seed(0)
                model = fk.squeezenet1_1().eval()
                fk.prune_fire_modules(model, args.network_sparsity / 100, block=STRUCTURES[structure])
                t = measure(model, torch.randn(batch, 3, 224, 224), args,
                            args.repeats if batch == 1 else max(5, args.repeats // 3))
                net_results[(batch, args.network_sparsity, structure)] = t
                record("squeezenet1_1", batch, structure, args.network_sparsity, t)
        print_network_table(net_results)

    print(f"appended the rows to {args.csv}")
    if args.plot:
        plot(results, args, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
