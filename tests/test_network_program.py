"""FusedSequential's network program: a fused network's inference forward in one C++
call, equal to the layer-by-layer forward, and made afresh whenever that would
compute something else (weights, modules, settings, hooks, inputs changed)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import fire_kernels as fk
from fire_kernels.network import FusedSequential
from fire_kernels.testing import assert_close_to_reference

pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


def _pair(version: str = "1_1", sparsity: float | None = None, block: int = 1):
    """(fused, reference) SqueezeNets with the same weights, in eval mode."""
    torch.manual_seed(0)
    ref = getattr(fk, f"squeezenet{version}")(num_classes=10).eval()
    if sparsity is not None:
        fk.prune_network(ref, sparsity, block=block)
    return fk.fuse_network(copy.deepcopy(ref)), ref


def _native(seq: nn.Module):
    program = seq.__dict__.get("_program")
    return None if program is None else program.native


def _check(model, ref, x):
    with torch.no_grad():
        got = model(x)
        assert_close_to_reference(got, ref(x))
    return got


@pytest.mark.parametrize("version", ["1_0", "1_1"])
@pytest.mark.parametrize("sparsity,block", [(None, 1), (0.9, 1), (0.9, 4)],
                         ids=["dense", "pruned", "pruned-blocks"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_program_computes_the_network(version, sparsity, block, layout):
    model, ref = _pair(version, sparsity, block)
    assert type(model.features) is FusedSequential and type(model.classifier) is FusedSequential
    x = torch.randn(2, 3, 67, 61).to(memory_format=layout)
    first = _check(model, ref, x)  # layer by layer, making the programs
    assert _native(model.features) is not None and _native(model.classifier) is not None
    native = _native(model.features)
    for _ in range(2):  # the programs, kept
        assert torch.equal(_check(model, ref, x), first)
    assert _native(model.features) is native


@pytest.mark.parametrize("sparsity", [None, 0.9], ids=["dense", "pruned"])
def test_image_by_image_equals_the_whole_batch(sparsity, monkeypatch):
    """A program runs a batch's images on threads of their own (its default); run on
    the whole batch at once, each layer's kernels give the same bits."""
    model, ref = _pair(sparsity=sparsity)
    whole = copy.deepcopy(model)
    x = torch.randn(3, 3, 64, 64)
    native = fk._extension.C.NetworkProgram
    with torch.no_grad():
        per_image = _check(model, ref, x)
        monkeypatch.setattr(fk._extension.C, "NetworkProgram",
                            lambda *args: native(*args, per_image=False))
        batch = _check(whole, ref, x)
        monkeypatch.undo()
        assert torch.equal(per_image, model(x)) and torch.equal(batch, whole(x))
        assert torch.equal(model(x), whole(x))
        assert model.features(x).stride() == whole.features(x).stride()  # the same layout


def test_batch_zero_one_pixel_and_inference_mode():
    model, ref = _pair()
    for shape in [(0, 3, 64, 64), (1, 3, 64, 64), (3, 3, 64, 64)]:
        for _ in range(2):
            _check(model, ref, torch.randn(shape))
    for batch in (1, 3):  # one image; images on the pool's threads, in inference mode too
        x = torch.randn(batch, 3, 64, 64)
        with torch.inference_mode():
            assert_close_to_reference(model(x), ref(x))
            out = model(x)
            assert out.is_inference()
            assert_close_to_reference(out, ref(x))


def test_a_new_input_width_or_bad_input_leaves_the_program():
    model, ref = _pair(sparsity=0.9)  # sparse forms are packed per width
    for w in (64, 80, 64):
        for _ in range(2):
            _check(model, ref, torch.randn(1, 3, 64, w))
    _check(model, ref, torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="channels"):
        with torch.no_grad():
            model(torch.randn(1, 4, 64, 64))
    with torch.no_grad():
        model.features(torch.randn(1, 3, 64, 64))
        with pytest.raises(ValueError, match="channels"):
            model.classifier(torch.randn(1, 7, 5, 5))
    # Too few rows for the stem: raised inside the program (for a batch, on one of the
    # pool's threads), as the op raises it.
    for batch in (1, 2):
        short = torch.randn(batch, 3, 2, 64)
        with pytest.raises(ValueError) as layer_by_layer:
            model(short)
        with pytest.raises(ValueError) as in_program, torch.no_grad():
            model(short)
        assert _native(model.features) is not None
        assert str(in_program.value) == str(layer_by_layer.value)


