"""Whole networks: the fused stem, pool -> Fire and classifier head against the
unfused modules (every pattern, layout, ISA, odd shape, batch 0, bad input, opcheck,
gradients), and fuse_network / prune_network on SqueezeNet."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as Fn
from torch import nn

import fire_kernels as fk
from fire_kernels import functional as F
from fire_kernels.testing import assert_close_to_reference, fire_weights, make_fire, make_input

needs_cpp = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")
LAYOUTS = ["contiguous", "channels_last", "strided"]


def _conv(o, c, k, seed=0, bias=True, density=1.0):
    torch.manual_seed(seed)
    w = torch.randn(o, c, k, k) * (1.5 / (c * k * k) ** 0.5)
    if density < 1.0:
        w = w * (torch.rand_like(w) < density)
    return w, (torch.rand(o) * 0.7 - 0.2 if bias else None)


def _stem_reference(x, w, b, stride, padding, pool):
    return Fn.max_pool2d(torch.relu(Fn.conv2d(x, w, b, stride, padding)), pool[0], pool[1],
                         ceil_mode=pool[2])


STEMS = [
    # (C, O, k, stride, padding, pool, H, W)
    (3, 64, 3, 2, 0, (3, 2, True), 37, 31),  # SqueezeNet 1.1's, on odd sizes (ceil-mode tails)
    (3, 96, 7, 2, 0, (3, 2, True), 41, 38),  # SqueezeNet 1.0's
    (3, 8, 3, 1, 1, (1, 1, False), 5, 6),  # no pool
    (4, 20, 5, 2, 2, (2, 2, False), 17, 13),  # padding, pool without ceil mode
    (1, 5, 3, 2, 0, (3, 2, True), 5, 5),  # a 2x2 conv output, a 1x1 pooled output
    (2, 17, 1, 1, 0, (3, 3, True), 4, 7),  # 1x1 conv, stride-3 pool
]


@needs_cpp
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", STEMS, ids=lambda c: "x".join(map(str, c[:5])))
def test_stem(case, layout, isa):
    c, o, k, stride, padding, pool, h, w = case
    x = make_input(2, c, h, w, layout)
    weight, bias = _conv(o, c, k)
    out = F.conv_relu_maxpool(x, weight, bias, stride=stride, padding=padding,
                              pool_kernel=pool[0], pool_stride=pool[1], pool_ceil_mode=pool[2])
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close_to_reference(out, _stem_reference(x, weight, bias, stride, padding, pool))


HEADS = [(512, 1000, 13, 13), (7, 5, 3, 4), (64, 33, 1, 1), (16, 16, 9, 1)]


@needs_cpp
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", HEADS, ids=lambda c: "x".join(map(str, c)))
def test_head_dense_and_sparse(case, layout, isa):
    c, o, h, w = case
    x = torch.relu(make_input(2, c, h, w, layout))
    weight, bias = _conv(o, c, 1)
    ref = torch.relu(Fn.conv2d(x, weight, bias)).mean((2, 3), keepdim=True)
    assert_close_to_reference(F.conv1x1_relu_avgpool(x, weight, bias), ref)
    pruned, _ = _conv(o, c, 1, density=0.1)
    ref = torch.relu(Fn.conv2d(x, pruned, bias)).mean((2, 3), keepdim=True)
    for block in (1, 4):
        packed = F.pack_sparse_conv1x1(pruned, block)
        assert_close_to_reference(F.conv1x1_relu_avgpool_sparse(x, packed, bias), ref)


POOLED_FIRES = [
    # (N, C, S, E1, E3, H, W, pool)
    (2, 64, 16, 64, 64, 27, 27, (3, 2, True)),  # SqueezeNet's
    (1, 32, 8, 12, 20, 10, 9, (3, 2, True)),  # ceil-mode tails on one axis
    (1, 16, 4, 8, 8, 9, 40, (3, 2, True)),  # the other axis, whole vectors along a row
    (1, 256, 8, 8, 8, 41, 81, (3, 2, True)),  # NCHW: more pooled rows than one pass holds
    (3, 16, 5, 7, 9, 7, 8, (2, 2, False)),
    (1, 20, 4, 8, 8, 3, 3, (3, 2, True)),  # a 1x1 pooled map
    (1, 24, 6, 6, 6, 40, 5, (3, 3, True)),
]


@needs_cpp
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", POOLED_FIRES, ids=lambda c: "x".join(map(str, c[:7])))
def test_pool_fused_into_fire(case, layout, isa):
    n, c, s, e1, e3, h, w, pool = case
    x = make_input(n, c, h, w, layout)
    pooled = Fn.max_pool2d(x, pool[0], pool[1], ceil_mode=pool[2])
    m = make_fire(c, s, e1, e3)
    assert_close_to_reference(F.fire(x, *fire_weights(m), pool=pool), m(pooled))
    mp = make_fire(c, s, e1, e3, density=0.1)
    ws, bs, we1, be1, we3, be3 = fire_weights(mp)
    for block in (1, 4):
        packed = F.pack_sparse(ws, we1, we3, block, pooled.shape[3])
        out = F.fire_sparse(x, packed, bs, be1, be3, pool=pool)
        assert_close_to_reference(out, mp(pooled))


@needs_cpp
def test_nan_reaches_the_pool_as_in_pytorch(isa):
    """Max pooling keeps a NaN (as torch's does), fused or not: in a row's vectors,
    its tail and its last column."""
    x = torch.randn(1, 8, 9, 41)
    x[0, 2, 4, 4] = x[0, 5, 1, 20] = x[0, 7, 8, 40] = float("nan")
    weight, bias = _conv(6, 8, 1)
    m = make_fire(8, 4, 6, 6)
    pool = (3, 2, True)
    with torch.no_grad():
        out = F.fire(x, *fire_weights(m), pool=pool)
        ref = m(Fn.max_pool2d(x, 3, 2, ceil_mode=True))
    assert torch.equal(out.isnan(), ref.isnan())
    stem = F.conv_relu_maxpool(x[:, :3], *_conv(4, 3, 3), stride=1, padding=1, pool_kernel=3,
                               pool_stride=2, pool_ceil_mode=True)
    stem_ref = _stem_reference(x[:, :3], *_conv(4, 3, 3), 1, 1, pool)
    assert torch.equal(stem.isnan(), stem_ref.isnan())


@needs_cpp
def test_batch_zero():
    weight, bias = _conv(8, 3, 3)
    x = torch.randn(0, 3, 9, 9)
    assert F.conv_relu_maxpool(x, weight, bias, stride=2, padding=0, pool_kernel=3, pool_stride=2,
                               pool_ceil_mode=True).shape == (0, 8, 2, 2)
    assert F.conv1x1_relu_avgpool(torch.randn(0, 8, 3, 3), *_conv(5, 8, 1)).shape == (0, 5, 1, 1)
    m = make_fire(8, 4, 6, 6)
    assert F.fire(torch.randn(0, 8, 9, 9), *fire_weights(m), pool=(3, 2, True)).shape == (0, 12, 4, 4)


def _stem_args():
    weight, bias = _conv(8, 3, 3)
    return torch.randn(2, 3, 9, 9), weight, bias, 2, 0, 3, 2, True


@needs_cpp
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_bad_input(backend):
    x, weight, bias, *args = _stem_args()
    kw = dict(zip(("stride", "padding", "pool_kernel", "pool_stride", "pool_ceil_mode"), args))
    with pytest.raises(ValueError, match=r"conv_relu_maxpool expected 3 input channels, got 4"):
        F.conv_relu_maxpool(torch.randn(2, 4, 9, 9), weight, bias, backend=backend, **kw)
    with pytest.raises(ValueError, match=r"square conv weight \[O, C, k, k\], got \[8, 3, 3, 2\]"):
        F.conv_relu_maxpool(x, weight[..., :2], bias, backend=backend, **kw)
    with pytest.raises(ValueError, match="the conv's 1x1 output is smaller than the pool's 3x3"):
        F.conv_relu_maxpool(x[:, :, :3, :3], weight, bias, backend=backend, **kw)
    with pytest.raises(TypeError, match="expected a floating-point input, got torch.int64"):
        F.conv1x1_relu_avgpool(torch.zeros(1, 8, 2, 2, dtype=torch.long), *_conv(5, 8, 1),
                               backend=backend)
    with pytest.raises(ValueError, match=r"1x1 conv weight \[O, C, 1, 1\], got \[5, 8, 3, 3\]"):
        F.conv1x1_relu_avgpool(torch.randn(1, 8, 2, 2), *_conv(5, 8, 3), backend=backend)
    m = make_fire(8, 4, 6, 6)
    with pytest.raises(ValueError, match="maxpool_fire: the input's 1x9 pixels are fewer than "
                                         "the pool's 3x3 window"):
        F.fire(torch.randn(1, 8, 1, 9), *fire_weights(m), pool=(3, 2, True), backend=backend)
    # ceil mode: a window that hangs over the edge of a 2-row input still counts
    assert F.fire(torch.randn(1, 8, 2, 9), *fire_weights(m), pool=(3, 2, True),
                  backend=backend).shape == (1, 12, 1, 4)


@needs_cpp
def test_ops_called_directly_say_what_python_says():
    from fire_kernels.validation import check_head_args, check_stem_args

    x, weight, bias, *args = _stem_args()
    mistakes = [
        (check_stem_args, torch.ops.fire_kernels.conv_relu_maxpool, (x[:, :2], weight, bias, *args)),
        (check_stem_args, torch.ops.fire_kernels.conv_relu_maxpool, (x, weight, bias[:3], *args)),
        (check_stem_args, torch.ops.fire_kernels.conv_relu_maxpool,
         (x[:, :, :2, :2], weight, bias, *args)),
        (check_head_args, torch.ops.fire_kernels.conv1x1_relu_avgpool,
         (x, weight[:, :, :1, :1].double(), None)),
    ]
    for check, op, call in mistakes:
        with pytest.raises((TypeError, ValueError, RuntimeError)) as python:
            check(*call)
        with pytest.raises(type(python.value)) as cpp:
            op(*call)
        assert str(cpp.value) == str(python.value)


@needs_cpp
def test_opcheck():
    x, weight, bias, *args = _stem_args()
    torch.library.opcheck(torch.ops.fire_kernels.conv_relu_maxpool.default,
                          (x.requires_grad_(), weight, bias, *args))
    hx = torch.randn(2, 8, 3, 4, requires_grad=True)
    hw, hb = _conv(5, 8, 1)
    torch.library.opcheck(torch.ops.fire_kernels.conv1x1_relu_avgpool.default, (hx, hw, hb))
    packed = F.pack_sparse_conv1x1(hw * (torch.rand_like(hw) < 0.3), 4)
    torch.library.opcheck(torch.ops.fire_kernels.conv1x1_relu_avgpool_sparse.default,
                          (hx.detach(), packed.values, packed.index, hb, 5, 4))
    torch.library.opcheck(torch.ops.fire_kernels.pack_sparse_conv1x1.default, (hw, 1),
                          test_utils=("test_schema", "test_faketensor"))
    m = make_fire(8, 4, 6, 6)
    fx = torch.randn(2, 8, 9, 8).to(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.fire_kernels.maxpool_fire.default,
                          (fx, *fire_weights(m), 3, 2, True))
    ws, bs, we1, be1, we3, be3 = (t.detach() for t in fire_weights(make_fire(8, 4, 6, 6, density=0.2)))
    p = F.pack_sparse(ws, we1, we3, 1, 4)
    torch.library.opcheck(torch.ops.fire_kernels.maxpool_fire_sparse.default,
                          (fx.detach(), p.squeeze_values, p.squeeze_index, bs, p.expand_values,
                           p.expand_index, be1, be3, 4, 6, 6, 1, 4, 3, 2, True))


# ---------------------------------------------------------------- fuse_network


def _models():
    torch.manual_seed(0)
    return [fk.squeezenet1_1(), fk.squeezenet1_0()]


@pytest.mark.parametrize("model", _models(), ids=["v1_1", "v1_0"])
def test_fuse_network_keeps_parameters_and_outputs(model):
    model.eval()
    ref = copy.deepcopy(model)
    params = {name: id(p) for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    assert fk.fuse_network(model) is model
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("FusedFire") == 8 and kinds.count("FusedConvReluMaxPool") == 1
    assert kinds.count("FusedConvReluAvgPool") == 1
    assert sum(isinstance(m, fk.FusedFire) and m.pool is not None for m in model.modules()) == 2
    assert {name: id(p) for name, p in model.named_parameters()} == params
    assert list(model.state_dict()) == keys
    x = torch.randn(2, 3, 99, 101)
    with torch.no_grad():
        for layout in (torch.contiguous_format, torch.channels_last):
            assert_close_to_reference(model(x.to(memory_format=layout)), ref(x))
    fk.unfuse_fire_modules(model)
    assert [type(m) for m in model.modules()] == [type(m) for m in ref.modules()]
    with torch.no_grad():
        assert_close_to_reference(model(x), ref(x))


@needs_cpp
@pytest.mark.parametrize("block", [1, 4])
def test_pruned_network_runs_every_pruned_conv_sparse(block):
    torch.manual_seed(0)
    model = fk.prune_network(fk.squeezenet1_1().eval(), 0.9, block=block)
    assert int((model.features[0].weight == 0).sum()) == 0  # the stem stays dense
    ref = copy.deepcopy(model)
    fk.fuse_network(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close_to_reference(model(x), ref(x))
    planned = [m for m in model.modules() if isinstance(m, (fk.FusedFire, fk.FusedConvReluAvgPool))]
    assert len(planned) == 9
    assert all(m.weight_plan.sparse is not None and m.weight_plan.sparse.block == block
               for m in planned)
    report = fk.sparsity_report(model)
    assert [c.name for c in report.convs] == ["features.0", "classifier.1"]
    assert abs(report.convs[1].density - 0.1) < 1e-3


def test_fused_network_trains_and_compiles():
    torch.manual_seed(0)
    model = fk.fuse_network(fk.squeezenet1_1(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()  # dropout on, gradients through every fused op
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        expected = model(x)
        assert_close_to_reference(torch.compile(model, fullgraph=True)(x), expected)


def test_fuse_network_leaves_other_patterns_alone():
    net = nn.Sequential(nn.Conv2d(16, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(2))
    fk.fuse_network(net)  # a 16-channel conv is no stem; a pool to 2x2 is no head
    assert [type(m) for m in net] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU,
                                      nn.AdaptiveAvgPool2d]
