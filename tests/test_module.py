"""FusedFire and fuse_fire_modules: the drop-in contract of SPEC §3."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import nn

import fire_kernels as fk
from fire_kernels.testing import assert_close_to_reference, fire_weights, make_fire


def test_same_signature_children_and_state_dict_keys():
    ref = fk.Fire(64, 16, 64, 64)
    fused = fk.FusedFire(64, 16, 64, 64)
    assert list(ref.state_dict()) == list(fused.state_dict())
    for name in ("squeeze", "expand1x1", "expand3x3"):
        assert type(getattr(fused, name)) is nn.Conv2d
    assert fused.inplanes == 64
    # Checkpoints load both ways.
    fused.load_state_dict(ref.state_dict())
    ref.load_state_dict(fused.state_dict())


def test_constructed_module_matches_reference():
    fused = fk.FusedFire(24, 8, 16, 16)
    ref = fk.Fire(24, 8, 16, 16)
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(2, 24, 7, 7)
    assert_close_to_reference(fused(x), ref(x))


def test_from_fire_shares_parameter_objects():
    ref = make_fire(16, 8, 8, 8)
    fused = fk.FusedFire.from_fire(ref)
    ids = {id(p) for p in ref.parameters()}
    assert {id(p) for p in fused.parameters()} == ids
    with torch.no_grad():
        ref.expand3x3.weight.mul_(-1)  # an edit through the old module is seen by the new
    x = torch.randn(1, 16, 6, 6)
    assert_close_to_reference(fused(x), ref(x))


def test_from_fire_rejects_other_modules():
    with pytest.raises(TypeError, match=r"cannot fuse Fire: its .expand3x3 is not a 3x3 nn.Conv2d \(stride 1, padding 1"):
        bad = fk.Fire(8, 4, 4, 4)
        bad.expand3x3 = nn.Conv2d(4, 4, 3, padding=2)
        fk.FusedFire.from_fire(bad)
    with pytest.raises(TypeError, match="cannot fuse Fire: its .expand1x1_activation is ELU, not ReLU"):
        elu = fk.Fire(8, 4, 4, 4)
        elu.expand1x1_activation = nn.ELU()
        fk.FusedFire.from_fire(elu)
    with pytest.raises(TypeError, match="cannot fuse Linear: its .squeeze is not a 1x1 nn.Conv2d"):
        fk.FusedFire.from_fire(nn.Linear(3, 3))


def test_extra_repr_and_backend_attribute():
    m = fk.FusedFire(64, 16, 64, 64, backend="torch")
    assert "64, 16, 64, 64" in repr(m) and "backend='torch'" in repr(m)
    m.backend = "auto"
    assert m.backend == "auto"
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        m.backend = "cuda"


@pytest.mark.parametrize("builder", [fk.squeezenet1_0, fk.squeezenet1_1])
def test_fuse_whole_squeezenet(builder):
    torch.manual_seed(0)
    model = builder().eval()
    ref = copy.deepcopy(model)
    keys = list(model.state_dict())
    assert fk.fuse_fire_modules(model) is model
    fused = [m for m in model.modules() if isinstance(m, fk.FusedFire)]
    assert len(fused) == 8
    assert not any(isinstance(m, fk.Fire) for m in model.modules())
    assert list(model.state_dict()) == keys  # checkpoints still load
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            model.to(memory_format=fmt)
            ref.to(memory_format=fmt)
            xf = x.to(memory_format=fmt)
            out, expected = model(xf), ref(xf)
            assert_close_to_reference(out, expected)
            assert torch.equal(out.argmax(1), expected.argmax(1))


def test_fuse_any_fire_shaped_class_and_filter():
    class MyFire(nn.Module):  # not torchvision's class, same structure
        def __init__(self):
            super().__init__()
            self.squeeze = nn.Conv2d(8, 4, 1)
            self.expand1x1 = nn.Conv2d(4, 6, 1)
            self.expand3x3 = nn.Conv2d(4, 6, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], 1)

    model = nn.Sequential(MyFire(), nn.Sequential(fk.Fire(12, 4, 4, 4)), nn.Conv2d(8, 8, 1))
    fk.fuse_fire_modules(model, filter_fn=lambda m, name: name != "1.0")
    assert isinstance(model[0], fk.FusedFire)
    assert isinstance(model[1][0], fk.Fire)  # filtered out
    assert isinstance(model[2], nn.Conv2d)
    fk.fuse_fire_modules(model, backend="torch")
    assert isinstance(model[1][0], fk.FusedFire) and model[1][0].backend == "torch"
    assert model[0].backend == "auto"  # already fused: left as it was


def test_weight_updates_are_always_seen():
    """Optimizer steps, load_state_dict, in-place edits (also through .data) and
    replaced parameters: the next forward uses the current values."""
    for fmt in (torch.contiguous_format, torch.channels_last):
        ref = make_fire(16, 8, 12, 12)
        fused = fk.FusedFire.from_fire(ref)
        x = torch.randn(2, 16, 7, 7).to(memory_format=fmt)

        def check():
            with torch.no_grad():
                assert_close_to_reference(fused(x), ref(x))

        check()
        opt = torch.optim.SGD(fused.parameters(), lr=0.5)
        fused(x).square().mean().backward()
        opt.step()
        check()
        fused.load_state_dict(make_fire(16, 8, 12, 12, seed=7).state_dict())
        check()
        with torch.no_grad():
            fused.expand3x3.weight[:, :, 1, 1] = 0.0
        check()
        fused.expand3x3.weight.data.mul_(0.5)
        # .data edits bypass version counters: the packed weights need the
        # documented refresh.
        fk.refresh_packed_weights()
        check()
        ref.squeeze.weight = nn.Parameter(torch.randn_like(ref.squeeze.weight) * 0.3)
        check()


def test_concurrent_forwards_from_threads():
    fused = fk.FusedFire.from_fire(make_fire(32, 16, 32, 32))
    inputs = [torch.randn(2, 32, 11 + k, 9) for k in range(8)]
    inputs = [x if k % 2 else x.to(memory_format=torch.channels_last) for k, x in enumerate(inputs)]
    with torch.no_grad():
        expected = [fk.fire_reference(x, *fire_weights(fused)) for x in inputs]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with torch.no_grad():
                for _ in range(20):
                    assert_close_to_reference(fused(inputs[k]), expected[k])
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def _run_and_ops(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, set[str]]:
    """module(x) and the fire_kernels operators it called (packing aside)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = module(x)
    names = {e.name for e in prof.events() if e.name.startswith("fire_kernels::")}
    return out, names - {"fire_kernels::pack_sparse", "fire_kernels::pack_weights"}


