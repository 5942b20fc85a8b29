"""Loads the C++ extension ``fire_kernels._C``, which registers the CPU kernels.

Order: the prebuilt module from ``pip install``; else a just-in-time build of
``csrc/`` with ninja (cached by PyTorch under ``TORCH_EXTENSIONS_DIR``); else
nothing, with one warning, and ``backend="auto"`` uses the PyTorch reference on
CPU while ``backend="cpp"`` raises.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

from . import _build

#: Why the extension is unavailable (None while it is loaded).
LOAD_ERROR: str | None = None
#: "prebuilt", "jit" or None.
HOW_LOADED: str | None = None


def _jit_build() -> ModuleType:
    from torch.utils import cpp_extension

    srcs = _build.sources()
    if not srcs:
        raise ImportError(f"no C++ sources at {_build.CSRC_DIR}")
    print(
        "fire_kernels: the prebuilt C++ extension is missing; building it just in time "
        "(about a minute, once; cached by torch.utils.cpp_extension)",
        file=sys.stderr,
    )
    return cpp_extension.load(
        name="fire_kernels_C",
        sources=srcs,
        extra_cflags=_build.cxx_flags(),
        extra_ldflags=_build.ld_flags(),
        is_python_module=True,
    )


def _load() -> ModuleType | None:
    global LOAD_ERROR, HOW_LOADED
    try:
        module = importlib.import_module("fire_kernels._C")
        HOW_LOADED = "prebuilt"
        return module
    except ImportError as prebuilt_error:
        try:
            module = _jit_build()
            HOW_LOADED = "jit"
            return module
        except Exception as jit_error:  # a failed compiler run raises RuntimeError
            LOAD_ERROR = (
                f"prebuilt module: {prebuilt_error}; just-in-time build: "
                f"{type(jit_error).__name__}: {jit_error}"
            )
            warnings.warn(
                "fire_kernels: the C++ extension could not be loaded or built, so "
                "backend='auto' runs the PyTorch reference on CPU and backend='cpp' raises. "
                f"Cause: {LOAD_ERROR}",
                RuntimeWarning,
                stacklevel=3,
            )
            return None


C: ModuleType | None = _load()
