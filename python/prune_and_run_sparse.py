"""A real pruned and quantized model, start to finish, in under a minute on a laptop CPU.

Trains a small Fire network (FusedFire modules) on scikit-learn's digits (1,797 8x8
images that ship inside the package: no download), prunes its Fires gradually to 90 %
by magnitude with fine-tuning between steps (torch.nn.utils.prune masks keep pruned
weights at zero while training), then compares test accuracy and inference speed:
eager PyTorch on the dense weights against the fused sparse kernel on the pruned ones.
Last, Deep Compression's other half: the dense and the pruned model quantized to int8
(``quantize_network``, calibrated on training images), their accuracy and speed.

Run: python python/prune_and_run_sparse.py
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

import fire_kernels as fk
from fire_kernels.benchmarking import interleaved_medians

CONVS = ("squeeze", "expand1x1", "expand3x3")


def digits(seed: int = 0):
    """Digits as (N, 1, 8, 8) tensors (pixel values scaled to [-0.3, 0.7]), split 80/20."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0 - 0.3
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    split = int(0.8 * len(y))
    return (x[order[:split]], y[order[:split]]), (x[order[split:]], y[order[split:]])


def fire_net() -> nn.Sequential:
    net = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        fk.FusedFire(64, 16, 64, 64),
        fk.FusedFire(128, 16, 64, 64),
        nn.MaxPool2d(2),
        fk.FusedFire(128, 32, 128, 128),
        fk.FusedFire(256, 32, 128, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(256, 10),
    )
    for m in net.modules():  # He init, zero bias (as torchvision's SqueezeNet)
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


def train(model, data, epochs: int, lr: float) -> None:
    x, y = data
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def accuracy(model, data) -> float:
    x, y = data
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="dense training epochs")
    parser.add_argument("--finetune", type=int, default=4, help="epochs after each pruning step")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    train_set, test_set = digits()
    start = time.time()

    model = fire_net()
    train(model, train_set, args.epochs, 2e-3)
    dense = copy.deepcopy(model)
    print(f"dense:  test accuracy {accuracy(dense, test_set):.1%} "
          f"({len(train_set[1])} training images, {time.time() - start:.0f} s)")

    # Masks first, so that fine-tuning keeps pruned weights at zero; then prune
    # gradually, extending the masks, and fine-tune after each step.
    fires = [m for m in model.modules() if isinstance(m, fk.FusedFire)]
    for fire in fires:
        for name in CONVS:
            torch_prune.identity(getattr(fire, name), "weight")
    steps = (0.5, 0.7, 0.8, 0.85, 0.9)
    for amount in steps:
        fk.prune_fire_modules(model, amount)
        epochs = args.finetune * (3 if amount == steps[-1] else 1)  # longer at the end
        train(model, train_set, epochs, 1e-3)
        print(f"pruned {amount:.0%}: test accuracy {accuracy(model, test_set):.1%}")
    for fire in fires:  # bake the masks into the weights
        for name in CONVS:
            torch_prune.remove(getattr(fire, name), "weight")
    print(fk.sparsity_report(model))

    # Inference: eager PyTorch on the dense model (its Fires as torchvision's Fire)
    # against the fused sparse kernel on the pruned one.
    eager = copy.deepcopy(dense)
    for i, m in enumerate(eager):
        if isinstance(m, fk.FusedFire):
            eager[i] = fk.Fire(m.inplanes, m.squeeze.out_channels, m.expand1x1.out_channels,
                               m.expand3x3.out_channels)
            eager[i].load_state_dict(m.state_dict())
    x = test_set[0][:64]
    with torch.inference_mode():
        t_eager, t_sparse = interleaved_medians([lambda: eager(x), lambda: model(x)], repeats=30)
    print(f"inference, batch 64: eager dense {t_eager * 1e3:.2f} ms, fused sparse "
          f"{t_sparse * 1e3:.2f} ms ({t_eager / t_sparse:.2f}x); "
          f"test accuracy {accuracy(eager, test_set):.1%} -> {accuracy(model, test_set):.1%}")

    # int8: static quantization from eight training batches. The pruned model runs the
    # sparse int8 kernels where they pay on this CPU's int8 path (on AVX2, not with
    # VNNI at 90 %: fire_kernels.int8_ops.INT8_SPARSE_MAX_WORK_DENSITY).
    calibration = [train_set[0][i:i + 64] for i in range(0, 512, 64)]
    candidates = {"dense": dense, "pruned": model}
    for name, float_model in list(candidates.items()):
        candidates[f"{name} int8"] = fk.quantize_network(copy.deepcopy(float_model), calibration)
    with torch.inference_mode():
        times = interleaved_medians([lambda m=m: m(x) for m in candidates.values()], repeats=30)
    for (name, m), t in zip(candidates.items(), times):
        print(f"{name:>12}: test accuracy {accuracy(m, test_set):.1%}, batch 64 {t * 1e3:.2f} ms")
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
