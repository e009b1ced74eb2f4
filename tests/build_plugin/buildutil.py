"""Helpers and fixtures of the build tests. Not a conftest.py: the repository has several, and other
tests' `from conftest import ...` would find this one. Test modules import the fixtures they use:
`from buildutil import fixture_example_copy  # noqa: F401` (the fixture is named `example_copy`)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "example_project"
ST_PROJECT = Path(__file__).parent / "fixtures" / "setuptools_project"
IGNORE = shutil.ignore_patterns("build", "dist", "_enigma", "__pycache__", "*.egg-info", ".tox")


def wheel_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def wheel_tag(path: Path) -> str:
    files = wheel_files(path)
    meta = next(v for k, v in files.items() if k.endswith(".dist-info/WHEEL")).decode()
    return next(ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Tag:"))


def hatch_build(root: Path, out: Path, version: str = "standard", target: str = "wheel") -> Path:
    if target == "sdist":
        from hatchling.builders.sdist import SdistBuilder as Builder
    else:
        from hatchling.builders.wheel import WheelBuilder as Builder
    return Path(next(iter(Builder(str(root)).build(directory=str(out), versions=[version]))))


def no_editables(root: Path) -> None:
    """hatchling's default editable mode imports `editables` (pip installs it in the build env);
    in-process, use the explicit mode that needs nothing."""
    with (root / "pyproject.toml").open("a") as f:
        f.write('\n[tool.hatch.build]\ndev-mode-dirs = ["src"]\n')


def check_manifest(files: dict[str, bytes], pkg: str) -> dict:
    man = json.loads(files[f"{pkg}/_enigma/manifest.json"])
    for name, digest in man["files"].items():
        assert hashlib.sha256(files[f"{pkg}/_enigma/{name}"]).hexdigest() == digest
    return man


def st_build(root: Path, out: Path, kind: str = "wheel", settings: dict | None = None) -> Path:
    from setuptools import build_meta
    cwd = os.getcwd()
    os.chdir(root)
    try:
        fn = {"wheel": build_meta.build_wheel, "editable": build_meta.build_editable}[kind]
        out.mkdir(parents=True, exist_ok=True)
        return out / fn(str(out), settings)
    finally:
        os.chdir(cwd)


@pytest.fixture(name="private_cache", autouse=True)
def fixture_private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ENIGMA_EMIT_ONLY", raising=False)


@pytest.fixture(name="example_copy")
def fixture_example_copy(tmp_path) -> Path:
    dest = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, dest, ignore=IGNORE)
    return dest


@pytest.fixture(name="st_copy")
def fixture_st_copy(tmp_path) -> Path:
    dest = tmp_path / "setuptools_project"
    shutil.copytree(ST_PROJECT, dest, ignore=IGNORE)
    return dest
