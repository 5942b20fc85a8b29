"""Loads the C++ extension ``fire_kernels._C``, which registers the CPU kernels.

Order: the prebuilt module from ``pip install`` (unless it was built against
another torch, which ``_C_build.json`` beside it records: loading it could fail
with an ``undefined symbol`` or worse); else a just-in-time build of ``csrc/``
with ninja (cached by PyTorch under ``TORCH_EXTENSIONS_DIR``); else nothing, with
one warning that says why, and ``backend="auto"`` uses the PyTorch reference on
CPU while ``backend="cpp"`` raises. On a CPU that is not x86-64 neither is tried.

``FIRE_KERNELS_REQUIRE_CPP=1`` turns every fallback to the reference into an
error: :func:`cpu_fallback` raises :class:`FallbackError` where ``backend="auto"``
would run the reference on a CPU tensor.

Two test builds skip the prebuilt module and build (once, cached apart) their own:
``FIRE_KERNELS_EMULATE_AVX512=1``, whose AVX-512 kernels run on an emulation of the
intrinsics (``_build.emulate_avx512``; tests/test_emulated_avx512.py), and
``FIRE_KERNELS_SANITIZE=1``, an ASan + UBSan one; run Python with the ASan runtime
(and libstdc++, so ASan can intercept C++ exceptions) preloaded, as
tests/test_sanitizers.py does:

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \\
        ASAN_OPTIONS=detect_leaks=0 FIRE_KERNELS_SANITIZE=1 python -m pytest tests/test_cpu_kernel.py
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType

import torch

from . import _build

#: The environment variable that makes any fallback to the reference an error.
REQUIRE_CPP_ENV = "FIRE_KERNELS_REQUIRE_CPP"

REBUILD_HINT = (
    "rebuild it against this torch: `pip install --no-build-isolation --no-deps "
    "--force-reinstall <fire_kernels source or sdist>` (in a source checkout: "
    "`pip install --no-build-isolation -e .`)"
)


@dataclass(frozen=True)
class Status:
    """What runs the CPU kernels in this process."""

    state: str  #: "prebuilt", "just-in-time" or "unavailable"
    path: str | None  #: the loaded module's file
    built_with_torch: str | None  #: the torch it was compiled against
    reason: str | None  #: why it is unavailable, or why the prebuilt module was not used
    sanitizer: bool = False  #: an ASan + UBSan build (FIRE_KERNELS_SANITIZE=1)


class FallbackError(RuntimeError):
    """``FIRE_KERNELS_REQUIRE_CPP=1`` is set and the PyTorch reference would run."""


def require_cpp() -> bool:
    return os.environ.get(REQUIRE_CPP_ENV) == "1"


def _jit_build(why: str) -> ModuleType:
    from torch.utils import cpp_extension

    test_build = _build.test_build()
    what = f"building the C++ extension ({test_build} test build)" if test_build else f"{why}; building it"
    print(
        f"fire_kernels: {what} just in time (about a minute, once; cached by "
        "torch.utils.cpp_extension)",
        file=sys.stderr,
    )
    return cpp_extension.load(
        name="fire_kernels_C" + (f"_{test_build}" if test_build else ""),
        sources=_build.sources(),
        extra_cflags=_build.cxx_flags(),
        extra_ldflags=_build.ld_flags(),
        is_python_module=True,
    )


def _jit_impossible() -> str | None:
    """Why a just-in-time build cannot even start, or None."""
    from torch.utils import cpp_extension

    if not _build.sources():
        return f"no C++ sources at {_build.CSRC_DIR}"
    if _build.compiler() is None:
        return f"no C++ compiler ({os.environ.get('CXX', 'c++')} not found; set CXX or install g++)"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


@dataclass(frozen=True)
class _Prebuilt:
    module: ModuleType | None
    problem: str | None  #: why it is not used
    built_with_torch: str | None
    broken: bool = False  #: it is there but cannot be used: worth a warning even if a JIT build works


def _prebuilt() -> _Prebuilt:
    if _build.test_build():
        return _Prebuilt(None, f"the environment asks for the {_build.test_build()} test build",
                         None)
    record = _build.read_record()
    built_with = record.get("torch") if record else None
    if built_with is not None and torch.__version__ != built_with:
        return _Prebuilt(None, (
            f"the prebuilt C++ extension was built against torch {built_with}, but torch "
            f"{torch.__version__} is running, so it was not loaded: {REBUILD_HINT}"
        ), built_with, broken=True)
    try:
        return _Prebuilt(importlib.import_module("fire_kernels._C"), None, built_with)
    except ModuleNotFoundError as e:
        if e.name != "fire_kernels._C":
            raise
        return _Prebuilt(None, "the prebuilt C++ extension is missing", None)
    except ImportError as e:
        hint = f": {REBUILD_HINT}" if "undefined symbol" in str(e) else ""
        return _Prebuilt(None, f"the prebuilt C++ extension does not load ({e}){hint}",
                         built_with, broken=True)


def _unavailable(reason: str) -> None:
    global LOAD_ERROR, STATUS
    LOAD_ERROR = reason
    STATUS = Status("unavailable", None, None, reason)
    if not require_cpp():  # then every fallback raises instead, with this reason
        warnings.warn(
            f"fire_kernels: the C++ kernels are unavailable, so backend='auto' runs the "
            f"PyTorch reference on CPU and backend='cpp' raises. Cause: {reason}",
            RuntimeWarning,
            stacklevel=4,
        )


def _load() -> ModuleType | None:
    global HOW_LOADED, STATUS
    if not _build.machine_supported():
        _unavailable(_build.unsupported_machine_reason())
        return None
    prebuilt = _prebuilt()
    if prebuilt.module is not None:
        HOW_LOADED = "prebuilt"
        STATUS = Status("prebuilt", prebuilt.module.__file__, prebuilt.built_with_torch, None)
        return prebuilt.module
    jit_error = _jit_impossible()
    if jit_error is None:
        try:
            module = _jit_build("the prebuilt C++ extension cannot be used" if prebuilt.broken
                                else prebuilt.problem)
        except Exception as e:  # a failed compiler run raises RuntimeError
            jit_error = f"{type(e).__name__}: {e}"
    if jit_error is not None:
        _unavailable(f"{prebuilt.problem}; just-in-time build: {jit_error}")
        return None
    HOW_LOADED = f"jit ({_build.test_build()})" if _build.test_build() else "jit"
    STATUS = Status("just-in-time", module.__file__, str(torch.__version__), prebuilt.problem,
                    sanitizer=_build.sanitize())
    if prebuilt.broken:  # said once: the working JIT build would hide it otherwise
        warnings.warn(f"fire_kernels: {prebuilt.problem}; built it just in time instead",
                      RuntimeWarning, stacklevel=3)
    return module


_warned_dtypes: set[torch.dtype] = set()


def cpu_fallback(dtype: torch.dtype) -> None:
    """Called where ``backend="auto"`` is about to run the PyTorch reference on a CPU
    tensor of ``dtype``: raises :class:`FallbackError` under
    ``FIRE_KERNELS_REQUIRE_CPP=1``; else, when the dtype is the reason (the C++ kernel
    runs float32), warns once per dtype (a missing extension was warned about at import).
    Non-floating dtypes are left to the argument checks, which reject them."""
    if not dtype.is_floating_point:
        return
    if require_cpp():
        why = (
            f"the C++ kernels are unavailable: {LOAD_ERROR}" if C is None
            else f"the C++ kernel runs torch.float32 CPU tensors, not {dtype}"
        )
        raise FallbackError(
            f"{REQUIRE_CPP_ENV}=1 forbids running the PyTorch reference, which "
            f"backend='auto' would run here: {why}"
        )
    if C is not None and dtype not in _warned_dtypes and not torch.compiler.is_compiling():
        _warned_dtypes.add(dtype)
        warnings.warn(
            f"fire_kernels: backend='auto' runs the PyTorch reference (no fused kernel) for "
            f"{dtype} CPU tensors: the C++ kernel runs torch.float32 (on CUDA the Triton kernel "
            "runs float32, float16 and bfloat16); convert the model and input with .float() "
            "for the fast path",
            RuntimeWarning,
            stacklevel=4,
        )


#: Why the extension is unavailable (None while it is loaded).
LOAD_ERROR: str | None = None
#: "prebuilt", "jit", "jit (ASan + UBSan)" or None.
HOW_LOADED: str | None = None
STATUS: Status
C: ModuleType | None = _load()
