"""quantize_network / QuantizedFire / dequantize_network: whole networks quantized from
calibration inputs, run by the int8 kernels (equal to the int8 reference arithmetic
run module by module), close to the float network, saved and loaded, turned back."""

from __future__ import annotations

import copy

import pytest
import torch

import fire_kernels as fk
from fire_kernels import _extension
from fire_kernels import int8_reference as q8
from fire_kernels.testing import make_fire

pytestmark = pytest.mark.skipif(_extension.C is None, reason="C++ extension unavailable")


def _model(make, seed=0):
    torch.manual_seed(seed)
    return make(num_classes=10).eval()


def _calibration(seed=1, n=2, size=64):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, size, size, generator=g) for _ in range(n)]


@pytest.mark.parametrize("make", [fk.squeezenet1_0, fk.squeezenet1_1])
@pytest.mark.parametrize("weight_bits", [8, 7])
def test_quantized_network_is_close_to_the_float_one(make, weight_bits):
    model = _model(make)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    fk.quantize_network(model, _calibration(), weight_bits=weight_bits)
    fires = [m for m in model.modules() if isinstance(m, fk.QuantizedFire)]
    assert len(fires) == 8 and not any(isinstance(m, fk.FusedFire) for m in model.modules())
    assert isinstance(model.classifier[1], fk.QuantizedHead)
    assert isinstance(model.features[0], fk.QuantizedStem)
    # The stem and every Fire hand uint8 on: to the next Fire, the last one (through
    # the classifier's Dropout) to the head.
    assert [m.float_output for m in [model.features[0], *fires]] == [False] * 9
    with torch.no_grad():
        out = model(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    err = float((out - ref).abs().max() / ref.abs().max())
    assert err < (0.05 if weight_bits == 8 else 0.1), err


def test_kernels_equal_the_reference_arithmetic_layer_by_layer(monkeypatch):
    model = fk.quantize_network(_model(fk.squeezenet1_1), _calibration())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        monkeypatch.setattr(_extension, "C", None)  # every QuantizedFire runs the reference
        ref = model(x)
    assert torch.equal(out, ref)


def test_state_dict_round_trip_keeps_weights_and_scales():
    a = fk.quantize_network(_model(fk.squeezenet1_1), _calibration(seed=1))
    b = fk.quantize_network(_model(fk.squeezenet1_1), _calibration(seed=2, size=48))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = b(x)
        b.load_state_dict(a.state_dict())
        after, expected = b(x), a(x)
    assert not torch.equal(before, expected)  # the calibrations differed
    assert torch.equal(after, expected)  # b repacked what it loaded
    state = a.state_dict()
    assert state["features.3.squeeze.weight"].dtype == torch.int8
    assert state["features.3.input_scale"].dtype == torch.float64
    assert torch.equal(copy.deepcopy(a)(x), expected)


def test_dequantize_network_gives_the_float_model_back():
    model = fk.quantize_network(_model(fk.squeezenet1_1), _calibration())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        quantized = model(x)
        fk.dequantize_network(model)
        assert not any(isinstance(m, (fk.QuantizedStem, fk.QuantizedFire, fk.QuantizedHead))
                       for m in model.modules())
        assert isinstance(model.classifier[1], fk.FusedConvReluAvgPool)
        assert isinstance(model.features[0], fk.FusedConvReluMaxPool)
        assert model.features[0].pool == (3, 2, True) and model.features[0].stride == (2, 2)
        fused = [m for m in model.modules() if isinstance(m, fk.FusedFire)]
        assert [f.pool for f in fused[:5]] == [None, None, (3, 2, True), None, (3, 2, True)]
        back = model(x)
    assert float((back - quantized).abs().max() / back.abs().max()) < 0.03


def test_a_single_fire_quantizes_float_in_and_out():
    torch.manual_seed(0)
    fire = make_fire(16, 8, 12, 20, seed=3).eval()
    x = torch.rand(2, 16, 9, 7)
    model = torch.nn.Sequential(fk.FusedFire.from_fire(fire))
    fk.quantize_network(model, [x])
    qfire = model[0]
    arithmetic = qfire.arithmetic()
    with torch.no_grad():
        out = model(x)
        xq = q8.quantize_activation(x, arithmetic.input_scale)
        expected = q8.dequantize(q8.fire_int8_reference(xq, arithmetic), arithmetic.output_scale)
        uint8_in = qfire(xq)
        empty = model(x[:0])
    assert torch.equal(out, expected) and torch.equal(uint8_in, expected)
    assert empty.shape == (0, 32, 9, 7)
    with pytest.raises(TypeError, match="float or uint8 input"):
        qfire(xq.int())


def test_quantize_uint8_matches_the_reference():
    x = torch.cat([torch.arange(-300, 600).float() * 0.5,
                   torch.tensor([-3.0, 1e9, -1e9, float("nan"), float("inf"), -float("inf")])])
    for t in (x.reshape(1, 1, 6, -1), torch.randn(2, 8, 5, 5) * 4):
        for scale in (1.0, 0.5, 0.013):
            for zero_point in (0, 76, 255):
                assert torch.equal(torch.ops.fire_kernels.quantize_uint8(t, scale, zero_point),
                                   q8.quantize_activation(t, scale, zero_point))
    with pytest.raises(ValueError, match="positive finite scale"):
        torch.ops.fire_kernels.quantize_uint8(x, 0.0)


def test_a_padded_stem_stays_float():
    """The digits example's first conv pads: its input's zero point cannot be folded into
    the bias at the border, so it stays float and its Fires quantize its output."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                                fk.FusedFire(16, 8, 16, 16), fk.FusedFire(32, 8, 16, 16))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
    fk.quantize_network(model, [x])
    assert isinstance(model[0], fk.FusedConvReluMaxPool)
    assert [type(m) for m in model[2:]] == [fk.QuantizedFire] * 2
    assert [m.float_output for m in model[2:]] == [False, True]
    with torch.no_grad():
        out = model(x)
    assert float((out - ref).abs().max() / ref.abs().max()) < 0.03


def test_bad_models_and_calibrations_raise():
    with pytest.raises(ValueError, match="no stem, Fire module or classifier head"):
        fk.quantize_network(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), _calibration())
    with pytest.raises(ValueError, match="gave no input"):
        fk.quantize_network(_model(fk.squeezenet1_1), [])


def test_a_module_handed_uint8_reads_it_at_its_producers_scale():
    """A stem's floor-mode pool drops the conv map's last row, where its largest value
    is: the Fire after it sees a smaller maximum than the stem wrote its uint8 with, and
    must still read the stem's bytes at the stem's scale."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2, 2), fk.FusedFire(8, 4, 8, 8))
    with torch.no_grad():
        model[0].weight.abs_()
        model[0].bias.zero_()
    x = torch.rand(2, 3, 7, 7)
    x[:, :, -1, :] += 10.0  # the largest activations, in the row the pool drops
    with torch.no_grad():
        ref = model(x)
    fk.quantize_network(model, [x])
    stem, fire = model[0], model[3]
    assert isinstance(stem, fk.QuantizedStem) and not stem.float_output
    assert float(fire.input_scale) == float(stem.output_scale)
    with torch.no_grad():
        out = model(x)
    assert float((out - ref).abs().max() / ref.abs().max()) < 0.05


def test_pruned_networks_run_the_sparse_kernels_where_they_pay():
    """A 99 %-pruned network's Fires and head run sparse under 'auto' (their weight
    quads are sparse enough, fire_kernels.int8_ops.int8_sparse_pays), a 50 %-pruned one's
    dense; every choice computes the same bytes as the dense kernels."""
    x = torch.rand(2, 3, 64, 64)
    for amount, runs_sparse in ((0.99, True), (0.5, False)):
        model = fk.prune_network(_model(fk.squeezenet1_1), amount)
        fk.quantize_network(model, _calibration())
        units = [m for m in model.modules() if isinstance(m, (fk.QuantizedFire, fk.QuantizedHead))]
        assert len(units) == 9 and all(m.sparse == "auto" for m in units)
        with torch.no_grad():
            auto = model(x)
            kernels = {m._packed.kernel for m in units}
            sparse_ops = {torch.ops.fire_kernels.fire_int8_sparse,
                          torch.ops.fire_kernels.head_int8_sparse}
            assert (kernels == sparse_ops) if runs_sparse else not kernels & sparse_ops
            for mode in (True, False):
                for m in units:
                    m.sparse = mode
                assert torch.equal(model(x), auto)
    with pytest.raises(ValueError, match="sparse must be 'auto', True or False"):
        units[0].sparse = "yes"
    assert "sparse=False" in repr(units[0])


def test_quantize_network_sets_the_sparse_mode():
    model = fk.prune_network(_model(fk.squeezenet1_1), 0.97)
    fk.quantize_network(model, _calibration(), sparse=False)
    units = [m for m in model.modules() if isinstance(m, (fk.QuantizedFire, fk.QuantizedHead))]
    assert {m.sparse for m in units} == {False}
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert {m._packed.kernel for m in units} == {torch.ops.fire_kernels.fire_int8,
                                                 torch.ops.fire_kernels.head_int8}
    with pytest.raises(ValueError, match="sparse must be"):
        fk.quantize_network(model, _calibration(), sparse="fast")


def test_the_sparse_threshold_follows_the_int8_path():
    """90 % unstructured leaves about a third of the weight quads nonzero: enough for
    the sparse kernels to pay on AVX2 and VNNI, not against AMX's tile multiplies; 80 %
    leaves 0.59, enough only on AVX2."""
    from fire_kernels.int8_ops import INT8_SPARSE_MAX_WORK_DENSITY, int8_sparse_pays
    assert set(INT8_SPARSE_MAX_WORK_DENSITY) == {"avx512_amx", "avx512_vnni", "avx_vnni", "avx2",
                                                 "portable"}
    assert int8_sparse_pays(0.34, "avx2") and int8_sparse_pays(0.34, "avx512_vnni")
    assert not int8_sparse_pays(0.34, "avx512_amx") and not int8_sparse_pays(0.59, "avx512_vnni")
    assert not int8_sparse_pays(0.6, "portable") and int8_sparse_pays(0.2, "avx_vnni")
    C = _extension.C
    C.set_int8_path("portable")
    try:
        assert int8_sparse_pays(0.4)
    finally:
        C.set_int8_path("auto")
