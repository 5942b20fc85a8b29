"""How fire_kernels measures speed (SPEC §5), for every benchmark: the scripts in
``benchmarks/``, ``fire-kernels bench`` and the examples in ``python/``.

* **Timing**: :func:`interleaved_medians`, the one timing helper: candidates and
  baselines timed round-robin in one process on the same inputs, in a new order
  each round, warm-up first, medians; an optional pause between candidates (so
  that one's spinning thread pool does not steal from the next) and a device timer.
* **Candidates**: :data:`CANDIDATES`, what a benchmark can compare, each built by
  :func:`make_candidates` and checked against eager PyTorch by :func:`time_checked`.
* **Rows**: one long-format CSV schema, :data:`FIELDS` (one measurement a row: a
  metric and its value), every row naming the commit, the run, the machine and the
  date (:func:`environment`, :class:`ResultsCsv`).
* **Plots**: :func:`plot_speedups`, the one plotter.
"""

from __future__ import annotations

import copy
import csv
import datetime
import io
import math
import os
import platform
import random
import statistics
import subprocess
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .models import FIRE_LAYERS

__all__ = [
    "CANDIDATES",
    "FIELDS",
    "LAYERS",
    "CsrFire",
    "ResultsCsv",
    "cpu_model",
    "cuda_timer",
    "environment",
    "fire_macs",
    "fused_copy",
    "geomean",
    "interleaved_medians",
    "make_candidates",
    "matmul_peak_gflops",
    "onnx_session",
    "plot_speedups",
    "read_rows",
    "time_checked",
]

#: The 16 Fire layers of SPEC §4 (``fire_kernels.models.FIRE_LAYERS``).
LAYERS = FIRE_LAYERS

# Seconds to sleep before each timed call when ONNX Runtime is among the candidates.
# Its intra-op pool (spinning on, its default) keeps spinning after a run returns:
# on the 2-core benchmark machine a session's process burnt about 40 ms of CPU per
# idle gap after each run (time.process_time over runs 50-200 ms apart), and a fused
# SqueezeNet 1.1 timed 10-20 ms after an ONNX Runtime run took twice its time alone.
# The pause must outlast that spin; every candidate gets the same one.
SPIN_PAUSE = 0.1

# ---------------------------------------------------------------------------- timing


def interleaved_medians(
    fns: Sequence[Callable[[], object]],
    *,
    warmup: int = 3,
    repeats: int = 30,
    pause: float = 0.0,
    timer: Callable[[Callable[[], object]], float] | None = None,
) -> list[float]:
    """Median seconds per call of each function, timing them round-robin so that
    a slow phase of a shared machine hits all of them alike.

    Each round runs them in a new order (shuffled, seeded), so that every function
    follows every other one about equally often: a call pays for what the call
    before it left behind (caches full of other data, a thread pool asleep or
    still spinning), and in a fixed order one candidate would always pay for the
    same predecessor.

    Args:
        pause: seconds to sleep before each timed call, so that a candidate whose
            thread pool spins after it returns (ONNX Runtime's default) does not
            steal the cores from the next one; every candidate gets the same pause.
        timer: how one call is timed, ``timer(fn) -> seconds``; wall time by
            default, :func:`cuda_timer` for GPU time.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for k in order:
            if pause:
                time.sleep(pause)
            if timer is None:
                start = time.perf_counter()
                fns[k]()
                samples[k].append(time.perf_counter() - start)
            else:
                samples[k].append(timer(fns[k]))
    return [statistics.median(s) for s in samples]


def cuda_timer(fn: Callable[[], object]) -> float:
    """GPU seconds of one call of ``fn``, between two CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def time_outside_kernels(model: nn.Module, x: torch.Tensor, repeats: int = 30) -> tuple[float, float]:
    """Median seconds of ``model(x)`` and of the same forward with the C++ kernels
    skipped (their outputs left unwritten), timed interleaved: the second is what the
    forward costs outside the kernels (Python, dispatch, argument checks, allocation).
    Needs the C++ extension."""
    from . import _extension

    if _extension.C is None:
        raise RuntimeError(f"the C++ extension is unavailable: {_extension.LOAD_ERROR}")
    skip = _extension.C.skip_kernels

    def bare() -> None:
        skip(True)
        try:
            model(x)
        finally:
            skip(False)

    with torch.no_grad():
        full, without = interleaved_medians([lambda: model(x), bare], repeats=repeats)
    return full, without


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 GEMM rate with the current thread count: a large
    ``torch.mm``, the yardstick for "% of peak"."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    (t,) = interleaved_medians([lambda: torch.mm(a, b)], warmup=2, repeats=repeats)
    return 2 * n**3 / t / 1e9


