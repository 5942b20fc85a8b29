"""Every install route, in fresh environments (marked ``install``: minutes, so
``python -m pytest`` leaves them out and ``.ci/run`` runs them with
``python -m pytest -m install``).

- The sdist (``python setup.py sdist`` of a copy of this checkout) carries every file
  of csrc/: each source preprocesses from the unpacked sdist alone.
- A wheel (``pip wheel --no-build-isolation --no-deps .`` of this checkout), installed
  into a fresh virtual environment that has only the pinned torch, runs its prebuilt
  module (no just-in-time build, no fallback), carries csrc/ for a just-in-time build,
  and refuses a module recorded for another torch.
- A non-editable ``pip install --no-build-isolation .`` (into a fresh target
  directory) runs its prebuilt module.
- The editable install (the Quickstart's, which the rest of CI runs under) loaded its
  own prebuilt module.

The wheel and the non-editable install reuse the objects the editable install
compiled (setup.py keeps them in build/objects; ninja recompiles what changed), so
the routes cost seconds each, not a compile each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch

import fire_kernels as fk

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parent.parent
CSRC_FILES = sorted(p.name for p in (ROOT / "csrc").glob("*") if p.is_file())
# What a build leaves in a checkout: not sources.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "_C_build.json",
    ".pytest_cache", ".hypothesis", "gpu_out",
)


def sh(*args: str | Path, cwd: Path | None = None, env: dict | None = None,
       timeout: int = 1200) -> subprocess.CompletedProcess:
    """Runs a command; those of a fresh environment (``<venv>/bin/...``) see its bin/
    on PATH instead of the running environment's (whose ninja, say, they must not find)."""
    env = {**os.environ, **(env or {})}
    program = Path(args[0])
    if program.parent.name == "bin" and (program.parent.parent / "pyvenv.cfg").exists() \
            and program.parent.parent.resolve() != Path(sys.prefix).resolve():
        ours = str(Path(sys.prefix) / "bin")
        env["PATH"] = os.pathsep.join(
            [str(program.parent)] + [p for p in env.get("PATH", "").split(os.pathsep) if p != ours])
        env["VIRTUAL_ENV"] = str(program.parent.parent)
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    path = tmp_path_factory.mktemp("install")
    yield path
    shutil.rmtree(path, ignore_errors=True)  # a torch environment is ~1 GB


@pytest.fixture(scope="module")
def sdist(work) -> Path:
    """``python setup.py sdist`` of a copy of this checkout (so nothing built here leaks in)."""
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    sh(sys.executable, "setup.py", "-q", "sdist", "-d", work / "dist", cwd=src)
    (archive,) = (work / "dist").glob("fire_kernels-*.tar.gz")
    return archive


@pytest.fixture(scope="module")
def unpacked(work, sdist) -> Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(work / "unpacked", filter="data")
    (root,) = (work / "unpacked").iterdir()
    return root


