"""GPU benchmark of the Triton Fire kernel: the measuring parts of issue 19's one
prepared GPU run, ``bash benchmarks/run_gpu.sh``, which runs each part as its own
command under its own time limit.

Parts, in the order they run (all of them by default):

* ``probe``: versions, then the largest configs, v1_1 fire2 (55x55, the most
  registers) and fire9 (13x13, 512 input channels, the most shared memory), at batch
  256 (128-pixel tiles) and 1 (small tiles, output channels split), in float16 and
  float32, each compiled and run once against a float64 reference: PASS when its
  error is within twice PyTorch's own in that dtype. If the kernel fails on a GPU,
  this says so in the first minute.
* ``fires``: the device's copy bandwidth and matmul rate, then v1_1 fire2, fire4,
  fire6 and fire9 at batch 1 and 256 in float16: FusedFire (the Triton kernel,
  channels last, ``fused_cl``) against eager PyTorch, which is cuDNN with
  ``cudnn.benchmark=True``, NCHW and channels last (``eager_nchw``, ``eager_cl``).
* ``network``: SqueezeNet 1.1 with its Fires fused (``fuse_fire_modules``: the rest
  eager), against eager, as above.
* ``autotune``: two layers against ``torch.compile`` max-autotune, a Dynamo reset
  before each compile.
* ``sparse`` (``--full`` only): the block-sparse variant (25 % of the 3x3's 16x16
  blocks) against the dense kernel.
* ``report``: the markdown tables and the plot, from the CSV rows of the run.

Every candidate is first checked against eager PyTorch in float32, then timed
interleaved (``interleaved_medians``) twice: wall time per call (the host's clock
around one call and a synchronisation; metric ``wall_seconds``), then GPU time
(replays of a CUDA graph of many calls, timed with CUDA events: no host launch gaps;
metric ``seconds``). Each row is appended to ``OUT/results_gpu.csv`` in the shared
schema (``fire_kernels.benchmarking.FIELDS``) and flushed as soon as it is measured,
so a run cut short keeps what it measured. ``--full`` is the long sweep: all 16
layers, batches 1/8/64/256, float16/bfloat16/float32, block-sparse.

    python benchmarks/bench_gpu.py [--full] [PART ...]      # on a GPU machine
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --smoke --out /tmp/gpu  # the script on a CPU
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import triton
from torch import nn

import fire_kernels as fk
from fire_kernels.benchmarking import (
    LAYERS,
    ResultsCsv,
    cuda_timer,
    environment,
    fire_macs,
    fused_copy,
    geomean,
    interleaved_medians,
    make_candidates,
    plot_speedups,
    read_rows,
)
from fire_kernels.triton import conv_tf32
from gpu_model import minimum

PARTS = ("probe", "fires", "network", "autotune", "sparse", "report")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
CL = torch.channels_last
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# The smoke run's Fire: through the interpreter (planned for one SM) in a fraction of
# a second a call.
SHAPES = {**LAYERS, "smoke-fire": ((8, 16, 16, 16), 6)}
#: What the compile candidate is: torch.compile(mode="max-autotune")'s autotuned
#: kernels without its CUDA graph trees, which cannot be captured inside the graph
#: every candidate's GPU time is measured in; its wall time is then, like every
#: candidate's, without a graph.
AUTOTUNE = "compile_max_autotune"
# Relative error (float32 reference) above which a candidate is not timed: a check
# that it computes the Fire, not a precision test (the probe and tests/ are).
CHECK_TOLERANCE = {"fp16": 1e-2, "bf16": 5e-2, "fp32": 5e-3}
# A CUDA graph holds enough calls to run about this long, so that its launch is
# noise, and at most this many (batch-1 layers take microseconds).
GRAPH_SECONDS, MAX_GRAPH_CALLS = 2e-3, 200
#: Dense fp16 tensor-core peaks (FLOP/s, fp32 accumulation) from NVIDIA's datasheets,
#: half their "with sparsity" figures: the compute bound of issue 19's roofline (TF32
#: is half of it). The first name that the device's name contains wins; where none
#: does, the matmul rate measured by the ``fires`` part stands in.
TENSOR_CORE_PEAKS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200 NVL", 835e12),
    ("H100", 989e12),  # SXM5
    ("H200", 989e12),  # SXM: an H100's tensor cores with more and faster memory
    ("A100", 312e12),
)


@dataclass(frozen=True)
class Plan:
    """What one invocation measures."""

    layers: tuple[str, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    parts: tuple[str, ...]
    probe_layers: tuple[str, ...] = ("v1_1-fire2", "v1_1-fire9")
    autotune_layers: tuple[str, ...] = ("v1_1-fire2", "v1_1-fire9")
    compile_options: dict = field(default_factory=lambda: {"mode": "max-autotune-no-cudagraphs"})
    network_side: int = 224
    network_batches: tuple[int, ...] | None = None  # None: the batches
    warmup: int = 3
    repeats: int = 30


DEFAULT = Plan(("v1_1-fire2", "v1_1-fire4", "v1_1-fire6", "v1_1-fire9"), (1, 256), ("fp16",),
               tuple(p for p in PARTS if p != "sparse"))
FULL = Plan(tuple(LAYERS), (1, 8, 64, 256), ("fp16", "bf16", "fp32"), PARTS)
# Through the interpreter a SqueezeNet forward takes 4 s whatever its size (17x17 is
# about the smallest input it takes): one batch of it. Inductor would compile for
# minutes: Dynamo with the eager backend runs the compile candidate's code path instead.
SMOKE = Plan(("smoke-fire",), (1, 8), ("fp16",), DEFAULT.parts, ("smoke-fire",), ("smoke-fire",),
             {"backend": "eager"}, network_side=17, network_batches=(1,), warmup=0, repeats=1)


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def synced_wall(fn: Callable[[], object]) -> float:
    """Host seconds of one call of ``fn`` until the device has finished it."""
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def cuda_graph(fn: Callable[[], object], calls: int) -> Callable[[], None]:
    """Replays of one CUDA graph of ``calls`` calls of ``fn``, captured after a call on
    the capture stream (torch.cuda.graphs' warm-up), so that one-time work (a
    FusedFire's weight plan, Triton's compile, cuDNN's algorithm search, a library's
    per-stream workspace) happens outside the capture."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for _ in range(calls):
            fn()
    return graph.replay


