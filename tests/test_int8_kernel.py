"""The fused int8 Fire kernels (torch.ops.fire_kernels.fire_int8, and fire_int8_sparse
on pruned weights) against the int8 reference arithmetic (fire_kernels.int8_reference),
bit for bit: every int8 path (AVX-512 VNNI, AVX-VNNI, AVX2 with and without the 7-bit
weights its fast product needs, portable), the SqueezeNet layers dense and pruned, odd
shapes, layouts, threads, the inputs and weights that would saturate AVX2's 16-bit
products, the heads and stems, bad arguments and opcheck."""

from __future__ import annotations

import pytest
import torch

import fire_kernels as fk
from fire_kernels import int8_reference as q8
from fire_kernels.int8_ops import (expand_work_density, fire_int8, fire_int8_sparse, head_int8,
                                   head_int8_sparse, pack_int8, pack_int8_sparse, pack_int8_stem,
                                   quad_density, sparse_expands, stem_int8)
from fire_kernels.reference import fire_reference
from fire_kernels.testing import FireSample, fire_weights, odd_samples, squeezenet_samples

pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")

ALL_PATHS = ("avx512_amx", "avx512_vnni", "avx_vnni", "avx2", "portable")


@pytest.fixture(params=ALL_PATHS)
def int8_path(request):
    """Runs a test once per int8 kernel path (skipped, with the reason shown, where
    this CPU cannot run it), then restores 'auto'."""
    C = fk._extension.C
    if request.param not in C.available_int8_paths():
        pytest.skip(f"this CPU cannot run the {request.param} int8 kernels")
    C.set_int8_path(request.param)
    yield request.param
    C.set_int8_path("auto")


@pytest.fixture(params=["dense", "sparse"])
def kernel(request):
    """Runs a test once on the dense and once on the sparse int8 kernels."""
    return request.param


@torch.no_grad()
def quantized(sample: FireSample, weight_bits: int = 8):
    """The sample's input (made non-negative: a Fire's input follows a ReLU) as uint8
    in the sample's layout, and its Fire quantized with scales from its float run."""
    fire = sample.fire()
    x = sample.input().abs()
    weights = fire_weights(fire)
    ws, bs = weights[0], weights[1]
    squeeze = torch.relu(torch.nn.functional.conv2d(x, ws, bs))
    out = fire_reference(x, *weights)
    scales = [q8.activation_scale(float(t.max())) if t.numel() else 1.0
              for t in (x, squeeze, out)]
    xq = q8.quantize_activation(x, scales[0])
    if sample.layout == "channels_last":
        xq = xq.contiguous(memory_format=torch.channels_last)
    elif sample.layout == "strided":
        xq = torch.cat([xq, xq], 3)[..., ::2]
    return xq, q8.quantize_fire(weights, *scales, weight_bits=weight_bits)


def assert_exact(xq: torch.Tensor, fire: q8.QuantizedFire,
                 pool: tuple[int, int, bool] | None = None, kernel: str = "dense") -> torch.Tensor:
    run = fire_int8_sparse if kernel == "sparse" else fire_int8
    if pool is None:
        out, pooled = run(xq, fire), xq
    else:
        out = run(xq, fire, pool)
        pooled = torch.nn.functional.max_pool2d(xq.float(), pool[0], pool[1],
                                                ceil_mode=pool[2]).to(torch.uint8)
    ref = q8.fire_int8_reference(pooled, fire)
    assert out.dtype == torch.uint8 and out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    diff = (out.int() - ref.int()).abs()
    assert int(diff.max()) == 0 if diff.numel() else True, (
        f"{int((diff > 0).sum())} of {diff.numel()} outputs differ, by up to {int(diff.max())}")
    return out


@pytest.mark.parametrize("weight_bits", [8, 7])
@pytest.mark.parametrize("sample", [pytest.param(s, id=s.name) for s in squeezenet_samples()])
def test_squeezenet_layers_match_the_reference(int8_path, sample, weight_bits):
    out = assert_exact(*quantized(sample, weight_bits))
    assert int(out.max()) > 0  # not a Fire of zeros


@pytest.mark.parametrize("sample", [pytest.param(s, id=s.name)
                                    for s in squeezenet_samples(density=0.1)])
def test_pruned_squeezenet_layers_match_the_reference_sparse(int8_path, sample):
    xq, fire = quantized(sample)
    assert 0.2 < expand_work_density(fire.expand1x1.weight, fire.expand3x3.weight) < 0.5
    out = assert_exact(xq, fire, kernel="sparse")
    assert int(out.max()) > 0


