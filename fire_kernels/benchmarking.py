"""Measuring the way SPEC §5 asks: candidates and baselines interleaved in one
process on the same inputs, warm-up first, medians of many repetitions; plus the
pieces every benchmark shares (the SqueezeNet layers, ONNX Runtime sessions, the
long-format CSV).

Shared by the CLI (``fire-kernels``), ``benchmarks/`` and ``python/``.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import platform
import random
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .models import FIRE_CONFIGS, FIRE_SPATIAL

__all__ = [
    "CANDIDATES",
    "CsrFire",
    "LAYERS",
    "append_csv",
    "fused_copy",
    "make_candidates",
    "time_checked",
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
    a slow phase of a shared machine hits all of them alike.

    Each round runs them in a new order (shuffled, seeded), so that every function
    follows every other one about equally often: a call pays for what the call
    before it left behind (caches full of other data, presumably a thread pool
    asleep after ONNX Runtime ran its own: up to 0.5 ms on a 1 ms layer right
    after ONNX Runtime, measured), and in a fixed order one candidate would always
    pay for the same predecessor."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for k in order:
            start = time.perf_counter()
            fns[k]()
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
    "onnxruntime": "ONNX Runtime's CPU execution provider (dense)",
    "csr": "torch.sparse CSR: 1x1 convs as CSR @ activations, the 3x3 as CSR @ im2col",
}


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
    model: nn.Module, x: torch.Tensor, names: Iterable[str], threads: int
) -> dict[str, Callable[[], object]]:
    """name -> zero-argument callable for each of ``names`` (keys of CANDIDATES)
    that can run here (onnxruntime needs the package, csr a single Fire)."""
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
            torch._dynamo.reset()
            runs[name] = lambda m=torch.compile(copy.deepcopy(model)): m(x)
        elif name == "onnxruntime":
            session = onnx_session(model, x, threads)
            if session is not None:
                runs[name] = session
        elif name == "csr" and isinstance(model, Fire):
            runs[name] = lambda f=CsrFire(model): f(x)
    return runs


def time_checked(
    model: nn.Module, x: torch.Tensor, runs: Mapping[str, Callable[[], object]], repeats: int
) -> dict[str, float]:
    """Checks every candidate against ``model(x)`` (relative error 1e-3), then times
    them interleaved: name -> median seconds."""
    with torch.inference_mode():
        expected = model(x)
        scale = max(expected.abs().max().item(), 1.0)
        for name, fn in runs.items():
            out = fn()
            out = torch.as_tensor(out[0]) if isinstance(out, list) else out
            err = (out - expected).abs().max().item() / scale
            if err > 1e-3:
                raise AssertionError(f"{name} disagrees with eager PyTorch: rel. error {err:.1e}")
        times = interleaved_medians(list(runs.values()), repeats=repeats)
    return dict(zip(runs, times))
