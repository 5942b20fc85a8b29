"""Where a fused network's time goes: each fused kernel's share of one forward.

Runs a SqueezeNet through ``fuse_network`` (dense, and pruned to 90 % with
``prune_network``) and prints the best wall time of a forward over ``--repeats``
(with its rate over the dense network's MACs), then, under ``torch.profiler``, each
registered op's CPU time per input shape (again the best of ``--repeats``, so a busy
machine's slow rounds drop out) and its share of that forward; and the time outside
the kernels (Python, dispatch, argument checks, allocation): the forward timed with
the kernels skipped. At a batch above 1 the network program runs the images on
threads of their own, so the ops' CPU times add up to about the threads times the
forward.

    python benchmarks/profile_network.py                       # SqueezeNet 1.1, batch 1, 1 thread
    python benchmarks/profile_network.py --network squeezenet1_0 --batch 16 --threads 2
    python benchmarks/profile_network.py --threads 2 --onnxruntime  # and ONNX Runtime's, per module

With ``--onnxruntime``, the dense network also runs in ONNX Runtime (its defaults) under
its own profiler: each top-level module's nodes' time (``features.3``: the Fire whose
fused op is the second in the table above; a conv fused with its ReLU is named after
the ReLU's module), the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

import fire_kernels as fk
from fire_kernels.benchmarking import SPIN_PAUSE, onnx_session, time_outside_kernels


def layer_macs(model: nn.Module, x: torch.Tensor) -> list[int]:
    """MACs of each convolution of the unfused model, in forward order."""
    macs: list[int] = []

    def hook(conv: nn.Conv2d, _inputs, out: torch.Tensor) -> None:
        k = conv.weight[0].numel()
        macs.append(out.numel() * k)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return macs


def profile(model: nn.Module, x: torch.Tensor,
            repeats: int) -> tuple[dict[str, float], float, float]:
    """Best CPU seconds per (op, input shape) over ``repeats`` forwards, the best wall
    seconds of a whole forward, and the page faults per forward (fresh memory the
    kernel had to map in: a cost that allocations recycled by the process avoid)."""
    best: dict[str, float] = defaultdict(lambda: float("inf"))
    wall = float("inf")
    with torch.no_grad():
        for _ in range(3):
            model(x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            wall = min(wall, time.perf_counter() - start)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeats
        for _ in range(repeats):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                        record_shapes=True) as prof:
                model(x)
            per: dict[str, float] = defaultdict(float)
            for e in prof.events():
                if e.name.startswith("fire_kernels::"):
                    shape = "x".join(map(str, e.input_shapes[0])) if e.input_shapes else ""
                    per[f"{e.name.removeprefix('fire_kernels::')} {shape}"] += e.cpu_time_total
            for key, us in per.items():
                best[key] = min(best[key], us * 1e-6)
    return dict(best), wall, faults


def onnxruntime_profile(model: nn.Module, x: torch.Tensor, threads: int,
                        repeats: int) -> tuple[dict[str, float], float]:
    """Seconds of ONNX Runtime's nodes per top-level module of ``model`` (the best of
    ``repeats`` runs, after 3 to warm up), and its best whole run."""
    with tempfile.TemporaryDirectory() as tmp:
        run = onnx_session(model, x, threads, profile_prefix=str(Path(tmp) / "ort"))
        if run is None:
            raise SystemExit("--onnxruntime needs the onnxruntime package")
        for _ in range(3 + repeats):
            run()
        path = run.end_profiling()
        events = json.loads(Path(path).read_text())
        os.remove(path)
    per_node: dict[str, list[int]] = defaultdict(list)  # microseconds, one per run
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"].removesuffix("_kernel_time")].append(e["dur"])
    per_run: list[dict[str, float]] = [defaultdict(float) for _ in range(repeats)]
    for node, durations in per_node.items():
        module = re.match(r"/(\w+)/\1\.(\d+)/", node)
        key = f"{module.group(1)}.{module.group(2)}" if module else node.strip("/")
        for k, us in enumerate(durations[-repeats:]):
            per_run[k][key] += us * 1e-6
    best = {key: min(r[key] for r in per_run) for key in per_run[0]}
    whole = min(e["dur"] for e in events if e.get("name") == "model_run") * 1e-6
    return best, whole


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--network", default="squeezenet1_1", choices=["squeezenet1_0", "squeezenet1_1"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--onnxruntime", action="store_true",
                   help="also ONNX Runtime's time per module of the dense network")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{args.network}, batch {args.batch}, {args.threads} thread(s), CPU ISA "
          f"{fk.cpu_isa()}, best of {args.repeats}")
    for pruned in (False, True):
        torch.manual_seed(0)
        model = getattr(fk, args.network)().eval()
        if pruned:
            fk.prune_network(model, 0.9)
        x = torch.randn(args.batch, 3, 224, 224)
        total_macs = sum(layer_macs(model, x))
        peer = None
        if args.onnxruntime and not pruned:
            peer = onnxruntime_profile(model, x, args.threads, args.repeats)
            time.sleep(SPIN_PAUSE)  # its pool spins on after its last run
        fk.fuse_network(model)
        ops, wall, faults = profile(model, x, args.repeats)
        inside = sum(ops.values())
        label = "pruned 90 %" if pruned else "dense"
        print(f"\n{label}: forward {wall * 1e3:.3f} ms, {2 * total_macs / wall / 1e9:.1f} "
              f"GFLOP/s of the dense network's MACs; kernels {inside * 1e3:.3f} ms; "
              f"{faults:.0f} page faults per forward")
        print("| op and input shape | ms | share of the forward |\n|---|---|---|")
        for key, seconds in ops.items():
            print(f"| {key} | {seconds * 1e3:.3f} | {seconds / wall:.0%} |")
        full, bare = time_outside_kernels(model, x, args.repeats)
        print(f"| outside the kernels (a forward with them skipped) | {bare * 1e3:.3f} | "
              f"{bare / full:.0%} |")
        if peer is not None:
            modules, whole = peer
            print(f"\nONNX Runtime, dense: run {whole * 1e3:.3f} ms (best of {args.repeats})\n"
                  "| module | ms | share of the run |\n|---|---|---|")
            for key, seconds in modules.items():
                print(f"| {key} | {seconds * 1e3:.3f} | {seconds / whole:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
