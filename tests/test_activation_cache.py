"""The cache the fused CPU operators' outputs live in (csrc/activation_cache.cpp):
a large output's block is reused after its tensor dies, never while it lives, by an
output of its size or somewhat smaller, the block given up last first; and
fk.empty_cache() gives the blocks back."""

from __future__ import annotations

import pytest
import torch

import fire_kernels as fk
from fire_kernels.testing import assert_close_to_reference, make_fire

pytestmark = pytest.mark.skipif(not fk.cpu_kernel_available(), reason="C++ extension unavailable")

# A Fire whose output (1 x 128 x 48 x 48 floats, 1.1 MiB) is above the cache's 64 KiB floor.
CFG, HW = (32, 8, 64, 64), 48


@pytest.fixture
def fire():
    ref = make_fire(*CFG).eval()
    return ref, fk.FusedFire.from_fire(ref, sparse=False)


def run(fire, seed=0, hw=HW):
    ref, fused = fire
    x = torch.randn(1, CFG[0], hw, hw, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = fused(x)
        assert_close_to_reference(out, ref(x))
    return out


def test_a_dead_outputs_block_is_reused_and_a_live_ones_never(fire):
    fk.empty_cache()
    first = run(fire)
    ptr, nbytes = first.data_ptr(), first.numel() * 4
    del first
    second = run(fire, seed=1)  # takes the freed block, and computes into it correctly
    assert second.data_ptr() == ptr
    third = run(fire, seed=2)  # `second` is alive: a block of its own
    assert third.data_ptr() != second.data_ptr()
    del second, third
    assert fk.empty_cache() == 2 * nbytes
    assert fk.empty_cache() == 0


def test_the_cache_keeps_at_most_sixteen_blocks(fire):
    fk.empty_cache()
    outs = [run(fire) for _ in range(18)]
    nbytes = outs[0].numel() * 4
    assert len({o.data_ptr() for o in outs}) == 18
    del outs
    assert fk.empty_cache() == 16 * nbytes


def test_an_output_takes_the_block_given_up_last_that_holds_it(fire):
    fk.empty_cache()
    first, second = run(fire), run(fire, seed=1)
    first_ptr, second_ptr = first.data_ptr(), second.data_ptr()
    del first, second  # given up in this order: `second`'s block is taken first
    out = run(fire, hw=HW - 8)  # 0.8 MiB: fits the 1.1 MiB blocks
    assert out.data_ptr() == second_ptr
    assert run(fire, hw=HW - 8).data_ptr() == first_ptr
    fk.empty_cache()


def test_a_much_smaller_output_takes_no_large_block(fire):
    fk.empty_cache()
    big = run(fire)
    nbytes = big.numel() * 4
    del big
    # 128 KiB: cached (64 KiB and up), but the free 1.1 MiB block is over 8 times that.
    small = run(fire, hw=16)
    assert fk.empty_cache() == nbytes  # the large block stayed in the cache
    del small
    assert fk.empty_cache() == 16 * 16 * (CFG[2] + CFG[3]) * 4


def test_small_outputs_are_not_cached():
    fk.empty_cache()
    ref = make_fire(8, 4, 4, 4).eval()
    with torch.no_grad():
        out = fk.FusedFire.from_fire(ref, sparse=False)(torch.randn(1, 8, 5, 5))
    del out
    assert fk.empty_cache() == 0


def test_an_output_from_the_cache_is_an_ordinary_tensor(fire):
    out = run(fire)
    out.resize_(2 * out.numel())  # resizable: the storage's allocator is the cache
    out.fill_(1.0)
    assert out.sum().item() == out.numel()
    del out
    fk.empty_cache()
