"""Static data-movement model of the Triton Fire kernels, no GPU needed.

For every SqueezeNet Fire layer and batch 1/8/64/256, from the plan the launcher
picks (``fire_kernels.triton.config_for``, the same function ``fire_triton`` calls),
counts what the kernels move and compute, by following their loops:

* HBM bytes: the input (a pixel read again more than one tile step after its first
  read counts again; see squeeze_work), the packed weights, the output, and the
  squeeze scratch: for the fused plan each program's ring once (reused for the whole
  band, so at most its footprint is written back from L2); for the two-phase plan
  the squeeze buffer written and read once (though at these batches it fits L2).
  Weights and rings count once on the assumption that they stay in L2 while in use
  (a few MB against the 40-50 MB of A100/H100/H200).
* MACs, including squeeze chunks recomputed at band starts, rows of partial tiles and
  chunks, and channel padding.
* Bytes the SMs load through L2 (the input, the weights for every squeeze step and
  tile, the squeeze rows once per output-channel block and tap), an upper bound that
  ignores L1 hits: not a target, but what bounds these kernels next once HBM
  traffic is minimal.

Each as a ratio to the minimum: input + weights + output moved once; the Fire's own
MACs (C*S + S*E1 + 9*S*E3 a pixel). Exits non-zero unless, on every layer, batch 256
moves <= 1.1x the minimum HBM bytes and does <= 1.15x the MACs, and batch 1
computes no pixel's squeeze twice.

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
TARGET_HBM, TARGET_MACS = 1.10, 1.15


@dataclass
class Counts:
    input: int = 0
    weights: int = 0
    output: int = 0
    scratch: int = 0
    macs: int = 0
    l2_to_sm: int = 0
    squeeze_times: int = 1  # the most times any pixel's squeeze is computed

    @property
    def hbm(self) -> int:
        return self.input + self.weights + self.output + self.scratch


def minimum(n, c, s, e1, e3, h, w, itemsize) -> Counts:
    pixels = n * h * w
    return Counts(
        input=pixels * c * itemsize,
        weights=(c * s + s * e1 + 9 * s * e3 + s + e1 + e3) * itemsize,
        output=pixels * (e1 + e3) * itemsize,
        macs=pixels * (c * s + s * e1 + 9 * s * e3),
    )


@dataclass
class Squeeze:
    """The squeeze work of a plan, step by step as the kernels do it."""

    steps: list[tuple[int, int]]  # (first pixel, rows) of every squeeze step
    input_rows: int  # input pixels read from HBM
    times: int  # the most times one pixel's squeeze is computed


def _squeeze_span(first: int, stop: int, cfg: FireConfig) -> list[tuple[int, int]]:
    """fire_kernel._squeeze_span: BLOCK_M rows a step where they fill one, CHUNK else."""
    steps, ch, whole = [], first, cfg.block_m // cfg.chunk
    while ch < stop:
        take = whole if stop - ch >= whole else 1
        steps.append((ch * cfg.chunk, take * cfg.chunk))
        ch += take
    return steps


def squeeze_work(cfg: FireConfig, pixels: int, w: int) -> Squeeze:
    """The squeeze steps of `cfg` (fire_kernel._fire_fused_kernel's band walk, or one
    step per squeeze program) and the input they read from HBM: a pixel read again
    within one tile step of its first read (a neighbouring band's halo, which the
    walk's alternating directions line up) is an L2 hit; any later re-read counts."""
    if not cfg.fused:
        steps = [(q, cfg.chunk) for q in range(0, pixels, cfg.chunk)]
        return Squeeze(steps, pixels, 1)
    tiles = triton.cdiv(pixels, cfg.block_m)
    steps: list[tuple[int, int]] = []
    first_read: dict[int, int] = {}  # chunk -> tile step of its first read
    computed: dict[int, int] = {}
    rereads = 0
    for pid in range(cfg.programs):
        t_begin, t_end = pid * tiles // cfg.programs, (pid + 1) * tiles // cfg.programs
        order = range(t_begin, t_end)
        lo = hi = None
        for i, t in enumerate(reversed(order) if pid % 2 else order):
            q0 = t * cfg.block_m
            first = max(q0 - w - 1, 0) // cfg.chunk
            last = min(q0 + cfg.block_m + w, pixels - 1) // cfg.chunk
            if lo is None:
                lo = hi = first
            new = _squeeze_span(first, lo, cfg) + _squeeze_span(max(hi, first), last + 1, cfg)
            lo, hi = min(lo, first), max(hi, last + 1)
            steps += new
            for q, rows in new:
                for ch in range(q // cfg.chunk, (q + rows) // cfg.chunk):
                    computed[ch] = computed.get(ch, 0) + 1
                    if ch in first_read:
                        if abs(first_read[ch] - i) > 1:
                            rereads += min(cfg.chunk, pixels - ch * cfg.chunk)
                    else:
                        first_read[ch] = i
    return Squeeze(steps, pixels + rereads, max(computed.values()))


def kernel_counts(cfg: FireConfig, lay: WeightLayout, n, c, s, e1, e3, h, w, itemsize) -> Counts:
    """What the launches of `cfg` move and compute (dense weights)."""
    pixels = n * h * w
    sq = squeeze_work(cfg, pixels, w)
    squeezed_rows = sum(rows for _, rows in sq.steps)
    k_pad = triton.cdiv(c, cfg.block_c) * cfg.block_c
    s_pad = lay.s_pad
    e1_done = triton.cdiv(e1, cfg.block_e) * cfg.block_e
    e3_done = triton.cdiv(e3, cfg.block_e) * cfg.block_e
    tiles = triton.cdiv(pixels, cfg.block_m)
    squeeze_w = lay.c_pad * s_pad * itemsize
    expand_w = (s_pad * lay.e1_pad + 9 * s_pad * lay.e3_pad) * itemsize
    scratch = scratch_numel(cfg, lay, pixels) * itemsize
    # Squeeze rows read per tile: the centre per 1x1 block, nine shifts per 3x3 block.
    s_reads = (e1_done + 9 * e3_done) // cfg.block_e * cfg.block_m * s_pad * itemsize
    return Counts(
        input=sq.input_rows * c * itemsize,
        weights=squeeze_w + expand_w + 4 * (s_pad + lay.e1_pad + lay.e3_pad),
        output=pixels * (e1 + e3) * itemsize,
        scratch=scratch if cfg.fused else 2 * scratch,
        macs=squeezed_rows * k_pad * s_pad + tiles * cfg.block_m * s_pad * (e1_done + 9 * e3_done),
        l2_to_sm=squeezed_rows * c * itemsize + len(sq.steps) * squeeze_w
        + tiles * (expand_w + s_reads),
        squeeze_times=sq.times,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--sm-count", type=int, default=132, help="132: H100/H200 SXM")
    args = p.parse_args(argv)
    dtype = DTYPES[args.dtype]
    itemsize = torch.empty(0, dtype=dtype).element_size()

    print(f"{args.dtype}, {args.sm_count} SMs. HBM MB: in / weights / out / scratch; ratios to "
          "the minimum (input + weights + output once; the Fire's own MACs)")
    print("| layer | batch | plan | HBM MB in/w/out/scr | HBM x | MACs x | squeeze x | L2->SM x |")
    print("|---|---|---|---|---|---|---|---|")
    worst: dict[int, tuple[float, float, int]] = {}
    failures = []
    mb = 1e-6
    for layer, ((c, s, e1, e3), hw) in LAYERS.items():
        for batch in BATCHES:
            cfg = config_for(batch, c, s, e1, e3, hw, hw, dtype, args.sm_count)
            lay = weight_layout(c, s, e1, e3, dtype)
            k = kernel_counts(cfg, lay, batch, c, s, e1, e3, hw, hw, itemsize)
            m = minimum(batch, c, s, e1, e3, hw, hw, itemsize)
            hbm, macs = k.hbm / m.hbm, k.macs / m.macs
            plan = (f"fused M={cfg.block_m} chunk={cfg.chunk} P={cfg.programs}" if cfg.fused else
                    f"2-phase M={cfg.block_m} E={cfg.block_e} split={cfg.e_split}")
            print(f"| {layer} | {batch} | {plan} | {k.input * mb:.2f} / {k.weights * mb:.2f} / "
                  f"{k.output * mb:.2f} / {k.scratch * mb:.2f} | {hbm:.3f} | {macs:.3f} | "
                  f"{k.squeeze_times} | {k.l2_to_sm / m.hbm:.1f} |")
            w_hbm, w_macs, w_times = worst.get(batch, (0.0, 0.0, 0))
            worst[batch] = (max(w_hbm, hbm), max(w_macs, macs), max(w_times, k.squeeze_times))
            if batch == 256 and (hbm > TARGET_HBM or macs > TARGET_MACS):
                failures.append(f"{layer} batch 256: HBM {hbm:.3f}x, MACs {macs:.3f}x")
            if batch == 1 and k.squeeze_times > 1:
                failures.append(f"{layer} batch 1: a squeeze computed {k.squeeze_times} times")
    print("\n| batch | worst HBM x | worst MACs x | squeeze computed at most |")
    print("|---|---|---|---|")
    for batch, (hbm, macs, times) in worst.items():
        print(f"| {batch} | {hbm:.3f} | {macs:.3f} | {times}x |")
    for failure in failures:
        print("FAIL", failure)
    print("FAILED" if failures else
          f"OK: batch 256 within {TARGET_HBM}x HBM and {TARGET_MACS}x MACs on every layer, "
          "batch 1 computes every squeeze once")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