def device_times(runs: dict[str, Callable[[], object]], plan: Plan) -> dict[str, float]:
    """Median device seconds per call of each candidate, interleaved: on a GPU, replays
    of a CUDA graph of as many calls as fill GRAPH_SECONDS, timed with CUDA events; on
    a CPU (the smoke run), plain calls."""
    if not CUDA:
        return dict(zip(runs, interleaved_medians(list(runs.values()), warmup=plan.warmup,
                                                  repeats=plan.repeats)))
    calls = {name: max(1, min(MAX_GRAPH_CALLS, math.ceil(GRAPH_SECONDS / cuda_timer(fn))))
             for name, fn in runs.items()}
    replays = [cuda_graph(fn, calls[name]) for name, fn in runs.items()]
    times = interleaved_medians(replays, warmup=plan.warmup, repeats=plan.repeats, timer=cuda_timer)
    return {name: t / calls[name] for name, t in zip(runs, times)}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (NaN where out has one)."""
    ref = ref.double()
    return (torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref)).item()


class Recorder:
    """The run's rows: each measurement appended to the CSV and flushed at once."""

    def __init__(self, csv: Path, benchmark: str, run_id: str | None) -> None:
        self.csv = ResultsCsv(csv)
        self.env = environment(benchmark, device=DEVICE)
        # The sender names the commit, and its word wins over git's: a device machine's
        # copy of the tree may have no .git, or a stale one (rows once named an old commit).
        if os.environ.get("COMMIT"):
            self.env["commit"] = os.environ["COMMIT"]
        if run_id:
            self.env["run_id"] = run_id
        self.failures: list[str] = []

    def add(self, metric: str, values: dict[str, float], **columns) -> None:
        self.csv.append(dict(self.env, **columns, candidate=name, metric=metric, value=value)
                        for name, value in values.items())

    def fail(self, what: str, error: BaseException) -> None:
        """A workload that failed: said at once, with the traceback (on a GPU lent for
        minutes, the log is all there is to learn from), and the run goes on."""
        self.failures.append(what)
        print(f"FAIL {what}: {type(error).__name__}", flush=True)
        traceback.print_exception(error, file=sys.stdout)


