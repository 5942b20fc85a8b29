"""The Triton kernel against the reference: on CUDA when a GPU is present, else on
CPU tensors through Triton's interpreter (conftest.py sets TRITON_INTERPRET=1 before
triton is imported), with small shapes covering edge tiles, halos, odd channel counts,
zero weight blocks and each dtype."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

import fire_kernels as fk
from fire_kernels.testing import assert_close_to_reference, fire_weights, make_fire

triton = pytest.importorskip("triton")
from fire_kernels.triton import block_list, config_for, fire_triton, interpreter_enabled  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
pytestmark = pytest.mark.skipif(
    not CUDA and not interpreter_enabled(), reason="no GPU and Triton's interpreter is off"
)
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (none on this machine)")

SHAPES = [
    # (N, C, S, E1, E3, H, W)
    (1, 8, 16, 16, 16, 5, 6),  # one tile, halo beyond every edge
    (2, 3, 5, 7, 9, 9, 17),  # odd channel counts, partial tiles on both axes
    (1, 20, 40, 24, 48, 3, 33),  # wide image: 4 x 16 tiles
    (1, 12, 70, 16, 20, 4, 4),  # squeeze channels over two blocks
    (1, 6, 4, 3, 5, 1, 1),  # 1x1 image: every 3x3 tap but the centre is padding
]


def run(x, m):
    return fire_triton(x, *fire_weights(m))


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float32(shape, fmt):
    n, c, s, e1, e3, h, w = shape
    m = make_fire(c, s, e1, e3, seed=sum(shape)).to(DEVICE)
    x = torch.randn(n, c, h, w, device=DEVICE).to(memory_format=fmt)
    torch.backends.cuda.matmul.allow_tf32 = False
    out = run(x, m)
    assert out.is_contiguous(memory_format=fmt)
    assert_close_to_reference(out, m(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_error_within_twice_pytorch_own(dtype):
    """Error against a float32 reference no more than twice PyTorch's own Fire's in
    the same dtype (plus a little slack for tiny errors)."""
    m = make_fire(24, 16, 16, 32, seed=3).to(DEVICE)
    x = torch.randn(2, 24, 7, 9, device=DEVICE)
    with torch.no_grad():
        exact = m(x)
        torch_err = (m.to(dtype)(x.to(dtype)).float() - exact).abs().max().item()
        ours = run(x.to(dtype), m.to(dtype))
    assert ours.dtype == dtype
    err = (ours.float() - exact).abs().max().item()
    assert err <= 2 * torch_err + 1e-3 * exact.abs().max().item(), (err, torch_err)


def test_no_bias_and_empty_batch():
    m = make_fire(8, 16, 16, 16, bias=False).to(DEVICE)
    x = torch.randn(1, 8, 6, 6, device=DEVICE)
    assert_close_to_reference(run(x, m), m(x))
    assert run(torch.randn(0, 8, 6, 6, device=DEVICE), m).shape == (0, 32, 6, 6)


@pytest.mark.parametrize("density", [0.25, 0.0])
def test_block_sparse_variant(density):
    """Block-pruned 3x3 weights (16 squeeze x 16 output channels at one tap): the
    kernel visits only the listed blocks, and the result is the reference's."""
    m = make_fire(8, 40, 16, 48).to(DEVICE)
    fk.prune_fire_modules(m, 1 - density, block=(16, 16), convs=["expand3x3"])
    blocks, counts = block_list(m.expand3x3.weight, 16)
    assert blocks.shape == (3, 9 * 3) and counts.dtype == torch.int32
    assert int(counts.sum()) == round(density * 3 * 3 * 9)
    x = torch.randn(2, 8, 9, 10, device=DEVICE)
    out = fire_triton(x, *fire_weights(m), blocks, counts, 16)
    assert_close_to_reference(out, m(x))


def test_module_picks_block_sparse_for_block_pruned_weights():
    ref = make_fire(8, 32, 16, 32).to(DEVICE)
    fk.prune_fire_modules(ref, 0.75, block=(16, 16))
    fused = fk.FusedFire.from_fire(ref, backend="triton")
    x = torch.randn(1, 8, 6, 6, device=DEVICE)
    with torch.no_grad():
        assert_close_to_reference(fused(x), ref(x))
    assert type(fused.weight_plan.sparse).__name__ == "BlockList"


