"""How the C++ extension is compiled: shared by ``setup.py`` and the just-in-time build.

This file imports nothing from the package, so ``setup.py`` can load it by path.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _csrc_dir() -> Path:
    """The C++ sources: ``fire_kernels/csrc`` in an installed wheel (``setup.py``
    copies every file of ``csrc/`` there), else ``csrc/`` beside the package (a
    source checkout, an editable install, an unpacked sdist)."""
    shipped = _PACKAGE_DIR / "csrc"
    return shipped if shipped.is_dir() else _PACKAGE_DIR.parent / "csrc"


CSRC_DIR = _csrc_dir()

#: Written beside the built ``_C`` module: the torch it was compiled against.
RECORD_NAME = "_C_build.json"


def sources() -> list[str]:
    """The C++ sources, sorted so builds are reproducible."""
    return sorted(str(p) for p in CSRC_DIR.glob("*.cpp"))


def machine_supported() -> bool:
    """Whether this CPU can run the C++ kernels: x86-64 only (their vector paths and
    the CPU feature checks are x86's)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def unsupported_machine_reason() -> str:
    return f"the C++ kernels need an x86-64 CPU; this machine is {platform.machine() or 'unknown'}"


def compiler() -> str | None:
    """The C++ compiler a build would run (``$CXX``, else ``c++``, as
    torch.utils.cpp_extension picks it), or None where it is not found."""
    command = os.environ.get("CXX", "c++").split()
    return shutil.which(command[0]) if command else None


def build_record() -> dict[str, str]:
    """What ``setup.py`` records beside the module it builds."""
    import torch

    return {"torch": str(torch.__version__)}


def read_record(directory: Path = _PACKAGE_DIR) -> dict[str, str] | None:
    """The record of the prebuilt module in ``directory``, or None if there is none
    (or it cannot be read: then nothing is known about the build)."""
    try:
        record = json.loads((directory / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def sanitize() -> bool:
    """``FIRE_KERNELS_SANITIZE=1``: build with AddressSanitizer + UndefinedBehaviorSanitizer."""
    return os.environ.get("FIRE_KERNELS_SANITIZE") == "1"


def emulate_avx512() -> bool:
    """``FIRE_KERNELS_EMULATE_AVX512=1``: a test build whose AVX-512 kernels run on
    SIMDe's implementation of the AVX-512 intrinsics (on AVX2 + FMA), so that their
    tile geometry, masked tails and transposes are tested on CPUs without AVX-512.
    Never what users load: built just in time, cached apart."""
    return os.environ.get("FIRE_KERNELS_EMULATE_AVX512") == "1"


def test_build() -> str | None:
    """The test build the environment asks for instead of the prebuilt module, as the
    just-in-time build's name suffix: "sanitize", "emulated_avx512", or None."""
    if sanitize():
        return "sanitize"
    if emulate_avx512():
        return "emulated_avx512"
    return None


def _emulation_flags() -> list[str]:
    # The whole build targets AVX2 + FMA: SIMDe then implements each 512-bit
    # intrinsic with a pair of native 256-bit ones.
    import simde_py

    return ["-DFK_EMULATE_AVX512", "-mavx2", "-mfma", f"-I{simde_py.get_include()}"]


_SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]


def cxx_flags() -> list[str]:
    """Compiler flags. ``DEBUG=1`` builds ``-O0 -g``; ``FIRE_KERNELS_SANITIZE=1`` adds
    ASan + UBSan (``-O1 -g``, frame pointers kept for readable reports);
    ``FIRE_KERNELS_EMULATE_AVX512=1`` the emulation's (:func:`emulate_avx512`).

    No ``-march``: the build must run on any x86-64 CPU. The AVX2 and AVX-512
    kernels are compiled for their ISA by ``#pragma GCC target`` inside their own
    translation units and are only called after a run-time CPU check.
    No ``-fopenmp``: the kernels share their work on the extension's own thread pool
    (``csrc/thread_pool.h``), not in OpenMP regions.
    """
    if sanitize():
        opt = ["-O1", "-g", "-fno-omit-frame-pointer", *_SANITIZERS]
    elif os.environ.get("DEBUG") == "1":
        opt = ["-O0", "-g"]
    else:
        opt = ["-O3"]
    emulation = _emulation_flags() if emulate_avx512() else []
    return [*opt, *emulation, "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas"]


def ld_flags() -> list[str]:
    return [*(_SANITIZERS if sanitize() else [])]
