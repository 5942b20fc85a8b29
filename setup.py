"""Builds fire_kernels and its C++ extension ``fire_kernels._C``.

Install after torch, without build isolation (the extension must compile
against the torch it will run with):

    pip install --no-build-isolation -e .
"""

import runpy
from pathlib import Path

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = Path(__file__).resolve().parent
build = runpy.run_path(str(ROOT / "fire_kernels" / "_build.py"))

setup(
    ext_modules=[
        CppExtension(
            "fire_kernels._C",
            sources=[str(Path(s).relative_to(ROOT)) for s in build["sources"]()],
            extra_compile_args={"cxx": build["cxx_flags"]()},
            extra_link_args=build["ld_flags"](),
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