def fire_and_input(layer: str, batch: int, dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor]:
    (c, s, e1, e3), hw = SHAPES[layer]
    torch.manual_seed(0)
    model = fk.Fire(c, s, e1, e3).eval().to(DEVICE, dtype)
    return model, torch.randn(batch, c, hw, hw, device=DEVICE, dtype=dtype)


def candidates(model: nn.Module, x: torch.Tensor, eager=("eager_nchw", "eager_cl"),
               ) -> dict[str, Callable[[], object]]:
    """``fused_cl`` (the model's Fires fused, channels last) and the ``eager`` ones
    (``benchmarking.CANDIDATES``: NCHW, channels last). The fused modules get backend
    "triton": "auto" would pick the C++ kernel on a CPU (the smoke run), and picks
    Triton on a GPU anyway."""
    fused = fused_copy(model)
    for m in fused.modules():
        if isinstance(m, fk.FusedFire):
            m.backend = "triton"
    fused, x_cl = fused.to(memory_format=CL), x.to(memory_format=CL)
    runs = {"fused_cl": lambda: fused(x_cl)}
    runs.update(make_candidates(model, x, eager, torch.get_num_threads()))
    return runs


def measure(rec: Recorder, plan: Plan, model: nn.Module, x: torch.Tensor, runs: dict,
            **columns) -> None:
    """Checks every candidate against eager PyTorch in float32, then records its wall
    time and its device time (in that order: a failed graph capture loses only the latter)."""
    dtype_name = columns["dtype"]
    with torch.inference_mode():
        expected = copy.deepcopy(model).float()(x.float())
        for name, fn in runs.items():
            err = rel_error(fn(), expected)
            if not err <= CHECK_TOLERANCE[dtype_name]:  # NaN fails too
                raise AssertionError(f"{name} disagrees with eager PyTorch in float32: "
                                     f"relative error {err:.1e}")
        wall = dict(zip(runs, interleaved_medians(list(runs.values()), warmup=plan.warmup,
                                                  repeats=plan.repeats, timer=synced_wall)))
        rec.add("wall_seconds", wall, **columns)
        device = device_times(runs, plan)
        rec.add("seconds", device, **columns)
    shown = ", ".join(f"{n} {device[n] * 1e6:.1f} us (wall {wall[n] * 1e6:.1f})" for n in runs)
    print(f"{dtype_name} batch {columns['batch']} {columns['workload']}: {shown}", flush=True)


def fire_columns(layer: str, batch: int, dtype_name: str) -> dict:
    (c, s, e1, e3), hw = SHAPES[layer]
    return dict(workload=layer, batch=batch, dtype=dtype_name, sparsity=0, structure="dense",
                macs=fire_macs(batch, c, s, e1, e3, hw, hw))


# ---------------------------------------------------------------------------- parts


