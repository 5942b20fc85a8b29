"""Measuring the way SPEC §5 asks: candidates and baselines interleaved in one
process on the same inputs, warm-up first, medians of many repetitions.

Shared by the CLI (``fire-kernels demo``), ``benchmarks/`` and ``python/``.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch

__all__ = ["interleaved_medians", "matmul_peak_gflops", "fire_macs"]


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
