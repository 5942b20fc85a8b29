"""How the C++ extension is compiled: shared by ``setup.py`` and the just-in-time build.

This file imports nothing from the package, so ``setup.py`` can load it by path.
"""

from __future__ import annotations

import os
from pathlib import Path

# csrc/ beside the package: present in a source checkout and an editable install.
CSRC_DIR = Path(__file__).resolve().parent.parent / "csrc"


def sources() -> list[str]:
    """The C++ sources, sorted so builds are reproducible."""
    return sorted(str(p) for p in CSRC_DIR.glob("*.cpp"))


def sanitize() -> bool:
    """``FIRE_KERNELS_SANITIZE=1``: build with AddressSanitizer + UndefinedBehaviorSanitizer."""
    return os.environ.get("FIRE_KERNELS_SANITIZE") == "1"


_SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]


def cxx_flags() -> list[str]:
    """Compiler flags. ``DEBUG=1`` builds ``-O0 -g``; ``FIRE_KERNELS_SANITIZE=1`` adds
    ASan + UBSan (``-O1 -g``, frame pointers kept for readable reports).

    No ``-march``: the build must run on any x86-64 CPU. The AVX2 and AVX-512
    kernels are compiled for their ISA by ``#pragma GCC target`` inside their own
    translation units and are only called after a run-time CPU check.
    ``-fopenmp`` makes ``at::parallel_for`` (an inline OpenMP loop in PyTorch's
    headers) parallel; the OpenMP runtime is the one torch already loaded.
    """
    if sanitize():
        opt = ["-O1", "-g", "-fno-omit-frame-pointer", *_SANITIZERS]
    elif os.environ.get("DEBUG") == "1":
        opt = ["-O0", "-g"]
    else:
        opt = ["-O3"]
    return [*opt, "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas"]


def ld_flags() -> list[str]:
    return ["-fopenmp", *(_SANITIZERS if sanitize() else [])]
