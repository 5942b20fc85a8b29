"""The Triton (GPU) kernel of the fused Fire and its launcher.

``fire_triton`` runs the kernel on CUDA tensors, or on CPU tensors when Triton's
interpreter is on (``TRITON_INTERPRET=1`` set before triton is imported), which is
how the tests run it without a GPU. ``register()`` makes it the CUDA kernel of
``torch.ops.fire_kernels.fire``.
"""

from .launch import FireConfig, block_list, config_for, fire_triton, interpreter_enabled, register

__all__ = [
    "FireConfig",
    "block_list",
    "config_for",
    "fire_triton",
    "interpreter_enabled",
    "register",
]