@pytest.mark.parametrize("sample", [pytest.param(s, id=str(s)) for s in [
    *odd_samples(),
    *odd_samples(layout="channels_last")[:5],
    FireSample(2, 10, 6, 7, 9, 5, 6, layout="strided"),
    FireSample(3, 5, 3, 4, 4, 4, 4, bias=False),
    FireSample(1, 64, 16, 64, 64, 27, 27, density=0.1),
    FireSample(2, 96, 16, 64, 64, 55, 55, layout="channels_last"),
    # Squeeze channels past one 64-byte step (AMX: two squeeze blocks, a 3x3 row of
    # 240 bytes in 4 steps), 200 input channels (3 steps and 8 bytes).
    FireSample(1, 200, 80, 20, 36, 9, 9),
]])
def test_odd_shapes_and_layouts_match_the_reference(int8_path, kernel, sample):
    for weight_bits in (8, 7):
        assert_exact(*quantized(sample, weight_bits), kernel=kernel)


@pytest.mark.parametrize("pool", [(3, 2, True), (3, 2, False), (2, 2, False), (3, 1, True)])
@pytest.mark.parametrize("shape", [(1, 16, 8, 16, 16, 13, 13), (2, 7, 5, 9, 6, 6, 9),
                                   (1, 64, 16, 64, 64, 55, 55), (1, 3, 2, 3, 5, 3, 3)],
                         ids=lambda s: "x".join(map(str, s)))
def test_fused_max_pool_matches_pooling_first(int8_path, kernel, pool, shape):
    """The pool read into the squeeze (ceil-mode windows clipped at the edge, maps
    pooled down to 1x1) against pooling the uint8 input first."""
    xq, fire = quantized(FireSample(*shape, layout="channels_last", seed=sum(shape)))
    assert_exact(xq, fire, pool, kernel)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_any_number_of_threads(int8_path, kernel, threads):
    torch.set_num_threads(threads)
    for n in (1, 2, 5):
        assert_exact(*quantized(FireSample(n, 32, 16, 24, 40, 13, 13, seed=n, density=0.3)),
                     kernel=kernel)


def _saturating_fire(c: int, s: int, e: int, w: int) -> q8.QuantizedFire:
    """A Fire whose int8 weights all have magnitude ``w``: the squeeze's all positive,
    the expands' signs alternating per output channel, multipliers 1 / (w * K) for K
    products. On an all-255 input the squeeze is all 255 and every product is as large
    as it can be, of one sign per output channel."""
    def conv(o, i, k, alternate):
        sign = torch.tensor([-1 if alternate and j % 2 else 1 for j in range(o)],
                            dtype=torch.int8)
        weight = (sign.reshape(-1, 1, 1, 1) * w).expand(o, i, k, k).contiguous()
        return q8.QuantizedConv(weight, torch.ones(o), torch.zeros(o, dtype=torch.int32),
                                torch.full((o,), 1 / (w * i * k * k)))
    return q8.QuantizedFire(1.0, 1.0, 1.0, conv(s, c, 1, False), conv(e, s, 1, True),
                            conv(e, s, 3, True))


@pytest.mark.parametrize("w", [127, 64, 65])
def test_products_that_would_saturate_16_bits_are_exact(int8_path, kernel, w):
    """All-255 inputs against weights of magnitude 127 (a pair's products sum to
    64770, past int16: AVX2 must widen), 64 (32640, the most vpmaddubsw holds: AVX2
    takes its fast product) and 65 (just past it). Every output is the exact
    accumulator requantized: 255 or 0 in alternate channels, where the 3x3 sees its
    nine taps; fewer at the border."""
    fire = _saturating_fire(12, 8, 16, w)
    xq = torch.full((1, 12, 5, 6), 255, dtype=torch.uint8)
    out = assert_exact(xq, fire, kernel=kernel)
    assert int(out[:, :16:2].min()) == 255 and int(out[:, 1::2].max()) == 0
    assert int(out[0, 16, 2, 2]) == 255 and int(out[0, 16, 0, 0]) == 113  # 4 of 9 taps


@pytest.mark.parametrize("weight_bits", [8, 7])
@pytest.mark.parametrize("shape", [(1, 512, 13, 13, 1000), (3, 7, 5, 3, 10), (2, 64, 1, 1, 17),
                                   (16, 96, 4, 4, 130), (0, 8, 3, 3, 5)],
                         ids=lambda s: "x".join(map(str, s)))
