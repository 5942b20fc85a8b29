"""Issue 19's tuning probe on a GPU: the Triton Fire's launch plans swept around the one
``launch.config_for`` picks, and the host time of one forward taken apart layer by layer.

The first GPU run (benchmarks/RESULTS.md) left two questions this answers in one short run:

* ``configs``: which config of the two launches (squeeze, then expands) runs each layer
  fastest? Each candidate :class:`~fire_kernels.triton.launch.FireConfig` (tiles of 16
  to 128 pixels, output-channel blocks of 16 to 64, and, at config_for's tile and
  block sizes, 4 or 8 warps and 2 or 3 pipeline stages) is checked against eager
  PyTorch in float32, then timed as replays of a CUDA graph, interleaved with the
  others; a config that fails to compile or launch is reported and skipped. (A fused
  persistent plan, swept here on an H200, was slower than this plan in all of its 16
  variants and was removed.)
* ``overhead``: where does a forward's host time go at batch 1? The module, the
  registered op, the launcher function and the bare kernel launches, each timed alone.

Every row is printed and appended to ``$OUT/tune_gpu.csv`` (the project's CSV schema) as
it is measured.

    python benchmarks/tune_gpu.py [configs] [overhead] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch
import triton

import fire_kernels as fk
from fire_kernels.benchmarking import LAYERS, cuda_timer, fire_macs, interleaved_medians
from fire_kernels.triton import launch as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import CL, Recorder, cuda_graph, rel_error  # noqa: E402
from gpu_model import minimum  # noqa: E402

SWEEP_LAYERS = ("v1_1-fire2", "v1_1-fire9")
GRAPH_CALLS = 20


def candidates(base: L.FireConfig, pixels: int, e1: int, e3: int, sm: int,
               widest_e: int) -> list[L.FireConfig]:
    """The config config_for picks first, then variants: tiles and output-channel blocks
    of other sizes (their output channels shared over programs as config_for would),
    and config_for's sizes with other warps and pipeline stages."""
    out = [base]
    for block_m in (16, 32, 64, 128):
        tiles = triton.cdiv(pixels, block_m)
        for block_e in (16, 32, 64):
            if block_e > widest_e:
                continue
            # As config_for: a tile's output-channel blocks shared until the grid
            # reaches its target.
            e_blocks = max(triton.cdiv(e1, block_e), triton.cdiv(e3, block_e))
            e_split = min(e_blocks, triton.cdiv(L.TARGET_PROGRAMS_PER_SM * sm, tiles))
            out.append(dataclasses.replace(base, block_m=block_m, tiles=tiles, e_split=e_split,
                                           block_e=block_e))
    for warps in (4, 8):
        for stages in (2, 3):
            out.append(dataclasses.replace(base, num_warps=warps, num_stages=stages))
    return list(dict.fromkeys(out))  # without repeats, in order


def describe(cfg: L.FireConfig) -> str:
    return (f"M={cfg.block_m} E={cfg.block_e} split={cfg.e_split} S={cfg.block_s} "
            f"warps={cfg.num_warps} stages={cfg.num_stages}")


def fire_setup(layer: str, batch: int, dtype: torch.dtype):
    (c, s, e1, e3), hw = LAYERS[layer]
    torch.manual_seed(0)
    model = fk.Fire(c, s, e1, e3).eval().cuda().to(dtype)
    x = torch.randn(batch, c, hw, hw, device="cuda", dtype=dtype).to(memory_format=CL)
    sq, e1c, e3c = model.squeeze, model.expand1x1, model.expand3x3
    weights = L.pack_triton_weights(sq.weight, sq.bias, e1c.weight, e1c.bias, e3c.weight,
                                    e3c.bias, dtype)
    return model, x, weights, (c, s, e1, e3, hw)


def launcher(cfg: L.FireConfig, x: torch.Tensor, weights, dims) -> Callable[[], torch.Tensor]:
    c, s, e1, e3, hw = dims
    n = x.shape[0]
    layout = L.weight_layout(c, s, e1, e3, x.dtype)
    out = torch.empty((n, e1 + e3, hw, hw), dtype=x.dtype, device=x.device,
                      memory_format=CL)
    scratch = torch.empty(L.scratch_numel(cfg, layout, n * hw * hw), dtype=x.dtype,
                          device=x.device)
    launches = L.kernel_launches(cfg, x, out, e1, weights, scratch, None, None, "ieee")

    def run() -> torch.Tensor:
        for k in launches:
            k.kernel[k.grid](*k.args, **k.meta)
        return out
    return run


