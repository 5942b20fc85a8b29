"""The ``fire-kernels`` command (also ``python -m fire_kernels``).

    fire-kernels demo    SqueezeNet 1.1: eager vs the fused network, dense and pruned to 90 %
    fire-kernels bench   per-layer and whole-network benchmarks, a table, optionally a CSV and a plot
    fire-kernels info    what this installation runs (--json for machines)

A user never sees a traceback: every error is one line on stderr and a non-zero
exit status (``--traceback`` shows it, for bug reports).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
from pathlib import Path
from typing import NoReturn, Sequence

import torch

from . import __version__, _extension
from .benchmarking import (
    CANDIDATES,
    LAYERS,
    ResultsCsv,
    calibration_batches,
    cpu_model,
    environment,
    fire_macs,
    geomean,
    interleaved_medians,
    make_candidates,
    plot_speedups,
    time_checked,
)
from .int8_ops import INT8_SPARSE_MAX_WORK_DENSITY
from .models import squeezenet1_0, squeezenet1_1
from .network import fuse_network
from .pruning import prune_fire_modules, prune_network, sparsity_report
from .quantized import QuantizedFire, QuantizedHead, QuantizedStem, quantize_network
from .reference import Fire

MODELS = {"squeezenet1_1": squeezenet1_1, "squeezenet1_0": squeezenet1_0}
STRUCTURES = {"unstructured": 1, "block4": 4}


class CliError(Exception):
    """An error to report in one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _progress(done: int, total: int, what: str) -> None:
    """A progress bar on stderr, drawn only on a terminal (a log or a pipe gets none)."""
    if not sys.stderr.isatty():
        return
    bar = "#" * (20 * done // total)
    print(f"\r  [{bar:<20}] {done}/{total} {what:<30}", end="" if done < total else "\n",
          file=sys.stderr, flush=True)


def _set_threads(threads: int | None) -> int:
    """``--threads``, or PyTorch's own default (OMP_NUM_THREADS, else the cores)."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _require_cpp_kernels(what: str) -> None:
    if _extension.C is None:
        raise CliError(f"{what} needs the C++ kernels, which are unavailable: "
                       f"{_extension.LOAD_ERROR} (see fire-kernels info)")


def _check_isa() -> None:
    """A bad FIRE_KERNELS_ISA (or one ATEN_CPU_CAPABILITY excludes) as one line."""
    if _extension.C is None:
        return
    try:
        _extension.C.current_isa()
    except RuntimeError as e:
        message = str(e).splitlines()[0].removeprefix("fire_kernels: ")
        raise CliError(f"FIRE_KERNELS_ISA={os.environ.get('FIRE_KERNELS_ISA', '')!r}: "
                       f"{message}") from None


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
    _require_cpp_kernels("the demo")
    threads = _set_threads(args.threads)
    torch.manual_seed(0)
    eager = MODELS[args.model]().eval()
    if args.weights:
        _load_weights(eager, Path(args.weights))
        source = f"weights from {args.weights}"
    else:
        source = "RANDOM weights (pass --weights PATH for a torchvision checkpoint)"
    print(f"fire_kernels demo: {args.model}, {source}, 224x224 random inputs, "
          f"{threads} threads, C++ kernels: {_extension.STATUS.state}, ISA {_extension.C.current_isa()}")
    cl = torch.channels_last
    pruned_eager = prune_network(copy.deepcopy(eager), args.sparsity / 100)
    pruned_name = f"fused, pruned {args.sparsity}%"
    # The eager model runs channels last (its fastest layout); the fused ones take the
    # NCHW input as given: fuse_network converts it once, inside.
    # int8: quantize_network, calibrated on random images like the inputs (the int8
    # kernels are dense: the pruned network quantized runs as fast as the dense one).
    calibration = calibration_batches(n=2, batch=4)
    int8 = quantize_network(copy.deepcopy(eager), calibration)
    pruned_int8 = quantize_network(copy.deepcopy(pruned_eager), calibration)
    nchw = torch.contiguous_format
    models = {
        "eager PyTorch": (copy.deepcopy(eager).to(memory_format=cl), cl),
        "fused network": (fuse_network(copy.deepcopy(eager)), nchw),
        pruned_name: (fuse_network(copy.deepcopy(pruned_eager)), nchw),
        "int8 network": (int8, nchw),
        f"int8, pruned {args.sparsity}%": (pruned_int8, nchw),
    }
    references = [eager, eager, pruned_eager, eager, pruned_eager]
    report = sparsity_report(pruned_eager)
    dense_kb, sparse_kb = report.dense_bytes / 1024, report.packed_bytes / 1024
    weight_kb = [dense_kb, dense_kb, sparse_kb, _int8_bytes(int8) / 1024,
                 _int8_bytes(pruned_int8) / 1024]
    for batch in args.batches:
        x = torch.randn(batch, 3, 224, 224)
        inputs = {name: x.contiguous(memory_format=fmt) for name, (_, fmt) in models.items()}
        with torch.no_grad():
            # Each fused model against eager PyTorch on the same weights, relative to the
            # largest output (a randomly initialised network's outputs can be tiny).
            errors = [None]
            for (name, (m, _)), ref in list(zip(models.items(), references))[1:]:
                expected = ref(x)
                out = m(inputs[name])
                errors.append(((out - expected).abs().max()
                               / expected.abs().max().clamp_min(1e-30)).item())
            if max(errors[1:3]) > 1e-3 or max(errors[3:]) > 0.1:
                raise CliError(f"a fused model disagrees with eager PyTorch (relative errors "
                               f"{', '.join(f'{e:.1e}' for e in errors[1:])})")
            times = interleaved_medians(
                [lambda m=m, name=name: m(inputs[name]) for name, (m, _) in models.items()],
                repeats=args.repeats)
        print(f"\nbatch {batch}:")
        print(f"{'model':<28}{'ms/image':>10}{'speedup':>9}{'rel. error':>12}{'weights KB':>12}")
        base = times[0]
        for name, t, err, kb in zip(models, times, errors, weight_kb):
            shown = "reference" if err is None else f"{err:.1e}"
            print(f"{name:<28}{t * 1e3 / batch:>10.2f}{base / t:>8.2f}x{shown:>12}{kb:>12.0f}")
    print("\nrel. error: largest difference from eager PyTorch on the same weights (the pruned "
          "models': on their pruned weights) over the largest output: float32 rounding only for "
          "the float models, int8 rounding for the int8 ones; what pruning and quantization cost "
          "in accuracy needs trained weights and data: python/prune_and_run_sparse.py measures "
          "both. weights KB: the convolutions' weights and biases as the kernels keep them "
          "(int8: with their scales, pruned ones stored dense as the state_dict holds them; "
          "the sparse int8 kernels run where they pay on this CPU's int8 path).")
    return 0


def _int8_bytes(model: torch.nn.Module) -> int:
    """Bytes of the quantized modules' buffers: int8 weights, int32 biases, scales."""
    return sum(b.numel() * b.element_size() for m in model.modules()
               if isinstance(m, (QuantizedStem, QuantizedFire, QuantizedHead))
               for b in m.buffers())


# ---------------------------------------------------------------------------- bench


def _bench_candidates_available(names: Sequence[str]) -> None:
    """Every requested candidate must be able to run here, checked before any timing."""
    fused = [n for n in names if n.startswith(("fused", "dense", "sparse"))]
    if fused:
        _require_cpp_kernels(f"candidate {fused[0]}")
    if "onnxruntime" in names:
        try:
            import onnx  # noqa: F401  (torch.onnx.export writes the model with it)
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise CliError(f"candidate onnxruntime needs the {e.name} package "
                           "(pip install onnx onnxruntime, or fire_kernels[bench])") from None


def _bench(args: argparse.Namespace) -> int:
    threads = _set_threads(args.threads)
    _bench_candidates_available(args.candidates)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError("--plot needs matplotlib (pip install matplotlib, or "
                           "fire_kernels[bench])") from None
    env = environment("fire-kernels bench", threads=threads)
    out = ResultsCsv(args.csv) if args.csv else None
    if args.layers is None:  # the default layers, unless only whole networks were asked for
        args.layers = [] if args.networks else ["v1_1-fire2", "v1_1-fire9"]
    workloads = args.layers + args.networks
    work = [(b, sp, name) for b in args.batches for sp in args.sparsities for name in workloads]
    results = {}
    for k, (batch, sp, name) in enumerate(work):
        _progress(k, len(work), f"{name} batch {batch} {sp}%")
        torch.manual_seed(k)
        model, x, macs = _bench_workload(name, batch, sp, STRUCTURES[args.structure])
        runs = make_candidates(model, x, args.candidates, threads)
        missing = [n for n in args.candidates if n not in runs]
        if missing:
            raise CliError(f"candidate {missing[0]} cannot run on {name}")
        try:
            t = time_checked(model, x, runs, args.repeats)
        except AssertionError as e:  # a candidate's output differs from eager PyTorch's
            raise CliError(f"{name}, batch {batch}, sparsity {sp}%: {e}") from None
        results[(batch, sp, name)] = t
        if out is not None:
            out.add_times(env, t, workload=name, batch=batch, dtype="float32", sparsity=sp,
                          structure=args.structure if sp else "dense", macs=macs)
    _progress(len(work), len(work), "done")
    names = list(results[work[0]])
    base = names[0]
    print(f"\n{threads} threads; ms per call; speedup over {base}")
    width = {n: max(13, len(n) + 3) for n in names}  # columns never run together
    head = f"{'workload':<14}{'batch':>6}{'sparsity':>9}" + "".join(f"{n:>{width[n]}}" for n in names)
    print(head + "".join(f"{'x ' + n:>{width[n] + 2}}" for n in names[1:]))
    for (batch, sp, name), t in results.items():
        print(f"{name:<14}{batch:>6}{sp:>8}%" + "".join(f"{t[n] * 1e3:>{width[n]}.3f}" for n in names)
              + "".join(f"{t[base] / t[n]:>{width[n] + 1}.2f}x" for n in names[1:]))
    for batch in args.batches if args.layers else []:
        for sp in args.sparsities:
            keys = [(batch, sp, layer) for layer in args.layers]
            summary = ", ".join(f"{n} {geomean(results[k][base] / results[k][n] for k in keys):.2f}x"
                                for n in names[1:])
            print(f"geomean over the layers, batch {batch}, {sp}%: {summary}")
    if out is not None:
        print(f"appended the rows to {args.csv}")
    if args.plot:
        _bench_plot(results, args, names, workloads, Path(args.plot), env)
        print(f"wrote {args.plot}")
    return 0


def _bench_workload(name: str, batch: int, sparsity: int,
                    block: int) -> tuple[torch.nn.Module, torch.Tensor, int | None]:
    """A Fire layer (LAYERS) or a whole network (MODELS, on 224x224 images), pruned by
    magnitude to ``sparsity`` percent (a network: every convolution but the stem), its
    input (NCHW) and its MACs (None for a network)."""
    if name in MODELS:
        model = MODELS[name]().eval()
        if sparsity:
            prune_network(model, sparsity / 100, block=block)
        return model, torch.randn(batch, 3, 224, 224), None
    cfg, hw = LAYERS[name]
    fire = Fire(*cfg).eval()
    if sparsity:
        prune_fire_modules(fire, sparsity / 100, block=block)
    return fire, torch.randn(batch, cfg[0], hw, hw), fire_macs(batch, *cfg, hw, hw)


def _bench_plot(results, args, names, workloads, path: Path, env: dict) -> None:
    """Speedup over the first candidate per workload (first batch, last sparsity), or,
    with several sparsities, geomean over the workloads against sparsity."""
    base, others = names[0], names[1:]
    batch = args.batches[0]
    if len(args.sparsities) > 1:
        series = {n: (args.sparsities, [
            geomean(results[(batch, sp, w)][base] / results[(batch, sp, w)][n]
                    for w in workloads) for sp in args.sparsities]) for n in others}
        xlabel = f"sparsity (%), {args.structure}"
    else:
        sp = args.sparsities[0]
        series = {n: (workloads, [results[(batch, sp, w)][base] / results[(batch, sp, w)][n]
                                  for w in workloads]) for n in others}
        xlabel = f"workload, {sp}% sparsity"
    plot_speedups(series, path, xlabel=xlabel, ylabel=f"speedup over {base} (x)",
                  categorical=len(args.sparsities) == 1,
                  title=f"fire_kernels bench, batch {batch}, {env['machine']}, "
                        f"{env['threads']} threads, {env['date']}")


# ---------------------------------------------------------------------------- info


def info() -> dict:
    """What this installation runs, as ``fire-kernels info --json`` prints it."""
    status = _extension.STATUS
    c = _extension.C
    try:
        import triton

        from .triton import interpreter_enabled

        triton_version = triton.__version__
        triton_mode = "interpreter" if interpreter_enabled() else "compiled"
    except ImportError:
        triton_version = triton_mode = None
    return {
        "fire_kernels": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "triton": triton_version,
        "triton_mode": triton_mode,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_kernel": {
            "state": status.state,
            "available": c is not None,
            "path": status.path,
            "built_with_torch": status.built_with_torch,
            "reason": status.reason,
            "isa": c.current_isa() if c is not None else None,
            "isas_available": list(c.available_isas()) if c is not None else [],
            "int8_path": c.current_int8_path() if c is not None else None,
            "int8_paths_available": list(c.available_int8_paths()) if c is not None else [],
            "int8_sparse_max_work_density": (
                INT8_SPARSE_MAX_WORK_DENSITY[c.current_int8_path()] if c is not None else None),
        },
        "env": {name: os.environ.get(name) for name in
                ("FIRE_KERNELS_ISA", "ATEN_CPU_CAPABILITY", _extension.REQUIRE_CPP_ENV)},
    }