def test_head_matches_the_reference(int8_path, kernel, shape, weight_bits):
    n, c, h, w, o = shape
    g = torch.Generator().manual_seed(sum(shape))
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    weight = torch.randn(o, c, 1, 1, generator=g)
    if kernel == "sparse":  # pruned, unstructured
        weight *= torch.rand(o, c, 1, 1, generator=g) < 0.2
    head = q8.quantize_head(weight, torch.randn(o, generator=g), 0.02, 0.3, weight_bits)
    run = head_int8_sparse if kernel == "sparse" else head_int8
    for x in (xq, xq.contiguous(memory_format=torch.channels_last)):
        out = run(x, head)
        ref = q8.head_int8_reference(x, head)
        assert out.dtype == torch.float32 and out.shape == (n, o, 1, 1)
        assert torch.equal(out, ref)


@pytest.mark.parametrize("weight_bits", [8, 7])
@pytest.mark.parametrize("case", [
    (1, 3, 224, 224, 64, 3, 2, (3, 2, True), 76),  # SqueezeNet 1.1's stem
    (2, 3, 113, 97, 96, 7, 2, (3, 2, True), 128),  # 1.0's, on odd sizes
    (1, 3, 17, 23, 20, 5, 3, (2, 2, False), 0),
    (3, 1, 9, 9, 5, 3, 1, (1, 1, False), 255),  # no pool
    (1, 4, 7, 7, 33, 1, 1, (3, 3, True), 9),  # 1x1, pooled down to 3x3
    (0, 3, 9, 9, 5, 3, 1, (3, 2, True), 3),
], ids=lambda c: "x".join(map(str, c[:7])) + f"-pool{c[7][0]}{c[7][1]}-zp{c[8]}")
def test_stem_matches_the_reference(int8_path, case, weight_bits):
    n, c, h, w, o, k, stride, pool, zero_point = case
    g = torch.Generator().manual_seed(h * w + o)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    stem = q8.quantize_stem(torch.randn(o, c, k, k, generator=g), torch.randn(o, generator=g),
                            0.01, zero_point, 0.05, stride, pool, weight_bits)
    ref = q8.stem_int8_reference(xq, stem)
    for x in (xq, xq.contiguous(memory_format=torch.channels_last)):
        out = stem_int8(x, stem)
        assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, ref)
    if n:
        assert 0 < int(ref.float().mean()) < 255  # neither all clamped nor all zero


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("channels", [3, 1, 4, 5])
def test_stem_quantizes_a_float_image_itself(int8_path, channels, layout):
    """A float image goes straight into the kernel's layout, quantized as
    quantize_activation does (four pixels a step for up to four channels with unit-stride
    rows, one value at a time otherwise): the same bytes as quantizing first."""
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, 15, 13, generator=g) * 2
    x[0, 0, 0, :3] = torch.tensor([float("nan"), 1e9, -1e9])
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.cat([x, x], 3)[..., ::2]
    stem = q8.quantize_stem(torch.randn(8, channels, 3, 3, generator=g), torch.randn(8, generator=g),
                            0.02, 100, 0.05, 2, (3, 2, True))
    ref = q8.stem_int8_reference(q8.quantize_activation(x, stem.input_scale, 100), stem)
    assert torch.equal(stem_int8(x, stem), ref)


def test_paths_are_listed_and_forced():
    C = fk._extension.C
    paths = C.available_int8_paths()
    assert paths[-1] == "portable" and set(paths) <= set(ALL_PATHS)
    assert C.current_int8_path() == paths[0]
    with pytest.raises(RuntimeError, match="unknown int8 path 'sse'"):
        C.set_int8_path("sse")
    C.set_int8_path("portable")
    try:
        assert C.current_int8_path() == "portable"
    finally:
        C.set_int8_path("auto")
    fk.set_cpu_isa("portable")  # 'auto' follows the float kernels' ISA
    try:
        assert C.current_int8_path() == "portable"
    finally:
        fk.set_cpu_isa("auto")


