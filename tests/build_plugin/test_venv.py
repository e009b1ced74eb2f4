"""Real frontends in fresh venvs: `pip wheel`, `python -m build`, `pip install -e` (hatchling and
setuptools strict/lenient), with enigma-build and enigma-runtime installed from wheels built here
(--find-links; hatchling, setuptools and numpy come from PyPI). The built wheel is installed in a fresh
venv and its kernels run (CPU here) against numpy.

One session-scoped wheelhouse and one runner venv keep this tier lean: the wheelhouse holds the
local wheels plus everything the build environments need, downloaded from PyPI once per session, so
every frontend then runs with --no-index (about 4 s per isolated build instead of 7)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
from buildutil import EXAMPLE, IGNORE, REPO, ST_PROJECT, wheel_files, wheel_tag

pytestmark = pytest.mark.slow
BIN = "Scripts" if os.name == "nt" else "bin"
EPOCH = "1700000000"


def run(*cmd, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    e = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "SOURCE_DATE_EPOCH": EPOCH, **(env or {})}
    e.pop("PYTHONPATH", None)
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=e, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-4000:]}\n"
                             f"{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """Wheels of enigma-runtime and enigma-build built from this checkout (no isolation: the test venv
    already has hatchling)."""
    wh = tmp_path_factory.mktemp("wheelhouse")
    src = tmp_path_factory.mktemp("src")
    # copy the sources: other work in the checkout (caches, build/) never leaks into the wheels
    for name in ("enigma", "enigma_build", "runtime"):
        shutil.copytree(REPO / name, src / name, ignore=IGNORE)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(REPO / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wh,
        src / "runtime", src)
    assert {p.name.split("-")[0] for p in wh.glob("*.whl")} == {"enigma_runtime", "enigma_build"}
    # the build backends and run-time dependencies, from PyPI, once
    # (platformdirs and packaging: enigma-build's own dependencies, in every build environment)
    run(sys.executable, "-m", "pip", "download", "-q", "-d", wh, "hatchling>=1.21", "editables",
        "platformdirs>=3", "packaging>=22",
        "setuptools>=68", "wheel", "numpy>=1.24", "pytest>=7")
    return wh


@pytest.fixture(scope="session")
def runner(tmp_path_factory, wheelhouse) -> Path:
    """A fresh venv with enigma-runtime (local wheel) and numpy: where built wheels get installed."""
    d = tmp_path_factory.mktemp("runner")
    venv.EnvBuilder(with_pip=True).create(d)
    py = d / BIN / "python"
    run(py, "-m", "pip", "install", "-q", "--find-links", wheelhouse, "enigma-runtime", "numpy", "pytest",
        env=offline(wheelhouse))
    return py


def offline(wheelhouse: Path) -> dict[str, str]:
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}


def pip_env(wheelhouse: Path, cache: Path) -> dict[str, str]:
    return {**offline(wheelhouse), "ENIGMA_CACHE_DIR": str(cache)}


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=IGNORE)
    return dest


def test_pip_wheel_and_build_agree_and_the_wheel_runs(tmp_path, wheelhouse, runner):
    proj = copy(EXAMPLE, tmp_path / "example_project")
    env = pip_env(wheelhouse, tmp_path / "cache")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "pip", proj, env=env)
    run(sys.executable, "-m", "build", "-q", "-o", tmp_path / "build", proj, env=env)
    (pip_whl,) = (tmp_path / "pip").glob("*.whl")
    (build_whl,) = (tmp_path / "build").glob("*.whl")
    assert pip_whl.name == build_whl.name and wheel_tag(pip_whl) == "py3-none-any"
    assert pip_whl.read_bytes() == build_whl.read_bytes()  # from the tree and from the sdist
    (sdist,) = (tmp_path / "build").glob("*.tar.gz")
    import tarfile
    names = tarfile.open(sdist).getnames()
    assert any(n.endswith("src/example_pkg/kernels.py") for n in names)
    assert not any("_enigma" in n for n in names)
    assert "example_pkg/_enigma/manifest.json" in wheel_files(pip_whl)
    # install in the fresh runner venv and run every kernel against numpy
    run(runner, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", pip_whl)
    out = run(runner, "-m", "example_pkg", cwd=tmp_path).stdout
    assert "all kernels agree with numpy" in out, out
    # and example_project's own tests, against the installed wheel
    run(runner, "-m", "pytest", "-q", "-p", "no:cacheprovider", proj / "tests", cwd=tmp_path)
    # the CLI reads the wheel back
    text = run(sys.executable, "-m", "enigma_build", "inspect", pip_whl).stdout
    assert "tag: py3-none-any" in text and "vector_add" in text and "HASH MISMATCH" not in text


VA_SCRIPT = textwrap.dedent("""\
    import numpy as np, enigma_runtime
    a = np.arange(8, dtype=np.float32); b = np.full(8, 2, np.float32); c = np.zeros(8, np.float32)
    enigma_runtime.load("example_pkg", "vector_add")(a, b, c, np.int32(8))
    print(c.tolist())
    """)


def test_hatch_editable_install_and_reinstall_after_edit(tmp_path, wheelhouse, runner):
    proj = copy(EXAMPLE, tmp_path / "example_project")
    env = pip_env(wheelhouse, tmp_path / "cache")
    run(runner, "-m", "pip", "install", "-q", "--no-deps", "-e", proj, env=env)
    assert run(runner, "-c", VA_SCRIPT, cwd=tmp_path).stdout.strip() == str([2.0 + i for i in range(8)])
    k = proj / "src/example_pkg/kernels.py"
    k.write_text(k.read_text().replace("c[i] = a[i] + b[i]", "c[i] = a[i] * b[i]"))
    run(runner, "-m", "pip", "install", "-q", "--no-deps", "-e", proj, env=env)
    assert run(runner, "-c", VA_SCRIPT, cwd=tmp_path).stdout.strip() == str([2.0 * i for i in range(8)])
    run(runner, "-m", "pip", "uninstall", "-q", "-y", "example-pkg")


ST_SCRIPT = "import st_pkg; print(st_pkg.scale([1, 2, 3], 2.0).tolist())"


@pytest.mark.parametrize("mode", ["wheel", "lenient", "strict"])
def test_setuptools_frontends(tmp_path, wheelhouse, runner, mode):
    proj = copy(ST_PROJECT, tmp_path / "setuptools_project")
    env = pip_env(wheelhouse, tmp_path / "cache")
    if mode == "wheel":
        run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "w", proj, env=env)
        (whl,) = (tmp_path / "w").glob("*.whl")
        assert "st_pkg/_enigma/manifest.json" in wheel_files(whl)
        run(runner, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", whl)
    else:
        run(runner, "-m", "pip", "install", "-q", "--no-deps", "-e", proj,
            "--config-settings", f"editable_mode={mode}", env=env)
    assert run(runner, "-c", ST_SCRIPT, cwd=tmp_path).stdout.strip() == "[2.0, 4.0, 6.0]"
    if mode != "wheel":
        k = proj / "st_pkg/kernels.py"
        k.write_text(k.read_text().replace("FACTOR = 1.0", "FACTOR = 10.0"))
        run(runner, "-m", "pip", "install", "-q", "--no-deps", "-e", proj,
            "--config-settings", f"editable_mode={mode}", env=env)
        assert run(runner, "-c", ST_SCRIPT, cwd=tmp_path).stdout.strip() == "[20.0, 40.0, 60.0]"
    run(runner, "-m", "pip", "uninstall", "-q", "-y", "st-pkg")


ZOO_PYPROJECT = textwrap.dedent("""\
    [build-system]
    requires = ["hatchling>=1.21", "enigma-build>=0.1"]
    build-backend = "hatchling.build"

    [project]
    name = "zoo-pkg"
    version = "0.1.0"
    requires-python = ">=3.10"
    dependencies = ["numpy>=1.24", "enigma-runtime>=0.1"]

    [tool.hatch.build.targets.wheel]
    packages = ["src/zoo_pkg"]

    [tool.hatch.build.hooks.enigma]

    [tool.enigma]
    vec-width = { saxpy_launch = 4 }
    """)

ZOO_SCRIPT = textwrap.dedent("""\
    import sys, numpy as np, enigma_runtime
    lib = enigma_runtime.load("zoo_pkg")
    data = np.load(sys.argv[1])
    out = {}
    for key in sorted({k.rsplit("_", 1)[0] for k in data.files if "@" in k}):
        name, size = key.split("@")
        args = [data[f"{key}_{i}"] for i in range(int(data[f"{key}_n"]))]
        args = [a[()] if a.ndim == 0 else a for a in args]  # 0-d arrays stand for scalars
        got = lib[name](*args)
        for i, a in enumerate(args):
            out[f"{key}_{i}"] = np.asarray(a)
        out[f"{key}_ret"] = np.asarray(got if isinstance(got, np.ndarray) else 0)
    np.savez(sys.argv[2], **out)
    print("ran", len(out), "arrays; nothing of zoo_pkg imported:", "zoo_pkg" not in sys.modules)
    """)


def test_every_zoo_jit_from_an_installed_wheel(tmp_path, wheelhouse, runner):
    """The zoo's modules (tests/zoo.py and tests/zoo_kernels/) as a package's kernel modules: the wheel
    ships every zoo jit as an entry, and a fresh venv (enigma-runtime and numpy only) runs each with its
    own arguments at three sizes."""
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    import zoo

    proj = tmp_path / "zoo_project"
    (proj / "src" / "zoo_pkg").mkdir(parents=True)
    (proj / "pyproject.toml").write_text(ZOO_PYPROJECT)
    (proj / "src" / "zoo_pkg" / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "zoo.py", proj / "src" / "zoo_pkg" / "zoo.py")
    shutil.copytree(REPO / "tests" / "zoo_kernels", proj / "src" / "zoo_pkg" / "zoo_kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "w", proj,
        env=pip_env(wheelhouse, tmp_path / "cache"))
    (whl,) = (tmp_path / "w").glob("*.whl")
    run(runner, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", whl)
    inputs, expected = {}, {}
    for case in zoo.JITS:
        for size in range(3):
            key = f"{case.jit.name}@{size}"
            ins = case.make_inputs(np.random.default_rng(size), size)
            inputs[f"{key}_n"] = np.asarray(len(ins))
            for i, a in enumerate(ins):
                inputs[f"{key}_{i}"] = np.asarray(a)
            copies = [np.copy(a) if isinstance(a, np.ndarray) else a for a in ins]
            expected[key] = (case, case.expect(*copies))
    np.savez(tmp_path / "in.npz", **inputs)
    out = run(runner, "-c", ZOO_SCRIPT, tmp_path / "in.npz", tmp_path / "out.npz", cwd=tmp_path).stdout
    assert "nothing of zoo_pkg imported: True" in out, out
    got = np.load(tmp_path / "out.npz")
    for key, (case, want) in expected.items():
        for which, value in want.items():
            array = got[f"{key}_ret"] if which == "return" else got[f"{key}_{which}"]
            np.testing.assert_allclose(array, value, rtol=case.rtol, atol=case.atol, err_msg=key)
    run(runner, "-m", "pip", "uninstall", "-q", "-y", "zoo-pkg")