def _zero_most_weights(fire: nn.Module, *, through_data: bool = False) -> None:
    """95 % of each conv's weights zeroed in place: a version bump, as pruning does,
    or none when written through ``.data``."""
    with torch.no_grad():
        for conv in (fire.squeeze, fire.expand1x1, fire.expand3x3):
            w = conv.weight.data if through_data else conv.weight
            w.mul_(torch.rand_like(w) < 0.05)


@pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
def test_fast_path_never_repeats_a_stale_choice():
    """FusedFire.forward repeats the last call's dense C++ choice without
    re-deciding, but only while that choice stands: weights edited in place
    (sparse now pays), edits through .data plus refresh_packed_weights(), a
    replaced bias, a changed backend, or a first call made with gradients (which
    always runs dense) all lead back to the full decision."""
    ref = make_fire(16, 8, 12, 12)
    fused = fk.FusedFire.from_fire(ref)
    x = torch.randn(2, 16, 7, 7)
    fused(x)  # gradients wanted: dense, and no fast path recorded
    with torch.no_grad():
        for _ in range(2):  # the second call takes the fast path
            out, ops = _run_and_ops(fused, x)
            assert ops == {"fire_kernels::fire"}
            assert_close_to_reference(out, ref(x))
        _zero_most_weights(ref)
        out, ops = _run_and_ops(fused, x)
        assert ops == {"fire_kernels::fire_sparse"}
        assert_close_to_reference(out, ref(x))
        ref.expand3x3.bias = nn.Parameter(torch.randn_like(ref.expand3x3.bias))
        assert_close_to_reference(_run_and_ops(fused, x)[0], ref(x))
        dense = make_fire(16, 8, 12, 12, seed=3)
        for name in ("squeeze", "expand1x1", "expand3x3"):
            getattr(ref, name).weight.data.copy_(getattr(dense, name).weight)
        fk.refresh_packed_weights()
        for _ in range(2):
            out, ops = _run_and_ops(fused, x)
            assert ops == {"fire_kernels::fire"}
            assert_close_to_reference(out, ref(x))
        _zero_most_weights(ref, through_data=True)  # sparse again, versions unchanged
        fk.refresh_packed_weights()
        out, ops = _run_and_ops(fused, x)
        assert ops == {"fire_kernels::fire_sparse"}
        assert_close_to_reference(out, ref(x))
        fused.sparse = False
        for _ in range(2):
            assert _run_and_ops(fused, x)[1] == {"fire_kernels::fire"}
        fused.backend = "torch"
        out, ops = _run_and_ops(fused, x)
        assert ops == set()
        assert_close_to_reference(out, ref(x))

    # A first call with gradients does not decide for later inference.
    sparse_ref = make_fire(16, 8, 12, 12)
    _zero_most_weights(sparse_ref)
    sparse_fused = fk.FusedFire.from_fire(sparse_ref)
    assert _run_and_ops(sparse_fused, x)[1] == {"fire_kernels::fire"}
    with torch.no_grad():
        assert _run_and_ops(sparse_fused, x)[1] == {"fire_kernels::fire_sparse"}


@pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.filterwarnings("ignore:FusedFire. its weights are inference tensors")
def test_weights_made_under_inference_mode(fmt):
    """Weights made under torch.inference_mode (here by ``.to(memory_format=...)``
    there) have no version counter: FusedFire runs them, warning that nothing can be
    cached, and sees each in-place edit made under inference mode (nothing cached
    that could go stale)."""
    ref = make_fire(16, 8, 12, 12)
    x = torch.randn(2, 16, 7, 7).to(memory_format=fmt)
    with torch.inference_mode():
        fused = fk.FusedFire.from_fire(copy.deepcopy(ref)).to(memory_format=torch.channels_last)
        assert fused.expand3x3.weight.is_inference()
        for _ in range(2):
            with pytest.warns(UserWarning, match="inference tensors"):
                out, ops = _run_and_ops(fused, x)
            assert ops == {"fire_kernels::fire"}
            assert_close_to_reference(out, ref(x))
        _zero_most_weights(fused)
        ref.load_state_dict(fused.state_dict())
        for _ in range(2):
            out, ops = _run_and_ops(fused, x)
            assert ops == {"fire_kernels::fire_sparse"}
            assert_close_to_reference(out, ref(x))
        fused.expand1x1.bias.add_(1.0)
        ref.load_state_dict(fused.state_dict())
        assert_close_to_reference(fused(x), ref(x))
