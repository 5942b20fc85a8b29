"""The Triton kernels against the reference: on CUDA when a GPU is present, else on
CPU tensors through Triton's interpreter (conftest.py sets TRITON_INTERPRET=1 before
triton is imported), with small shapes covering the plan's cases (tiles of 16 to 128
pixels across rows and images, output channels split over programs, halos, 1x1 images,
three squeeze blocks), odd channel counts, packed weights, zero weight blocks and each
dtype. Planning for a given SM count (``sm_count=``) picks the config a bigger input
would get on a GPU."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

import fire_kernels as fk
from conftest import SQUEEZENET_LAYERS
from fire_kernels.testing import assert_close_to_reference, fire_weights, make_fire

triton = pytest.importorskip("triton")
from fire_kernels.triton import (  # noqa: E402
    block_list,
    block_list_density,
    config_for,
    conv_tf32,
    fire_triton,
    interpreter_enabled,
    launch,
    pack_triton_weights,
    weight_layout,
)

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
pytestmark = pytest.mark.skipif(
    not CUDA and not interpreter_enabled(), reason="no GPU and Triton's interpreter is off"
)
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (none on this machine)")

PLANS = [
    # ((N, C, S, E1, E3, H, W), SMs to plan for): the config each gets is in the comment
    ((1, 8, 16, 16, 16, 5, 6), 1),  # two 16-pixel tiles: halos across tiles and every edge
    ((2, 3, 5, 7, 9, 9, 17), 1),  # odd channels; 128-pixel tiles across rows and images
    ((2, 8, 16, 16, 16, 13, 13), 1),  # 13x13, 3 tiles across the two images
    ((1, 8, 20, 16, 24, 27, 27), 1),  # 27x27, squeeze width padded to a block of 32
    ((3, 5, 16, 8, 16, 9, 30), 2),  # 7 tiles over three images, the last one partial
    ((1, 12, 48, 16, 40, 4, 4), 1),  # three squeeze blocks; E split 2, a share with no 1x1
    ((1, 16, 16, 64, 64, 13, 13), 66),  # batch 1 on a big GPU: 11 tiles of 16, E split 2
    ((1, 8, 16, 40, 72, 5, 5), 2),  # E split 2 over three 3x3 blocks: uneven shares
    ((1, 6, 4, 3, 5, 1, 1), 1),  # 1x1 image: every 3x3 tap but the centre is padding
]


@pytest.fixture
def poisoned(monkeypatch):
    """Every float tensor the launcher allocates (output, squeeze buffer)
    starts as NaN, so an output never written or a squeeze row read before it was
    written shows in the result."""
    empty = torch.empty

    def nan_empty(*args, **kwargs):
        t = empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", nan_empty)


def run(x, m, **kwargs):
    return fire_triton(x, *fire_weights(m), **kwargs)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape, sms", PLANS, ids=lambda p: "x".join(map(str, p))
                         if isinstance(p, tuple) else None)
def test_float32(shape, sms, fmt, poisoned):
    n, c, s, e1, e3, h, w = shape
    m = make_fire(c, s, e1, e3, seed=sum(shape)).to(DEVICE)
    x = torch.randn(n, c, h, w, device=DEVICE).to(memory_format=fmt)
    out = run(x, m, sm_count=sms)
    assert out.is_contiguous(memory_format=fmt)
    assert_close_to_reference(out, m(x))


@pytest.mark.parametrize("batch", [1, 4], ids=["32-pixel-tiles", "128-pixel-tiles"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_error_within_twice_pytorch_own(dtype, batch, poisoned):
    """Error against a float32 reference no more than twice PyTorch's own Fire's in
    the same dtype (plus a little slack for tiny errors)."""
    m = make_fire(24, 32, 16, 32, seed=3).to(DEVICE)  # one squeeze block of 32
    x = torch.randn(batch, 24, 7, 9, device=DEVICE)
    assert config_for(batch, 24, 32, 16, 32, 7, 9, dtype, 1).block_m == (128 if batch == 4 else 32)
    with torch.no_grad():
        exact = m(x)
        torch_err = (m.to(dtype)(x.to(dtype)).float() - exact).abs().max().item()
        ours = run(x.to(dtype), m.to(dtype), sm_count=1)
    assert ours.dtype == dtype
    err = (ours.float() - exact).abs().max().item()
    assert err <= 2 * torch_err + 1e-3 * exact.abs().max().item(), (err, torch_err)


def test_no_bias_and_empty_batch():
    m = make_fire(8, 16, 16, 16, bias=False).to(DEVICE)
    x = torch.randn(1, 8, 6, 6, device=DEVICE)
    assert_close_to_reference(run(x, m), m(x))
    assert run(torch.randn(0, 8, 6, 6, device=DEVICE), m).shape == (0, 32, 6, 6)


def test_packed_weights_are_what_runs():
    """With ``weights=`` the kernels read the packs, the weight arguments only for
    their shapes; packs of another dtype or shape are refused."""
    m = make_fire(8, 20, 16, 24, seed=5).to(DEVICE)
    other = make_fire(8, 20, 16, 24, seed=6).to(DEVICE)
    packed = pack_triton_weights(*fire_weights(m))
    lay = weight_layout(8, 20, 16, 24, torch.float32)
    assert packed.squeeze.shape == (lay.c_pad, lay.s_pad) and packed.expand3x3.shape[0] == 9
    x = torch.randn(5, 8, 9, 10, device=DEVICE)
    assert_close_to_reference(run(x, other, weights=packed, sm_count=1), m(x))
    with pytest.raises(ValueError, match="pack them again"):
        run(x.half(), other.half(), weights=packed)


@pytest.mark.parametrize("batch", [2, 5], ids=["2-images", "5-images"])
@pytest.mark.parametrize("density", [0.25, 0.0])
def test_block_sparse_variant(density, batch, poisoned):
    """Block-pruned 3x3 weights (16 squeeze x 16 output channels at one tap): the
    kernel visits only the listed blocks, and the result is the reference's."""
    m = make_fire(8, 40, 16, 48).to(DEVICE)
    fk.prune_fire_modules(m, 1 - density, block=(16, 16), convs=["expand3x3"])
    blocks, counts = block_list(m.expand3x3.weight, 16)
    assert blocks.shape == (3, 9 * 3) and counts.dtype == torch.int32
    assert int(counts.sum()) == round(density * 3 * 3 * 9)
    assert block_list_density(counts, 40) == pytest.approx(round(density * 81) / 81)
    x = torch.randn(batch, 8, 9, 10, device=DEVICE)
    out = fire_triton(x, *fire_weights(m), blocks, counts, 16, sm_count=1)
    assert_close_to_reference(out, m(x))