def test_bad_arguments_raise():
    xq, fire = quantized(FireSample(1, 8, 4, 8, 8, 3, 3))
    packs = [pack_int8(c.weight, c.bias, c.multiplier)
             for c in (fire.squeeze, fire.expand1x1, fire.expand3x3)]
    op = torch.ops.fire_kernels.fire_int8
    with pytest.raises(TypeError, match="expected a uint8 input"):
        op(xq.float(), *packs[0], *packs[1], *packs[2], 4, 8, 8)
    with pytest.raises(ValueError, match="squeeze expected packed int8 weights of 128 elements"):
        op(xq, *packs[1], *packs[1], *packs[2], 4, 8, 8)
    with pytest.raises(ValueError, match="expand3x3 expected a packed int32 bias"):
        op(xq, *packs[0], *packs[1], packs[2][0], packs[2][2], packs[2][2], 4, 8, 8)
    with pytest.raises(ValueError, match="square conv weight"):
        pack_int8(torch.zeros(4, 4, 5, 3, dtype=torch.int8), fire.squeeze.bias,
                  fire.squeeze.multiplier)
    stem_packs = pack_int8_stem(torch.zeros(4, 8, 3, 3, dtype=torch.int8), fire.squeeze.bias,
                                fire.squeeze.multiplier)
    with pytest.raises(ValueError, match="kernel does not fit"):
        torch.ops.fire_kernels.stem_int8(xq[..., :2, :], *stem_packs, 4, 3, 1, 0.1, 0)
    with pytest.raises(ValueError, match="zero point in"):
        torch.ops.fire_kernels.stem_int8(xq, *stem_packs, 4, 3, 1, 0.1, 256)
    with pytest.raises(ValueError, match="pool does not fit"):
        torch.ops.fire_kernels.stem_int8(xq, *stem_packs, 4, 3, 1, 0.1, 0, 3, 2, False)
    head_packs = pack_int8(fire.squeeze.weight, fire.squeeze.bias, fire.squeeze.multiplier)
    with pytest.raises(ValueError, match="head_int8: weight expected packed int8 weights"):
        torch.ops.fire_kernels.head_int8(xq, *head_packs, 20, 0.1)
    with pytest.raises(ValueError, match="positive output scale"):
        torch.ops.fire_kernels.head_int8(xq, *head_packs, 4, 0.0)
    with pytest.raises(ValueError, match="fire_int8"):
        op(xq, *packs[0], *packs[1], *packs[2], 4, 8, 8, 5, 1, False)  # window larger than 3x3
    with pytest.raises(ValueError, match="overflow the int32 accumulators"):
        big = torch.zeros(1, 40000, 1, 1, dtype=torch.uint8)
        op(big, *packs[0], *packs[1], *packs[2], 4, 8, 8)


def test_sparse_format():
    """Entries per output channel, taps outer and channel quads inner, each quad's 4
    weights one little-endian int32; channels padded to a quad with zeros."""
    w = torch.zeros(2, 6, 3, 3, dtype=torch.int8)
    w[0, 5, 0, 1] = -3  # quad 1 (channels 4-7), tap 1, byte 1
    w[0, 0, 2, 2] = 7  # quad 0, tap 8, byte 0
    w[0, 1, 2, 2] = 1
    packed = pack_int8_sparse(w, torch.tensor([5, 6]), torch.tensor([0.5, 0.25]))
    assert packed.rows.tolist() == [0, 2, 2]
    assert packed.entries.tolist() == [1 << 4 | 1, 0 << 4 | 8]
    assert packed.values.tolist() == [int.from_bytes(bytes([0, 253, 0, 0]), "little"),  # -3
                                      7 + 1 * 256]
    assert packed.bias.dtype == torch.int32 and packed.multiplier.dtype == torch.float32
    assert quad_density(w) == 2 / (2 * 9 * 2)
    expands = sparse_expands(q8.QuantizedConv(w[:, :, 1:2, 1:2].contiguous(), torch.ones(2),
                                              torch.zeros(2, dtype=torch.int32), torch.ones(2)),
                             q8.QuantizedConv(w, torch.ones(2), torch.ones(2, dtype=torch.int32),
                                              torch.ones(2)))
    assert expands.rows.tolist() == [0, 0, 0, 2, 2]  # the 1x1 has no nonzero: its centre tap
    assert expands.bias.tolist() == [0, 0, 1, 1]


