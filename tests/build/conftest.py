"""Fixtures of the build tests: copies of example_project and of the setuptools fixture project, and a
private kernel cache per test."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "example_project"
ST_PROJECT = Path(__file__).parent / "fixtures" / "setuptools_project"
_IGNORE = shutil.ignore_patterns("build", "dist", "_enigma", "__pycache__", "*.egg-info", ".tox")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ENIGMA_EMIT_ONLY", raising=False)


@pytest.fixture
def example_copy(tmp_path) -> Path:
    dest = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, dest, ignore=_IGNORE)
    return dest


@pytest.fixture
def st_copy(tmp_path) -> Path:
    dest = tmp_path / "setuptools_project"
    shutil.copytree(ST_PROJECT, dest, ignore=_IGNORE)
    return dest


def wheel_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def wheel_tag(path: Path) -> str:
    files = wheel_files(path)
    meta = next(v for k, v in files.items() if k.endswith(".dist-info/WHEEL")).decode()
    return next(ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Tag:"))
