"""Scale-out: a Fire network with FusedFire trains under DistributedDataParallel
(gloo, 2 processes on this machine) to the same parameters as one process on the
whole batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import fire_kernels as fk

STEPS = 4


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), fk.FusedFire(16, 8, 16, 16),
        nn.MaxPool2d(2), fk.FusedFire(32, 8, 16, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 5),
    )


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 10, 10, generator=g), torch.randint(0, 5, (8,), generator=g)


def train(model, x, y) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = DistributedDataParallel(network())
        x, y = batch()
        shard = slice(rank * len(y) // world, (rank + 1) * len(y) // world)
        train(model, x[shard], y[shard])  # DDP averages the ranks' gradients
        if rank == 0:
            torch.save(model.module.state_dict(), os.path.join(out_dir, "ddp.pt"))
        # Both ranks done before either tears its connections down: a rank that
        # destroyed its group while the other still talked to it once died with
        # "terminate called without an active exception" (SIGABRT) in a CI run.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_ddp_matches_single_process(tmp_path):
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    ddp = torch.load(tmp_path / "ddp.pt")
    single = network()
    train(single, *batch())  # the mean loss over the whole batch: the same gradients
    for name, p in single.state_dict().items():
        torch.testing.assert_close(ddp[name], p, atol=1e-5, rtol=1e-4, msg=name)