@pytest.fixture(scope="module")
def wheel(work) -> Path:
    # build/lib* is the previous wheel's staging area: a module deleted since would ship.
    for stale in [*ROOT.glob("build/lib.*"), *ROOT.glob("build/bdist.*")]:
        shutil.rmtree(stale)
    egg_info = ROOT / "fire_kernels.egg-info"
    existed = egg_info.exists()
    sh(sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", ".",
       "-w", work / "wheels", cwd=ROOT, env={"MAX_JOBS": "2"})
    if not existed:  # an in-tree build's metadata would shadow the installed one's
        shutil.rmtree(egg_info, ignore_errors=True)
    (built,) = (work / "wheels").glob("fire_kernels-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(work) -> Path:
    """A fresh environment (no system site-packages) with only the pinned torch."""
    path = work / "venv"
    sh(sys.executable, "-m", "venv", path)
    sh(path / "bin" / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt",
       "torch")
    return path


def installed(venv: Path) -> set[str]:
    out = sh(venv / "bin" / "python", "-m", "pip", "list", "--format=json").stdout
    return {p["name"].lower().replace("_", "-") for p in json.loads(out)}


# Runs in the fresh environment, away from the checkout: the prebuilt module must load
# (no just-in-time build: CXX=false and an empty TORCH_EXTENSIONS_DIR; no fallback:
# FIRE_KERNELS_REQUIRE_CPP=1) and compute the reference's result with backend="cpp".
PREBUILT_CHECK = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.filterwarnings("error", message="fire_kernels")  # no warning of ours
    import torch, fire_kernels as fk
    from fire_kernels import _extension
    ref = fk.Fire(16, 8, 8, 8)
    x = torch.randn(2, 16, 9, 9)
    out = fk.fire(x, *(p for c in (ref.squeeze, ref.expand1x1, ref.expand3x3)
                       for p in (c.weight, c.bias)), backend="cpp")
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=1e-4)
    assert fk.FusedFire.from_fire(ref)(x).shape == (2, 16, 9, 9)
    print(json.dumps({"state": _extension.STATUS.state, "path": _extension.STATUS.path,
                      "built_with_torch": _extension.STATUS.built_with_torch,
                      "package": fk.__file__, "csrc": str(_extension._build.CSRC_DIR),
                      "available": fk.cpu_kernel_available()}))
    """
)


def check_prebuilt(venv: Path, work: Path) -> dict:
    jit_dir = work / "jit_must_stay_empty"
    jit_dir.mkdir(exist_ok=True)
    env = {"CXX": "false", "TORCH_EXTENSIONS_DIR": str(jit_dir), "FIRE_KERNELS_REQUIRE_CPP": "1"}
    proc = sh(venv / "bin" / "python", "-c", PREBUILT_CHECK, cwd=work, env=env)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    site = Path(venv).resolve()
    assert report["state"] == "prebuilt" and report["available"], report
    assert Path(report["path"]).resolve().is_relative_to(site), report  # not the checkout's
    assert report["built_with_torch"] == str(torch.__version__)
    assert list(jit_dir.iterdir()) == [], "a just-in-time build ran"
    return report


def preprocess(python: Path, cwd: Path, **env: str) -> list[str]:
    """Preprocesses every C++ source where the package run by ``python`` finds them
    (``_build.sources()``): every file they include must be there.
    Returns the sources."""
    code = textwrap.dedent(
        """
        import importlib.util, json, os, runpy, sysconfig
        from torch.utils.cpp_extension import include_paths
        # _build.py by path: importing the package would load (or build) the extension.
        package = importlib.util.find_spec("fire_kernels").submodule_search_locations[0]
        build = runpy.run_path(os.path.join(package, "_build.py"))
        print(json.dumps({"sources": build["sources"](),
                          "includes": include_paths() + [sysconfig.get_paths()["include"]]}))
        """
    )
    found = json.loads(sh(python, "-c", code, cwd=cwd, env=env).stdout.strip().splitlines()[-1])
    assert sorted(Path(s).name for s in found["sources"]) == [f for f in CSRC_FILES if f.endswith(".cpp")]
    includes = [f"-I{p}" for p in found["includes"]]
    for source in found["sources"]:
        sh("c++", "-std=c++20", "-E", "-o", os.devnull, *includes, source, cwd=cwd)
    return found["sources"]


def test_sdist_carries_every_source(sdist, unpacked, work):
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = tar.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/PKG-INFO").read().decode()
    missing = [f for f in CSRC_FILES if f"csrc/{f}" not in names]
    assert not missing, f"csrc files missing from the sdist: {missing}"
    for needed in ("LICENSE", "setup.py", "pyproject.toml", "MANIFEST.in", "requirements.txt",
                   "constraints.txt", "fire_kernels/_build.py", "tests/conftest.py"):
        assert needed in names
    assert not [n for n in names if n.endswith(".so") or n.endswith("_C_build.json")]
    assert "License-Expression: BSD-3-Clause" in pkg_info
    assert f"Version: {fk.__version__}" in pkg_info
    # The unpacked sdist, on its own, has what a build compiles (its csrc/ beside its package).
    sources = preprocess(Path(sys.executable), work, PYTHONPATH=str(unpacked))
    assert all(Path(src).is_relative_to(unpacked) for src in sources)


def test_wheel_carries_the_module_its_record_the_sources_and_the_licence(wheel):
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        record = json.loads(whl.read("fire_kernels/_C_build.json"))
        dist_info = f"fire_kernels-{fk.__version__}.dist-info"
        meta = whl.read(f"{dist_info}/METADATA").decode()
    assert len([n for n in names if re.fullmatch(r"fire_kernels/_C\..*\.so", n)]) == 1
    assert record == {"torch": str(torch.__version__)}
    missing = [f for f in CSRC_FILES if f"fire_kernels/csrc/{f}" not in names]
    assert not missing, f"csrc files missing from the wheel: {missing}"
    assert f"{dist_info}/licenses/LICENSE" in names
    assert "License-Expression: BSD-3-Clause" in meta
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == ["torch>=2.4"]


def test_wheel_in_a_fresh_environment_runs_the_prebuilt_module(wheel, venv, work):
    before = installed(venv)
    assert "torch" in before and "fire-kernels" not in before
    sh(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    assert installed(venv) - before == {"fire-kernels"}  # torch is all it needs
    report = check_prebuilt(venv, work)
    assert Path(report["csrc"]).resolve().is_relative_to(venv.resolve())
    proc = sh(venv / "bin" / "fire-kernels", "info", "--json", cwd=work)
    info = json.loads(proc.stdout)
    assert info["cpu_kernel"]["state"] == "prebuilt" and info["triton"] is None
    proc = sh(venv / "bin" / "fire-kernels", "demo", "--batches", "1", "--repeats", "1", cwd=work)
    assert "C++ kernels: prebuilt" in proc.stdout and "fused network" in proc.stdout


def test_wheel_sources_are_complete_for_a_just_in_time_build(wheel, venv, work):
    """The installed csrc/ is where the just-in-time build looks, and it is complete."""
    sources = preprocess(venv / "bin" / "python", work)  # installed by the test above
    assert all(Path(src).resolve().is_relative_to(venv.resolve()) for src in sources)


def test_wheel_refuses_a_module_built_for_another_torch(wheel, venv, work):
    """Simulates an upgrade of torch under an installed wheel by editing its record:
    one warning says to rebuild, the module is never loaded (no `undefined symbol`), the
    reference runs, and FIRE_KERNELS_REQUIRE_CPP=1 makes that an error."""
    site = json.loads(sh(venv / "bin" / "python", "-c",
                         "import json, fire_kernels, os; print(json.dumps(os.path.dirname(fire_kernels.__file__)))",
                         cwd=work, env={"CXX": "false"}).stdout.strip().splitlines()[-1])
    record = Path(site, "_C_build.json")
    original = record.read_text()
    record.write_text(json.dumps({"torch": "2.0.0"}))
    code = textwrap.dedent(
        """
        import sys, warnings
        import torch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fire_kernels as fk
        mine = [str(w.message) for w in caught if "fire_kernels" in str(w.message)]
        print(len(mine), mine[0] if mine else "")
        assert "fire_kernels._C" not in sys.modules and not fk.cpu_kernel_available()
        x = torch.randn(1, 8, 5, 5)
        m = fk.FusedFire(8, 4, 4, 4)
        try:
            m(x)
        except RuntimeError as e:
            print("raised:", e)
        else:
            print("reference ran")
        """
    )
    try:
        env = {"CXX": "false", "TORCH_EXTENSIONS_DIR": str(work / "jit_mismatch")}
        proc = sh(venv / "bin" / "python", "-c", code, cwd=work, env=env)
        first = proc.stdout.splitlines()[0]
        assert first.startswith("1 ") and "reference ran" in proc.stdout, proc.stdout
        assert f"built against torch 2.0.0, but torch {torch.__version__} is running" in first
        assert "rebuild it against this torch" in first
        proc = sh(venv / "bin" / "python", "-c", code, cwd=work,
                  env={**env, "FIRE_KERNELS_REQUIRE_CPP": "1"})
        assert proc.stdout.startswith("0 "), proc.stdout  # an error at use, not a warning
        assert "raised: FIRE_KERNELS_REQUIRE_CPP=1 forbids running the PyTorch reference" in proc.stdout
        assert "built against torch 2.0.0" in proc.stdout
    finally:
        record.write_text(original)


def test_non_editable_install_runs_the_prebuilt_module(wheel, work):
    """``pip install --no-build-isolation .`` of this checkout, into a fresh target
    directory (the running environment has the editable install: PYTHONPATH puts the
    target first)."""
    target = work / "target"
    egg_info = ROOT / "fire_kernels.egg-info"
    existed = egg_info.exists()
    sh(sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
       "--target", target, ".", cwd=ROOT)
    if not existed:
        shutil.rmtree(egg_info, ignore_errors=True)
    jit_dir = work / "jit_non_editable"
    jit_dir.mkdir()
    env = {"PYTHONPATH": str(target), "CXX": "false", "TORCH_EXTENSIONS_DIR": str(jit_dir),
           "FIRE_KERNELS_REQUIRE_CPP": "1"}
    report = json.loads(sh(sys.executable, "-c", PREBUILT_CHECK, cwd=work, env=env)
                        .stdout.strip().splitlines()[-1])
    assert report["state"] == "prebuilt" and report["available"], report
    assert Path(report["path"]).parent == target / "fire_kernels"
    assert Path(report["csrc"]) == target / "fire_kernels" / "csrc"
    assert list(jit_dir.iterdir()) == []


def test_editable_install_of_this_checkout_runs_its_prebuilt_module():
    """The Quickstart's route (``pip install --no-build-isolation -e .``), which the rest
    of CI runs under: its build must have produced the module it loads."""
    urls = [d.read_text("direct_url.json") for d in metadata.distributions(name="fire_kernels")]
    urls = [json.loads(u) for u in urls if u]  # an in-tree build's egg-info has none
    if not any(u.get("dir_info", {}).get("editable") for u in urls):
        pytest.skip("fire_kernels is not installed editable")
    assert Path(fk.__file__).resolve().parent == ROOT / "fire_kernels"
    assert fk._extension.STATUS.state == "prebuilt", fk._extension.STATUS
    assert Path(fk._extension.STATUS.path).parent == ROOT / "fire_kernels"
    assert fk._extension.STATUS.built_with_torch == str(torch.__version__)