def probe(rec: Recorder, plan: Plan) -> None:
    """Versions, then each probe layer compiled and run once against float64."""
    dev = torch.cuda.get_device_properties(0) if CUDA else None
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA "
          f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), triton "
          f"{triton.__version__}, fire_kernels C++ extension: {fk._extension.HOW_LOADED}")
    if dev is not None:
        print(f"GPU: {dev.name}, sm_{dev.major}{dev.minor}, {dev.multi_processor_count} SMs, "
              f"{dev.total_memory / 2**30:.0f} GiB; TF32 for float32 convolutions: {conv_tf32()}")
    for dtype_name in ("fp16", "fp32"):
        for layer in plan.probe_layers:
            for batch in sorted(plan.batches, reverse=True):
                what = f"{dtype_name} batch {batch} {layer}"
                try:
                    probe_one(rec, layer, batch, dtype_name)
                except Exception as e:  # a kernel failing on the GPU is what this looks for
                    rec.fail(f"probe {what}", e)


def probe_one(rec: Recorder, layer: str, batch: int, dtype_name: str) -> None:
    dtype = DTYPES[dtype_name]
    model, x = fire_and_input(layer, batch, torch.float32)
    x = x.to(memory_format=CL)
    with torch.inference_mode():
        exact = copy.deepcopy(model).double()(x.double())
        own = rel_error(copy.deepcopy(model).to(dtype)(x.to(dtype)), exact)
    fused = fk.FusedFire.from_fire(copy.deepcopy(model).to(dtype), backend="triton")
    start = time.perf_counter()
    with torch.inference_mode():
        err = rel_error(fused(x.to(dtype)), exact)  # reads the result: synchronises
    first = time.perf_counter() - start
    columns = fire_columns(layer, batch, dtype_name)
    rec.add("rel_error", {"fused_cl": err, "eager_cl": own}, **columns)
    rec.add("first_call_seconds", {"fused_cl": first}, **columns)
    passed = err <= error_limit(own, dtype)  # NaN fails
    what = f"{dtype_name} batch {batch} {layer}"
    if not passed:
        rec.failures.append(f"probe {what}")
    print(f"{'PASS' if passed else 'FAIL'} {what}: relative error {err:.1e} (PyTorch's own "
          f"{own:.1e}); first call, compiles included: {first:.1f} s", flush=True)


def error_limit(own: float, dtype: torch.dtype) -> float:
    """The probe's bound: twice PyTorch's own error in the dtype (the project's rule for
    reduced precision), plus TF32's rounding in float32 on a GPU, where the kernel runs
    TF32 whenever cuDNN may (conv_tf32) but a cuDNN algorithm need not."""
    tf32 = CUDA and dtype == torch.float32 and conv_tf32()
    return 2 * own + (1e-3 if tf32 else 1e-5)