def test_sparse_bad_arguments_raise():
    xq, fire = quantized(FireSample(1, 8, 4, 8, 8, 3, 3))
    squeeze = pack_int8(fire.squeeze.weight, fire.squeeze.bias, fire.squeeze.multiplier)
    expands = sparse_expands(fire.expand1x1, fire.expand3x3)
    op = torch.ops.fire_kernels.fire_int8_sparse
    assert torch.equal(op(xq, *squeeze, *expands, 4, 8, 8), fire_int8(xq, fire))
    bad = expands.entries.clone()
    bad[0] = 2 << 4  # quad 2 of a 4-channel squeeze's one
    with pytest.raises(ValueError, match="entries outside its 1 channel quads and 9 taps"):
        op(xq, *squeeze, expands.rows, bad, *expands[2:], 4, 8, 8)
    bad[0] = 9  # tap 9 of 9
    with pytest.raises(ValueError, match="entries outside"):
        op(xq, *squeeze, expands.rows, bad, *expands[2:], 4, 8, 8)
    rows = expands.rows.clone()
    rows[1], rows[2] = rows[2], rows[1] - 1
    with pytest.raises(ValueError, match="row starts decrease|do not agree"):
        op(xq, *squeeze, rows, *expands[1:], 4, 8, 8)
    with pytest.raises(ValueError, match="do not agree"):
        op(xq, *squeeze, expands.rows, expands.entries, expands.values[1:], *expands[3:], 4, 8, 8)
    with pytest.raises(ValueError, match="expected 18 row starts, 17 biases"):
        op(xq, *squeeze, *expands, 4, 8, 9)
    with pytest.raises(ValueError, match="int32 CPU tensors"):
        op(xq, *squeeze, expands.rows.long(), *expands[1:], 4, 8, 8)
    with pytest.raises(ValueError, match="float32 CPU multipliers"):
        op(xq, *squeeze, *expands[:4], expands.multiplier.double(), 4, 8, 8)
    head = q8.quantize_head(torch.randn(5, 8, 1, 1), None, 0.1, 0.2)
    packed = pack_int8_sparse(head.conv.weight, head.conv.bias, head.conv.multiplier)
    with pytest.raises(ValueError, match="head_int8_sparse: .*outside its 1 channel quads and 1 taps"):
        torch.ops.fire_kernels.head_int8_sparse(xq[:, :3], *packed, 5, 0.2)  # 8 channels' weights
    with pytest.raises(ValueError, match="at most 16 taps"):
        pack_int8_sparse(torch.zeros(2, 2, 5, 5, dtype=torch.int8), torch.zeros(2), torch.ones(2))


def test_opcheck():
    for sample in (FireSample(2, 10, 6, 7, 9, 5, 6), FireSample(0, 10, 6, 7, 9, 3, 3),
                   FireSample(1, 10, 6, 7, 9, 4, 4, layout="channels_last")):
        xq, fire = quantized(sample)
        packs = [pack_int8(c.weight, c.bias, c.multiplier)
                 for c in (fire.squeeze, fire.expand1x1, fire.expand3x3)]
        torch.library.opcheck(torch.ops.fire_kernels.fire_int8.default,
                              (xq, *packs[0], *packs[1], *packs[2], 6, 7, 9))
        torch.library.opcheck(torch.ops.fire_kernels.fire_int8.default,
                              (xq, *packs[0], *packs[1], *packs[2], 6, 7, 9, 3, 2, True))
        torch.library.opcheck(torch.ops.fire_kernels.quantize_uint8.default, (sample.input(), 0.1))
        stem = q8.quantize_stem(torch.randn(4, 10, 3, 3), torch.randn(4), 0.1, 7, 0.2, 1,
                                (2, 2, True))
        if min(xq.shape[2:]) >= 4:
            torch.library.opcheck(torch.ops.fire_kernels.stem_int8.default,
                                  (xq, *pack_int8_stem(stem.conv.weight, stem.conv.bias,
                                                       stem.conv.multiplier), 4, 3, 1, 0.1, 7, 2,
                                   2, True))
        head = q8.quantize_head(torch.randn(5, 10, 1, 1), None, 0.1, 0.2)
        torch.library.opcheck(torch.ops.fire_kernels.head_int8.default,
                              (xq, *pack_int8(head.conv.weight, head.conv.bias,
                                              head.conv.multiplier), 5, 0.2))
        for conv in (fire.squeeze, fire.expand3x3):
            torch.library.opcheck(torch.ops.fire_kernels.pack_int8.default,
                                  (conv.weight, conv.bias, conv.multiplier))
        expands = sparse_expands(fire.expand1x1, fire.expand3x3)
        for pool in ((), (3, 2, True)):
            torch.library.opcheck(torch.ops.fire_kernels.fire_int8_sparse.default,
                                  (xq, *packs[0], *expands, 6, 7, 9, *pool))
        torch.library.opcheck(torch.ops.fire_kernels.head_int8_sparse.default,
                              (xq, *pack_int8_sparse(head.conv.weight, head.conv.bias,
                                                     head.conv.multiplier), 5, 0.2))
