"""Fixtures of the runtime's tests: fake installed packages with an `_enigma/` directory."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # irb.py and rt_fixtures.py

from rt_fixtures import vector_add_kernel, write_package  # noqa: E402


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """make_package(name, kernels, ...) -> the `_enigma/` dir; `tmp_path` is put on sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, kernels: dict[str, list[tuple[dict, dict]]] | None = None, **kw) -> Path:
        if kernels is None:
            kernels = {"vector_add": [vector_add_kernel()]}
        return write_package(tmp_path, name, kernels, **kw)
    return make
