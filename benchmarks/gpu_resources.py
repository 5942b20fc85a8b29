"""Compile-time resource check of the Triton Fire kernels, no GPU needed.

Compiles every kernel the launcher can choose (the 16 SqueezeNet Fire layers, batch
1 and 256, float16/bfloat16/float32 in TF32 and in IEEE, dense and block-sparse,
NCHW and channels-last inputs) for sm_90 (planned for H100/H200 SXM's 132 SMs and
H100 PCIe's 114) and sm_80 (A100's 108), exactly as ``fire_triton`` would launch them
(the same ``config_for``, ``kernel_launches`` building the launcher's own launch
arguments, Triton's own argument specialisation), and reads each cubin's registers,
shared memory and local memory (spills) with the ``cuobjdump`` that Triton's wheel
ships.

Prints one row per distinct compiled kernel and exits non-zero if any kernel fails to
compile, spills, or needs more shared memory than a block may have. The programs a SM
holds (occupancy) are reported, not required: neither kernel's grid counts on residency.

    python benchmarks/gpu_resources.py   # both archs; --arch 90 alone: 292 kernels, 133 s on 2 cores
    python benchmarks/gpu_resources.py --arch 90 --layers v1_1-fire2 v1_1-fire9
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch

# The real compiler, not the interpreter (under which @triton.jit makes no compilable
# kernels): set before anything imports triton.
os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from fire_kernels.benchmarking import LAYERS  # noqa: E402
from fire_kernels.triton import (  # noqa: E402
    LIST_BLOCK,
    TritonWeights,
    config_for,
    kernel_launches,
    scratch_numel,
    weight_layout,
)


@dataclass(frozen=True)
class Arch:
    name: str
    capability: int
    sm_counts: tuple[int, ...]  # the GPUs the configs are planned for
    smem_per_block: int  # the opt-in maximum of one block
    smem_per_sm: int
    regs_per_sm: int = 65536
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32


ARCHS = {
    # H100/H200 SXM and H100 PCIe; A100
    90: Arch("sm_90 H100/H200", 90, (132, 114), 227 * 1024, 228 * 1024),
    80: Arch("sm_80 A100", 80, (108,), 163 * 1024, 164 * 1024),
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
_CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                          "cuobjdump")


@dataclass
class Compiled:
    arch: Arch
    kernel: str
    dtype: str
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
        by_regs = a.regs_per_sm // (regs_per_warp * self.num_warps)
        by_smem = a.smem_per_sm // (self.shared + _RESERVED_SMEM)
        return min(by_regs, by_smem, a.max_threads_per_sm // threads, a.max_blocks_per_sm)

    def occupancy(self) -> float:
        """Resident warps over the most an SM can hold."""
        return self.programs_per_sm() * self.num_warps * 32 / self.arch.max_threads_per_sm

    def problems(self) -> list[str]:
        if self.error:
            return [f"does not compile: {self.error}"]
        out = []
        if self.local:
            out.append(f"spills ({self.local} bytes of local memory a thread)")
        if self.shared > self.arch.smem_per_block:
            out.append(f"needs {self.shared} bytes of shared memory, a block may have "
                       f"{self.arch.smem_per_block}")
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


def _launches(layer: str, batch: int, dtype_name: str, sparse: bool, fmt: str, sm_count: int,
              arch: Arch):
    """The launch plan fire_triton would run, with meta tensors in place of data."""
    (c, s, e1, e3), hw = LAYERS[layer]
    dtype, precision = DTYPES[dtype_name]
    cfg = config_for(batch, c, s, e1, e3, hw, hw, dtype, sm_count, block_sparse=sparse)
    lay = weight_layout(c, s, e1, e3, dtype)
    x = _meta_tensor((batch, c, hw, hw), dtype, FORMATS[fmt])
    out = _meta_tensor((batch, e1 + e3, hw, hw), dtype, FORMATS[fmt])
    f32 = torch.float32
    weights = (
        _meta_tensor((lay.c_pad, lay.s_pad), dtype), _meta_tensor((lay.s_pad,), f32),
        _meta_tensor((lay.s_pad, lay.e1_pad), dtype), _meta_tensor((lay.e1_pad,), f32),
        _meta_tensor((9, lay.s_pad, lay.e3_pad), dtype), _meta_tensor((lay.e3_pad,), f32),
    )
    scratch = _meta_tensor((scratch_numel(cfg, lay, batch * hw * hw),), dtype)
    blocks = counts = None
    if sparse:
        eb, sb = triton.cdiv(e3, LIST_BLOCK), triton.cdiv(s, LIST_BLOCK)
        blocks = _meta_tensor((eb, 9 * sb), torch.int32)
        counts = _meta_tensor((eb,), torch.int32)
    return kernel_launches(cfg, x, out, e1, TritonWeights(*weights), scratch, blocks, counts,
                           precision)


def _specialise(launch, arch: Arch):
    """What triton.compile needs for `launch` on `arch`, specialised on the arguments
    exactly as a real launch would be (Triton's own binder), and a key for it."""
    backend = make_backend(GPUTarget("cuda", arch.capability, 32))
    fn = launch.kernel
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.meta)
    options, signature, constexprs, attrs = fn._pack_args(backend, launch.meta, bound,
                                                          specialization, options)
    key = (arch.capability, fn.__name__, str(signature), str(sorted(constexprs.items())),
           str(sorted(attrs.items())), str(options))
    return fn, signature, constexprs, attrs, options, key


