"""Third-party Metal kernels for the corpus (issue 13), obtained at test time from package registries,
pinned by version and sha256 and cached in enigma.verify's cache directory; never stored in the
repository. Under CI=true a failed download fails the test; elsewhere it skips. (`fetch` also gets
pyobjc-framework-Metal's wheel for runtime/tests/test_rt_metal_pyobjc.py.)

mlx-metal: its macOS wheel carries MLX's kernel headers; `mlx_include()` extracts them.

llama-cpp-python: its sdist vendors llama.cpp's ggml-metal kernels; `ggml_metal_dir()` extracts them.

tinygrad: its MetalRenderer renders Metal on Linux (the renderer only: no Metal device or compiler
is needed). `render_tinygrad()` runs tinygrad_render.py in a subprocess with the pinned wheel on its
path and returns, per case, the kernels tinygrad wrote (source exactly as rendered), their launch and
buffers; `run_case()` runs them through enigma.verify in schedule order on numpy inputs.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
# (package, version, file name, sha256)
TINYGRAD = ("tinygrad", "0.11.0", "tinygrad-0.11.0-py3-none-any.whl",
            "b901d98880f04ad9f796734a013151ba851dbb9a340f1a516099adcd6fd3b3e3")
# MLX's Metal kernel headers (the macOS wheel; the headers hold the kernel templates, the
# instantiations are in MLX's .metal files, which the wheel does not carry: the tests write them)
MLX_METAL = ("mlx-metal", "0.32.4", "mlx_metal-0.32.4-py3-none-macosx_14_0_arm64.whl",
             "8019b2db622599267d66cc168b2f0dbf5af929790a6c3b3913e00eabc42a7947")
MLX_KERNELS = "mlx/backend/metal/kernels"
# llama.cpp's ggml-metal kernels, as llama-cpp-python's sdist vendors them (ggml-metal.metal with its
# headers ggml-metal-impl.h and ggml-common.h); the sdist comes from the index directly: `pip download`
# of an sdist would build its metadata (CMake) first
LLAMA_CPP = ("llama-cpp-python", "0.3.16", "llama_cpp_python-0.3.16.tar.gz",
             "34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6")
GGML_SRC = "vendor/llama.cpp/ggml/src"


def corpus_dir() -> Path:
    from enigma.verify.clang import cache_dir

    d = cache_dir() / "corpus"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _unavailable(msg: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


def fetch(pin: tuple[str, str, str, str], platform: str | None = None, python: str | None = None) -> Path:
    """The pinned file from the registry (`pip download`; an sdist from the index's simple page),
    checked against its sha256, cached (`platform`: the wheel of that platform, e.g.
    macosx_14_0_arm64, whatever this machine is; `python`: of that CPython version, e.g. "3.11", for
    wheels built per version)."""
    package, version, filename, sha = pin
    out = corpus_dir() / sha[:16] / filename
    if out.is_file():
        return out
    if filename.endswith(".tar.gz"):
        return _fetch_sdist(pin, out)
    with tempfile.TemporaryDirectory(dir=corpus_dir()) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", tmp, f"{package}=={version}"]
        if filename.endswith(".whl"):
            cmd += ["--only-binary=:all:"]
        if platform:
            cmd += ["--platform", platform]
        if python:
            cmd += ["--python-version", python, "--implementation", "cp",
                    "--abi", "cp" + python.replace(".", "")]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            _unavailable(f"cannot download {package}=={version}: {e}")
        got = Path(tmp) / filename
        if r.returncode != 0 or not got.is_file():
            _unavailable(f"cannot download {package}=={version} ({filename}): {r.stderr.strip()[-500:]}")
        digest = hashlib.sha256(got.read_bytes()).hexdigest()
        if digest != sha:
            pytest.fail(f"{filename}: sha256 {digest}, expected the pinned {sha}")
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(got, out)
    return out


def _fetch_sdist(pin: tuple[str, str, str, str], out: Path) -> Path:
    """An sdist by its file name from the package index's simple page (PEP 503; pip's index, else
    PyPI), checked against the pinned sha256."""
    import re
    import urllib.parse
    import urllib.request

    package, version, filename, sha = pin
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    name = re.sub(r"[-_.]+", "-", package).lower()
    page_url = f"{index}/{name}/" + ("index.html" if index.startswith("file:") else "")  # a local index
    try:
        page = urllib.request.urlopen(page_url, timeout=60).read().decode()
        href = next((h for h in re.findall(r'href="([^"]+)"', page)
                     if urllib.parse.urlsplit(h).path.endswith("/" + filename)), None)
        if href is None:
            _unavailable(f"{filename} is not on {index}/{name}/")
        data = urllib.request.urlopen(urllib.parse.urljoin(page_url, href), timeout=300).read()
    except OSError as e:
        _unavailable(f"cannot download {package}=={version} ({filename}): {e}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        pytest.fail(f"{filename}: sha256 {digest}, expected the pinned {sha}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def ggml_metal_dir() -> Path:
    """llama.cpp's ggml-metal directory (ggml-metal.metal, ggml-metal-impl.h) with ggml-common.h
    beside it, from the pinned llama-cpp-python sdist (extracted once)."""
    import tarfile

    sdist = fetch(LLAMA_CPP)
    d = sdist.parent / "ggml-metal"
    if not (d / "ggml-metal.metal").is_file():
        root = f"{LLAMA_CPP[2][:-len('.tar.gz')]}/{GGML_SRC}/"
        wanted = {root + "ggml-common.h", root + "ggml-metal/ggml-metal.metal",
                  root + "ggml-metal/ggml-metal-impl.h"}
        with tempfile.TemporaryDirectory(dir=sdist.parent) as tmp:
            with tarfile.open(sdist) as t:
                for m in t.getmembers():
                    if m.name in wanted and m.isfile():
                        f = t.extractfile(m)
                        assert f is not None
                        (Path(tmp) / Path(m.name).name).write_bytes(f.read())
            try:
                os.replace(tmp, d)
            except OSError:  # another process extracted it first
                if not d.is_dir():
                    raise
            Path(tmp).mkdir(exist_ok=True)  # TemporaryDirectory removes it again
    return d


def mlx_include() -> Path:
    """The include directory of the pinned mlx-metal wheel's kernel headers (extracted once):
    `#include "mlx/backend/metal/kernels/utils.h"` resolves against it."""
    whl = fetch(MLX_METAL, platform="macosx_14_0_arm64")
    d = whl.parent / "include"
    if not (d / MLX_KERNELS / "utils.h").is_file():
        with tempfile.TemporaryDirectory(dir=whl.parent) as tmp:
            with zipfile.ZipFile(whl) as z:
                for n in z.namelist():
                    if n.startswith("mlx/include/" + MLX_KERNELS + "/"):
                        z.extract(n, tmp)
            try:
                os.replace(Path(tmp) / "mlx" / "include", d)
            except OSError:  # another process extracted it first
                if not d.is_dir():
                    raise
    return d


def tinygrad_path() -> Path:
    """The pinned tinygrad wheel, extracted (importable with this directory on sys.path)."""
    whl = fetch(TINYGRAD)
    d = whl.parent / "site"
    if not (d / "tinygrad" / "__init__.py").is_file():
        with tempfile.TemporaryDirectory(dir=whl.parent) as tmp:
            with zipfile.ZipFile(whl) as z:
                z.extractall(Path(tmp) / "site")
            try:
                os.replace(Path(tmp) / "site", d)
            except OSError:  # another process extracted it first
                if not d.is_dir():
                    raise
    return d


def render_tinygrad() -> dict[str, Any]:
    """{case name: {"kernels": [...], "buffers": {...}, "inputs": [...], "output": id}} (cached)."""
    driver = HERE / "tinygrad_render.py"
    cases = HERE / "tinygrad_cases.py"
    key = hashlib.sha256(driver.read_bytes() + cases.read_bytes() + TINYGRAD[3].encode()).hexdigest()[:16]
    cached = corpus_dir() / f"tinygrad_{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    site = tinygrad_path()
    env = dict(os.environ, PYTHONPATH=str(site), DEBUG="0", CPU="1")
    r = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"tinygrad_render.py failed:\n{r.stderr[-3000:]}")
    data = json.loads(r.stdout)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, cached)
    return data


def case_inputs(name: str, case: dict[str, Any]) -> list[np.ndarray]:
    """Random inputs for a case (seeded by its name): floats standard normal, integers in [-20, 20)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out = []
    for shape, dt in case["input_specs"]:
        d = np.dtype(dt)
        if d.kind == "f":
            out.append(rng.standard_normal(shape).astype(d))
        elif d.kind == "b":
            out.append(rng.integers(0, 2, shape).astype(d))
        else:
            out.append(rng.integers(-20 if d.kind == "i" else 0, 20, shape).astype(d))
    return out


def run_case(case: dict[str, Any], inputs: list[np.ndarray], race_check: bool = False) -> np.ndarray:
    """Run the case's kernels, as tinygrad wrote them, in schedule order through enigma.verify."""
    from enigma.verify import compile_msl

    bufs = {int(b): np.zeros(n, np.dtype(dt)) for b, (dt, n) in case["buffers"].items()}
    for bid, x in zip(case["inputs"], inputs):
        bufs[bid][...] = x.reshape(-1)
    for k in case["kernels"]:
        prog = compile_msl(k["src"], k["function"], f"{k['function']}.metal")
        prog.run({i: bufs[b] for i, b in enumerate(k["bufs"])}, grid=k["global"], block=k["local"],
                 race_check=race_check)
    return bufs[case["output"]]
