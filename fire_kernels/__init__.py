"""fire_kernels: SqueezeNet's Fire module as one fused kernel (C++ on CPU, Triton on GPU).

Three ways in::

    import fire_kernels as fk
    fk.fuse_fire_modules(model)                      # swap every Fire of a model
    m = fk.FusedFire(64, 16, 64, 64)                 # use the module (torchvision's signature)
    y = fk.fire(x, ws, bs, we1, be1, we3, be3)       # call the op (torch.ops.fire_kernels.fire)
"""

import torch as _torch

from . import int8_ops, network_ops, ops  # define the operators before the extension registers kernels
from . import _extension
from .functional import BACKENDS, fire
from .models import SqueezeNet, squeezenet1_0, squeezenet1_1
from .module import FusedFire, fuse_fire_modules, is_fire_like
from .network import (
    FusedAway,
    FusedConvReluAvgPool,
    FusedConvReluMaxPool,
    FusedSequential,
    fuse_network,
    unfuse_fire_modules,
)
from .pruning import (
    ConvSparsity,
    FireSparsity,
    SparsityReport,
    prune_fire_modules,
    prune_network,
    sparsity_report,
)
from .quantized import (
    QuantizedFire,
    QuantizedHead,
    QuantizedStem,
    dequantize_network,
    quantize_network,
)
from .reference import Fire, fire_reference
from .weight_plan import WeightPlan, invalidate_plans

__version__ = "0.1.0"

if _torch.cuda.is_available():
    # Make the Triton kernel the operator's CUDA kernel now, not at first use, so
    # that torch.compile and direct op calls find it.
    try:
        from .triton import register as _register_triton
    except ImportError:  # no triton: backend="auto" runs the reference on CUDA
        pass
    else:
        _register_triton()

__all__ = [
    "BACKENDS",
    "Fire",
    "FusedAway",
    "FusedConvReluAvgPool",
    "FusedConvReluMaxPool",
    "FusedFire",
    "FusedSequential",
    "QuantizedFire",
    "QuantizedHead",
    "QuantizedStem",
    "SqueezeNet",
    "cpu_isa",
    "empty_cache",
    "cpu_kernel_available",
    "dequantize_network",
    "available_cpu_isas",
    "set_cpu_isa",
    "fire",
    "fire_reference",
    "fuse_fire_modules",
    "fuse_network",
    "prune_fire_modules",
    "prune_network",
    "quantize_network",
    "refresh_packed_weights",
    "sparsity_report",
    "ConvSparsity",
    "FireSparsity",
    "SparsityReport",
    "WeightPlan",
    "is_fire_like",
    "squeezenet1_0",
    "squeezenet1_1",
    "unfuse_fire_modules",
]


def _require_extension():
    if _extension.C is None:
        raise RuntimeError(f"the C++ extension is unavailable: {_extension.LOAD_ERROR}")
    return _extension.C


def cpu_kernel_available() -> bool:
    """Whether the C++ kernels run float32 CPU tensors in this process (prebuilt or
    built just in time). Where not, ``backend="auto"`` runs the PyTorch reference, or
    raises under ``FIRE_KERNELS_REQUIRE_CPP=1``; ``fire-kernels info`` says why."""
    return _extension.C is not None


def available_cpu_isas() -> list[str]:
    """The vector ISAs of the CPU kernels this machine can run (and
    ``ATEN_CPU_CAPABILITY``, where set, allows), best first."""
    return list(_require_extension().available_isas())


def cpu_isa() -> str:
    """The vector ISA the CPU kernels use now (``FIRE_KERNELS_ISA`` sets the initial one;
    ``ATEN_CPU_CAPABILITY=default|avx2|avx512``, PyTorch's own switch, caps it)."""
    return _require_extension().current_isa()


def set_cpu_isa(name: str) -> None:
    """Forces the CPU kernels' ISA: ``"auto"`` or one of :func:`available_cpu_isas`."""
    _require_extension().set_isa(name)


def empty_cache() -> int:
    """Frees the memory the CPU kernels keep for their outputs; returns the bytes freed.

    A fused operator's output of 64 KiB or more lives in a block that goes back to a
    cache, not to the system, when its last tensor dies, so that the next output that
    fits (the next layer's, or the next forward's) takes it again instead of faulting
    in fresh pages (through glibc, a batch-16 forward faulted in each of its large
    outputs afresh); the block given up last first, while it is in the CPU's caches.
    The cache keeps at most 1 GiB, 16 blocks. Like ``torch.cuda.empty_cache``.
    """
    if _extension.C is None:
        return 0
    return _extension.C.empty_activation_cache()


def refresh_packed_weights() -> None:
    """Drops every cached packed copy of Fire weights, so the next forward repacks.

    The kernels repack by themselves whenever a weight's version counter moves
    (optimizer steps, ``load_state_dict``, in-place ops on the parameter). Only
    writes through ``param.data``, which bypass version counters as they bypass
    autograd, need this call before the next forward on the C++ kernels (which
    read only packed weights).
    """
    invalidate_plans()
    if _extension.C is not None:
        _extension.C.clear_pack_cache()