def fire_macs(n: int, c: int, s: int, e1: int, e3: int, h: int, w: int) -> int:
    """Multiply-accumulates of one Fire forward: (C*S + S*E1 + 9*S*E3) per pixel."""
    return n * h * w * (c * s + s * e1 + 9 * s * e3)


def geomean(values: Iterable[float]) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


# ---------------------------------------------------------------------------- candidates

#: What each benchmark candidate runs. All compute the reference Fire (or model).
CANDIDATES = {
    "eager_nchw": "the PyTorch reference (torchvision's Fire), NCHW",
    "eager_cl": "the PyTorch reference, channels last",
    "fused_nchw": "FusedFire (sparse='auto'), NCHW",
    "fused_cl": "FusedFire (sparse='auto'), channels last",
    "dense_nchw": "FusedFire(sparse=False): the dense fused kernel, NCHW",
    "sparse_nchw": "FusedFire(sparse=True): the sparse fused kernel, NCHW",
    "sparse_cl": "FusedFire(sparse=True), channels last",
    "compile": "torch.compile of the reference (default mode), NCHW",
    "compile_freeze": "torch.compile with inductor's freezing (weights folded, oneDNN prepacked), NCHW",
    "fused_network": "fuse_network (Fires, stem, pools, classifier fused), NCHW input",
    "onnxruntime": "ONNX Runtime's CPU execution provider, its default settings (dense)",
    "csr": "torch.sparse CSR: 1x1 convs as CSR @ activations, the 3x3 as CSR @ im2col",
    "quantized_network": "quantize_network: int8 stem, Fires and classifier (static, "
                         "calibrated), NCHW float input",
    "onnxruntime_int8": "ONNX Runtime int8: quantize_static (QOperator, per-channel int8 "
                        "weights, uint8 activations, same calibration), its default settings",
    "torch_int8": "PyTorch int8: torch.ao FX static quantization, x86 backend, its default "
                  "qconfig mapping, same calibration",
}

#: Candidates whose results are int8 approximations of the float model's.
INT8_CANDIDATES = ("quantized_network", "onnxruntime_int8", "torch_int8")