def configs(rec: Recorder, layers: tuple[str, ...], batches: tuple[int, ...]) -> None:
    sm = torch.cuda.get_device_properties(0).multi_processor_count
    for layer in layers:
        for batch in batches:
            model, x, weights, dims = fire_setup(layer, batch, torch.float16)
            c, s, e1, e3, hw = dims
            base = L.config_for(batch, c, s, e1, e3, hw, hw, torch.float16, sm)
            with torch.inference_mode():
                expected = model.float()(x.float())
            macs = fire_macs(batch, c, s, e1, e3, hw, hw)
            least = minimum(batch, c, s, e1, e3, hw, hw, 2).hbm
            runs, names, alive = [], [], []
            widest_e = L.weight_layout(c, s, e1, e3, torch.float16).block_e
            for cfg in candidates(base, batch * hw * hw, e1, e3, sm, widest_e):
                name = describe(cfg) + (" (picked)" if cfg == base else "")
                # Said before it runs: a launch that kills the CUDA context is named.
                print(f"{layer} b{batch} trying {name}", flush=True)
                try:
                    run = launcher(cfg, x, weights, dims)
                    err = rel_error(run(), expected)
                    if not err <= 1e-2:
                        raise AssertionError(f"relative error {err:.1e}")
                    replay = cuda_graph(run, GRAPH_CALLS)
                    # The graph holds the addresses of run's output and scratch, not
                    # the tensors: run keeps them alive.
                    alive.append(run)
                    print(f"    alone {cuda_timer(replay) / GRAPH_CALLS * 1e6:.1f} us", flush=True)
                    runs.append(replay)
                    names.append(name)
                except Exception as e:  # noqa: BLE001 - a config that fails is data
                    print(f"{layer} b{batch} {name}: FAILED {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else ''}", flush=True)
            times = interleaved_medians(runs, warmup=2, repeats=15, timer=cuda_timer)
            best = min(times)
            for name, t in sorted(zip(names, times), key=lambda p: p[1]):
                per_call = t / GRAPH_CALLS
                rec.add("seconds", {name: per_call}, workload=layer, batch=batch, dtype="fp16")
                print(f"{layer} b{batch} {per_call * 1e6:8.1f} us  {2 * macs / per_call / 1e12:6.1f} "
                      f"TFLOP/s  {least / per_call / 1e9:7.0f} GB/s  x{t / best:.2f}  {name}",
                      flush=True)


def overhead(rec: Recorder) -> None:
    """Host seconds per forward at batch 1 (no device wait), each layer of the call."""
    layer = "v1_1-fire2"
    model, x, weights, dims = fire_setup(layer, 1, torch.float16)
    c, s, e1, e3, hw = dims
    fused = fk.FusedFire.from_fire(model, backend="triton").to(memory_format=CL)
    sm = torch.cuda.get_device_properties(0).multi_processor_count
    cfg = L.config_for(1, c, s, e1, e3, hw, hw, torch.float16, sm)
    bare = launcher(cfg, x, weights, dims)
    op = torch.ops.fire_kernels.fire_packed
    levels = {
        "module FusedFire": lambda: fused(x),
        "op fire_packed": lambda: op(x, *weights, s, e1, e3, None, None),
        "fire_triton_packed": lambda: L.fire_triton_packed(x, *weights, s, e1, e3),
        "kernel launches only": bare,
        "eager Fire (7 ops)": lambda: model(x),
        "one torch.relu": lambda: torch.relu(x),
    }

    def host(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(50):
            fn()
        elapsed = time.perf_counter() - start
        torch.cuda.synchronize()
        return elapsed / 50

    with torch.inference_mode():
        for fn in levels.values():
            fn()
        torch.cuda.synchronize()
        times = interleaved_medians(list(levels.values()), warmup=2, repeats=15, timer=host)
    for name, t in zip(levels, times):
        rec.add("host_seconds", {name: t}, workload=layer, batch=1, dtype="fp16")
        print(f"host time per call, {layer} batch 1: {t * 1e6:8.1f} us  {name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="*", default=["overhead", "configs"])
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("gpu_out"))
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1])
    p.add_argument("--layers", nargs="+", default=list(SWEEP_LAYERS))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("needs a CUDA GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        print(f"== tune_gpu {part}", flush=True)
        # The project's CSV schema (fire_kernels.benchmarking.FIELDS): the plan or the
        # layer of the call is the candidate.
        rec = Recorder(args.out / "tune_gpu.csv", f"tune_gpu/{part}", None)
        try:
            {"configs": lambda: configs(rec, tuple(args.layers), tuple(args.batches)),
             "overhead": lambda: overhead(rec)}[part]()
        except Exception:  # noqa: BLE001 - the log is all a lent GPU leaves
            traceback.print_exc(file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
