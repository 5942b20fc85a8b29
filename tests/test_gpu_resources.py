"""The GPU checks that need no GPU: the Triton kernels compiled for sm_90 and sm_80
(``benchmarks/gpu_resources.py``) and the static data-movement model
(``benchmarks/gpu_model.py``), each run as a script and judged by its exit status.

The resource check here compiles a representative subset of the distinct kernels the
launcher can pick (292 for sm_90 alone): the three layers that bound the configs (55x55
with 16 squeeze channels, 27x27 with 48, 13x13 with 64 and 512 input channels), batch
1 and 256, float16 and both float32 precisions, dense and block-sparse, channels-last,
for both architectures (bfloat16 compiles to the same resources as float16). ``python benchmarks/gpu_resources.py`` does all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                          env=env, capture_output=True, text=True, timeout=1800)


def test_representative_kernels_compile_within_resources():
    proc = _script("gpu_resources.py", "--layers", "v1_1-fire2", "v1_0-fire7", "v1_1-fire9",
                   "--dtypes", "fp16", "fp32", "fp32-ieee", "--formats", "cl")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "OK: every config compiles" in proc.stdout
    assert "_squeeze_kernel" in proc.stdout and "_expand_kernel" in proc.stdout


def test_data_movement_model_meets_its_targets():
    proc = _script("gpu_model.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "OK: batch 256 within 1.2x HBM" in proc.stdout
