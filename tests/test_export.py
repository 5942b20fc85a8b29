"""Copy, save, go back, export (SPEC §3): copies carry no cached packs, a fused model
turns back into plain Fires with the same Parameters, torch.export works on it, and
ONNX export goes through the unfused model."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import fire_kernels as fk
from fire_kernels.testing import assert_close_to_reference, make_fire


def _run(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x)


def _pickle(m):
    return pickle.loads(pickle.dumps(m))


def _torch_save(m):
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("copier", [copy.deepcopy, _pickle, _torch_save],
                         ids=["deepcopy", "pickle", "torch.save"])
@pytest.mark.parametrize("sparse", ["auto", True, False])
def test_copies_carry_no_plan(copier, sparse):
    """A module that has run is copied without its plan; the copy makes its own, and
    changing the copy changes neither the original's weights nor its outputs."""
    ref = make_fire(16, 8, 16, 16, density=0.1)
    fused = fk.FusedFire.from_fire(copy.deepcopy(ref), sparse=sparse)
    x = torch.randn(2, 16, 6, 7)
    _run(fused, x)
    assert fused.weight_plan is not None
    twin = copier(fused)
    assert twin.weight_plan is None
    assert_close_to_reference(_run(twin, x), _run(ref, x))
    with torch.no_grad():
        twin.expand3x3.weight.mul_(-1)
    assert_close_to_reference(_run(fused, x), _run(ref, x))
    assert not torch.equal(_run(twin, x), _run(fused, x))


def test_to_fire_and_unfuse_share_parameters():
    model = fk.squeezenet1_1().eval()
    params = {name: id(p) for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    expected = _run(model, x)
    fk.fuse_fire_modules(model)
    assert fk.unfuse_fire_modules(model) is model
    assert not any(isinstance(m, fk.FusedFire) for m in model.modules())
    assert sum(isinstance(m, fk.Fire) for m in model.modules()) == 8
    assert {name: id(p) for name, p in model.named_parameters()} == params
    assert list(model.state_dict()) == keys
    assert_close_to_reference(_run(model, x), expected)
    fused = fk.FusedFire.from_fire(make_fire(8, 4, 4, 4))
    fire = fused.to_fire()
    assert type(fire) is fk.Fire and fire.squeeze is fused.squeeze
    assert fire.training == fused.training


def test_torch_export_of_a_fused_model():
    torch.manual_seed(0)
    model = fk.fuse_fire_modules(fk.squeezenet1_1()).eval()
    x = torch.randn(2, 3, 64, 64)
    program = torch.export.export(model, (x,))
    called = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "fire_kernels.fire.default" in called
    assert_close_to_reference(_run(program.module(), x), _run(model, x))


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
def test_onnx_export_through_the_unfused_model(tmp_path):
    """The documented route: unfuse a copy, export it; ONNX Runtime runs what the
    fused model computes."""
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = fk.fuse_fire_modules(fk.squeezenet1_1()).eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "squeezenet.onnx"
    torch.onnx.export(fk.unfuse_fire_modules(copy.deepcopy(model)), (x,), str(path), dynamo=False,
                      input_names=["x"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": x.numpy()})
    assert_close_to_reference(torch.from_numpy(out), _run(model, x))
    assert any(isinstance(m, fk.FusedFire) for m in model.modules())  # the original stays fused
