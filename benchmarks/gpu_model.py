"""Static data-movement model of the Triton Fire kernels, no GPU needed.

For every SqueezeNet Fire layer and batch 1/8/64/256, from the config the launcher
picks (``fire_kernels.triton.config_for``, the same function ``fire_triton`` calls),
counts what the two launches (the squeeze into a buffer, then the expands from it)
move and compute, by following their loops:

* HBM bytes: the input, the packed weights and the output, each once (the weights,
  a few MB at most, stay in L2 while in use), and the squeeze buffer written by the
  first launch and read by the second, counted as if both went to HBM: an upper
  bound, as much of a batch's buffer (4-48 MB at batch 256 in 16-bit types) can stay
  in a 40-50 MB L2 between the launches. The ratio with the buffer kept in L2 is
  printed too: the truth lies between the two.
* MACs, including rows of partial tiles and channel padding.
* Bytes the SMs load through L2 (the input, the squeeze weights per squeeze program,
  each expand program's weights and its tile's squeeze rows once per output-channel
  block and tap), an upper bound that ignores L1 hits: not a target, but what bounds
  these kernels next once HBM traffic is minimal.

Each as a ratio to the minimum: input + weights + output moved once; the Fire's own
MACs (C*S + S*E1 + 9*S*E3 a pixel). Every pixel's squeeze is computed once, by
construction. Exits non-zero unless, on every layer at batch 256, the HBM bytes with
the buffer counted are <= 1.2x the minimum (the buffer's round trip is 2S/(C+E1+E3)
of it, 1.17x on the worst layers) and the MACs <= 1.15x.

    python benchmarks/gpu_model.py [--dtype fp16] [--sm-count 132]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch
import triton

from fire_kernels.benchmarking import LAYERS
from fire_kernels.triton import FireConfig, WeightLayout, config_for, scratch_numel, weight_layout

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
BATCHES = (1, 8, 64, 256)
TARGET_HBM, TARGET_MACS = 1.20, 1.15


@dataclass
class Counts:
    input: int = 0
    weights: int = 0
    output: int = 0
    buffer: int = 0  # the squeeze buffer's write and read
    macs: int = 0
    l2_to_sm: int = 0

    @property
    def hbm(self) -> int:
        return self.input + self.weights + self.output + self.buffer


def minimum(n, c, s, e1, e3, h, w, itemsize) -> Counts:
    pixels = n * h * w
    return Counts(
        input=pixels * c * itemsize,
        weights=(c * s + s * e1 + 9 * s * e3 + s + e1 + e3) * itemsize,
        output=pixels * (e1 + e3) * itemsize,
        macs=pixels * (c * s + s * e1 + 9 * s * e3),
    )


def kernel_counts(cfg: FireConfig, lay: WeightLayout, n, c, s, e1, e3, h, w, itemsize) -> Counts:
    """What the two launches of `cfg` move and compute (dense weights)."""
    pixels = n * h * w
    rows = cfg.tiles * cfg.block_m  # pixels computed, partial tiles' padding included
    k_pad = triton.cdiv(c, cfg.block_c) * cfg.block_c
    s_pad = lay.s_pad
    # The output channels the expand blocks compute (the blocks may be narrower than
    # the layout's, so pad less).
    e1_done = triton.cdiv(e1, cfg.block_e) * cfg.block_e
    e3_done = triton.cdiv(e3, cfg.block_e) * cfg.block_e
    squeeze_w = lay.c_pad * s_pad * itemsize
    expand_w = (s_pad * lay.e1_pad + 9 * s_pad * lay.e3_pad) * itemsize
    # Per tile, over its e_split programs: the weight columns of the blocks computed,
    # and the squeeze rows: the centre per 1x1 block, nine shifts per 3x3 block.
    expand_w_read = (s_pad * e1_done + 9 * s_pad * e3_done) * itemsize
    s_reads = (e1_done + 9 * e3_done) // cfg.block_e * cfg.block_m * s_pad * itemsize
    return Counts(
        input=pixels * c * itemsize,
        weights=squeeze_w + expand_w + 4 * (s_pad + lay.e1_pad + lay.e3_pad),
        output=pixels * (e1 + e3) * itemsize,
        buffer=2 * scratch_numel(cfg, lay, pixels) * itemsize,
        macs=rows * k_pad * s_pad + rows * s_pad * (e1_done + 9 * e3_done),
        l2_to_sm=pixels * c * itemsize + cfg.tiles * (squeeze_w + expand_w_read + s_reads),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--sm-count", type=int, default=132, help="132: H100/H200 SXM")
    args = p.parse_args(argv)
    dtype = DTYPES[args.dtype]
    itemsize = torch.empty(0, dtype=dtype).element_size()

    print(f"{args.dtype}, {args.sm_count} SMs. HBM MB: in / weights / out / squeeze buffer "
          "(written + read); ratios to the minimum (input + weights + output once; the "
          "Fire's own MACs); HBM x with the buffer counted, and with it kept in L2")
    print("| layer | batch | config | HBM MB in/w/out/buf | HBM x | HBM x, buffer in L2 "
          "| MACs x | L2->SM x |")
    print("|---|---|---|---|---|---|---|---|")
    worst: dict[int, tuple[float, float, float]] = {}
    failures = []
    mb = 1e-6
    for layer, ((c, s, e1, e3), hw) in LAYERS.items():
        for batch in BATCHES:
            cfg = config_for(batch, c, s, e1, e3, hw, hw, dtype, args.sm_count)
            lay = weight_layout(c, s, e1, e3, dtype)
            k = kernel_counts(cfg, lay, batch, c, s, e1, e3, hw, hw, itemsize)
            m = minimum(batch, c, s, e1, e3, hw, hw, itemsize)
            hbm, in_l2, macs = k.hbm / m.hbm, (k.hbm - k.buffer) / m.hbm, k.macs / m.macs
            config = (f"M={cfg.block_m} E={cfg.block_e} tiles={cfg.tiles} "
                      f"split={cfg.e_split}")
            print(f"| {layer} | {batch} | {config} | {k.input * mb:.2f} / {k.weights * mb:.2f} / "
                  f"{k.output * mb:.2f} / {k.buffer * mb:.2f} | {hbm:.3f} | {in_l2:.3f} | "
                  f"{macs:.3f} | {k.l2_to_sm / m.hbm:.1f} |")
            w_hbm, w_l2, w_macs = worst.get(batch, (0.0, 0.0, 0.0))
            worst[batch] = (max(w_hbm, hbm), max(w_l2, in_l2), max(w_macs, macs))
            if batch == 256 and (hbm > TARGET_HBM or macs > TARGET_MACS):
                failures.append(f"{layer} batch 256: HBM {hbm:.3f}x, MACs {macs:.3f}x")
    print("\n| batch | worst HBM x | worst HBM x, buffer in L2 | worst MACs x |")
    print("|---|---|---|---|")
    for batch, (hbm, in_l2, macs) in worst.items():
        print(f"| {batch} | {hbm:.3f} | {in_l2:.3f} | {macs:.3f} |")
    for failure in failures:
        print("FAIL", failure)
    print("FAILED" if failures else
          f"OK: batch 256 within {TARGET_HBM}x HBM (the squeeze buffer counted) and "
          f"{TARGET_MACS}x MACs on every layer")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