def _compile(plan: tuple, index: int) -> tuple[int, int, int, str]:
    """REG, SHARED, LOCAL and the error, if any, of launch `index` of `plan` (a
    process-pool job: it rebuilds the launch from its description)."""
    arch = ARCHS[plan[-1]]
    launches = _launches(*plan[:-1], arch)
    fn, signature, constexprs, attrs, options, _ = _specialise(launches[index], arch)
    try:
        kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs),
                                target=GPUTarget("cuda", arch.capability, 32),
                                options=options.__dict__)
        regs, shared, local = _res_usage(kernel.asm["cubin"])
        return regs, max(shared, kernel.metadata.shared), local, ""
    except Exception as e:  # every failure is a finding to report, not a crash
        return 0, 0, 0, f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"


def _short(meta: dict) -> str:
    names = {"BLOCK_M": "M", "BLOCK_C": "C", "BLOCK_S": "S",
             "S_BLOCKS": "Sb", "BLOCK_E": "E", "BLOCK_LIST": "list",
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
    p.add_argument("--jobs", type=int, default=os.cpu_count(), help="compiles in parallel")
    args = p.parse_args(argv)

    start = time.time()
    kernels: dict[tuple, Compiled] = {}
    jobs: dict[tuple, tuple] = {}  # kernel key -> (plan, launch index) that compiles it
    uses: list[tuple[str, tuple]] = []  # (what, kernel key)
    for cap in args.arch:
        arch = ARCHS[cap]
        for layer, batch, dtype_name, sparse, fmt, sm_count in itertools.product(
                args.layers, args.batches, args.dtypes,
                (False,) if args.dense_only else (False, True), args.formats, arch.sm_counts):
            plan = (layer, batch, dtype_name, sparse, fmt, sm_count)
            launches = _launches(*plan, arch)
            for index, launch in enumerate(launches):
                fn, *_, key = _specialise(launch, arch)
                if key not in kernels:
                    shown = {k: v for k, v in launch.meta.items()
                             if k.isupper() or k == "num_stages"}
                    kernels[key] = Compiled(arch, fn.__name__, dtype_name, shown,
                                            launch.meta["num_warps"])
                    jobs[key] = ((*plan, cap), index)
                kernels[key].uses += 1
                what = (f"{arch.name} ({sm_count} SMs) {layer} batch {batch} {dtype_name} "
                        f"{'sparse' if sparse else 'dense'} {fmt} {fn.__name__}")
                uses.append((what, key))
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        results = pool.map(_compile, *zip(*jobs.values()))
        for key, (regs, shared, local, error) in zip(jobs, results):
            entry = kernels[key]
            entry.regs, entry.shared, entry.local, entry.error = regs, shared, local, error
    failures = [f"{what}: {problem}" for what, key in uses for problem in kernels[key].problems()]
    print("| arch | kernel | dtype | warps | config | REG | SHARED (B) | LOCAL (B) "
          "| programs/SM | occupancy | configs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in kernels.values():
        usage = ("- | - | - | - | -" if e.error else f"{e.regs} | {e.shared} | {e.local} | "
                 f"{e.programs_per_sm()} | {e.occupancy():.0%}")
        print(f"| {e.arch.name} | {e.kernel} | {e.dtype} | {e.num_warps} | {_short(e.meta)} "
              f"| {usage} | {e.uses} |")
    print(f"\n{len(kernels)} distinct kernels for {len(uses)} launches, compiled in "
          f"{time.time() - start:.0f} s. Summary (most registers and shared memory, fewest "
          "programs per SM):")
    print("| arch | kernel | dtype | kernels | REG max | SHARED max (B) | LOCAL max (B) "
          "| programs/SM min |")
    print("|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[Compiled]] = {}
    for e in kernels.values():
        if not e.error:
            groups.setdefault((e.arch.name, e.kernel, e.dtype), []).append(e)
    for (arch_name, kernel, dtype_name), group in groups.items():
        print(f"| {arch_name} | {kernel} | {dtype_name} | {len(group)} "
              f"| {max(e.regs for e in group)} | {max(e.shared for e in group)} "
              f"| {max(e.local for e in group)} | {min(e.programs_per_sm() for e in group)} |")
    for failure in failures:
        print("FAIL", failure)
    print("FAILED" if failures else
          "OK: every config compiles, within shared memory, without spills")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
