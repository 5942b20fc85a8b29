"""Loads the C++ extension ``fire_kernels._C``, which registers the CPU kernels.

Order: the prebuilt module from ``pip install``; else a just-in-time build of
``csrc/`` with ninja (cached by PyTorch under ``TORCH_EXTENSIONS_DIR``); else
nothing, with one warning, and ``backend="auto"`` uses the PyTorch reference on
CPU while ``backend="cpp"`` raises.

``FIRE_KERNELS_SANITIZE=1`` skips the prebuilt module and builds (once, cached
apart) an ASan + UBSan one; run Python with the ASan runtime (and libstdc++, so
ASan can intercept C++ exceptions) preloaded, as tests/test_sanitizers.py does:

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
        ASAN_OPTIONS=detect_leaks=0 FIRE_KERNELS_SANITIZE=1 python -m pytest tests/test_cpu_kernel.py
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
    what = (
        "building the C++ extension with ASan + UBSan"
        if _build.sanitize()
        else "the prebuilt C++ extension is missing; building it"
    )
    print(
        f"fire_kernels: {what} just in time (about a minute, once; cached by "
        "torch.utils.cpp_extension)",
        file=sys.stderr,
    )
    return cpp_extension.load(
        name="fire_kernels_C_sanitize" if _build.sanitize() else "fire_kernels_C",
        sources=srcs,
        extra_cflags=_build.cxx_flags(),
        extra_ldflags=_build.ld_flags(),
        is_python_module=True,
    )


def _load() -> ModuleType | None:
    global LOAD_ERROR, HOW_LOADED
    try:
        if _build.sanitize():
            raise ImportError("FIRE_KERNELS_SANITIZE=1 asks for a sanitizer build")
        module = importlib.import_module("fire_kernels._C")
        HOW_LOADED = "prebuilt"
        return module
    except ImportError as prebuilt_error:
        try:
            module = _jit_build()
            HOW_LOADED = "jit (ASan + UBSan)" if _build.sanitize() else "jit"
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
