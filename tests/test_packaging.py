"""The project's metadata and install files say what they should: a licence, one
version, dependencies that match what the package imports, requirements that install
everything the tests need (pinned), the two-command Quickstart that CI runs."""

from __future__ import annotations

import ast
import re
import runpy
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest

import fire_kernels as fk

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def names(requirements) -> set[str]:
    """Project names of requirement strings, normalised (PEP 503)."""
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", r).group()).lower()
            for r in requirements}


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_licence_is_bsd_3_clause_in_a_file_and_as_spdx():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License\n\nCopyright (c) 2026, the fire_kernels authors\n")
    assert "Neither the name of the copyright holder nor the names of its" in text
    assert PROJECT["license"] == "BSD-3-Clause" and PROJECT["license-files"] == ["LICENSE"]
    # PEP 639: no licence classifiers beside an SPDX expression.
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]  # reads PEP 639


def test_classifiers_and_no_invented_urls():
    assert "Programming Language :: C++" in PROJECT["classifiers"]
    assert "Operating System :: POSIX :: Linux" in PROJECT["classifiers"]
    assert "urls" not in PROJECT  # none until the project has real ones


def test_one_source_for_the_version():
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fire_kernels.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", fk.__version__)
    try:
        installed = metadata.version("fire_kernels")
    except metadata.PackageNotFoundError:
        pytest.skip("fire_kernels is not installed")
    assert installed == fk.__version__


def test_runtime_dependencies_are_what_the_package_imports():
    """torch only: every other import of the package (triton, onnxruntime, matplotlib,
    numpy through .numpy()) happens inside a function or a try, where it is optional."""
    assert PROJECT["dependencies"] == ["torch>=2.4"]
    stdlib = sys.stdlib_module_names
    unguarded = set()
    for path in (ROOT / "fire_kernels").rglob("*.py"):
        if path.parent.name == "triton":  # imported only where triton is (in a try)
            continue
        for node in ast.parse(path.read_text()).body:  # module level, outside any try
            if isinstance(node, ast.Import):
                unguarded |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                unguarded.add(node.module.split(".")[0])
    assert unguarded - set(stdlib) - {"fire_kernels"} == {"torch"}


def test_the_package_uses_no_private_torch_module():
    """Private modules (torch._prims_common, torch._dynamo, ...) change without notice."""
    found = []
    for path in (ROOT / "fire_kernels").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                modules = [f"{node.value.id}.{node.attr}"]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {m}" for m in modules
                      if re.match(r"torch\._[a-z]", m) and not m.startswith("torch._check")]
    assert found == []


def test_requirements_install_everything_pinned():
    """requirements.txt (what the Quickstart's first command installs) is the runtime
    dependencies, every extra and the build tools; each is pinned in constraints.txt."""
    required = names(requirement_lines(ROOT / "requirements.txt"))
    extras = {n for deps in PROJECT["optional-dependencies"].values() for n in names(deps)}
    wanted = names(PROJECT["dependencies"]) | (extras - {"fire-kernels"}) | {"setuptools", "ninja"}
    assert required == wanted
    assert {"pytest", "hypothesis"} <= names(PROJECT["optional-dependencies"]["test"])
    pins = {}
    for line in requirement_lines(ROOT / "constraints.txt"):
        name, _, version = line.partition("==")
        assert version, f"constraints.txt: {line!r} is not pinned with =="
        pins[names([name]).pop()] = version
    assert set(pins) == required
    assert pins["torch"] == "2.13.0"  # the CPU build on the project's machines


def test_test_modules_import_only_what_requirements_install():
    """Nothing a test imports may come from an environment's leftovers (as hypothesis
    once did): the third-party imports of tests/ are all in requirements.txt."""
    distribution = {"sklearn": "scikit-learn"}  # import name -> project name
    imported = set()
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"fire_kernels", "conftest"}
    assert "hypothesis" in third_party
    assert names(distribution.get(m, m) for m in third_party) <= \
        names(requirement_lines(ROOT / "requirements.txt"))


def test_quickstart_is_two_commands_that_install_everything():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- quickstart:begin -->")[1].split("<!-- quickstart:end -->")[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("```")]
    assert commands == [
        "pip install -c constraints.txt -r requirements.txt && pip install --no-build-isolation "
        "-e . && fire-kernels demo",
        "python -m pytest",
    ]


def test_ci_runs_in_a_fresh_virtual_environment():
    script = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv" in script and "system-site-packages" not in script
    assert "python -m pytest -m install" in script


def test_csrc_is_found_inside_an_installed_package_else_beside_it(tmp_path):
    """An installed wheel carries csrc/ inside the package; a checkout has it beside."""
    package = tmp_path / "fire_kernels"
    package.mkdir()
    shutil.copy(ROOT / "fire_kernels" / "_build.py", package)
    (tmp_path / "csrc").mkdir()
    assert runpy.run_path(str(package / "_build.py"))["CSRC_DIR"] == tmp_path / "csrc"
    (package / "csrc").mkdir()
    (package / "csrc" / "a.cpp").write_text("")
    build = runpy.run_path(str(package / "_build.py"))
    assert build["CSRC_DIR"] == package / "csrc"
    assert build["sources"]() == [str(package / "csrc" / "a.cpp")]


def test_manifest_ships_all_of_csrc_by_glob():
    manifest = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "graft csrc" in manifest
    assert "include LICENSE README.md requirements.txt constraints.txt" in manifest