def test_going_back_to_a_width_reuses_its_program(monkeypatch):
    """A pruned network's programs hold weights packed for one width; one is kept per
    input shape (the last MAX_WIDTHS), so alternating widths does not pack and plan
    again (it cost 10x a forward), until the weights change."""
    from fire_kernels.weight_plan import MAX_WIDTHS

    model, ref = _pair(sparsity=0.9)
    made, packs = [], []
    native, pack = fk._extension.C.NetworkProgram, fk.functional.pack_sparse
    monkeypatch.setattr(fk._extension.C, "NetworkProgram",
                        lambda *args: made.append(args) or native(*args))
    monkeypatch.setattr(fk.functional, "pack_sparse",
                        lambda *args: packs.append(args) or pack(*args))
    xs = {w: torch.randn(1, 3, 64, w) for w in (64, 80)}
    for w in (64, 80):
        _check(model, ref, xs[w])
    counts = len(made), len(packs)
    assert counts[0] == 4 and counts[1] > 0  # features and classifier, per width
    for w in (64, 80, 64, 80):
        _check(model, ref, xs[w])
    assert (len(made), len(packs)) == counts
    with torch.no_grad():
        for m in (model, ref):
            m.features[3].expand3x3.weight.mul_(0.5)
    for w in (64, 80):
        _check(model, ref, xs[w])  # that Fire packed again, the features' programs made again
    assert len(made) == counts[0] + 2 and len(packs) == counts[1] + 2
    for w in range(96, 96 + 8 * MAX_WIDTHS, 8):  # more shapes than are kept
        _check(model, ref, torch.randn(1, 3, 64, w))
    before = len(made)
    _check(model, ref, xs[64])
    assert len(made) == before + 2  # both programs made again


def _weight_edits():
    def in_place(m):
        m.features[3].expand3x3.weight.mul_(0.5)

    def new_parameter(m):
        conv = m.classifier[1]
        torch.manual_seed(1)
        conv.weight = nn.Parameter(torch.randn_like(conv.weight) * 0.05)

    def bias_via_data(m):
        m.features[0].bias.data = m.features[0].bias.data + 1.0
        fk.refresh_packed_weights()

    def torch_prune(m):
        torch.nn.utils.prune.l1_unstructured(m.features[4].squeeze, "weight", 0.5)

    return [in_place, new_parameter, bias_via_data, torch_prune]


@pytest.mark.parametrize("edit", _weight_edits(), ids=lambda f: f.__name__)
def test_weight_changes_are_seen(edit):
    model, ref = _pair(sparsity=0.9)
    x = torch.randn(2, 3, 64, 64)
    for _ in range(2):
        _check(model, ref, x)
    with torch.no_grad():
        edit(model)
        edit(ref)
    _check(model, ref, x)
    _check(model, ref, x)


def test_module_changes_are_seen():
    model, ref = _pair(sparsity=0.9)
    x = torch.randn(2, 3, 64, 64)
    for _ in range(2):
        _check(model, ref, x)
    model.features[3].sparse = False  # a setting: the program is made afresh
    _check(model, ref, x)
    assert model.features[3].weight_plan.sparse is None
    model.features[4] = fk.FusedFire.from_fire(ref.features[4]).eval()  # another child
    _check(model, ref, x)
    calls = []
    handle = model.features[5].register_forward_hook(lambda *args: calls.append(1))
    _check(model, ref, x)
    _check(model, ref, x)
    assert len(calls) == 2  # hooks run: the layers run one by one
    handle.remove()
    model.classifier[0].train()  # dropout on: not the identity any more
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_an_input_the_kernels_cannot_run_leaves_the_next_one_its_program():
    model, ref = _pair()
    model.double()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="PyTorch reference"):
        model(x.double())  # the reference backend: no program, none kept
    assert "_program" not in model.features.__dict__
    model.float()
    for _ in range(2):
        _check(model, ref, x)
    assert _native(model.features) is not None


def test_training_and_autograd_run_layer_by_layer():
    model, ref = _pair()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)  # gradients wanted: the dense ops, with autograd
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert _native(model.features) is None


def test_a_sequential_the_program_cannot_run_stays_layer_by_layer():
    torch.manual_seed(0)
    fire = fk.FusedFire(8, 4, 6, 6).eval()
    seq = nn.Sequential(fire, nn.Tanh())
    ref = nn.Sequential(fire.to_fire(), nn.Tanh())
    fk.fuse_network(seq)
    assert type(seq) is FusedSequential
    x = torch.randn(1, 8, 9, 9)
    for _ in range(2):
        with torch.no_grad():
            assert_close_to_reference(seq(x), ref(x))
    assert seq._program.native is None


def test_copies_unfusing_and_bad_programs():
    model, ref = _pair()
    x = torch.randn(1, 3, 64, 64)
    _check(model, ref, x)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert "_program" not in clone.features.__dict__
        _check(clone, ref, x)
    fk.unfuse_fire_modules(model)
    assert type(model.features) is nn.Sequential and "_program" not in model.features.__dict__
    _check(model, ref, x)
    native = fk._extension.C.NetworkProgram
    w = torch.randn(8, 3, 3, 3)
    with pytest.raises(ValueError, match="unknown step kind"):
        native([("conv", [w, None], [], [])], [w], 3, 8)
    with pytest.raises(ValueError, match="takes 2 tensors"):
        native([("stem", [w], [1, 0, 1, 1, 0], [])], [w], 3, 8)
    with pytest.raises(ValueError, match="integers"):
        native([("stem", [w, None], [1, 0], [])], [w], 3, 8)
    with pytest.raises(ValueError, match="takes 1 floats"):
        native([("quantize", [], [0], [])], [w], 3, 8)
    with pytest.raises(ValueError, match="float32 or uint8 input"):
        native([("stem", [w, None], [1, 0, 1, 1, 0], [])], [w], 3, 8, torch.float64)
    with torch.inference_mode():
        frozen = torch.randn(2)
    with pytest.raises(ValueError, match="version counters"):
        native([("stem", [w, None], [1, 0, 1, 1, 0], [])], [frozen], 3, 8)


