"""Fixtures of the build tests: copies of example_project and of the setuptools fixture project, and a
private kernel cache per test (helpers live in buildutil.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from buildutil import EXAMPLE, IGNORE, ST_PROJECT


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ENIGMA_EMIT_ONLY", raising=False)


@pytest.fixture
def example_copy(tmp_path) -> Path:
    dest = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, dest, ignore=IGNORE)
    return dest


@pytest.fixture
def st_copy(tmp_path) -> Path:
    dest = tmp_path / "setuptools_project"
    shutil.copytree(ST_PROJECT, dest, ignore=IGNORE)
    return dest
