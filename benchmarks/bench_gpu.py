"""GPU benchmark of the Triton Fire kernel, ready to run as one command.

Per SqueezeNet Fire layer and for whole SqueezeNet 1.1, at each batch size and dtype:
the fused Triton kernel against eager cuDNN (NCHW and channels-last,
``cudnn.benchmark=True``) and ``torch.compile`` (default and ``max-autotune``), timed
interleaved with CUDA events (medians), with the achieved GB/s against the HBM
roofline (input + output + weights read once; the roofline is a measured device copy).
Also the block-sparse variant at 25 % block density against the dense kernel. Appends
to the results CSV (``benchmarks/results.csv``), writes a markdown table and a PNG.

    python benchmarks/bench_gpu.py                         # on a GPU machine
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --smoke   # CPU check of the script
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

import fire_kernels as fk
from fire_kernels.benchmarking import (
    LAYERS,
    ResultsCsv,
    cuda_timer,
    environment,
    fire_macs,
    geomean,
    interleaved_medians,
    plot_speedups,
)

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
CL = torch.channels_last
RESULTS = Path(__file__).with_name("results.csv")


def timed(fns, device, repeats=20) -> list[float]:
    """Median seconds per call, interleaved; GPU time (CUDA events) on a GPU."""
    return interleaved_medians(fns, repeats=repeats, timer=cuda_timer if device == "cuda" else None)


def copy_bandwidth(device) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    n = 1 << 28 if device == "cuda" else 1 << 20
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    (t,) = timed([lambda: b.copy_(a)], device, repeats=10)
    return 2 * n / t


def fire_bytes(n, c, s, e1, e3, h, w, itemsize) -> int:
    weights = c * s + s * e1 + 9 * s * e3 + s + e1 + e3
    return itemsize * (n * h * w * (c + e1 + e3) + weights)


def candidates(model: nn.Module, x, args) -> dict:
    fused = fk.fuse_fire_modules(copy.deepcopy(model)) if not isinstance(model, fk.Fire) else (
        fk.FusedFire.from_fire(copy.deepcopy(model)))
    if isinstance(fused, fk.FusedFire):
        fused.backend = "triton"
    else:
        for m in fused.modules():
            if isinstance(m, fk.FusedFire):
                m.backend = "triton"
    x_cl = x.to(memory_format=CL)
    eager_cl = copy.deepcopy(model).to(memory_format=CL)
    fused_cl = fused.to(memory_format=CL)
    runs = {
        "triton": lambda: fused_cl(x_cl),
        "cudnn_nchw": lambda: model(x),
        "cudnn_cl": lambda: eager_cl(x_cl),
    }
    for mode in args.compile_modes:
        compiled = torch.compile(copy.deepcopy(model).to(memory_format=CL), mode=mode)
        runs[f"compile_{mode}"] = lambda c=compiled: c(x_cl)
    return runs


def measure(model, x, args):
    runs = candidates(model, x, args)
    with torch.inference_mode():
        expected = model(x)
        for name, fn in runs.items():
            err = (fn().float() - expected.float()).abs().max().item()
            scale = max(1.0, expected.float().abs().max().item())
            if err > (1e-3 if x.dtype == torch.float32 else 5e-2) * scale:
                raise AssertionError(f"{name} disagrees with eager: {err:.3g}")
        return dict(zip(runs, timed(list(runs.values()), args.device, repeats=args.repeats)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8, 64, 256])
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--compile-modes", nargs="*", default=["default", "max-autotune"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--smoke", action="store_true",
                        help="one tiny layer on whatever device there is (CPU: Triton's interpreter)")
    parser.add_argument("--csv", type=Path, default=RESULTS)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cpu" and not args.smoke:
        parser.error("no CUDA GPU: run on a GPU machine, or --smoke with TRITON_INTERPRET=1")
    if args.smoke:
        args.layers, args.batches, args.dtypes, args.compile_modes, args.repeats = [], [1], ["fp32"], [], 2
    torch.backends.cudnn.benchmark = True

    env = environment("bench_gpu", device=args.device)
    out = ResultsCsv(args.csv)
    roofline = copy_bandwidth(args.device)
    lines = [f"# GPU benchmark, {env['date']}, commit {env['commit']}: {env['machine']}, "
             f"torch {env['torch']}, copy bandwidth {roofline / 1e9:.0f} GB/s",
             f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}", ""]

    def record(workload, batch, dtype, times, macs="", sparsity=0, structure="dense"):
        out.add_times(env, times, workload=workload, batch=batch, dtype=dtype,
                      sparsity=sparsity, structure=structure, macs=macs)

    table = []
    workloads = [(name, *LAYERS[name]) for name in args.layers]
    if args.smoke:
        workloads = [("smoke-fire", (8, 16, 16, 16), 6)]
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for batch in args.batches:
            for name, cfg, hw in workloads:
                torch.manual_seed(0)
                model = fk.Fire(*cfg).eval().to(args.device, dtype)
                x = torch.randn(batch, cfg[0], hw, hw, device=args.device, dtype=dtype)
                t = measure(model, x, args)
                nbytes = fire_bytes(batch, *cfg, hw, hw, x.element_size())
                table.append((dtype_name, batch, name, t, nbytes))
                record(name, batch, dtype_name, t, fire_macs(batch, *cfg, hw, hw))
    lines += markdown_layers(table, roofline)
    lines += block_sparse(args, record)
    lines += network(args, record)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.plot and table:
        plot(table, args.plot, env["machine"])
    return 0


def markdown_layers(table, roofline) -> list[str]:
    if not table:
        return []
    names = list(table[0][3])
    versus = ["cudnn_cl"] + [n for n in names if n.startswith("compile")]
    out = ["| dtype | batch | layer | " + " | ".join(f"{n} us" for n in names)
           + " | triton GB/s (% roofline) | " + " | ".join(f"vs {n}" for n in versus) + " |",
           "|" + "---|" * (4 + len(names) + len(versus))]
    for dtype, batch, name, t, nbytes in table:
        gbps = nbytes / t["triton"] / 1e9
        ratios = [t[n] / t["triton"] for n in versus]
        out.append(f"| {dtype} | {batch} | {name} | " + " | ".join(f"{t[n] * 1e6:.1f}" for n in names)
                   + f" | {gbps:.0f} ({100 * gbps * 1e9 / roofline:.0f} %) | "
                   + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    out.append("")
    for dtype in sorted({r[0] for r in table}):
        for batch in sorted({r[1] for r in table}):
            sel = [r for r in table if r[0] == dtype and r[1] == batch]
            out.append(f"geomean {dtype} batch {batch}: triton vs cudnn_cl "
                       f"{geomean(r[3]['cudnn_cl'] / r[3]['triton'] for r in sel):.2f}x")
    return out + [""]


def block_sparse(args, record) -> list[str]:
    """Block-sparse (25 % of 16x16 blocks nonzero) against dense Triton, largest batch."""
    if args.device != "cuda" and not args.smoke:
        return []
    dtype = DTYPES[args.dtypes[0]]
    batch = max(args.batches)
    out = [f"## Block-sparse 3x3 at 25 % block density, batch {batch}, {args.dtypes[0]}", "",
           "| layer | dense us | block-sparse us | speedup |", "|---|---|---|---|"]
    workloads = [(n, *LAYERS[n]) for n in args.layers] or [("smoke-fire", (8, 32, 16, 32), 6)]
    for name, cfg, hw in workloads:
        torch.manual_seed(0)
        model = fk.Fire(*cfg).eval().to(args.device, dtype)
        fk.prune_fire_modules(model, 0.75, block=(16, 16), convs=["expand3x3"])
        dense = fk.FusedFire.from_fire(copy.deepcopy(model), backend="triton", sparse=False)
        sparse = fk.FusedFire.from_fire(copy.deepcopy(model), backend="triton", sparse=True)
        x = torch.randn(batch, cfg[0], hw, hw, device=args.device, dtype=dtype).to(memory_format=CL)
        with torch.inference_mode():
            t = timed([lambda: dense(x), lambda: sparse(x)], args.device, repeats=args.repeats)
        out.append(f"| {name} | {t[0] * 1e6:.1f} | {t[1] * 1e6:.1f} | {t[0] / t[1]:.2f}x |")
        record(name, batch, args.dtypes[0], {"triton_dense": t[0], "triton_blocksparse": t[1]},
               fire_macs(batch, *cfg, hw, hw), sparsity=75, structure="block16x16")
    return out + [""]


def network(args, record) -> list[str]:
    if args.smoke:
        return []
    out = ["## SqueezeNet 1.1 (fused Fires, rest eager)", "",
           "| dtype | batch | triton us | cudnn_nchw us | cudnn_cl us | vs cudnn_cl |", "|---|---|---|---|---|---|"]
    args_nc = argparse.Namespace(**{**vars(args), "compile_modes": []})
    for dtype_name in args.dtypes:
        for batch in args.batches:
            torch.manual_seed(0)
            model = fk.squeezenet1_1().eval().to(args.device, DTYPES[dtype_name])
            x = torch.randn(batch, 3, 224, 224, device=args.device, dtype=DTYPES[dtype_name])
            t = measure(model, x, args_nc)
            out.append(f"| {dtype_name} | {batch} | {t['triton'] * 1e6:.0f} | {t['cudnn_nchw'] * 1e6:.0f} | "
                       f"{t['cudnn_cl'] * 1e6:.0f} | {t['cudnn_cl'] / t['triton']:.2f}x |")
            record("squeezenet1_1", batch, dtype_name, t)
    return out + [""]


def plot(table, path: Path, gpu: str) -> None:
    batches = sorted({r[1] for r in table})
    series = {
        f"{dtype}: triton vs cuDNN channels-last": (batches, [
            geomean(r[3]["cudnn_cl"] / r[3]["triton"] for r in table if r[0] == dtype and r[1] == b)
            for b in batches])
        for dtype in sorted({r[0] for r in table})
    }
    plot_speedups(series, path, xlabel="batch", ylabel="speedup (geomean over Fire layers)",
                  title=f"fire_kernels Triton Fire, {gpu}", log_x=True)


if __name__ == "__main__":
    sys.exit(main())