def test_module_picks_block_sparse_for_block_pruned_weights():
    ref = make_fire(8, 32, 16, 32).to(DEVICE)
    fk.prune_fire_modules(ref, 0.75, block=(16, 16))
    fused = fk.FusedFire.from_fire(ref, backend="triton")
    x = torch.randn(1, 8, 6, 6, device=DEVICE)
    with torch.no_grad():
        assert_close_to_reference(fused(x), ref(x))
    assert fused.weight_plan.sparse.blocks is not None  # the block-sparse variant runs
    fused.sparse = False
    with torch.no_grad():
        assert_close_to_reference(fused(x), ref(x))
    assert fused.weight_plan.sparse.blocks is None


def test_module_packs_once_per_weight_version():
    """The weight plan holds the Triton kernel's packed weights: a forward calls the
    packed op and packs nothing; an in-place edit makes a new plan, so the next
    forward sees it."""
    ref = make_fire(8, 16, 16, 16).to(DEVICE)
    fused = fk.FusedFire.from_fire(ref, backend="triton")
    x = torch.randn(1, 8, 5, 5, device=DEVICE)
    with torch.no_grad():
        fused(x)
        packed = fused.weight_plan.sparse.weights
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            assert_close_to_reference(fused(x), ref(x))
        names = {e.name for e in prof.events() if e.name.startswith("fire_kernels::")}
        assert names <= {"fire_kernels::fire_packed", "fire_kernels::fire_packed_interpreted"}
        assert fused.weight_plan.sparse.weights is packed
        ref.expand3x3.weight.mul_(-1)
        assert_close_to_reference(fused(x), ref(x))
        assert fused.weight_plan.sparse.weights is not packed


