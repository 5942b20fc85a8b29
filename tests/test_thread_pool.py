"""The extension's thread pool (csrc/thread_pool.h): every kernel gives the same bytes
whatever the thread count, from several Python threads at once, and in a forked child
(which has none of its parent's workers: it starts a pool of its own)."""

from __future__ import annotations

import copy
import multiprocessing
import threading

import pytest
import torch

import fire_kernels as fk

pytestmark = pytest.mark.skipif(fk._extension.C is None, reason="C++ extension unavailable")


def _networks():
    """A fused SqueezeNet 1.1 and its int8 twin, in eval mode, and an input."""
    torch.manual_seed(0)
    model = fk.fuse_network(fk.squeezenet1_1(num_classes=10).eval())
    g = torch.Generator().manual_seed(1)
    quantized = fk.quantize_network(copy.deepcopy(model), [torch.rand(2, 3, 64, 64, generator=g)])
    return model, quantized, torch.rand(3, 3, 64, 64, generator=g)


def _outputs(models, x):
    with torch.no_grad():
        # A batch runs image by image on the pool; one image splits each layer on it.
        return [out for m in models for out in (m(x), m(x[:1]))]


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_every_thread_count_gives_the_same_bytes(threads):
    *models, x = _networks()
    threads(1)
    alone = _outputs(models, x)
    for n in (2, 3, 5, 2):  # more threads than CPUs too; the pool grows, then has spare ones
        threads(n)
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(alone, _outputs(models, x)))


def test_calls_from_several_python_threads_at_once(threads):
    """One call has the pool at a time; another meanwhile runs on its own thread."""
    *models, x = _networks()
    threads(2)
    expected = _outputs(models, x)
    results: list = []
    errors: list = []

    def run():
        try:
            for _ in range(5):
                results.append(_outputs(models, x))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=run) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and len(results) == 20
    assert all(torch.equal(a, b) for got in results for a, b in zip(expected, got))


def _child(models, x, expected) -> None:
    same = all(torch.equal(a, b) for a, b in zip(expected, _outputs(models, x)))
    raise SystemExit(0 if same else 3)


def test_a_forked_child_computes_the_same_bytes(threads):
    """The child runs only the fused kernels: PyTorch's own OpenMP ops hang in a child
    forked after they ran (a 512x512 matmul did, with or without this extension)."""
    *models, x = _networks()
    threads(2)
    expected = _outputs(models, x)  # the parent's pool has started its workers
    child = multiprocessing.get_context("fork").Process(target=_child,
                                                        args=(models, x, expected))
    child.start()
    child.join(timeout=120)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
