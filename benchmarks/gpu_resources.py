"""Compile-time resource check of the Triton Fire kernels, no GPU needed.

Compiles every kernel the launcher can choose (the 16 SqueezeNet Fire layers, batch
1 and 256, float16/bfloat16/float32 in TF32 and in IEEE, dense and block-sparse,
NCHW and channels-last inputs) for sm_90 (H100/H200) and sm_80 (A100), exactly as
``fire_triton`` would launch them (the same ``config_for`` and ``kernel_launches``,
Triton's own argument specialisation), and reads each cubin's registers, shared memory
and local memory (spills) with the ``cuobjdump`` that Triton's wheel ships.

Prints one row per distinct compiled kernel and exits non-zero if any kernel fails to
compile, spills, needs more shared memory than a block may have, or leaves room for
fewer than ``PROGRAMS_PER_SM`` resident programs where the fused plan's persistent grid
counts on them.

    python benchmarks/gpu_resources.py                 # everything (minutes)
    python benchmarks/gpu_resources.py --arch 90 --layers v1_1-fire2 v1_1-fire9
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from fire_kernels.benchmarking import LAYERS
from fire_kernels.triton import (
    LIST_BLOCK,
    PROGRAMS_PER_SM,
    config_for,
    kernel_launches,
    scratch_numel,
    weight_layout,
)


@dataclass(frozen=True)
class Arch:
    name: str
    capability: int
    sm_count: int  # the GPU the configs are planned for
    smem_per_block: int  # the opt-in maximum of one block
    smem_per_sm: int
    regs_per_sm: int = 65536
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32


ARCHS = {
    90: Arch("sm_90 H100/H200", 90, 132, 227 * 1024, 228 * 1024),
    80: Arch("sm_80 A100", 80, 108, 163 * 1024, 164 * 1024),
}
# name -> (dtype, tl.dot input precision)
DTYPES = {
    "fp16": (torch.float16, "ieee"),
    "bf16": (torch.bfloat16, "ieee"),
    "fp32": (torch.float32, "tf32"),
    "fp32-ieee": (torch.float32, "ieee"),
}
BATCHES = (1, 256)
FORMATS = {"cl": torch.channels_last, "nchw": torch.contiguous_format}
# Shared memory the driver reserves per block on sm_80 and later.
_RESERVED_SMEM = 1024
_CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


@dataclass
class Compiled:
    arch: Arch
    kernel: str
    meta: dict
    num_warps: int
    regs: int = 0
    shared: int = 0
    local: int = 0
    error: str = ""
    uses: int = 0

    def programs_per_sm(self) -> int:
        """Resident programs per SM allowed by registers (allocated per warp in units
        of 256), shared memory and threads."""
        a = self.arch
        threads = 32 * self.num_warps
        regs_per_warp = -(-self.regs * 32 // 256) * 256
        by_regs = a.regs_per_sm // (regs_per_warp * self.num_warps) if self.regs else a.max_blocks_per_sm
        by_smem = a.smem_per_sm // (self.shared + _RESERVED_SMEM)
        return min(by_regs, by_smem, a.max_threads_per_sm // threads, a.max_blocks_per_sm)

    def problems(self, needs_programs: int) -> list[str]:
        if self.error:
            return [f"does not compile: {self.error}"]
        out = []
        if self.local:
            out.append(f"spills ({self.local} bytes of local memory a thread)")
        if self.shared > self.arch.smem_per_block:
            out.append(f"needs {self.shared} bytes of shared memory, a block may have "
                       f"{self.arch.smem_per_block}")
        if self.programs_per_sm() < needs_programs:
            out.append(f"{self.programs_per_sm()} programs fit an SM, the plan needs {needs_programs}")
        return out


def _res_usage(cubin: bytes) -> tuple[int, int, int]:
    """REG, SHARED and LOCAL of the cubin's one kernel, from cuobjdump -res-usage."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        text = subprocess.run([_CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    finally:
        os.unlink(f.name)
    fields = dict(re.findall(r"\b(REG|SHARED|LOCAL):(\d+)", text))
    return int(fields["REG"]), int(fields["SHARED"]), int(fields["LOCAL"])


def _meta_tensor(shape, dtype, memory_format=torch.contiguous_format):
    return torch.empty(shape, dtype=dtype, device="meta", memory_format=memory_format)


def _launches(layer: str, batch: int, dtype_name: str, sparse: bool, fmt: str, arch: Arch):
    """The launch plan fire_triton would run, with meta tensors in place of data."""
    (c, s, e1, e3), hw = LAYERS[layer]
    dtype, precision = DTYPES[dtype_name]
    cfg = config_for(batch, c, s, e1, e3, hw, hw, dtype, arch.sm_count, block_sparse=sparse)
    lay = weight_layout(c, s, e1, e3, dtype)
    x = _meta_tensor((batch, c, hw, hw), dtype, FORMATS[fmt])
    out = _meta_tensor((batch, e1 + e3, hw, hw), dtype, FORMATS[fmt])
    f32 = torch.float32
    weights = (
        _meta_tensor((lay.c_pad, lay.s_pad), dtype), _meta_tensor((lay.s_pad,), f32),
        _meta_tensor((lay.s_pad, lay.e1_pad), dtype), _meta_tensor((lay.e1_pad,), f32),
        _meta_tensor((9, lay.s_pad, lay.e3_pad), dtype), _meta_tensor((lay.e3_pad,), f32),
    )
    from fire_kernels.triton import TritonWeights

    scratch = _meta_tensor((scratch_numel(cfg, lay, batch * hw * hw),), dtype)
    blocks = counts = None
    if sparse:
        eb, sb = triton.cdiv(e3, LIST_BLOCK), triton.cdiv(s, LIST_BLOCK)
        blocks = _meta_tensor((eb, 9 * sb), torch.int32)
        counts = _meta_tensor((eb,), torch.int32)
    return cfg, kernel_launches(cfg, x, out, e1, TritonWeights(*weights), scratch, blocks, counts,
                                precision)


