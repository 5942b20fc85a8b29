"""Builds fire_kernels and its C++ extension ``fire_kernels._C``.

Install after torch, without build isolation (the extension must compile
against the torch it will run with):

    pip install --no-build-isolation -e .          # a source checkout
    pip install --no-build-isolation .             # or a wheel:
    pip wheel --no-build-isolation --no-deps .

Compiled objects are kept in ``build/objects`` (also by an editable install, which
would otherwise use a temporary directory), so with ninja a rebuild (a reinstall,
or a wheel after an editable install) compiles only what changed.

Besides the extension, a build writes ``fire_kernels/_C_build.json`` (the torch
it compiled against: another torch refuses the module with a message to rebuild)
and, except in an editable install, copies every file of ``csrc/`` into the
package, so an installed wheel can still build the extension just in time.
On a CPU that is not x86-64 nothing is compiled and the package runs the
PyTorch reference.
"""

import json
import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = Path(__file__).resolve().parent
build = runpy.run_path(str(ROOT / "fire_kernels" / "_build.py"))


class build_ext(BuildExtension.with_options(use_ninja=True)):
    """Records the torch version beside the module it builds."""

    def _record_paths(self) -> list[Path]:
        paths = [Path(self.build_lib, "fire_kernels", build["RECORD_NAME"])]
        if self.inplace:  # editable: the module is copied into the source package
            package_dir = self.get_finalized_command("build_py").get_package_dir("fire_kernels")
            paths.append(Path(package_dir, build["RECORD_NAME"]))
        return paths

    def run(self):
        super().run()
        if not self.extensions:
            return
        record = json.dumps(build["build_record"](), indent=1) + "\n"
        for path in self._record_paths():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(record)

    def get_outputs(self):
        outputs = super().get_outputs()
        if self.extensions:
            outputs.append(str(self._record_paths()[0]))
        return outputs


class build_py(_build_py):
    """Ships every file of csrc/ (sources and headers, whatever their names) as package data."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the package finds csrc/ beside it in the source tree
        target = Path(self.build_lib, "fire_kernels", "csrc")
        shutil.rmtree(target, ignore_errors=True)  # no file deleted from csrc/ since the last build
        for source in sorted((ROOT / "csrc").glob("*")):
            if source.is_file():
                self.mkpath(str(target))
                self.copy_file(str(source), str(target / source.name))


if build["machine_supported"]():
    ext_modules = [
        CppExtension(
            "fire_kernels._C",
            sources=[str(Path(s).relative_to(ROOT)) for s in build["sources"]()],
            extra_compile_args={"cxx": build["cxx_flags"]()},
            extra_link_args=build["ld_flags"](),
        )
    ]
else:
    print(f"fire_kernels: {build['unsupported_machine_reason']()}: building without them")
    ext_modules = []

setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext, "build_py": build_py},
    options={"build_ext": {"build_temp": str(Path("build", "objects"))}},
)
