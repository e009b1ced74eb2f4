"""`enigma-build check`: enigma.verify's check (clang-compiled Metal source against the runtime's CPU
executor) over a project directory, a built package or an installed package.

A project directory (one with a pyproject.toml and no built `_enigma/`) is built here first, in
memory and emit-only, each kernel labelled `<package>.<kernel>`; everything else is enigma.verify's
(enigma.verify.check.collect). enigma.verify never imports enigma_build: the layers point one way.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def is_project(path: Path) -> bool:
    return path.is_dir() and (path / "pyproject.toml").is_file() and not any(
        (d / "manifest.json").is_file() for d in (path, path / "_enigma"))


def project_items(root: Path) -> list[Any]:
    """The kernels of the project at `root`, built emit-only into a temporary directory and read back
    as enigma.verify.check items (their names prefixed with the package)."""
    from enigma.verify import check
    from enigma_build import config, core

    settings = dataclasses.replace(config.load(root), emit_only=True)
    result = core.build(settings, log=lambda s: print(s, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="enigma-check-") as tmp:
        written = core.write(result, lambda name: Path(tmp) / name)
        items: list[Any] = []
        for pkg in sorted(written):
            for it in check.collect(Path(tmp) / pkg / "_enigma"):
                it.name = f"{pkg}.{it.name}"
                items.append(it)
    return items


def collect(target: str | os.PathLike[str]) -> list[Any]:
    """Kernels of `target`: a project directory (built first), else what enigma.verify finds."""
    from enigma.verify import check

    path = Path(target)
    return project_items(path) if is_project(path) else check.collect(target)


def main(argv: Sequence[str]) -> int:
    """`enigma-build check [TARGET] [options]` (the options are enigma.verify.check's)."""
    from enigma.verify import check

    return int(check.main(list(argv), collect=collect) or 0)