def _info(args: argparse.Namespace) -> int:
    report = info()
    kernel = report["cpu_kernel"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"fire_kernels {report['fire_kernels']}: torch {report['torch']}, "
              f"Python {report['python']}, {report['machine']}")
        if kernel["available"]:
            note = f"; {kernel['reason']}" if kernel["reason"] else ""
            print(f"C++ kernels: {kernel['state']} ({kernel['path']}, built with torch "
                  f"{kernel['built_with_torch'] or 'unknown'}{note})")
            print(f"CPU: {report['cpu']}; ISA in use: {kernel['isa']}; available: "
                  f"{', '.join(kernel['isas_available'])} (FIRE_KERNELS_ISA forces one, "
                  "ATEN_CPU_CAPABILITY caps them)")
            print(f"int8 kernels: {kernel['int8_path']} (sparse at most "
                  f"{kernel['int8_sparse_max_work_density']:.2f} nonzero weight quads); "
                  f"available: {', '.join(kernel['int8_paths_available'])} (they follow the "
                  "ISA in use)")
        else:
            print(f"C++ kernels: unavailable ({kernel['reason']}); float32 on CPU runs the "
                  "PyTorch reference")
        settings = [f"{k}={v}" for k, v in report["env"].items() if v is not None]
        if settings:
            print(f"set: {' '.join(settings)}")
        print(f"threads: {report['threads']} (torch.set_num_threads / OMP_NUM_THREADS)")
        if report["triton"]:
            print(f"Triton: {report['triton']}, {report['triton_mode']}"
                  + (" (TRITON_INTERPRET=1)" if report["triton_mode"] == "interpreter" else ""))
        else:
            print("Triton: not installed (CUDA tensors run the PyTorch reference)")
        print(f"CUDA: {report['cuda']} (backend 'auto' runs the Triton kernel)" if report["cuda"]
              else "CUDA: not available")
    if not kernel["available"] and _extension.require_cpp():
        raise CliError(f"{_extension.REQUIRE_CPP_ENV}=1, but the C++ kernels are unavailable")
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
    parser.add_argument("--version", action="version",
                        version=f"fire-kernels {__version__} (torch {torch.__version__})")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,info}", parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="SqueezeNet 1.1: eager vs the fused network, dense and pruned",
        description="Builds SqueezeNet (bundled, torchvision's layout), fuses the whole "
        "network (fuse_network: stem, pools, Fires and classifier), prunes a copy's "
        "convolutions but the stem by magnitude (prune_network), checks the fused outputs "
        "against eager PyTorch (channels last) and prints ms per image, speedup, the largest "
        "difference from eager PyTorch on the same weights and the weights' size (packed "
        "sparse where pruned). Weights are random unless --weights is given.",
    )
    demo.add_argument("--weights", metavar="PATH",
                      help="a torchvision checkpoint of the model (e.g. squeezenet1_1-b8a52dc0.pth)")
    demo.add_argument("--model", choices=list(MODELS), default="squeezenet1_1")
    demo.add_argument("--batches", type=_positive, nargs="+", default=[1, 8], metavar="N")
    demo.add_argument("--sparsity", type=_sparsity, default=90, help="percent pruned (default 90)")
    demo.add_argument("--threads", type=_positive, help="default: PyTorch's own")
    demo.add_argument("--repeats", type=_positive, default=20, help="timed runs per model")
    demo.set_defaults(run=_demo)

    bench = sub.add_parser(
        "bench",
        help="per-layer and whole-network benchmarks (table, CSV, plot)",
        description="Times candidates on SqueezeNet's Fire layers and, with --networks, whole "
        "SqueezeNets, interleaved in one process "
        "(medians), checks each against eager PyTorch, prints a table with the speedup over the "
        "first candidate and, where asked, appends to a long-format CSV and draws a plot. "
        "Candidates: "
        + "; ".join(f"{k}: {v}" for k, v in CANDIDATES.items()),
    )
    bench.add_argument("--layers", nargs="+", choices=list(LAYERS), metavar="LAYER",
                       help=f"of: {', '.join(LAYERS)} (default: v1_1-fire2 v1_1-fire9, unless "
                       "only --networks are given)")
    bench.add_argument("--networks", nargs="+", choices=list(MODELS), default=[], metavar="NET",
                       help=f"whole networks too, of: {', '.join(MODELS)} (224x224 NCHW images; "
                       "pruned: every convolution but the stem), e.g. with --candidates eager_cl "
                       "fused_network onnxruntime")
    bench.add_argument("--batches", type=_positive, nargs="+", default=[1], metavar="N")
    bench.add_argument("--sparsities", type=_sparsity, nargs="+", default=[0], metavar="PCT",
                       help="prune the layers by magnitude first (0 = dense)")
    bench.add_argument("--structure", choices=list(STRUCTURES), default="unstructured")
    bench.add_argument("--candidates", nargs="+", choices=list(CANDIDATES),
                       default=["eager_nchw", "eager_cl", "fused_nchw", "fused_cl"], metavar="NAME",
                       help="the first is the baseline")
    bench.add_argument("--threads", type=_positive, help="default: PyTorch's own")
    bench.add_argument("--repeats", type=_positive, default=20)
    bench.add_argument("--csv", metavar="PATH", help="append the results to this long-format CSV")
    bench.add_argument("--plot", metavar="PATH.png",
                       help="draw speedup per layer (and against sparsity)")
    bench.set_defaults(run=_bench)

    info_parser = sub.add_parser(
        "info", help="what this installation runs",
        description="The C++ kernels' state (prebuilt, just-in-time or unavailable, and why), "
        "the vector ISA in use and those available, threads, torch, Triton and CUDA. Exits 1 "
        "where FIRE_KERNELS_REQUIRE_CPP=1 is set and the C++ kernels are unavailable.")
    info_parser.add_argument("--json", action="store_true", help="print it as JSON")
    info_parser.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        _check_isa()
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
    except Exception as e:  # a bug, or FIRE_KERNELS_REQUIRE_CPP's FallbackError: one line
        if args.traceback:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"fire-kernels: error: {type(e).__name__}: {first} (--traceback shows where)",
              file=sys.stderr)
        return 1
