"""The int8 reference arithmetic (fire_kernels.int8_reference): quantization of
weights, biases and activations, exact integer accumulation against plain Python
integers, the requantization's rounding and clamping, and the int8 Fire against the
float Fire it stands for."""

from __future__ import annotations

import itertools

import pytest
import torch

from fire_kernels import int8_reference as q8
from fire_kernels.reference import fire_reference
from fire_kernels.testing import fire_weights, make_fire


def test_weights_are_symmetric_per_output_channel():
    torch.manual_seed(0)
    w = torch.randn(5, 3, 3, 3)
    w[2] = 0.0  # a pruned channel
    w[4, 0, 0, 0] = -40.0  # one large weight sets its channel's scale
    wq, scale = q8.quantize_weight(w)
    assert wq.dtype == torch.int8 and scale.dtype == torch.float32
    assert int(wq.abs().max()) == 127 and int(wq.min()) >= -127
    assert torch.equal(scale, torch.tensor([float(w[o].abs().max()) / 127 if o != 2 else 1.0
                                            for o in range(5)]))
    assert torch.equal(wq[2], torch.zeros_like(wq[2]))
    assert int(wq[4, 0, 0, 0]) == -127
    err = (wq.float() * scale.reshape(-1, 1, 1, 1) - w).abs()
    assert bool((err <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7).all())


def test_bias_in_accumulator_units_rounds_half_to_even_and_saturates():
    b = torch.tensor([2.5, 3.5, -2.5, 1e12, -1e12])
    q = q8.quantize_bias(b, 0.5, torch.full((5,), 2.0))  # unit 1.0
    assert q.dtype == torch.int32
    assert q.tolist() == [2, 4, -2, 2**30, -(2**30)]
    assert q8.quantize_bias(None, 0.1, torch.ones(3)).tolist() == [0, 0, 0]


def test_activations_round_half_to_even_and_clamp():
    x = torch.tensor([-1.0, 0.0, 0.25, 0.75, 1.25, 63.6, 100.0])
    q = q8.quantize_activation(x, 0.5)
    assert q.dtype == torch.uint8
    assert q.tolist() == [0, 0, 0, 2, 2, 127, 200]
    assert q8.quantize_activation(torch.tensor([300.0]), 1.0).tolist() == [255]
    assert torch.equal(q8.dequantize(q, 0.5), torch.tensor([0, 0, 0, 1, 1, 63.5, 100.0]))
    assert q8.activation_scale(51.0) == 0.2
    assert q8.activation_scale(0.0) == 1.0 and q8.activation_scale(float("nan")) == 1.0


def test_requantize_rounds_the_float32_product_half_to_even():
    acc = torch.tensor([5, 7, -5, 9, 600, 2**24 + 1], dtype=torch.int64).reshape(1, 6, 1, 1)
    m = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 2.0**-17])
    out = q8.requantize(acc, m).flatten().tolist()
    # 2.5 -> 2, 3.5 -> 4, ReLU, 4.5 -> 4, saturated, float32(2**24 + 1) == 2**24 -> 128
    assert out == [2, 4, 0, 4, 255, 128]
    assert q8.requantize(acc, m, output_zero_point=10, relu=False).flatten().tolist()[:3] == [
        12, 14, 8]
    assert q8.requantize(acc, m, output_zero_point=10).flatten().tolist()[2] == 10


def _naive_accumulate(xq, x_zp, conv, padding, stride):
    """The accumulators in Python integers, one multiply-add at a time."""
    n, c, h, w = xq.shape
    o, _, k, _ = conv.weight.shape
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    x, wt, b = xq.tolist(), conv.weight.tolist(), conv.bias.tolist()
    out = torch.zeros(n, o, ho, wo, dtype=torch.int64)
    for i, oc, y, xx in itertools.product(range(n), range(o), range(ho), range(wo)):
        acc = b[oc]
        for ci, dy, dx in itertools.product(range(c), range(k), range(k)):
            iy, ix = y * stride - padding + dy, xx * stride - padding + dx
            v = x[i][ci][iy][ix] - x_zp if 0 <= iy < h and 0 <= ix < w else 0
            acc += wt[oc][ci][dy][dx] * v
        out[i, oc, y, xx] = acc
    return out


@pytest.mark.parametrize("k,padding,stride,x_zp", [(1, 0, 1, 0), (3, 1, 1, 0), (3, 0, 2, 17)])
def test_accumulators_are_exact_integers(k, padding, stride, x_zp):
    torch.manual_seed(1)
    xq = torch.randint(0, 256, (2, 4, 5, 6), dtype=torch.uint8)
    conv = q8.quantize_conv(torch.randn(3, 4, k, k), torch.randn(3), 0.02, 0.1)
    got = q8.accumulate(xq, x_zp, conv, padding, stride)
    assert got.dtype == torch.int64
    assert torch.equal(got, _naive_accumulate(xq, x_zp, conv, padding, stride))


@pytest.mark.parametrize("shape", [(2, 16, 7, 9), (1, 3, 1, 1), (1, 64, 13, 13)])
def test_int8_fire_stands_for_the_float_fire(shape):
    """Calibrated on its own input (max / 255 for each post-ReLU tensor), the int8
    Fire's dequantized output is the float Fire's within a few output steps."""
    n, c, h, w = shape
    fire = make_fire(c, max(2, c // 4), 8, 8, seed=3)
    weights = fire_weights(fire)
    torch.manual_seed(2)
    x = torch.relu(torch.randn(n, c, h, w))
    with torch.no_grad():
        squeeze = torch.relu(torch.nn.functional.conv2d(x, weights[0], weights[1]))
        ref = fire_reference(x, *weights)
    s_in, s_sq, s_out = (q8.activation_scale(float(t.max())) for t in (x, squeeze, ref))
    qfire = q8.quantize_fire(weights, s_in, s_sq, s_out)
    out = q8.fire_int8_reference(q8.quantize_activation(x, s_in), qfire)
    assert out.dtype == torch.uint8 and out.shape == ref.shape
    err = (q8.dequantize(out, s_out) - ref).abs()
    assert float(err.max()) <= 4 * s_out
    assert float(err.mean()) <= 0.5 * s_out
    # The concat: the expand 1x1 first, from the one requantized squeeze.
    sq = q8.conv_int8_reference(q8.quantize_activation(x, s_in), 0, qfire.squeeze)
    assert torch.equal(out[:, :8], q8.conv_int8_reference(sq, 0, qfire.expand1x1))


def test_seven_bit_weights_stay_within_63():
    torch.manual_seed(1)
    w = torch.randn(6, 4, 3, 3)
    wq, scale = q8.quantize_weight(w, bits=7)
    assert int(wq.abs().max()) == 63
    assert torch.allclose(scale, w.abs().reshape(6, -1).amax(1) / 63)
    with pytest.raises(ValueError, match="expected 7 or 8 bits"):
        q8.quantize_weight(w, bits=4)
