"""Sparse weights: the pruning helper, the sparse kernel against the reference on
pruned weights, FusedFire's automatic choice and its packed-weight cache."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import fire_kernels as fk
from fire_kernels.testing import (
    assert_close_to_reference,
    fire_weights,
    make_fire,
    odd_samples,
    opcheck_samples,
)
from fire_kernels.functional import fire_sparse, pack_sparse
from fire_kernels.sparse import packed_nbytes, work_density

needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
FORMATS = [torch.contiguous_format, torch.channels_last]
FORMAT_IDS = ["nchw", "channels_last"]
DENSITIES = [1.0, 0.5, 0.3, 0.1, 0.02, 0.0]


def pruned_fire(c, s, e1, e3, density, block, seed=0) -> fk.Fire:
    return make_fire(c, s, e1, e3, density=density, block=block, seed=seed)


def run_sparse(x, m, block):
    packed = pack_sparse(m.squeeze.weight, m.expand1x1.weight, m.expand3x3.weight, block, x.shape[3])
    return fire_sparse(x, packed, m.squeeze.bias, m.expand1x1.bias, m.expand3x3.bias)


# ---------------------------------------------------------------- pruning helper


@pytest.mark.parametrize("amount", [0.0, 0.25, 0.5, 0.9, 0.97, 1.0])
def test_prune_reaches_exact_density_per_layer(amount):
    m = make_fire(30, 10, 14, 18)
    fk.prune_fire_modules(m, amount)
    for conv in (m.squeeze, m.expand1x1, m.expand3x3):
        n = conv.weight.numel()
        assert int((conv.weight == 0).sum()) == round(amount * n)
        # The survivors are the largest: every kept |w| >= every pruned original |w|.
    ref = make_fire(30, 10, 14, 18)
    for conv, orig in zip((m.squeeze, m.expand3x3), (ref.squeeze, ref.expand3x3)):
        kept = conv.weight != 0
        if kept.any() and (~kept).any():
            assert orig.weight.abs()[kept].min() >= orig.weight.abs()[~kept].max()


@pytest.mark.parametrize("out_channels", [8, 13, 3])
def test_prune_blocks_of_four_output_channels(out_channels):
    m = make_fire(12, 6, out_channels, out_channels)
    fk.prune_fire_modules(m, 0.5, block=4)
    for conv in (m.expand1x1, m.expand3x3):
        w = conv.weight.flatten(1)
        groups = -(-w.shape[0] // 4)
        zero_blocks = 0
        for g in range(groups):
            block = w[4 * g : 4 * g + 4]  # the last one may be partial
            zero_pos = (block == 0).all(0)
            # a position is pruned for the whole block or not at all
            assert torch.equal((block == 0).any(0), zero_pos)
            zero_blocks += int(zero_pos.sum())
        assert zero_blocks == round(0.5 * groups * w.shape[1])


def test_prune_blocks_of_output_by_input_channels():
    m = make_fire(40, 20, 24, 36)  # 20 squeeze channels: partial 16-blocks of inputs
    fk.prune_fire_modules(m, 0.75, block=(16, 16), convs=["expand3x3"])
    w = m.expand3x3.weight  # (36, 20, 3, 3)
    blocks = 0
    for o in range(0, 36, 16):
        for i in range(0, 20, 16):
            for k in range(9):
                b = w[o : o + 16, i : i + 16].flatten(2)[:, :, k]
                assert bool((b == 0).all()) or bool((b != 0).all())
                blocks += int((b == 0).all())
    assert blocks == round(0.75 * 3 * 2 * 9)


def test_prune_global_scope():
    model = nn.Sequential(make_fire(16, 8, 8, 8), make_fire(16, 8, 8, 8, seed=1))
    with torch.no_grad():
        model[1].expand3x3.weight.mul_(10)  # much larger weights survive global pruning
    fk.prune_fire_modules(model, 0.8, scope="global")
    convs = [getattr(f, n) for f in model for n in ("squeeze", "expand1x1", "expand3x3")]
    total = sum(c.weight.numel() for c in convs)
    assert sum(int((c.weight == 0).sum()) for c in convs) == round(0.8 * total)
    # One threshold for all: nearly all survivors are the scaled-up weights.
    kept = total - round(0.8 * total)
    assert int((model[1].expand3x3.weight != 0).sum()) > 0.9 * kept
    assert (model[0].expand3x3.weight != 0).float().mean() < 0.1


def test_prune_respects_torch_prune_masks():
    m = make_fire(16, 8, 12, 12)
    torch_prune.l1_unstructured(m.expand3x3, "weight", amount=0.3)
    first_mask = m.expand3x3.weight_mask.clone()
    fk.prune_fire_modules(m, 0.6, convs=["expand3x3"])
    final = m.expand3x3.weight_orig * m.expand3x3.weight_mask
    assert int((final == 0).sum()) == round(0.6 * final.numel())
    assert torch.all(final[first_mask == 0] == 0)  # what torch pruned stays pruned
    # FusedFire reads the masked weight (its pre-hook never runs: the conv is not called).
    fused = fk.FusedFire.from_fire(m)
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        assert_close_to_reference(fused(x), m(x))


def test_prune_rejects_bad_arguments():
    m = make_fire(8, 4, 4, 4)
    for amount in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"amount must be in \[0, 1\]"):
            fk.prune_fire_modules(m, amount)
    for block in (2, (16, 0), (4, 4, 4)):
        with pytest.raises(ValueError, match="block must be 1, 4 or a pair"):
            fk.prune_fire_modules(m, 0.5, block=block)
    with pytest.raises(ValueError, match="scope must be 'layer' or 'global', got 'model'"):
        fk.prune_fire_modules(m, 0.5, scope="model")
    with pytest.raises(ValueError, match=r"unknown convs \['expand5x5'\]; expected some of"):
        fk.prune_fire_modules(m, 0.5, convs=["expand5x5"])


def test_sparsity_report():
    model = fk.squeezenet1_1()
    fk.prune_fire_modules(model, 0.9)
    report = fk.sparsity_report(model, block=1)
    assert len(report.fires) == 8
    fire = report.fires[0]
    assert fire.name == "features.3"
    assert fire.nonzeros["expand3x3"] == round(0.1 * 64 * 16 * 9)
    fire_weights = sum(sum(f.numel.values()) for f in report.fires)
    fire_nonzeros = sum(sum(f.nonzeros.values()) for f in report.fires)
    assert abs(fire_nonzeros / fire_weights - 0.1) < 1e-3
    # The stem and the classifier, not pruned here, are reported dense.
    assert [(c.name, c.density) for c in report.convs] == [("features.0", 1.0), ("classifier.1", 1.0)]
    total = fire_weights + sum(c.numel for c in report.convs)
    assert abs(report.density - (fire_nonzeros + sum(c.numel for c in report.convs)) / total) < 1e-9
    assert sum(f.packed_bytes for f in report.fires) < 0.25 * sum(f.dense_bytes for f in report.fires)
    text = str(report)
    assert "features.3" in text and "classifier.1" in text and "total" in text


@needs_cpp
def test_packed_bytes_are_the_packed_tensors():
    m = pruned_fire(24, 8, 16, 20, 0.3, 1)
    for block in (1, 4):
        p = pack_sparse(m.squeeze.weight, m.expand1x1.weight, m.expand3x3.weight, block, 9)
        actual = sum(t.numel() * t.element_size() for t in p[:4])
        assert packed_nbytes(m.squeeze.weight, m.expand1x1.weight, m.expand3x3.weight, block) == actual


# ---------------------------------------------------------------- the sparse kernel


@needs_cpp
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("block", [1, 4])
@pytest.mark.parametrize("density", DENSITIES)
def test_sparse_kernel_densities(density, block, fmt, isa):
    m = pruned_fire(40, 16, 24, 40, density, block)
    x = torch.randn(2, 40, 11, 13).to(memory_format=fmt)
    out = run_sparse(x, m, block)
    assert out.is_contiguous(memory_format=fmt)
    assert_close_to_reference(out, m(x))


@needs_cpp
def test_all_zero_weights_give_relu_of_bias():
    m = pruned_fire(10, 4, 6, 6, 0.0, 1)
    x = torch.randn(1, 10, 5, 5)
    out = run_sparse(x, m, 1)
    expected = torch.relu(torch.cat([m.expand1x1.bias, m.expand3x3.bias])).view(1, 12, 1, 1)
    torch.testing.assert_close(out, expected.expand(1, 12, 5, 5))


@needs_cpp
@pytest.mark.parametrize("block", [1, 4])
def test_empty_rows_and_partial_blocks(block, isa):
    """Output channels with no nonzero weight, squeeze channels pruned away, and
    channel counts that end in a partial block of 4."""
    m = pruned_fire(17, 9, 7, 13, 0.4, block)
    with torch.no_grad():
        m.squeeze.weight[3] = 0
        m.expand1x1.weight[0] = 0
        m.expand3x3.weight[5:9] = 0
        m.expand3x3.weight[12] = 0
    for fmt in FORMATS:
        x = torch.randn(3, 17, 8, 9).to(memory_format=fmt)
        assert_close_to_reference(run_sparse(x, m, block), m(x))


@needs_cpp
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("sample", odd_samples(density=0.2), ids=str)
def test_sparse_odd_shapes(sample, layout, isa):
    for block in (1, 4):
        case = sample.replace(block=block, layout=layout)
        m, x = case.fire(), case.input()
        assert_close_to_reference(run_sparse(x, m, block), m(x))


@needs_cpp
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_sparse_thread_splits_agree(threads):
    m = pruned_fire(32, 16, 40, 56, 0.2, 1)
    for batch in (1, 3):
        x = torch.randn(batch, 32, 21, 21)
        torch.set_num_threads(1)
        expected = run_sparse(x, m, 1)
        torch.set_num_threads(threads)
        torch.testing.assert_close(run_sparse(x, m, 1), expected, atol=0, rtol=0)


@needs_cpp
@pytest.mark.parametrize("block", [1, 4])
@pytest.mark.parametrize("sample", list(opcheck_samples()), ids=str)
def test_sparse_opcheck(sample, block):
    sample = sample.replace(density=0.3, block=block)
    m, x = sample.fire(), sample.input()
    weights = [t.detach() for t in (m.squeeze.weight, m.expand1x1.weight, m.expand3x3.weight)]
    p = pack_sparse(*weights, block, sample.w)
    biases = [None if b is None else b.detach() for b in fire_weights(m)[1::2]]
    args = (x, p.squeeze_values, p.squeeze_index, biases[0], p.expand_values, p.expand_index,
            biases[1], biases[2], sample.s, sample.e1, sample.e3, block, sample.w)
    torch.library.opcheck(torch.ops.fire_kernels.fire_sparse.default, args)
    torch.library.opcheck(torch.ops.fire_kernels.pack_sparse.default, (*weights, block, sample.w),
                          test_utils=("test_schema", "test_faketensor"))


@needs_cpp
def test_sparse_op_compiles_fullgraph():
    m = pruned_fire(12, 6, 8, 8, 0.2, 4)
    p = pack_sparse(m.squeeze.weight, m.expand1x1.weight, m.expand3x3.weight, 4, 7)
    b = [t.detach() for t in (m.squeeze.bias, m.expand1x1.bias, m.expand3x3.bias)]

    def f(x):
        return torch.ops.fire_kernels.fire_sparse(
            x, p.squeeze_values, p.squeeze_index, b[0], p.expand_values, p.expand_index, b[1],
            b[2], 6, 8, 8, 4, 7,
        ) * 2

    x = torch.randn(2, 12, 5, 7)
    with torch.no_grad():
        assert_close_to_reference(torch.compile(f, fullgraph=True)(x), 2 * m(x))


@needs_cpp
def test_sparse_op_rejects_bad_packing():
    m = pruned_fire(12, 6, 8, 8, 0.3, 1)
    p = pack_sparse(m.squeeze.weight, m.expand1x1.weight, m.expand3x3.weight, 1, 7)
    b = (m.squeeze.bias, m.expand1x1.bias, m.expand3x3.bias)
    x = torch.randn(1, 12, 5, 7)

    def call(x, sq_index=p.squeeze_index, ex_index=p.expand_index, width=7):
        return torch.ops.fire_kernels.fire_sparse(
            x, p.squeeze_values, sq_index, b[0], p.expand_values, ex_index, b[1], b[2], 6, 8, 8,
            1, width,
        )

    with pytest.raises(ValueError, match="packed for images 7 wide, the input is 9 wide"):
        call(torch.randn(1, 12, 5, 9), width=7)
    bad = p.squeeze_index.clone()
    bad[-1] = 99  # an input channel that does not exist
    with pytest.raises(RuntimeError, match=r"squeeze_index holds positions outside \[0, 11\]"):
        call(x, sq_index=bad)
    bad = p.expand_index.clone()
    bad[-1] = 10**8  # far outside the squeeze buffers
    with pytest.raises(RuntimeError, match=r"expand_index holds positions outside \[-7, "):
        call(x, ex_index=bad)
    with pytest.raises(RuntimeError, match="squeeze_index has 3 elements, fewer than the 7 row starts"):
        call(x, sq_index=p.squeeze_index[:3])


# ---------------------------------------------------------------- FusedFire's choice


def _mode(fused: fk.FusedFire):
    """What the last inference forward ran: None (dense, or no plan yet) or the packed weights."""
    return None if fused.weight_plan is None else fused.weight_plan.sparse


@needs_cpp
def test_auto_runs_sparse_only_when_it_pays():
    sparse = fk.FusedFire.from_fire(pruned_fire(32, 16, 32, 32, 0.1, 1))
    dense = fk.FusedFire.from_fire(pruned_fire(32, 16, 32, 32, 0.9, 1))
    blocky = fk.FusedFire.from_fire(pruned_fire(32, 16, 32, 32, 0.5, 4))
    x = torch.randn(1, 32, 9, 9)
    with torch.no_grad():
        for m in (sparse, dense, blocky):
            m(x)
    assert _mode(sparse) is not None and _mode(sparse).block == 1
    assert _mode(dense) is None
    assert _mode(blocky) is not None and _mode(blocky).block == 4


@needs_cpp
def test_sparse_override_and_gradients_use_dense():
    ref = pruned_fire(16, 8, 8, 8, 0.9, 1)
    m = fk.FusedFire.from_fire(copy.deepcopy(ref), sparse=True)
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        assert_close_to_reference(m(x), ref(x))
    assert _mode(m) is not None
    # Training needs gradients: the dense op runs (the sparse one has no backward).
    x.requires_grad_()
    m(x).sum().backward()
    assert x.grad is not None and m.expand3x3.weight.grad is not None
    m.sparse = False
    with torch.no_grad():
        m(x)
    assert _mode(m) is None
    with pytest.raises(ValueError, match="sparse must be 'auto', True or False, got 'yes'"):
        m.sparse = "yes"


@needs_cpp
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_sparse_weight_edits_are_seen(fmt):
    ref = pruned_fire(16, 8, 12, 12, 0.1, 1)
    fused = fk.FusedFire.from_fire(ref, sparse=True)
    x = torch.randn(2, 16, 7, 7).to(memory_format=fmt)

    def check():
        with torch.no_grad():
            assert_close_to_reference(fused(x), ref(x))
        assert _mode(fused) is not None

    check()
    with torch.no_grad():
        fused.expand3x3.weight.mul_(-2)
    check()
    fused.load_state_dict(pruned_fire(16, 8, 12, 12, 0.1, 1, seed=5).state_dict())
    check()
    fused.expand1x1.weight.data.zero_()  # bypasses version counters ...
    fk.refresh_packed_weights()  # ... so tell the cache
    check()
    ref.squeeze.bias = nn.Parameter(torch.randn(8))
    check()
    x = torch.randn(1, 16, 7, 10).to(memory_format=fmt)  # another width: repacked
    check()


@needs_cpp
def test_each_width_keeps_its_sparse_plan():
    """Sparse weights are packed per image width; going back to a width reuses its
    plan (no deciding and packing again), the last MAX_WIDTHS widths, while the
    weights and settings stay as they were."""
    from fire_kernels.weight_plan import MAX_WIDTHS

    ref = pruned_fire(16, 8, 12, 12, 0.1, 1)
    fused = fk.FusedFire.from_fire(copy.deepcopy(ref), sparse=True)

    def plan_for(width):
        x = torch.randn(1, 16, 6, width)
        with torch.no_grad():
            assert_close_to_reference(fused(x), ref(x))
        assert fused.weight_plan.input_width == width
        return fused.weight_plan

    first = {w: plan_for(w) for w in (7, 9)}
    assert plan_for(7) is first[7] and plan_for(9) is first[9]
    for w in range(10, 10 + MAX_WIDTHS):  # more widths than are kept: 7 and 9 go
        plan_for(w)
    assert plan_for(7) is not first[7]
    newest = plan_for(7)
    with torch.no_grad():
        fused.expand3x3.weight.mul_(-2)  # another version: every width packs again
        ref.expand3x3.weight.mul_(-2)
    assert plan_for(7) is not newest
    kept = plan_for(7)
    fused.sparse = True  # a setting set (even to the same value) drops them all
    assert plan_for(7) is not kept


@needs_cpp
@pytest.mark.parametrize("block", [1, 4])
def test_pruned_squeezenet_runs_sparse(block):
    torch.manual_seed(0)
    model = fk.squeezenet1_1().eval()
    fk.prune_fire_modules(model, 0.9, block=block)
    ref = copy.deepcopy(model)
    fk.fuse_fire_modules(model)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        for fmt in FORMATS:
            model.to(memory_format=fmt)
            ref.to(memory_format=fmt)
            out, expected = model(x.to(memory_format=fmt)), ref(x.to(memory_format=fmt))
            assert_close_to_reference(out, expected)
    fused = [m for m in model.modules() if isinstance(m, fk.FusedFire)]
    assert all(_mode(m) is not None and _mode(m).block == block for m in fused)
    assert list(model.state_dict()) == list(ref.state_dict())  # packed buffers are not saved


def test_work_density():
    m = pruned_fire(16, 8, 8, 8, 0.25, 4)
    w = (m.squeeze.weight, m.expand1x1.weight, m.expand3x3.weight)
    assert abs(work_density(*w, 4) - 0.25) < 0.05
    assert work_density(*w, 1) <= work_density(*w, 4) + 1e-9