def onnx_session(model: nn.Module, x: torch.Tensor, threads: int, *,
                 profile_prefix: str | None = None) -> Callable[[], object] | None:
    """A zero-argument callable running ``model(x)`` in ONNX Runtime's CPU execution
    provider as its users run it (all graph optimisations, so its NCHWc layout
    transformer runs; intra-op threads = ``threads``; its pool's spinning left on),
    or None if onnxruntime is not installed. With ``profile_prefix``, ONNX Runtime's
    profiler records every node's time, and the callable has ``end_profiling()``
    (the session's: the JSON file's path)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.contiguous().numpy()}

    def run() -> object:
        return session.run(None, feed)

    run.end_profiling = session.end_profiling
    return run


class CsrFire:
    """A Fire computed with torch.sparse CSR matmuls, as a user would try it: squeeze
    and expand 1x1 as CSR @ activations, expand 3x3 as CSR @ im2col (F.unfold)."""

    def __init__(self, fire: nn.Module) -> None:
        s, c = fire.squeeze.weight.shape[:2]
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.ws = fire.squeeze.weight.detach().reshape(s, c).to_sparse_csr()
            self.we1 = fire.expand1x1.weight.detach().reshape(-1, s).to_sparse_csr()
            self.we3 = fire.expand3x3.weight.detach().reshape(-1, 9 * s).to_sparse_csr()
        self.bs, self.be1, self.be3 = (
            getattr(fire, n).bias.detach()[:, None] for n in ("squeeze", "expand1x1", "expand3x3")
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = torch.relu(self.ws @ x.transpose(0, 1).reshape(c, -1) + self.bs)  # (S, N*H*W)
        cols = torch.nn.functional.unfold(s.reshape(-1, n, h, w).transpose(0, 1), 3, padding=1)
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (9S, N*H*W)
        e1 = torch.relu(self.we1 @ s + self.be1)
        e3 = torch.relu(self.we3 @ cols + self.be3)
        return torch.cat([e1, e3]).reshape(-1, n, h, w).transpose(0, 1)


def onnx_int8_session(model: nn.Module, x: torch.Tensor, threads: int,
                      calibration: Sequence[torch.Tensor]) -> Callable[[], object] | None:
    """``model(x)`` in ONNX Runtime int8, as its users quantize for a CPU: the exported
    model pre-processed (``quant_pre_process``) and statically quantized from
    ``calibration`` (QOperator format, per-channel int8 weights, uint8 activations);
    the session as :func:`onnx_session`'s. None without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        return None

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": c.contiguous().numpy()} for c in calibration])

        def get_next(self):
            return next(self.batches, None)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported, prepared, quantized = (str(Path(tmp, n)) for n in ("f.onnx", "p.onnx", "q.onnx"))
        torch.onnx.export(model, (x,), exported, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
        quant_pre_process(exported, prepared)
        quantize_static(prepared, quantized, Reader(), quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(quantized, opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.contiguous().numpy()}
    return lambda: session.run(None, feed)


def torch_int8_model(model: nn.Module, x: torch.Tensor,
                     calibration: Sequence[torch.Tensor]) -> nn.Module:
    """``model`` statically quantized by PyTorch's own tools, as its users do for a
    CPU: torch.ao FX with the x86 backend's default qconfig mapping, calibrated on
    ``calibration``."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"),
                              example_inputs=(x,))
        with torch.no_grad():
            for batch in calibration:
                prepared(batch)
        return convert_fx(prepared)


def calibration_batches(n: int = 4, batch: int = 4, size: int = 224) -> list[torch.Tensor]:
    """The images every int8 candidate is calibrated on (seeded): ``n`` batches."""
    g = torch.Generator().manual_seed(1234)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(n)]


def fused_copy(model: nn.Module, sparse="auto") -> nn.Module:
    """A copy of `model` (a Fire, or any model with Fires) whose Fires are FusedFire
    with the given ``sparse`` mode."""
    from .module import FusedFire, fuse_fire_modules
    from .reference import Fire

    m = copy.deepcopy(model)
    if isinstance(m, Fire):
        return FusedFire.from_fire(m, sparse=sparse)
    fuse_fire_modules(m)
    for f in m.modules():
        if isinstance(f, FusedFire):
            f.sparse = sparse
    return m


def make_candidates(
    model: nn.Module, x: torch.Tensor, names: Iterable[str], threads: int,
    calibration: Sequence[torch.Tensor] | None = None,
) -> dict[str, Callable[[], object]]:
    """name -> zero-argument callable for each of ``names`` (keys of CANDIDATES)
    that can run here (onnxruntime needs the package, csr a single Fire). The int8
    candidates are calibrated on ``calibration`` (default :func:`calibration_batches`)."""
    from .reference import Fire

    cl = torch.channels_last
    x_cl = x.to(memory_format=cl)
    runs: dict[str, Callable[[], object]] = {}
    for name in names:
        if name not in CANDIDATES:
            raise ValueError(f"unknown candidate {name!r}; expected one of {', '.join(CANDIDATES)}")
        if name == "eager_nchw":
            runs[name] = lambda m=model: m(x)
        elif name == "eager_cl":
            runs[name] = lambda m=copy.deepcopy(model).to(memory_format=cl): m(x_cl)
        elif name in ("fused_nchw", "dense_nchw", "sparse_nchw"):
            mode = {"fused_nchw": "auto", "dense_nchw": False, "sparse_nchw": True}[name]
            runs[name] = lambda m=fused_copy(model, mode): m(x)
        elif name in ("fused_cl", "sparse_cl"):
            mode = "auto" if name == "fused_cl" else True
            runs[name] = lambda m=fused_copy(model, mode).to(memory_format=cl): m(x_cl)
        elif name == "compile":
            # A fresh start for every model: Dynamo caches compiled code on the
            # forward's code object, which all Fire layers share; past its recompile
            # limit (8) every later layer would silently run eager, and after a
            # shape change it compiles for dynamic shapes.
            torch.compiler.reset()
            runs[name] = lambda m=torch.compile(copy.deepcopy(model)): m(x)
        elif name == "compile_freeze":
            runs[name] = _frozen_compile(model, x)
        elif name == "fused_network":
            from .network import fuse_network

            runs[name] = lambda m=fuse_network(copy.deepcopy(model)): m(x)
        elif name == "onnxruntime":
            session = onnx_session(model, x, threads)
            if session is not None:
                runs[name] = session
        elif name == "csr" and isinstance(model, Fire):
            runs[name] = lambda f=CsrFire(model): f(x)
        elif name in INT8_CANDIDATES:
            calibration = calibration_batches() if calibration is None else calibration
            if name == "quantized_network":
                from .quantized import quantize_network

                runs[name] = lambda m=quantize_network(copy.deepcopy(model), calibration): m(x)
            elif name == "torch_int8":
                runs[name] = lambda m=torch_int8_model(model, x, calibration): m(x)
            else:
                session = onnx_int8_session(model, x, threads, calibration)
                if session is not None:
                    runs[name] = session
    return runs


def _frozen_compile(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """torch.compile with inductor's freezing, as its users run inference with it:
    compiled (on the first call, under no_grad) with the weights folded into the graph."""
    torch.compiler.reset()  # a fresh start for every model, as for "compile"
    compiled = torch.compile(copy.deepcopy(model).eval(), options={"freezing": True})
    with torch.no_grad():
        compiled(x)
    return lambda: compiled(x)


def relative_errors(model: nn.Module, x: torch.Tensor, runs: Mapping[str, Callable[[], object]],
                    floor: float = 1.0) -> dict[str, float]:
    """name -> each candidate's largest deviation from ``model(x)``, relative to the
    largest output (or to ``floor`` if that is larger)."""
    errors = {}
    with torch.inference_mode():
        expected = model(x)
        scale = max(expected.abs().max().item(), floor, torch.finfo(torch.float32).tiny)
        for name, fn in runs.items():
            out = fn()
            out = torch.as_tensor(out[0]) if isinstance(out, list) else out
            errors[name] = (out - expected).abs().max().item() / scale
    return errors


def time_checked(
    model: nn.Module, x: torch.Tensor, runs: Mapping[str, Callable[[], object]], repeats: int,
    *, pause: float | None = None, tolerance: float = 1e-3,
) -> dict[str, float]:
    """Checks every candidate against ``model(x)`` (relative error ``tolerance``: int8
    candidates need a looser one), then times them interleaved: name -> median seconds.
    ``pause`` (seconds before each timed call) defaults to :data:`SPIN_PAUSE` when ONNX
    Runtime is a candidate, else none."""
    if pause is None:
        pause = SPIN_PAUSE if any(name.startswith("onnxruntime") for name in runs) else 0.0
    for name, err in relative_errors(model, x, runs).items():
        if err > tolerance:
            raise AssertionError(f"{name} disagrees with eager PyTorch: rel. error {err:.1e}")
    with torch.inference_mode():
        times = interleaved_medians(list(runs.values()), repeats=repeats, pause=pause)
    return dict(zip(runs, times))


# ---------------------------------------------------------------------------- rows

#: The columns of every benchmark's CSV (long format: one row per measurement).
FIELDS = (
    "commit",  # git commit of the code measured ("-dirty": with uncommitted changes)
    "run_id",  # one invocation of a benchmark
    "date",
    "machine",  # CPU model, or GPU name
    "device",  # cpu or cuda
    "isa",  # the C++ kernels' vector ISA
    "threads",
    "torch",
    "benchmark",  # which benchmark wrote the row (bench_cpu, bench_sparse, ...)
    "workload",  # a Fire layer (v1_1-fire2, ...), a network (squeezenet1_1), or torch.mm
    "batch",
    "dtype",
    "sparsity",  # percent of weights pruned (0: dense)
    "structure",  # dense, unstructured, block4, block16x16
    "macs",  # multiply-accumulates of the dense workload (empty where not counted)
    "candidate",  # a key of CANDIDATES (or of a benchmark's own)
    "metric",  # seconds (median per call), gflops, peak_bytes
    "value",
)


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _commit(root: Path | None = None) -> str:
    """The checkout's commit (12 hex digits), "-dirty" with uncommitted changes to
    tracked files, or "unknown"; ``root``: the checkout (default: this package's)."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=10)
        # The benchmarks' own result files do not make the code measured dirty: a
        # run appending to benchmarks/results.csv must not mark the next run's rows.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude,glob)benchmarks/results*.csv"],
                               cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment(benchmark: str, device: str = "cpu", threads: int | None = None) -> dict:
    """The columns every row of one benchmark run shares."""
    from . import _extension

    now = datetime.datetime.now()
    machine = torch.cuda.get_device_name() if device == "cuda" else cpu_model()
    return dict(
        commit=_commit(),
        run_id=f"{now:%Y%m%dT%H%M%S}-{os.getpid()}",
        date=now.date().isoformat(),
        machine=machine,
        device=device,
        isa=_extension.C.current_isa() if _extension.C is not None else "none",
        threads=torch.get_num_threads() if threads is None else threads,
        torch=torch.__version__,
        benchmark=benchmark,
    )


class ResultsCsv:
    """Appends rows of :data:`FIELDS` to a CSV, each flushed as soon as it is written
    (a benchmark cut short keeps what it measured)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if tuple(header) != FIELDS:
                raise ValueError(
                    f"{self.path} has other columns than fire_kernels.benchmarking.FIELDS; "
                    "write to a new file"
                )

    def add_times(self, env: Mapping[str, object], times: Mapping[str, float], **columns) -> None:
        """One row per candidate: its median seconds (``times``), with ``env``
        (:func:`environment`) and the workload's ``columns``."""
        self.append(dict(env, **columns, candidate=name, metric="seconds", value=seconds)
                    for name, seconds in times.items())

    def append(self, rows: Iterable[Mapping[str, object]]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS, restval="")
            if new:
                writer.writeheader()
            for row in rows:
                writer.writerow(row)
                f.flush()


def read_rows(path: Path | str, **match: str) -> list[dict[str, str]]:
    """The rows of a results CSV whose columns equal ``match`` (strings)."""
    with Path(path).open(newline="") as f:
        return [r for r in csv.DictReader(f) if all(r[k] == v for k, v in match.items())]


# ---------------------------------------------------------------------------- plots


def plot_speedups(
    series: Mapping[str, tuple[Sequence, Sequence[float]]], path: Path | str, *, title: str,
    xlabel: str, ylabel: str, categorical: bool = False, log_x: bool = False,
) -> None:
    """One figure: for each label, speedups (y) against x (a sweep: lines; with
    ``categorical``, layers: grouped bars), with the 1x line. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    if categorical:
        labels = list(series)
        xs = list(next(iter(series.values()))[0])
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            ax.bar([j + i * width for j in range(len(xs))], series[label][1], width, label=label)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(xs))])
        ax.set_xticklabels(xs, rotation=45, ha="right", fontsize=7)
    else:
        for label, (xs, ys) in series.items():
            ax.plot(xs, ys, "-o", label=label)
        if log_x:
            ax.set_xscale("log", base=2)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
