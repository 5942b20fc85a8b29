"""Measuring the way SPEC §5 asks: candidates and baselines interleaved in one
process on the same inputs, warm-up first, medians of many repetitions; plus the
pieces every benchmark shares (the SqueezeNet layers, ONNX Runtime sessions, the
long-format CSV).

Shared by the CLI (``fire-kernels``), ``benchmarks/`` and ``python/``.
"""

from __future__ import annotations

import csv
import io
import math
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .models import FIRE_CONFIGS, FIRE_SPATIAL

__all__ = [
    "LAYERS",
    "append_csv",
    "cpu_model",
    "fire_macs",
    "geomean",
    "interleaved_medians",
    "matmul_peak_gflops",
    "onnx_session",
]

#: The 16 Fire layers of SPEC §4: name -> ((inplanes, squeeze, e1, e3), H = W at 224x224).
LAYERS: dict[str, tuple[tuple[int, int, int, int], int]] = {
    f"v{version}-fire{k + 2}": (cfg, hw)
    for version, cfgs in FIRE_CONFIGS.items()
    for k, (cfg, hw) in enumerate(zip(cfgs, FIRE_SPATIAL[version]))
}


def interleaved_medians(
    fns: Sequence[Callable[[], object]], *, warmup: int = 3, repeats: int = 30
) -> list[float]:
    """Median seconds per call of each function, timing them round-robin so that
    a slow phase of a shared machine hits all of them alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


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


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def onnx_session(model: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], object] | None:
    """A zero-argument callable running ``model(x)`` in ONNX Runtime's CPU execution
    provider (all graph optimisations, so its NCHWc layout transformer runs), or None
    if onnxruntime is not installed."""
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
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's pool threads otherwise spin after each run and steal the cores
    # from whichever candidate is timed next.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.contiguous().numpy()}
    return lambda: session.run(None, feed)


def append_csv(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    """Appends rows to a long-format CSV, writing the header when the file is new."""
    if not rows:
        return
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
