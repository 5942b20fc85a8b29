"""A kernel microbenchmark in a few lines: a template to adapt.

Times one SqueezeNet Fire layer in eager PyTorch and with the fused kernel, dense and
pruned to 90 %, interleaved (medians). Run: python python/microbench.py
"""

import copy

import torch

import fire_kernels as fk
from fire_kernels.benchmarking import fire_macs, interleaved_medians

torch.set_num_threads(2)
torch.manual_seed(0)
C, S, E1, E3, HW, N = 512, 64, 256, 256, 13, 1  # SqueezeNet 1.1's fire9 at 224x224

eager = fk.Fire(C, S, E1, E3).eval()
fused = fk.FusedFire.from_fire(copy.deepcopy(eager))
pruned = fk.FusedFire.from_fire(fk.prune_fire_modules(copy.deepcopy(eager), 0.9))
x = torch.randn(N, C, HW, HW)

with torch.inference_mode():
    torch.testing.assert_close(fused(x), eager(x), atol=1e-3, rtol=1e-3)
    times = interleaved_medians([lambda: eager(x), lambda: fused(x), lambda: pruned(x)], repeats=50)

gflop = 2 * fire_macs(N, C, S, E1, E3, HW, HW) / 1e9
for name, t in zip(["eager", "fused dense", "fused, 90 % pruned"], times):
    print(f"{name:<20} {t * 1e3:7.3f} ms  {gflop / t:6.1f} GFLOP/s (dense-equivalent)"
          f"  {times[0] / t:5.2f}x")
