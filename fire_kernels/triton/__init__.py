"""The Triton (GPU) kernels of the fused Fire and their launcher.

``fire_triton`` runs them on CUDA tensors, or on CPU tensors when Triton's
interpreter is on (``TRITON_INTERPRET=1`` set before triton is imported), which is
how the tests run them without a GPU. ``register()`` makes it the CUDA kernel of
``torch.ops.fire_kernels.fire``. Callers that keep weights pack them once per weight
version with ``pack_triton_weights`` (and ``block_list`` for the block-sparse
variant) and pass the packs in.
"""

from .launch import (
    LIST_BLOCK,
    TARGET_PROGRAMS_PER_SM,
    FireConfig,
    KernelLaunch,
    TritonWeights,
    WeightLayout,
    block_list,
    block_list_density,
    config_for,
    conv_tf32,
    fire_triton,
    fire_triton_packed,
    interpreter_enabled,
    kernel_launches,
    pack_triton_weights,
    register,
    scratch_numel,
    weight_layout,
)

__all__ = [
    "LIST_BLOCK",
    "TARGET_PROGRAMS_PER_SM",
    "FireConfig",
    "KernelLaunch",
    "TritonWeights",
    "WeightLayout",
    "block_list",
    "block_list_density",
    "config_for",
    "conv_tf32",
    "fire_triton",
    "fire_triton_packed",
    "interpreter_enabled",
    "kernel_launches",
    "pack_triton_weights",
    "register",
    "scratch_numel",
    "weight_layout",
]