def ceilings(rec: Recorder, plan: Plan) -> None:
    """The device's copy bandwidth (bytes read + written a second, a copy several
    times the L2) and matmul rate in the first dtype: the roofline's measured inputs."""
    n = 1 << 30 if CUDA else 1 << 22
    src = torch.empty(n, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    timer = cuda_timer if CUDA else None
    (t,) = interleaved_medians([lambda: dst.copy_(src)], repeats=20, timer=timer)
    bandwidth = 2 * n / t
    rec.add("bytes_per_second", {"copy": bandwidth}, workload="device", dtype="uint8")
    side = 8192 if CUDA else 256
    a = torch.randn(side, side, device=DEVICE, dtype=DTYPES[plan.dtypes[0]])
    b = torch.randn_like(a)
    (t,) = interleaved_medians([lambda: a @ b], repeats=10, timer=timer)
    rate = 2 * side**3 / t
    rec.add("flops", {"matmul": rate}, workload="device", dtype=plan.dtypes[0])
    print(f"copy {bandwidth / 1e9:.0f} GB/s, {plan.dtypes[0]} matmul {rate / 1e12:.0f} TFLOP/s",
          flush=True)


def fires(rec: Recorder, plan: Plan) -> None:
    try:
        ceilings(rec, plan)
    except Exception as e:  # the layers are worth measuring without a roofline
        rec.fail("the device's copy bandwidth and matmul rate", e)
    for dtype_name in plan.dtypes:
        for batch in plan.batches:
            for layer in plan.layers:
                try:
                    model, x = fire_and_input(layer, batch, DTYPES[dtype_name])
                    measure(rec, plan, model, x, candidates(model, x),
                            **fire_columns(layer, batch, dtype_name))
                except Exception as e:  # one layer's failure must not cost the others
                    rec.fail(f"{dtype_name} batch {batch} {layer}", e)


def network(rec: Recorder, plan: Plan) -> None:
    for dtype_name in plan.dtypes:
        for batch in plan.network_batches or plan.batches:
            try:
                torch.manual_seed(0)
                model = fk.squeezenet1_1().eval().to(DEVICE, DTYPES[dtype_name])
                x = torch.randn(batch, 3, plan.network_side, plan.network_side, device=DEVICE,
                                dtype=DTYPES[dtype_name])
                measure(rec, plan, model, x, candidates(model, x), workload="squeezenet1_1",
                        batch=batch, dtype=dtype_name, sparsity=0, structure="dense")
            except Exception as e:  # as in fires()
                rec.fail(f"{dtype_name} batch {batch} squeezenet1_1", e)


def autotune(rec: Recorder, plan: Plan) -> None:
    """The fused kernel against torch.compile max-autotune, largest batch first (the
    compiles are long: a time limit cuts the rest)."""
    dtype_name = plan.dtypes[0]
    for batch in sorted(plan.batches, reverse=True):
        for layer in plan.autotune_layers:
            try:
                model, x = fire_and_input(layer, batch, DTYPES[dtype_name])
                runs = candidates(model, x, eager=("eager_cl",))
                # Dynamo caches compiled code on the forward's code object, which every
                # Fire shares: without a reset the next shape recompiles as dynamic.
                torch._dynamo.reset()
                compiled = torch.compile(copy.deepcopy(model).to(memory_format=CL),
                                         **plan.compile_options)
                x_cl = x.to(memory_format=CL)
                start = time.perf_counter()
                with torch.inference_mode():
                    compiled(x_cl)
                synchronize()
                columns = fire_columns(layer, batch, dtype_name)
                rec.add("first_call_seconds", {AUTOTUNE: time.perf_counter() - start}, **columns)
                runs[AUTOTUNE] = lambda c=compiled, x=x_cl: c(x)
                measure(rec, plan, model, x, runs, **columns)
            except Exception as e:  # as in fires()
                rec.fail(f"autotune {dtype_name} batch {batch} {layer}", e)


def sparse(rec: Recorder, plan: Plan) -> None:
    """Block-sparse (25 % of the 3x3's 16x16 blocks) against the dense kernel, both
    channels last, at the largest batch in the first dtype."""
    dtype_name, batch = plan.dtypes[0], max(plan.batches)
    for layer in plan.layers:
        try:
            model, x = fire_and_input(layer, batch, DTYPES[dtype_name])
            fk.prune_fire_modules(model, 0.75, block=(16, 16), convs=["expand3x3"])
            x_cl = x.to(memory_format=CL)
            runs = {}
            for name, mode in (("dense_cl", False), ("sparse_cl", True)):
                fused = fk.FusedFire.from_fire(copy.deepcopy(model), backend="triton",
                                               sparse=mode).to(memory_format=CL)
                runs[name] = lambda m=fused, x=x_cl: m(x)
            measure(rec, plan, model, x, runs,
                    **dict(fire_columns(layer, batch, dtype_name), sparsity=75,
                           structure="block16x16"))
        except Exception as e:  # as in fires()
            rec.fail(f"sparse {dtype_name} batch {batch} {layer}", e)


# ---------------------------------------------------------------------------- report


def tensor_core_peak(machine: str, dtype: str, measured: float | None) -> tuple[float, str]:
    """The roofline's compute bound for ``dtype`` (FLOP/s) and where it comes from."""
    for name, peak in TENSOR_CORE_PEAKS:
        if name in machine:
            if dtype == "fp32":
                return peak / 2, f"{name} datasheet: dense TF32 tensor cores"
            return peak, f"{name} datasheet: dense fp16/bf16 tensor cores, fp32 accumulation"
    return measured or math.nan, "not a listed GPU: the measured matmul rate"


class Run:
    """The values of one run's rows, ``values[part, workload, batch, dtype, metric]``:
    candidate -> value."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.values: dict = defaultdict(dict)
        for r in rows:
            part = r["benchmark"].split("/")[-1]
            key = (part, r["workload"], r["batch"], r["dtype"], r["metric"])
            self.values[key][r["candidate"]] = float(r["value"])

    def entries(self, part: str, metric: str) -> list[tuple[str, str, str, dict[str, float]]]:
        """(dtype, batch, workload, candidate -> value) of ``part``, sorted."""
        order = {name: i for i, name in enumerate(SHAPES)}
        found = [(k[3], k[2], k[1], v) for k, v in self.values.items()
                 if k[0] == part and k[4] == metric]
        return sorted(found, key=lambda e: (e[0], int(e[1]), order.get(e[2], -1)))

    def device(self, candidate: str, metric: str) -> float | None:
        for key, values in self.values.items():
            if key[1] == "device" and key[4] == metric and candidate in values:
                return values[candidate]
        return None


def _us(times: dict[str, float], name: str) -> str:
    return f"{times[name] * 1e6:.1f}" if name in times else "-"


def _ratio(times: dict[str, float], base: str, cand: str) -> str:
    return f"{times[base] / times[cand]:.2f}x" if base in times and cand in times else "-"


def time_table(entries, names: tuple[str, ...], cand: str, extra=None) -> list[str]:
    """A markdown table: per entry, each candidate's microseconds, ``extra``'s columns
    (``(headers, entry -> cells)``) and ``cand``'s speedup over the others."""
    versus = [n for n in names if n != cand]
    headers = ["dtype", "batch", "workload", *(f"{n} us" for n in names),
               *(extra[0] if extra else ()), *(f"{cand} vs {n}" for n in versus)]
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for dtype, batch, workload, times in entries:
        cells = [dtype, batch, workload, *(_us(times, n) for n in names),
                 *(extra[1](dtype, batch, workload, times) if extra else ()),
                 *(_ratio(times, n, cand) for n in versus)]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def report(csv: Path, run_id: str | None, markdown: Path, plot: Path) -> None:
    """The markdown tables and the plot of run ``run_id``'s rows of ``csv`` (None: its
    last run's). Needs no GPU: it can be made again from a fetched CSV."""
    rows = read_rows(csv) if csv.exists() else []
    run_id = run_id or (rows[-1]["run_id"] if rows else None)
    rows = [r for r in rows if r["run_id"] == run_id]
    if not rows:
        print(f"no rows of run {run_id} in {csv}")
        return
    run, first = Run(rows), rows[0]
    machine = first["machine"]
    bandwidth = run.device("copy", "bytes_per_second")
    matmul = run.device("matmul", "flops")
    lines = [f"# GPU benchmark: {machine}, {first['date']}, commit {first['commit']}", "",
             f"torch {first['torch']}; run {run_id}. GPU time: the "
             "median of interleaved replays of a CUDA graph of many calls, per call; wall time: "
             "the median host time of one call until the device has finished it.", ""]
    if first["device"] != "cuda":
        lines += ["A CPU run (--smoke): the kernel through Triton's interpreter, no CUDA graphs; "
                  "the numbers say nothing of a GPU.", ""]
    if bandwidth:
        lines += [f"Device copy {bandwidth / 1e9:.0f} GB/s (bytes read + written); matmul "
                  f"{(matmul or math.nan) / 1e12:.0f} TFLOP/s measured. Roofline of a layer: the "
                  "larger of its minimum bytes (input, weights, output once) over the copy "
                  "bandwidth and its MACs over the tensor-core peak.", ""]
    lines += probe_table(run) + layer_tables(run, machine, bandwidth, matmul)
    lines += network_tables(run) + autotune_table(run) + sparse_table(run)
    text = "\n".join(lines)
    markdown.write_text(text + "\n")
    print(text)
    speedup_plot(run, plot, machine)


def probe_table(run: Run) -> list[str]:
    entries = run.entries("probe", "rel_error")
    if not entries:
        return []
    first = dict(((d, b, w), t) for d, b, w, t in run.entries("probe", "first_call_seconds"))
    out = ["## Probe: the largest configs against float64", "",
           "| dtype | batch | layer | fused_cl rel. error | PyTorch's own | first call s | |",
           "|---|---|---|---|---|---|---|"]
    for dtype, batch, workload, err in entries:
        ok = err["fused_cl"] <= error_limit(err["eager_cl"], DTYPES[dtype])
        seconds = first.get((dtype, batch, workload), {}).get("fused_cl", math.nan)
        out.append(f"| {dtype} | {batch} | {workload} | {err['fused_cl']:.1e} | "
                   f"{err['eager_cl']:.1e} | {seconds:.1f} | {'PASS' if ok else 'FAIL'} |")
    return out + [""]


def layer_tables(run: Run, machine: str, bandwidth: float | None,
                 matmul: float | None) -> list[str]:
    entries = run.entries("fires", "seconds")
    if not entries:
        return []
    names = ("fused_cl", "eager_nchw", "eager_cl")
    peaks = {d: tensor_core_peak(machine, d, matmul) for d in {e[0] for e in entries}}

    def roofline(dtype, batch, workload, times):
        (c, s, e1, e3), hw = SHAPES[workload]
        least = minimum(int(batch), c, s, e1, e3, hw, hw, DTYPES[dtype].itemsize)
        t = times.get("fused_cl", math.nan)
        if not bandwidth:
            return [f"{least.hbm / t / 1e9:.0f}", "-"]
        memory, compute = least.hbm / bandwidth, 2 * least.macs / peaks[dtype][0]
        bound = "bytes" if memory >= compute else "MACs"
        return [f"{least.hbm / t / 1e9:.0f}", f"{100 * max(memory, compute) / t:.0f} % ({bound})"]

    out = ["## Fire layers: GPU time per call (CUDA graphs)", ""]
    out += [f"Tensor-core peak {peak / 1e12:.0f} TFLOP/s for {d} ({why})." for d, (peak, why)
            in sorted(peaks.items())] + [""]
    out += time_table(entries, names, "fused_cl",
                      (("fused_cl GB/s", "fused_cl % of roofline (bound)"), roofline))
    for dtype, batch in sorted({(e[0], e[1]) for e in entries}, key=lambda k: (k[0], int(k[1]))):
        sel = [t for d, b, _, t in entries
               if (d, b) == (dtype, batch) and {"fused_cl", "eager_cl"} <= set(t)]
        if sel:
            ratio = geomean(t["eager_cl"] / t["fused_cl"] for t in sel)
            out.append(f"geomean {dtype} batch {batch}: fused_cl vs eager_cl {ratio:.2f}x over "
                       f"{len(sel)} layers")
    out += ["", "## Fire layers: wall time per call", ""]
    return out + time_table(run.entries("fires", "wall_seconds"), names, "fused_cl")


def network_tables(run: Run) -> list[str]:
    names = ("fused_cl", "eager_nchw", "eager_cl")
    out = []
    for title, metric in (("GPU time per call (CUDA graphs)", "seconds"),
                          ("wall time per call", "wall_seconds")):
        entries = run.entries("network", metric)
        if entries:
            out += [f"## SqueezeNet 1.1, Fires fused (the rest eager): {title}", ""]
            out += time_table(entries, names, "fused_cl")
    return out


def autotune_table(run: Run) -> list[str]:
    out = []
    for title, metric in (("GPU time per call (CUDA graphs)", "seconds"),
                          ("wall time per call", "wall_seconds")):
        entries = run.entries("autotune", metric)
        if entries:
            out += [f"## Against torch.compile max-autotune ({AUTOTUNE}: its kernels, no graph "
                    f"trees): {title}", ""]
            out += time_table(entries, ("fused_cl", AUTOTUNE, "eager_cl"), "fused_cl")
    compiles = run.entries("autotune", "first_call_seconds")
    if compiles:
        out += ["Compile (first call) seconds: " + ", ".join(
            f"{w} batch {b} {t[AUTOTUNE]:.1f}" for _, b, w, t in compiles), ""]
    return out


def sparse_table(run: Run) -> list[str]:
    entries = run.entries("sparse", "seconds")
    if not entries:
        return []
    return (["## Block-sparse 3x3 (25 % of 16x16 blocks) against dense: GPU time", ""]
            + time_table(entries, ("sparse_cl", "dense_cl"), "sparse_cl"))


def speedup_plot(run: Run, path: Path, machine: str) -> None:
    """fused_cl's speedups per workload (layers, then the network) in the first dtype;
    a bar is missing where its times are."""
    times = {metric: {(d, b, w): t for d, b, w, t in
                      run.entries("fires", metric) + run.entries("network", metric)}
             for metric in ("seconds", "wall_seconds")}
    if not times["seconds"]:
        return
    keys = list(times["seconds"])
    dtype = keys[0][0]
    keys = [k for k in keys if k[0] == dtype]
    labels = [f"{w} b{b}" for _, b, w in keys]
    series = {}
    for label, metric, base in (("vs eager channels last, GPU time", "seconds", "eager_cl"),
                                ("vs eager NCHW, GPU time", "seconds", "eager_nchw"),
                                ("vs eager channels last, wall time", "wall_seconds", "eager_cl")):
        ts = [times[metric].get(k, {}) for k in keys]
        series[label] = (labels, [t[base] / t["fused_cl"] if {base, "fused_cl"} <= set(t)
                                  else math.nan for t in ts])
    plot_speedups(series, path, title=f"fire_kernels Triton Fire, {dtype}, {machine}",
                  xlabel="workload, batch", ylabel="speedup of fused_cl", categorical=True)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # No choices=: argparse (before Python 3.12) checks an empty list against them.
    p.add_argument("parts", nargs="*", metavar="PART",
                   help=f"what to run, of {', '.join(PARTS)} (default: all but sparse; "
                        "with --full all)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the long sweep")
    size.add_argument("--smoke", action="store_true",
                      help="tiny shapes on whatever device there is (a CPU: Triton's interpreter)")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("gpu_out"),
                   help="folder of results_gpu.csv, results_gpu.md and gpu_speedup.png")
    p.add_argument("--run-id", help="the rows' run_id (run_gpu.sh gives its parts one), and the "
                                    "run the report reads (default: a new one; the report: the "
                                    "CSV's last)")
    args = p.parse_args(argv)
    plan = FULL if args.full else SMOKE if args.smoke else DEFAULT
    parts = args.parts or plan.parts
    if set(parts) - set(PARTS):
        p.error(f"unknown parts {sorted(set(parts) - set(PARTS))}; expected some of "
                f"{', '.join(PARTS)}")
    if not CUDA and not args.smoke and set(parts) != {"report"}:
        p.error("no CUDA GPU: run on a GPU machine, or --smoke with TRITON_INTERPRET=1")
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "results_gpu.csv"
    failures = []
    for part in parts:
        print(f"== bench_gpu {part}", flush=True)
        if part == "report":
            report(csv, args.run_id, args.out / "results_gpu.md", args.out / "gpu_speedup.png")
            continue
        rec = Recorder(csv, f"bench_gpu/{part}", args.run_id)
        args.run_id = rec.env["run_id"]  # one run for all the parts of this command
        {"probe": probe, "fires": fires, "network": network, "autotune": autotune,
         "sparse": sparse}[part](rec, plan)
        failures += rec.failures
    for what in failures:
        print("FAILED:", what)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