def test_module_backend_triton():
    ref = make_fire(16, 16, 16, 16).to(DEVICE)
    fused = fk.FusedFire.from_fire(ref, backend="triton")
    x = torch.randn(1, 16, 5, 5, device=DEVICE)
    with torch.no_grad():
        assert_close_to_reference(fused(x), ref(x))


def test_configs_are_per_shape_and_keep_dot_dims_at_16():
    tiny = config_for(1, 3, 5, 7, 9, 13, 13, torch.float32, programs=264)
    small = config_for(1, 512, 64, 256, 256, 13, 13, torch.float16, programs=264)
    large = config_for(256, 512, 64, 256, 256, 13, 13, torch.float16, programs=264)
    for cfg in (tiny, small, large):
        assert min(cfg.block_c, cfg.block_s, cfg.block_e, cfg.th * cfg.tw) >= 16
        assert cfg.num_warps <= 4
    assert small.e_split > large.e_split == 1  # batch 1 splits channels to fill the GPU


def test_backend_triton_without_gpu_or_interpreter_raises():
    code = (
        "import torch, fire_kernels as fk\n"
        "m = fk.FusedFire(8, 4, 4, 4, backend='triton')\n"
        "try:\n    m(torch.randn(1, 8, 3, 3))\nexcept RuntimeError as e:\n    print(e)\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "0", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "backend='triton' runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1" in proc.stdout


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_opcheck(dtype):
    m = make_fire(16, 16, 16, 32).to("cuda", dtype)
    x = torch.randn(2, 16, 9, 9, device="cuda", dtype=dtype)
    torch.library.opcheck(torch.ops.fire_kernels.fire.default, (x, *fire_weights(m)),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_gpu_benchmark_script_runs(tmp_path):
    """benchmarks/bench_gpu.py --smoke: the script a GPU run depends on works end to
    end (here on one tiny layer, through the interpreter when there is no GPU)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "bench_gpu.py"), "--smoke",
         "--csv", str(tmp_path / "r.csv"), "--markdown", str(tmp_path / "r.md"),
         "--plot", str(tmp_path / "r.png")],
        env={**os.environ, "TRITON_INTERPRET": "1"} if not CUDA else dict(os.environ),
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "triton vs cudnn_cl" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.png").stat().st_size > 0 and (tmp_path / "r.csv").exists()


@needs_gpu
def test_cuda_blocksparse_opcheck():
    m = make_fire(16, 32, 16, 32).to("cuda", torch.half)
    fk.prune_fire_modules(m, 0.75, block=(16, 16))
    blocks, counts = block_list(m.expand3x3.weight, 16)
    x = torch.randn(2, 16, 9, 9, device="cuda", dtype=torch.half)
    torch.library.opcheck(torch.ops.fire_kernels.fire_blocksparse.default,
                          (x, *fire_weights(m), blocks, counts, 16),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@needs_gpu
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_compile_fullgraph(mode):
    model = fk.FusedFire.from_fire(make_fire(16, 16, 16, 32).cuda().half())
    x = torch.randn(4, 16, 13, 13, device="cuda", dtype=torch.half)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True, mode=mode)
        for _ in range(3):  # reduce-overhead records a CUDA graph on the repeats
            out = compiled(x)
    torch.testing.assert_close(out, expected, atol=1e-2, rtol=1e-2)


def test_gradients_through_the_registered_op():
    """backend="triton" goes through a registered op with the Fire's autograd, on
    CUDA and through the interpreter alike: gradients equal the reference's."""
    ref = make_fire(8, 16, 16, 16).to(DEVICE)
    fused = fk.FusedFire.from_fire(copy.deepcopy(ref), backend="triton")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    x = torch.randn(2, 8, 5, 6, device=DEVICE)
    x_ref, x_fused = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(2, 32, 5, 6, device=DEVICE)
    ref(x_ref).backward(g)
    out = fused(x_fused)
    assert out.grad_fn is not None
    out.backward(g)
    assert_close_to_reference(x_fused.grad, x_ref.grad)
    for (name, p_ref), p_fused in zip(ref.named_parameters(), fused.parameters()):
        assert_close_to_reference(p_fused.grad, p_ref.grad)