def test_module_backend_triton():
    ref = make_fire(16, 16, 16, 16).to(DEVICE)
    fused = fk.FusedFire.from_fire(ref, backend="triton")
    x = torch.randn(1, 16, 5, 5, device=DEVICE)
    with torch.no_grad():
        assert_close_to_reference(fused(x), ref(x))


@pytest.mark.parametrize("sample", SQUEEZENET_LAYERS)
def test_squeezenet_plans(sample):
    """On an H100/H200 (132 SMs): batch 1's tiles and channel shares cover twice the
    SMs, or its blocks are the smallest config_for takes (16-pixel tiles, channel
    blocks of 32 or the layout's narrower one); batch 256 takes 128-pixel tiles, each
    expanded by one program; every tl.dot dimension >= 16; no squeeze channel padded."""
    c, s, e1, e3, hw = sample.c, sample.s, sample.e1, sample.e3, sample.h
    for dtype in (torch.float16, torch.float32):
        layout = weight_layout(c, s, e1, e3, dtype)
        one = config_for(1, c, s, e1, e3, hw, hw, dtype, 132)
        big = config_for(256, c, s, e1, e3, hw, hw, dtype, 132)
        smallest = (16, min(32, layout.block_e))
        assert one.tiles * one.e_split >= 2 * 132 or (one.block_m, one.block_e) == smallest
        assert (big.block_m, big.e_split) == (128, 1)
        for plan in (one, big):
            assert min(plan.block_c, plan.block_s, plan.block_e, plan.block_m) >= 16
            assert plan.num_warps <= 4
        assert layout.s_pad == s


def test_plans_are_made_once_per_shape_and_format():
    """fire_triton_packed plans once per input shape, strides, dtype, SM count and
    variant, not per call; an input of the same shape in another memory format gets
    its own plan, and its output that format."""
    m = make_fire(8, 16, 16, 16, seed=7).to(DEVICE)
    x = torch.randn(2, 8, 5, 6, device=DEVICE)
    launch._plan.cache_clear()
    for _ in range(3):
        assert_close_to_reference(run(x, m, sm_count=3), m(x))
    assert (launch._plan.cache_info().misses, launch._plan.cache_info().hits) == (1, 2)
    x_cl = x.to(memory_format=torch.channels_last)
    out = run(x_cl, m, sm_count=3)
    assert launch._plan.cache_info().misses == 2
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close_to_reference(out, m(x))


def test_fp32_follows_the_cudnn_tf32_switch_not_matmul():
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    try:
        conv.fp32_precision, matmul.fp32_precision = "ieee", "tf32"
        assert not conv_tf32()
        conv.fp32_precision, matmul.fp32_precision = "tf32", "ieee"
        assert conv_tf32()
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


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
def test_packing_block_lists_and_launches_need_no_host_sync():
    """What a forward may do for a block-pruned Fire, with CUDA's sync check on."""
    m = make_fire(16, 32, 16, 32).to("cuda", torch.half)
    fk.prune_fire_modules(m, 0.75, block=(16, 16))
    x = torch.randn(2, 16, 9, 9, device="cuda", dtype=torch.half)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        packed = pack_triton_weights(*fire_weights(m))
        blocks, counts = block_list(m.expand3x3.weight)
        fire_triton(x, *fire_weights(m), blocks, counts, 16, weights=packed)
    finally:
        torch.cuda.set_sync_debug_mode(0)


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


