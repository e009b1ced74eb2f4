"""Stale artifacts of an editable install: the manifest's optional `sources` (FORMAT.md section 2)
maps each kernel module the artifacts were built from to the sha256 of its bytes. When the module
next to the package differs (its kernels were edited after `pip install -e`), the artifacts no longer
match the code: `check` warns once per loaded manifest, naming the file, its kernels and the command
that rebuilds them. It never refuses to load (the old kernels still run, as before)."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any


class StaleKernelWarning(UserWarning):
    """A package's kernel artifacts were built from a different version of their source file."""


def _project_root(start: Path) -> Path | None:
    for d in (start, *start.parents[:3]):
        if (d / "pyproject.toml").is_file():
            return d
    return None


def stale_sources(adir: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of every kernel module listed in `adir`/manifest.json whose bytes now
    differ from the recorded sha256. Modules that are absent (a wheel that ships only artifacts) or
    names that leave the package's parent directory are skipped."""
    try:
        doc = json.loads((adir / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return []
    sources = doc.get("sources") if isinstance(doc, dict) else None
    if not isinstance(sources, dict):
        return []
    base = adir.resolve().parent.parent  # <base>/<package>/_enigma
    out = []
    for rel, digest in sorted(sources.items()):
        if not isinstance(rel, str) or not isinstance(digest, str) or rel.startswith(("/", "\\")) \
                or ".." in Path(rel).parts:
            continue
        path = base / rel
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != digest.lower():
            out.append((rel, path))
    return out


def check(manifest: Any) -> None:
    """Warn (StaleKernelWarning) when the kernels of `manifest` (an enigma_runtime Manifest) were
    built from another version of their source files."""
    stale = stale_sources(Path(manifest.dir))
    if not stale:
        return
    lines = []
    for rel, path in stale:
        names = sorted(k for k, specs in manifest.kernels.items() if any(s.get("file") == rel for s in specs))
        lines.append(f"{path} (kernels {', '.join(names) or '?'})")
    root = _project_root(Path(manifest.dir).resolve().parent.parent)
    fix = f"pip install -e {root}" if root else f"reinstall {manifest.package!r}"
    warnings.warn(StaleKernelWarning(
        f"enigma_runtime: the kernels of {manifest.package!r} are stale: {'; '.join(lines)} changed after "
        f"they were built, and the old kernels still run. Rebuild them: {fix}"), stacklevel=3)
