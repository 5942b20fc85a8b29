"""The registered operator: opcheck, torch.compile, autograd and training."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import fire_kernels as fk
from fire_kernels.testing import (
    assert_close_to_reference,
    fire_weights,
    make_fire,
    opcheck_samples,
)

pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


@pytest.mark.parametrize("sample", list(opcheck_samples()), ids=str)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(sample, requires_grad):
    x = sample.input().requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.fire_kernels.fire.default, (x, *fire_weights(sample.fire())))


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_match_reference(fmt, bias):
    ref = make_fire(12, 6, 8, 10, bias=bias)
    fused = fk.FusedFire.from_fire(copy.deepcopy(ref))
    x = torch.randn(2, 12, 7, 8).to(memory_format=fmt)
    x_ref = x.clone().requires_grad_()
    x_fused = x.clone().requires_grad_()
    g = torch.randn(2, 18, 7, 8)
    ref(x_ref).backward(g)
    fused(x_fused).backward(g)
    assert_close_to_reference(x_fused.grad, x_ref.grad)
    for (name, p_ref), p_fused in zip(ref.named_parameters(), fused.parameters()):
        assert p_fused.grad is not None, name
        assert_close_to_reference(p_fused.grad, p_ref.grad)


def test_gradients_only_where_asked():
    m = make_fire(6, 3, 4, 4)
    m.squeeze.weight.requires_grad_(False)
    x = torch.randn(1, 6, 4, 4)
    fk.FusedFire.from_fire(m)(x).sum().backward()
    assert m.squeeze.weight.grad is None and m.expand3x3.weight.grad is not None


def _tiny_net(fire_cls) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        fire_cls(8, 4, 8, 8),
        nn.MaxPool2d(2),
        fire_cls(16, 6, 8, 8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


def test_model_with_fused_fire_trains_like_reference():
    ref = _tiny_net(fk.Fire)
    fused = fk.fuse_fire_modules(copy.deepcopy(ref))
    torch.manual_seed(0)
    x = torch.randn(32, 1, 8, 8)
    y = torch.stack([x[..., :3].mean((1, 2, 3)), x[..., 3:5].mean((1, 2, 3)),
                     x[..., 5:].mean((1, 2, 3))], 1).argmax(1)  # learnable labels
    initial = nn.functional.cross_entropy(fused(x), y).item()

    def step(model, opt):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    # A few steps in lockstep: the same parameters. Plain SGD, whose step is linear
    # in the gradient: Adam divides by the gradient's running magnitude, so on a
    # weight whose gradient is ~0 it turns rounding differences (the kernels and
    # eager PyTorch sum in different orders) into steps of the full learning rate.
    sgd = [torch.optim.SGD(model.parameters(), lr=0.1) for model in (ref, fused)]
    for _ in range(5):
        for model, opt in zip((ref, fused), sgd):
            step(model, opt)
    for p_ref, p_fused in zip(ref.parameters(), fused.parameters()):
        torch.testing.assert_close(p_fused, p_ref, atol=1e-5, rtol=1e-4)
    adam = torch.optim.Adam(fused.parameters(), lr=0.02)
    for _ in range(100):  # and it learns
        loss = step(fused, adam)
    assert loss < 0.5 * initial


def test_compile_fullgraph_inductor():
    model = fk.fuse_fire_modules(_tiny_net(fk.Fire)).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True)
        assert_close_to_reference(compiled(x), expected)


def test_compile_fullgraph_training_step():
    model = fk.fuse_fire_modules(_tiny_net(fk.Fire))
    x = torch.randn(4, 1, 8, 8)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        assert_close_to_reference(g, p.grad)


def _stride_patterns():
    """Inputs whose memory format is clear, ambiguous or degenerate."""
    cl = torch.channels_last
    big = torch.randn(3, 20, 17, 19)
    yield torch.randn(2, 5, 4, 3)
    yield torch.randn(2, 5, 4, 3).to(memory_format=cl)
    yield torch.randn(2, 12, 10, 12).to(memory_format=cl)[:, :, 1:9, 2:11]  # crop
    yield torch.randn(2, 8, 9, 12).permute(0, 3, 1, 2)  # NHWC permuted
    yield big[:2, :12, ::2, ::2]
    yield torch.randn(2, 9, 8, 12).transpose(2, 3)
    yield torch.randn(1, 12, 8, 9).expand(2, 12, 8, 9)
    for shape in [(4, 1, 1, 1), (1, 7, 1, 1), (3, 1, 5, 1), (1, 1, 1, 6), (0, 3, 4, 4), (2, 3, 0, 4)]:
        yield torch.randn(shape)
        yield torch.randn(shape).to(memory_format=cl)
    yield torch.randn(1, 3, 1, 5).transpose(1, 3)
    yield torch.zeros(1, 1, 1, 1).expand(2, 3, 4, 5)  # every stride zero


def test_output_memory_format_is_atens_suggestion():
    """The fake kernels' output layout (fire_kernels.ops.output_memory_format) is the
    one the kernels get from ATen's Tensor::suggest_memory_format, on every stride
    pattern: compared with torch's own Python twin of it (a private API, so only here)."""
    from torch._prims_common import suggest_memory_format

    for x in _stride_patterns():
        assert fk.ops.output_memory_format(x) == suggest_memory_format(x), (x.shape, x.stride())
