"""``fire()``: the fused Fire as a function of the input and the weights.

The functional twin of :class:`fire_kernels.FusedFire` (as torchvision's
``roi_align`` is of ``RoIAlign``): it picks the backend, checks the arguments
and calls the registered operator ``torch.ops.fire_kernels.fire``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from . import _extension
from .ops import check_fire_args
from .reference import fire_reference

__all__ = ["fire", "BACKENDS", "Backend", "resolve_backend"]

_FIRE_OP = torch.ops.fire_kernels.fire.default

Backend = Literal["auto", "cpp", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "cpp", "triton", "torch")


def _triton():
    """fire_kernels.triton (imported on first use: it imports triton), or None."""
    try:
        from . import triton as kernels
    except ImportError:
        return None
    kernels.register()
    return kernels


def resolve_backend(backend: str, x: Tensor) -> str:
    """The backend that runs a Fire on ``x``: ``"cpp"``, ``"triton"`` or ``"torch"``.

    ``"auto"`` picks the C++ kernel for float32 CPU tensors, the Triton kernel for
    CUDA tensors and the reference otherwise (including CPU dtypes the C++ kernel
    does not cover, CPU when the extension could not be built, and CUDA without
    Triton). An explicit backend that cannot run ``x`` raises; it never falls back.
    """
    if backend == "auto":
        if x.device.type == "cpu":
            if _extension.C is not None and x.dtype == torch.float32:
                return "cpp"
            _extension.cpu_fallback(x.dtype)  # warns once, or raises (FIRE_KERNELS_REQUIRE_CPP=1)
            return "torch"
        if x.device.type == "cuda" and _triton() is not None:
            return "triton"
        return "torch"
    if backend == "cpp":
        if _extension.C is None:
            raise RuntimeError(
                f"backend='cpp' needs the C++ extension, which is unavailable: {_extension.LOAD_ERROR}"
            )
        if x.device.type != "cpu":
            raise RuntimeError(f"backend='cpp' runs on CPU tensors; the input is on {x.device}")
        if x.dtype != torch.float32:
            raise TypeError(f"backend='cpp' runs float32; the input is {x.dtype}")
        return "cpp"
    if backend == "triton":
        kernels = _triton()
        if kernels is None:
            raise RuntimeError("backend='triton' needs the triton package, which is not installed")
        if x.device.type == "cpu" and not kernels.interpreter_enabled():
            raise RuntimeError(
                "backend='triton' runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1 "
                f"set before triton is imported; the input is on {x.device}"
            )
        if x.device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"backend='triton' runs on CUDA tensors; the input is on {x.device}")
        return "triton"
    if backend == "torch":
        return "torch"
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def fire(
    x: Tensor,
    squeeze_weight: Tensor,
    squeeze_bias: Tensor | None,
    expand1x1_weight: Tensor,
    expand1x1_bias: Tensor | None,
    expand3x3_weight: Tensor,
    expand3x3_bias: Tensor | None,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """Fire module forward:
    ``cat([relu(conv1x1(s, W_e1) + b_e1), relu(conv3x3(s, W_e3, pad=1) + b_e3)], 1)``
    with ``s = relu(conv1x1(x, W_s) + b_s)``.

    Args:
        x: ``(N, C, H, W)`` input, any strides; the output keeps its memory format.
        squeeze_weight, expand1x1_weight, expand3x3_weight: ``nn.Conv2d`` weights of
            shapes ``(S, C, 1, 1)``, ``(E1, S, 1, 1)``, ``(E3, S, 3, 3)``.
        squeeze_bias, expand1x1_bias, expand3x3_bias: biases or None.
        backend: ``"auto"``, ``"cpp"``, ``"triton"`` or ``"torch"`` (the reference).

    Returns:
        ``(N, E1 + E3, H, W)`` tensor.
    """
    args = (
        x, squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias, expand3x3_weight,
        expand3x3_bias,
    )
    if x.dim() != 4 or not x.is_floating_point():
        check_fire_args(*args)  # raises the precise error
    path = resolve_backend(backend, x)
    if path != "cpp":
        # The C++ kernel checks the weights itself, with the same messages;
        # not repeating that here saves ~5 us a call.
        check_fire_args(*args)
    if path == "torch":
        return fire_reference(*args)
    if path == "triton" and x.device.type == "cpu":
        # Triton's interpreter (tests without a GPU): the launcher directly, as the
        # operator's CPU kernel is the C++ one. No autograd on this path.
        return _triton().fire_triton(*args)
    return _FIRE_OP(*args)
