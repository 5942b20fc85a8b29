"""Peak memory of one Fire forward, eager against fused (issue #6).

For each SqueezeNet Fire layer at batch 16, a fresh process builds the layer and its
input, runs one forward to warm up, resets the kernel's peak-RSS counter
(/proc/self/clear_refs) and runs one more: the peak RSS above the resident size
before it is the memory the forward needed (the output, plus the eager path's
intermediates, or the fused kernel's per-thread scratch). glibc is told to map every
allocation of 64 KiB or more afresh and to unmap it when freed, so that RSS follows
the live memory instead of a heap that keeps what the warm-up freed.

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from fire_kernels.benchmarking import LAYERS, ResultsCsv, environment

MODES = ["eager_nchw", "eager_cl", "fused_nchw", "fused_cl"]

CHILD = r"""
import json, sys, torch, fire_kernels as fk
cfg, hw, batch, mode = json.loads(sys.argv[1])
torch.set_num_threads(2)
m = fk.Fire(*cfg).eval()
x = torch.randn(batch, cfg[0], hw, hw)
if mode.startswith("fused"):
    m = fk.FusedFire.from_fire(m, sparse=False)
if mode.endswith("_cl"):
    m, x = m.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

with torch.inference_mode():
    out = m(x)
    del out
    fk.empty_cache()  # the fused output's block would be reused, not needed anew
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    out = m(x)
    peak = status("VmHWM")
print(json.dumps({"peak": peak - before, "output": out.numel() * 4}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--csv", type=Path, default=Path(__file__).with_name("results.csv"))
    args = parser.parse_args()
    env = environment("bench_memory", threads=2)
    out = ResultsCsv(args.csv)
    print(f"# Peak memory of one forward, {env['date']}, commit {env['commit']}: "
          f"{env['machine']}, batch {args.batch}, 2 threads")
    print(f"# command: {' '.join(['python', *sys.argv])}\n")
    print("| layer | output MB | " + " | ".join(f"{m} MB" for m in MODES)
          + " | fused / eager (NCHW) | fused / eager (CL) |")
    print("|---|---|" + "---|" * (len(MODES) + 2))
    for k, layer in enumerate(args.layers):
        cfg, hw = LAYERS[layer]
        peaks, output = {}, 0
        for mode in MODES:
            proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([cfg, hw, args.batch, mode])],
                                  capture_output=True, text=True, check=True,
                                  env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            peaks[mode], output = result["peak"] / 2**20, result["output"] / 2**20
            out.append([dict(env, workload=layer, batch=args.batch, dtype="float32", sparsity=0,
                             structure="dense", candidate=mode, metric="peak_bytes",
                             value=result["peak"])])
        print(f"| {layer} | {output:.1f} | " + " | ".join(f"{peaks[m]:.1f}" for m in MODES)
              + f" | {peaks['fused_nchw'] / peaks['eager_nchw']:.2f} | "
              f"{peaks['fused_cl'] / peaks['eager_cl']:.2f} |", flush=True)
        if sys.stderr.isatty():
            print(f"\r  {k + 1}/{len(args.layers)}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
