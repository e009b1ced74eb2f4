"""Write compiled kernels in the artifact format (runtime/FORMAT.md sections 1-3).

The bytes depend only on the inputs: JSON with sorted keys, "\\n" newlines, UTF-8, so two builds of the
same tree give identical files (and wheels).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from enigma_runtime.manifest import ARTIFACT_DIR as DIR  # the reader owns the format and its version
from enigma_runtime.manifest import SCHEMA

MANIFEST = "manifest.json"
# A compiled kernel whose signature holds this key carries a jit entry (FORMAT.md section 7) to the
# writer: enigma-build's records keep only kernel_name, metal_source, signature and ir_json, so the
# first kernel of a jit brings the entry along; `render` moves it to the manifest's "entries".
ENTRY_KEY = "enigma_entry"
METALLIB = "kernels.metallib"
_BARE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


class Compiled(Protocol):
    """What the writer reads from a CompiledKernel (or any object with the same attributes)."""

    kernel_name: str
    metal_source: str
    signature: dict[str, Any]
    ir_json: dict[str, Any]


def dumps(obj: Any, *, indent: int | None = 1) -> bytes:
    """Deterministic JSON bytes: sorted keys, '\\n' newlines, a final newline."""
    seps = (",", ": ") if indent is not None else (",", ":")
    # allow_nan=False: strict JSON (FORMAT.md writes non-finite floats as {"float": "inf"} etc.)
    return (json.dumps(obj, sort_keys=True, indent=indent, separators=seps, ensure_ascii=False,
                       allow_nan=False) + "\n").encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bare(name: str) -> str:
    if not _BARE.match(name) or ".." in name:
        raise ValueError(f"artifact file name {name!r} is not a bare file name (FORMAT.md section 1)")
    return name


def render(package: str, kernels: Iterable[Compiled], *, metallib: bytes | None, msl_version: str,
           macos_target: str, enigma_version: str | None = None,
           sources: dict[str, str] | None = None,
           entries: dict[str, dict[str, Any]] | None = None) -> dict[str, bytes]:
    """The files of `<package>/_enigma/` as {name: bytes}, manifest included.

    Kernels sharing a `signature["name"]` are specialisations of one kernel, in the order given (the
    first is the default); each needs its own `kernel_name`. `sources` maps each kernel module (as in
    the signatures' `file`, relative to the package's parent directory) to the sha256 of its bytes:
    the runtime warns at load when the module next to the package differs (a stale editable install).
    `entries`: jit entries by jit name (also taken from signatures carrying ENTRY_KEY); their `file`
    becomes that signature's `file`.
    """
    if enigma_version is None:
        from enigma.version import __version__ as enigma_version
    files: dict[str, bytes] = {}
    table: dict[str, list[dict[str, Any]]] = {}
    owner: dict[str, str] = {}
    entries = dict(entries or {})
    for k in kernels:
        spec = dict(k.signature)
        entry = spec.pop(ENTRY_KEY, None)
        if entry is not None:
            entries[entry["name"]] = {**entry, "file": spec.get("file", entry.get("file"))}
        name, kname = spec["name"], k.kernel_name
        if kname in owner:
            raise ValueError(f"two specialisations share the Metal function name {kname!r} "
                             f"({owner[kname]} and {name}); each needs its own kernel_name")
        owner[kname] = name
        metal, ir = _bare(f"{kname}.metal"), _bare(f"{kname}.ir.json")
        source = k.metal_source.replace("\r\n", "\n")
        files[metal] = (source if source.endswith("\n") else source + "\n").encode()
        files[ir] = dumps(k.ir_json, indent=None)
        spec["metal"], spec["ir"] = metal, ir
        table.setdefault(name, []).append(spec)
    if metallib is not None:
        files[METALLIB] = bytes(metallib)
    manifest = {
        "schema": SCHEMA,
        "enigma_version": enigma_version,
        "package": package,
        "msl_version": msl_version,
        "macos_target": macos_target,
        "metallib": METALLIB if metallib is not None else None,
        "files": {n: sha256(b) for n, b in sorted(files.items())},
        "kernels": table,
        "entries": {n: entries[n] for n in sorted(entries)},
    }
    if sources:
        manifest["sources"] = dict(sorted(sources.items()))
    files[MANIFEST] = dumps(manifest)
    return files


def write_files(out: Path, files: dict[str, bytes]) -> Path:
    """Replace directory `out` with exactly `files` (stale artifacts of removed kernels go away)."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        (tmp / _bare(name)).write_bytes(data)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def write_artifacts(out_dir: str | os.PathLike[str], package: str, kernels: Iterable[Compiled], *,
                    metallib: bytes | None, msl_version: str, macos_target: str,
                    sources: dict[str, str] | None = None,
                    entries: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write `<out_dir>/_enigma/` (out_dir is the package directory) and return that directory."""
    files = render(package, kernels, metallib=metallib, msl_version=msl_version,
                   macos_target=macos_target, sources=sources, entries=entries)
    return write_files(Path(out_dir) / DIR, files)