def _fused_network(sparse=False):
    """SqueezeNet 1.1 in float16 with its Fires fused (Triton on CUDA) and a small input;
    with ``sparse``, its 3x3 weights block-pruned and the block-sparse variant forced."""
    torch.manual_seed(0)
    model = fk.squeezenet1_1().eval()
    if sparse:
        fk.prune_fire_modules(model, 0.75, block=(16, 16), convs=["expand3x3"])
    fk.fuse_fire_modules(model)
    for m in model.modules():
        if isinstance(m, fk.FusedFire):
            m.sparse = sparse
    return model.to("cuda", torch.half), torch.randn(2, 3, 64, 64, device="cuda", dtype=torch.half)


@needs_gpu
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_compile_fullgraph_of_a_fused_network(mode):
    """A whole network with fused Fires compiles without a graph break (the Fires as the
    registered op) and gives the eager output; reduce-overhead replays a CUDA graph."""
    model, x = _fused_network()
    with torch.no_grad():
        expected = model(x)
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, mode=mode)
        for _ in range(3):  # reduce-overhead records its CUDA graph on the repeats
            out = compiled(x)
    torch.testing.assert_close(out, expected, atol=1e-2, rtol=1e-2)


@needs_gpu
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "block-sparse"])
def test_cuda_graph_replays_a_fused_network(sparse):
    """A network with fused Fires captured in a CUDA graph (torch.cuda.graphs) after a
    warm-up, which makes the weight plans and compiles the kernels outside the capture:
    replayed on a new input, it gives the eager output for that input."""
    model, x = _fused_network(sparse)
    static_x = x.clone()
    with torch.no_grad():
        side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graphs asks
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            model(static_x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(static_x)
        static_x.copy_(torch.randn_like(x))
        graph.replay()
        expected = model(static_x)
    torch.testing.assert_close(static_out, expected)


def _block_pruned_fire(sparse):
    ref = make_fire(16, 32, 16, 32).to("cuda", torch.half)
    fk.prune_fire_modules(ref, 0.75, block=(16, 16), convs=["expand3x3"])
    x = torch.randn(2, 16, 9, 9, device="cuda", dtype=torch.half)
    return fk.FusedFire.from_fire(ref, sparse=sparse), x


def _without_host_sync(fn):
    """Runs ``fn`` with CUDA's sync check raising on any host synchronisation."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)


@needs_gpu
@pytest.mark.parametrize("sparse", [False, "auto", True])
def test_cuda_forward_with_its_plan_made_needs_no_host_sync(sparse):
    """What a CUDA graph or an overlapped stream needs: once its weight plan is made,
    a FusedFire forward (dense or block-sparse) synchronises nothing."""
    fused, x = _block_pruned_fire(sparse)
    with torch.no_grad():
        fused(x)  # makes the plan
        _without_host_sync(lambda: fused(x))


# 2026-11: making a plan reads the 3x3's block density from the device
# (fire_kernels.sparse.gpu_block_list, to choose the block-sparse variant).
_PLAN_READS_DENSITY = pytest.mark.xfail(
    strict=True, raises=RuntimeError,
    reason="the plan's block-list density check synchronises; issue 19 item 3 wants plans "
           "made when the weights change, not in the first forward")


@needs_gpu
@pytest.mark.parametrize("sparse", [False, pytest.param("auto", marks=_PLAN_READS_DENSITY),
                                    pytest.param(True, marks=_PLAN_READS_DENSITY)])
def test_cuda_first_forward_needs_no_host_sync(sparse):
    """Issue 19 item 3: no host synchronisation anywhere in a forward, the first one
    (which makes the weight plan) included."""
    fused, x = _block_pruned_fire(sparse)
    with torch.no_grad():
        _without_host_sync(lambda: fused(x))


def test_gradients_through_the_registered_op():
    """backend="triton" goes through a registered op with the Fire's autograd, on
    CUDA and through the interpreter alike: gradients equal the reference's."""
    ref = make_fire(8, 16, 16, 16).to(DEVICE)
    fused = fk.FusedFire.from_fire(copy.deepcopy(ref), backend="triton")
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
