"""Whole networks on the CPU (SPEC §5): SqueezeNet 1.0 and 1.1 at batch 1 and 16, dense
and pruned to 90 % (every convolution but the stem; unstructured and in blocks of 4),
from an NCHW input:

  fused_network   fire_kernels.fuse_network (Fires, stem, pools, classifier fused)
  fused_cl        the Fires fused only (fuse_fire_modules), channels last
  eager_nchw, eager_cl, compile_freeze, onnxruntime (its defaults, dense)

all timed interleaved in one process (medians, with a pause before each call that
outlasts ONNX Runtime's spinning pool: benchmarking.SPIN_PAUSE). Also how much
of a fused SqueezeNet 1.1's forward at batch 1 is spent outside the fused kernels
(the forward timed with the kernels skipped).

The int8 section (dense and 90 % unstructured): quantize_network against ONNX
Runtime int8 and PyTorch int8 (torch.ao, x86 backend), all calibrated on the same
images (benchmarking.calibration_batches), and each one's error against the float
model.

Prints markdown tables, appends to ``benchmarks/results.csv``.

    python benchmarks/bench_network.py
    python benchmarks/bench_network.py --networks squeezenet1_1 --batches 1 --pruning dense
    python benchmarks/bench_network.py --sections int8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import fire_kernels as fk
from fire_kernels.benchmarking import (
    INT8_CANDIDATES,
    ResultsCsv,
    environment,
    make_candidates,
    matmul_peak_gflops,
    relative_errors,
    time_checked,
    time_outside_kernels,
)

NETWORKS = {"squeezenet1_1": fk.squeezenet1_1, "squeezenet1_0": fk.squeezenet1_0}
PRUNING = {"dense": None, "unstructured": 1, "block4": 4}
CANDIDATES = ["fused_network", "fused_cl", "eager_nchw", "eager_cl", "compile_freeze",
              "onnxruntime"]
RESULTS = Path(__file__).with_name("results.csv")
SPARSITY = 90
INT8_PRUNING = ["dense", "unstructured"]
# Loose: it catches a broken candidate, not int8 rounding (the errors are reported).
INT8_TOLERANCE = 0.2


def network(name: str, pruning: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = NETWORKS[name]().eval()
    if PRUNING[pruning] is not None:
        fk.prune_network(model, SPARSITY / 100, block=PRUNING[pruning])
    return model


def outside_the_kernels() -> float:
    """The fraction of a fused SqueezeNet 1.1 forward (batch 1, NCHW input) spent
    outside the fused kernels: its median time with the kernels skipped over its
    median time (benchmarking.time_outside_kernels)."""
    model = fk.fuse_network(network("squeezenet1_1", "dense"))
    full, bare = time_outside_kernels(model, torch.randn(1, 3, 224, 224))
    return bare / full


def float_section(args, env, out: ResultsCsv) -> None:
    print("| network | batch | weights | " + " | ".join(f"{c} ms" for c in args.candidates)
          + " | fused_network vs ONNX Runtime | vs eager_cl |")
    print("|---|---|---|" + "---|" * (len(args.candidates) + 2))
    for name in args.networks:
        for batch in args.batches:
            for pruning in args.pruning:
                model = network(name, pruning)
                x = torch.randn(batch, 3, 224, 224)
                runs = make_candidates(model, x, args.candidates, args.threads)
                repeats = args.repeats if batch == 1 else max(5, args.repeats // 3)
                t = time_checked(model, x, runs, repeats)
                out.add_times(env, t, workload=name, batch=batch, dtype="float32",
                              sparsity=0 if pruning == "dense" else SPARSITY,
                              structure=pruning)
                ratio = lambda base: (f"{t[base] / t['fused_network']:.2f}x"  # noqa: E731
                                      if base in t and "fused_network" in t else "")
                print(f"| {name} | {batch} | {pruning} | "
                      + " | ".join(f"{t[c] * 1e3:.2f}" if c in t else "" for c in args.candidates)
                      + f" | {ratio('onnxruntime')} | {ratio('eager_cl')} |", flush=True)
    outside = outside_the_kernels()
    out.append([dict(env, workload="squeezenet1_1", batch=1, structure="dense",
                     candidate="fused_network", metric="outside_kernels", value=outside)])
    print(f"\nfused SqueezeNet 1.1, batch 1: {outside:.1%} of the forward outside the fused "
          "kernels (the forward with the kernels skipped, over the whole)")


def int8_section(args, env, out: ResultsCsv) -> None:
    # ONNX Runtime fp32 is the float section's: timed here too, its rows would mix
    # into that table's under the same run.
    candidates = list(INT8_CANDIDATES)
    print("\n| network | batch | weights | " + " | ".join(f"{c} ms" for c in candidates)
          + " | vs ONNX Runtime int8 | vs PyTorch int8 | relative error: ours, ONNX Runtime "
          "int8, PyTorch int8 |")
    print("|---|---|---|" + "---|" * (len(candidates) + 3))
    for name in args.networks:
        for batch in args.batches:
            for pruning in [p for p in args.pruning if p in INT8_PRUNING]:
                model = network(name, pruning)
                x = torch.randn(batch, 3, 224, 224)
                runs = make_candidates(model, x, candidates, args.threads)
                # Relative to the float model's largest output, however small (a
                # pruned network of random weights outputs little).
                errors = relative_errors(model, x, runs, floor=0.0)
                repeats = args.repeats if batch == 1 else max(5, args.repeats // 3)
                t = time_checked(model, x, runs, repeats, tolerance=INT8_TOLERANCE)
                columns = dict(workload=name, batch=batch,
                               sparsity=0 if pruning == "dense" else SPARSITY, structure=pruning)
                out.add_times(env, t, dtype="int8", **columns)
                out.append(dict(env, **columns, dtype="int8", candidate=c, metric="rel_error",
                                value=errors[c]) for c in INT8_CANDIDATES if c in errors)
                ours = t.get("quantized_network")
                ratio = lambda base: (f"{t[base] / ours:.2f}x"  # noqa: E731
                                      if base in t and ours else "")
                print(f"| {name} | {batch} | {pruning} | "
                      + " | ".join(f"{t[c] * 1e3:.2f}" if c in t else "" for c in candidates)
                      + f" | {ratio('onnxruntime_int8')} | {ratio('torch_int8')} | "
                      + ", ".join(f"{errors[c]:.4f}" for c in INT8_CANDIDATES if c in errors)
                      + " |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    parser.add_argument("--pruning", nargs="*", default=list(PRUNING), choices=list(PRUNING))
    parser.add_argument("--candidates", nargs="*", default=CANDIDATES, choices=CANDIDATES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="timed runs at batch 1")
    parser.add_argument("--csv", type=Path, default=RESULTS)
    parser.add_argument("--sections", nargs="*", default=["float", "int8"],
                        choices=["float", "int8"])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops()
    env = environment("bench_network", threads=args.threads)
    out = ResultsCsv(args.csv)
    out.append([dict(env, workload="torch.mm", candidate="torch.mm", metric="gflops", value=peak)])
    print(f"# Whole networks, {env['date']}, commit {env['commit']}: {env['machine']}, "
          f"{args.threads} threads, torch {env['torch']}, ISA {env['isa']}, "
          f"torch.mm peak {peak:.0f} GFLOP/s")
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    if "float" in args.sections:
        float_section(args, env, out)
    if "int8" in args.sections:
        int8_section(args, env, out)
    print(f"appended the rows to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