@pytest.mark.parametrize("batch", [1, 2])
def test_the_profiler_sees_each_layer(batch):
    """Each layer of each image, also from the pool's threads."""
    model, _ = _pair(sparsity=0.9)
    x = torch.randn(batch, 3, 64, 64)
    with torch.no_grad():
        model(x)
        with torch.profiler.profile(record_shapes=True) as prof:
            model(x)
    names = sorted(e.name for e in prof.events() if e.name.startswith("fire_kernels::"))
    assert names == sorted((["fire_kernels::conv_relu_maxpool"] + ["fire_kernels::fire_sparse"] * 2
                            + ["fire_kernels::maxpool_fire_sparse", "fire_kernels::fire_sparse"] * 2
                            + ["fire_kernels::fire_sparse"] * 2
                            + ["fire_kernels::conv1x1_relu_avgpool_sparse"]) * batch)


def _quantized(version: str = "1_1", sparsity: float | None = None, sparse="auto"):
    model, _ = _pair(version, sparsity)
    g = torch.Generator().manual_seed(1)
    return fk.quantize_network(model, [torch.rand(2, 3, 64, 64, generator=g)], sparse=sparse)


def _child_by_child(model, x):
    with torch.enable_grad():  # a FusedSequential then runs its children one by one
        return model(x)


@pytest.mark.parametrize("version", ["1_0", "1_1"])
@pytest.mark.parametrize("sparsity,sparse", [(None, "auto"), (0.9, True)], ids=["dense", "sparse"])
@pytest.mark.parametrize("batch", [1, 3])
def test_quantized_program_computes_the_network(version, sparsity, sparse, batch):
    """The int8 steps (stem, Fires dense or sparse, head) give the bytes the quantized
    modules give, the features' program handing the classifier's uint8."""
    model = _quantized(version, sparsity, sparse)
    x = torch.rand(batch, 3, 64, 61)
    expected = _child_by_child(model, x)
    with torch.no_grad():
        assert torch.equal(model(x), expected)  # child by child, making the programs
        native = _native(model.features)
        assert native is not None and _native(model.classifier) is not None
        assert model.features(x).dtype == torch.uint8
        for _ in range(2):
            assert torch.equal(model(x), expected)
    assert _native(model.features) is native


def test_quantized_program_quantizes_and_dequantizes_where_the_modules_do():
    """A padded stem stays float: the first quantized Fire quantizes its input, and the
    last one, which no quantized module reads, dequantizes its output. Its settings,
    scales and buffers are seen."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                          fk.FusedFire(16, 8, 16, 16), fk.FusedFire(32, 8, 16, 16)).eval()
    x = torch.rand(2, 3, 16, 16)
    fk.quantize_network(model, [x])
    assert type(model) is FusedSequential
    assert [type(m) for m in model[3:]] == [fk.QuantizedFire] * 2

    def check(dtype):
        expected = _child_by_child(model, x)
        with torch.no_grad():
            model(x)
            native = _native(model)
            with torch.profiler.profile() as prof:
                out = model(x)
        assert native is not None and _native(model) is native
        assert out.dtype == dtype and torch.equal(out, expected)
        return [e.name for e in prof.events() if e.name.startswith(("fire_kernels::", "aten::mul"))]

    quantize, fire = "fire_kernels::quantize_uint8", "fire_kernels::fire_int8"
    names = check(torch.float32)
    assert names.count(quantize) == 2 and names.count(fire) == 4 and "aten::mul" in names
    model[4].float_output = False
    assert "aten::mul" not in check(torch.uint8)
    model[4].pool = (2, 1, True)
    check(torch.uint8)
    with torch.no_grad():
        model[3].output_scale.mul_(2.0)
        model[4].squeeze.bias.zero_()
    check(torch.uint8)


@pytest.mark.parametrize("batch", [1, 2])
def test_the_profiler_sees_each_int8_layer(batch):
    model = _quantized(sparsity=0.9, sparse=True)
    x = torch.rand(batch, 3, 64, 64)
    with torch.no_grad():
        model(x)
        with torch.profiler.profile() as prof:
            model(x)
    names = sorted(e.name for e in prof.events() if e.name.startswith("fire_kernels::"))
    assert names == sorted((["fire_kernels::stem_int8"] + ["fire_kernels::fire_int8_sparse"] * 8
                            + ["fire_kernels::head_int8_sparse"]) * batch)
