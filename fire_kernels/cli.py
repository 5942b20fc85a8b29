"""The ``fire-kernels`` command (also ``python -m fire_kernels``).

    fire-kernels demo    SqueezeNet 1.1: eager vs fused dense vs fused with Fires pruned to 90 %
    fire-kernels bench   per-layer microbenchmarks, a table, a CSV and optionally a plot
    fire-kernels info    what this installation can run
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
from pathlib import Path
from typing import NoReturn, Sequence

import torch

from . import _extension
from .benchmarking import (
    CANDIDATES,
    LAYERS,
    ResultsCsv,
    cpu_model,
    environment,
    fire_macs,
    geomean,
    interleaved_medians,
    make_candidates,
    plot_speedups,
    time_checked,
)
from .models import squeezenet1_0, squeezenet1_1
from .module import fuse_fire_modules
from .pruning import prune_fire_modules, sparsity_report
from .reference import Fire

MODELS = {"squeezenet1_1": squeezenet1_1, "squeezenet1_0": squeezenet1_0}
STRUCTURES = {"unstructured": 1, "block4": 4}


class CliError(Exception):
    """An error to report in one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _progress(done: int, total: int, what: str) -> None:
    bar = "#" * (20 * done // total)
    print(f"\r  [{bar:<20}] {done}/{total} {what:<30}", end="" if done < total else "\n",
          file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- demo


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise CliError(f"--weights: no such file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise CliError(f"--weights: cannot read {path} as a PyTorch checkpoint: {e}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise CliError(f"--weights: {path} is not a torchvision {type(model).__name__} "
                       f"checkpoint: {str(e).splitlines()[0]}") from e


def _demo(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    eager = MODELS[args.model]().eval()
    if args.weights:
        _load_weights(eager, Path(args.weights))
        source = f"weights from {args.weights}"
    else:
        source = "RANDOM weights (pass --weights PATH for a torchvision checkpoint)"
    print(f"fire_kernels demo: {args.model}, {source}, 224x224 random inputs, "
          f"{torch.get_num_threads()} threads, C++ extension: {_extension.HOW_LOADED or 'unavailable'}")
    cl = torch.channels_last
    pruned_eager = prune_fire_modules(copy.deepcopy(eager), args.sparsity / 100)
    models = {
        "eager PyTorch": copy.deepcopy(eager).to(memory_format=cl),
        "fused dense": fuse_fire_modules(copy.deepcopy(eager)).to(memory_format=cl),
        f"fused, Fires pruned {args.sparsity}%": fuse_fire_modules(
            copy.deepcopy(pruned_eager)).to(memory_format=cl),
    }
    report = sparsity_report(pruned_eager)
    dense_kb, sparse_kb = report.dense_bytes / 1024, report.packed_bytes / 1024
    weight_kb = [dense_kb, dense_kb, sparse_kb]
    pruned_eager = pruned_eager.to(memory_format=cl)
    for batch in args.batches:
        x = torch.randn(batch, 3, 224, 224).to(memory_format=cl)
        with torch.no_grad():
            outs = {name: m(x) for name, m in models.items()}
            reference = outs["eager PyTorch"]
            err_dense = (outs["fused dense"] - reference).abs().max().item()
            pruned_name = list(models)[2]
            err_pruned = (outs[pruned_name] - pruned_eager(x)).abs().max().item()
            scale = max(1.0, reference.abs().max().item())
            if max(err_dense, err_pruned) > 1e-3 * scale:
                raise CliError(f"the fused model disagrees with eager PyTorch "
                               f"(max error {max(err_dense, err_pruned):.2e})")
            times = interleaved_medians([lambda m=m: m(x) for m in models.values()],
                                        repeats=args.repeats)
        print(f"\nbatch {batch}: max |fused - eager| {err_dense:.1e} (dense), "
              f"{err_pruned:.1e} (pruned, against eager on the same pruned weights)")
        print(f"{'model':<28}{'ms/image':>10}{'speedup':>9}{'top-1 = eager':>15}{'Fire weights KB':>17}")
        base = times[0]
        for (name, out), t, kb in zip(outs.items(), times, weight_kb):
            agree = (out.argmax(1) == reference.argmax(1)).float().mean().item()
            print(f"{name:<28}{t * 1e3 / batch:>10.2f}{base / t:>8.2f}x{agree:>14.0%}{kb:>17.0f}")
    print(f"\nThe pruned model is pruned by magnitude without fine-tuning; its top-1 agreement "
          f"shows what that costs{'' if args.weights else ' (with random weights, little)'}. "
          "See python/prune_and_run_sparse.py for pruning with fine-tuning.")
    return 0


# ---------------------------------------------------------------------------- bench


def _bench(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    env = environment("fire-kernels bench", threads=args.threads)
    out = ResultsCsv(args.csv) if args.csv else None
    work = [(b, sp, layer) for b in args.batches for sp in args.sparsities for layer in args.layers]
    results = {}
    for k, (batch, sp, layer) in enumerate(work):
        _progress(k, len(work), f"{layer} batch {batch} {sp}%")
        cfg, hw = LAYERS[layer]
        torch.manual_seed(k)
        fire = Fire(*cfg).eval()
        if sp:
            prune_fire_modules(fire, sp / 100, block=STRUCTURES[args.structure])
        x = torch.randn(batch, cfg[0], hw, hw)
        runs = make_candidates(fire, x, args.candidates, args.threads)
        t = time_checked(fire, x, runs, args.repeats)
        results[(batch, sp, layer)] = t
        if out is not None:
            out.add_times(env, t, workload=layer, batch=batch, dtype="float32", sparsity=sp,
                          structure=args.structure if sp else "dense",
                          macs=fire_macs(batch, *cfg, hw, hw))
    _progress(len(work), len(work), "done")
    names = list(results[work[0]])
    base = names[0]
    print(f"\n{args.threads} threads; ms per call; speedup over {base}")
    head = f"{'layer':<14}{'batch':>6}{'sparsity':>9}" + "".join(f"{n:>13}" for n in names)
    print(head + "".join(f"{'x ' + n:>15}" for n in names[1:]))
    for (batch, sp, layer), t in results.items():
        print(f"{layer:<14}{batch:>6}{sp:>8}%" + "".join(f"{t[n] * 1e3:>13.3f}" for n in names)
              + "".join(f"{t[base] / t[n]:>14.2f}x" for n in names[1:]))
    for batch in args.batches:
        for sp in args.sparsities:
            keys = [(batch, sp, layer) for layer in args.layers]
            summary = ", ".join(f"{n} {geomean(results[k][base] / results[k][n] for k in keys):.2f}x"
                                for n in names[1:])
            print(f"geomean batch {batch}, {sp}%: {summary}")
    if out is not None:
        print(f"appended the rows to {args.csv}")
    if args.plot:
        _bench_plot(results, args, names, Path(args.plot), env)
        print(f"wrote {args.plot}")
    return 0


def _bench_plot(results, args, names, path: Path, env: dict) -> None:
    """Speedup over the first candidate per layer (first batch, last sparsity), or,
    with several sparsities, geomean over the layers against sparsity."""
    base, others = names[0], names[1:]
    batch = args.batches[0]
    if len(args.sparsities) > 1:
        series = {n: (args.sparsities, [
            geomean(results[(batch, sp, layer)][base] / results[(batch, sp, layer)][n]
                    for layer in args.layers) for sp in args.sparsities]) for n in others}
        xlabel = f"sparsity (%), {args.structure}"
    else:
        sp = args.sparsities[0]
        series = {n: (args.layers, [results[(batch, sp, layer)][base] / results[(batch, sp, layer)][n]
                                    for layer in args.layers]) for n in others}
        xlabel = f"layer, {sp}% sparsity"
    plot_speedups(series, path, xlabel=xlabel, ylabel=f"speedup over {base} (x)",
                  categorical=len(args.sparsities) == 1,
                  title=f"fire_kernels bench, batch {batch}, {env['machine']}, "
                        f"{args.threads} threads, {env['date']}")


# ---------------------------------------------------------------------------- info


def _info(args: argparse.Namespace) -> int:
    from . import __version__

    print(f"fire_kernels {__version__}: torch {torch.__version__}, Python {platform.python_version()}")
    if _extension.C is not None:
        print(f"C++ extension: {_extension.HOW_LOADED} ({_extension.C.__file__})")
        print(f"CPU: {cpu_model()}; vector ISAs this CPU runs: "
              f"{', '.join(_extension.C.available_isas())}; in use: {_extension.C.current_isa()} "
              "(FIRE_KERNELS_ISA to force one)")
    else:
        print(f"C++ extension: unavailable ({_extension.LOAD_ERROR}); CPU runs the PyTorch reference")
    print(f"threads: {torch.get_num_threads()} (torch.set_num_threads / OMP_NUM_THREADS)")
    try:
        import triton

        from .triton import interpreter_enabled

        mode = "interpreter (TRITON_INTERPRET=1)" if interpreter_enabled() else "compiled"
        print(f"Triton: {triton.__version__}, {mode}")
    except ImportError:
        print("Triton: not installed (CUDA tensors run the PyTorch reference)")
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name()} (backend 'auto' runs the Triton kernel)")
    else:
        print("CUDA: not available")
    return 0


# ---------------------------------------------------------------------------- parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _sparsity(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a sparsity in percent, got {text!r}") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"expected a sparsity in [0, 100), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fire-kernels",
        description="Fused SqueezeNet Fire kernels for PyTorch: run the demo, benchmark "
        "the kernels, or see what this installation can run.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,info}", parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="SqueezeNet 1.1: eager vs fused dense vs fused with pruned Fires",
        description="Builds SqueezeNet (bundled, torchvision's layout) in channels-last, swaps "
        "its Fires for FusedFire, prunes a copy's Fires by magnitude, checks the fused outputs "
        "against eager PyTorch and prints ms per image, speedup, top-1 agreement with eager "
        "PyTorch and the Fire weights' size. Weights are random unless --weights is given.",
    )
    demo.add_argument("--weights", metavar="PATH",
                      help="a torchvision checkpoint of the model (e.g. squeezenet1_1-b8a52dc0.pth)")
    demo.add_argument("--model", choices=list(MODELS), default="squeezenet1_1")
    demo.add_argument("--batches", type=_positive, nargs="+", default=[1, 8], metavar="N")
    demo.add_argument("--sparsity", type=_sparsity, default=90, help="percent pruned (default 90)")
    demo.add_argument("--threads", type=_positive, default=2)
    demo.add_argument("--repeats", type=_positive, default=20, help="timed runs per model")
    demo.set_defaults(run=_demo)

    bench = sub.add_parser(
        "bench",
        help="per-layer microbenchmarks (table, CSV, plot)",
        description="Times candidates on SqueezeNet's Fire layers, interleaved in one process "
        "(medians), checks each against eager PyTorch, prints a table with the speedup over the "
        "first candidate, appends to a long-format CSV and optionally draws a plot. Candidates: "
        + "; ".join(f"{k}: {v}" for k, v in CANDIDATES.items()),
    )
    bench.add_argument("--layers", nargs="+", choices=list(LAYERS), default=["v1_1-fire2", "v1_1-fire9"],
                       metavar="LAYER", help=f"of: {', '.join(LAYERS)}")
    bench.add_argument("--batches", type=_positive, nargs="+", default=[1], metavar="N")
    bench.add_argument("--sparsities", type=_sparsity, nargs="+", default=[0], metavar="PCT",
                       help="prune the layers by magnitude first (0 = dense)")
    bench.add_argument("--structure", choices=list(STRUCTURES), default="unstructured")
    bench.add_argument("--candidates", nargs="+", choices=list(CANDIDATES),
                       default=["eager_nchw", "eager_cl", "fused_nchw", "fused_cl"], metavar="NAME",
                       help="the first is the baseline")
    bench.add_argument("--threads", type=_positive, default=2)
    bench.add_argument("--repeats", type=_positive, default=20)
    bench.add_argument("--csv", metavar="PATH", default="fire_kernels_bench.csv",
                       help="long-format CSV to append to ('' for none)")
    bench.add_argument("--plot", metavar="PATH.png",
                       help="draw speedup per layer (and against sparsity)")
    bench.set_defaults(run=_bench)

    info = sub.add_parser("info", help="what this installation can run",
                          description="C++ extension, vector ISAs, threads, Triton and CUDA.")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except CliError as e:
        print(f"fire-kernels: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fire-kernels: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
