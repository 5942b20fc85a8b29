"""Where the sparse int8 kernels pay: dense against sparse, per int8 path and sparsity.

For each int8 path this CPU runs (forced in turn), each sparsity (unstructured,
by magnitude) and batch, SqueezeNet's Fire layers and its classifier head (512 -> 1000 on
13x13) are quantized and run on the dense int8 kernel (``fire_int8``, ``head_int8``) and
the sparse one (``fire_int8_sparse``, ``head_int8_sparse``), interleaved in one process,
medians; the table gives each layer's speedup of sparse over dense, the work density
(nonzero weight quads over all) and what ``sparse="auto"`` picks
(``fire_kernels.int8_ops.INT8_SPARSE_MAX_WORK_DENSITY``).

    python benchmarks/bench_sparse_int8.py --paths avx512_vnni avx2 --sparsities 90 95
"""

from __future__ import annotations

import argparse
import statistics

import torch

import fire_kernels as fk
from fire_kernels import int8_reference as q8
from fire_kernels.benchmarking import LAYERS, cpu_model, geomean, interleaved_medians
from fire_kernels.int8_ops import (
    expand_work_density,
    int8_sparse_pays,
    pack_int8,
    pack_int8_sparse,
    quad_density,
    sparse_expands,
)
from fire_kernels.reference import fire_reference
from fire_kernels.testing import FireSample, fire_weights

OPS = torch.ops.fire_kernels


def fire_candidates(name: str, batch: int, density: float):
    """The dense and the sparse int8 Fire of layer ``name`` pruned to ``density``, and
    its work density."""
    cfg, hw = LAYERS[name]
    sample = FireSample(batch, *cfg, hw, hw, density=density, seed=0)
    fire, x = sample.fire(), sample.input().abs()
    weights = fire_weights(fire)
    with torch.no_grad():
        squeeze = torch.relu(torch.nn.functional.conv2d(x, weights[0], weights[1]))
        out = fire_reference(x, *weights)
    scales = [q8.activation_scale(float(t.max())) for t in (x, squeeze, out)]
    qf = q8.quantize_fire(weights, *scales)
    xq = q8.quantize_activation(x, scales[0]).contiguous(memory_format=torch.channels_last)
    convs = (qf.squeeze, qf.expand1x1, qf.expand3x3)
    sizes = [c.weight.shape[0] for c in convs]
    dense = [t for c in convs for t in pack_int8(c.weight, c.bias, c.multiplier)]
    sparse = [*pack_int8(qf.squeeze.weight, qf.squeeze.bias, qf.squeeze.multiplier),
              *sparse_expands(qf.expand1x1, qf.expand3x3)]
    return ((lambda: OPS.fire_int8(xq, *dense, *sizes)),
            (lambda: OPS.fire_int8_sparse(xq, *sparse, *sizes)),
            expand_work_density(qf.expand1x1.weight, qf.expand3x3.weight))


def head_candidates(batch: int, density: float):
    """SqueezeNet's classifier head (512 -> 1000, 13x13) pruned to ``density``."""
    g = torch.Generator().manual_seed(0)
    xq = torch.randint(0, 256, (batch, 512, 13, 13), dtype=torch.uint8, generator=g)
    xq = xq.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(1000, 512, 1, 1, generator=g)
    threshold = weight.abs().flatten().kthvalue(max(1, int((1 - density) * weight.numel()))).values
    head = q8.quantize_head(weight * (weight.abs() > threshold), torch.randn(1000, generator=g),
                            0.02, 0.3)
    c = head.conv
    dense = pack_int8(c.weight, c.bias, c.multiplier)
    sparse = pack_int8_sparse(c.weight, c.bias, c.multiplier)
    return ((lambda: OPS.head_int8(xq, *dense, 1000, 0.3)),
            (lambda: OPS.head_int8_sparse(xq, *sparse, 1000, 0.3)), quad_density(c.weight))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    paths = [p for p in fk._extension.C.available_int8_paths() if p != "portable"]
    parser.add_argument("--paths", nargs="*", default=paths, choices=paths + ["portable"])
    parser.add_argument("--layers", nargs="*", default=[*LAYERS, "head"],
                        choices=[*LAYERS, "head"])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    parser.add_argument("--sparsities", nargs="*", type=int, default=[90, 95])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    C = fk._extension.C
    print(f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}; "
          f"speedup = dense median / sparse median\n")
    print("| path | sparsity | batch | work density | sparse speedup, geomean (range) "
          "| auto runs sparse |")
    print("|---|---|---|---|---|---|")
    try:
        for path in args.paths:
            C.set_int8_path(path)
            for sparsity in args.sparsities:
                for batch in args.batches:
                    speedups, densities = [], []
                    for name in args.layers:
                        density = 1 - sparsity / 100
                        dense, sparse, work = (head_candidates(batch, density) if name == "head"
                                               else fire_candidates(name, batch, density))
                        assert torch.equal(dense(), sparse())
                        repeats = max(5, args.repeats // max(1, batch // 4))
                        t_dense, t_sparse = interleaved_medians([dense, sparse], repeats=repeats)
                        speedups.append(t_dense / t_sparse)
                        densities.append(work)
                    work = statistics.median(densities)
                    print(f"| {path} | {sparsity} % | {batch} | {work:.2f} | "
                          f"{geomean(speedups):.2f}x ({min(speedups):.2f}-{max(speedups):.2f}x) "
                          f"| {'yes' if int8_sparse_pays(work, path) else 'no'} |", flush=True)
    finally:
        C.set_int8_path("auto")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