def _compile(launch, arch: Arch, cache: dict) -> Compiled:
    """Compiles one launch for `arch` (once per distinct specialisation)."""
    target = GPUTarget("cuda", arch.capability, 32)
    backend = make_backend(target)
    fn = launch.kernel
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.meta)
    options, signature, constexprs, attrs = fn._pack_args(backend, launch.meta, bound,
                                                          specialization, options)
    key = (arch.capability, fn.__name__, str(signature), str(sorted(constexprs.items())),
           str(sorted(attrs.items())), str(options))
    if key not in cache:
        shown = {k: v for k, v in launch.meta.items() if k.isupper()}
        entry = Compiled(arch, fn.__name__, shown, options.num_warps)
        try:
            kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                                    options=options.__dict__)
            entry.regs, entry.shared, entry.local = _res_usage(kernel.asm["cubin"])
            entry.shared = max(entry.shared, kernel.metadata.shared)
        except Exception as e:  # every failure is a finding to report, not a crash
            entry.error = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
        cache[key] = entry
    cache[key].uses += 1
    return cache[key]


def _short(meta: dict) -> str:
    names = {"BLOCK_M": "M", "CHUNK": "chunk", "RING_ROWS": "ring", "BLOCK_C": "C", "BLOCK_S": "S",
             "S_BLOCKS": "Sb", "BLOCK_E": "E", "E_SPLIT": "split", "BLOCK_LIST": "list",
             "PRECISION": "prec", "num_stages": "stages"}
    return " ".join(f"{short}={meta[k]}" for k, short in names.items() if k in meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, nargs="+", choices=sorted(ARCHS), default=sorted(ARCHS))
    p.add_argument("--layers", nargs="+", choices=sorted(LAYERS), default=list(LAYERS))
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=list(DTYPES))
    p.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=list(FORMATS))
    p.add_argument("--dense-only", action="store_true", help="skip the block-sparse variant")
    args = p.parse_args(argv)

    start = time.time()
    cache: dict = {}
    failures: list[str] = []
    for cap in args.arch:
        arch = ARCHS[cap]
        for layer in args.layers:
            for batch in args.batches:
                for dtype_name in args.dtypes:
                    for sparse in (False,) if args.dense_only else (False, True):
                        for fmt in args.formats:
                            cfg, launches = _launches(layer, batch, dtype_name, sparse, fmt, arch)
                            needs = PROGRAMS_PER_SM if cfg.fused else 1
                            for launch in launches:
                                entry = _compile(launch, arch, cache)
                                for problem in entry.problems(needs):
                                    failures.append(
                                        f"{arch.name} {layer} batch {batch} {dtype_name} "
                                        f"{'sparse' if sparse else 'dense'} {fmt} "
                                        f"{entry.kernel}: {problem}")

    print(f"| arch | kernel | warps | config | REG | SHARED (B) | LOCAL (B) | programs/SM "
          f"| occupancy | configs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for entry in cache.values():
        if entry.error:
            print(f"| {entry.arch.name} | {entry.kernel} | {entry.num_warps} | {_short(entry.meta)} "
                  f"| - | - | - | - | - | {entry.uses} |")
            continue
        per_sm = entry.programs_per_sm()
        occupancy = per_sm * entry.num_warps * 32 / entry.arch.max_threads_per_sm
        print(f"| {entry.arch.name} | {entry.kernel} | {entry.num_warps} | {_short(entry.meta)} "
              f"| {entry.regs} | {entry.shared} | {entry.local} | {per_sm} | {occupancy:.0%} "
              f"| {entry.uses} |")
    compiled = [e for e in cache.values() if not e.error]
    print(f"\n{len(cache)} distinct kernels for {sum(e.uses for e in cache.values())} launches, "
          f"compiled in {time.time() - start:.0f} s")
    for cap in args.arch:
        mine = [e for e in compiled if e.arch.capability == cap]
        if mine:
            print(f"{ARCHS[cap].name}: registers {min(e.regs for e in mine)}-{max(e.regs for e in mine)}, "
                  f"shared memory {min(e.shared for e in mine)}-{max(e.shared for e in mine)} B, "
                  f"local memory max {max(e.local for e in mine)} B, programs/SM "
                  f"{min(e.programs_per_sm() for e in mine)}-{max(e.programs_per_sm() for e in mine)}")
    for failure in failures:
        print("FAIL", failure)
    print("FAILED" if failures else "OK: every config compiles, within shared memory, without spills")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
