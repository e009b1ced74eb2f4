"""Find a package's `_enigma/` directory and read its manifest.json (FORMAT.md sections 1-3).

Everything read here is validated as data before anything uses it (FORMAT.md, "Validation and
bounds"): regular files within a size bound only (no FIFO, device or symlink leaving the package),
strict JSON within a nesting bound, the schema version, every key of the manifest, of each
specialisation and of the portable IR against tables of rules with bounds (validation.py),
bare file names only (no path can leave `_enigma/`), every listed file present, and each artifact's
sha256 when it is read. Problems raise ManifestError (manifest and artifacts) or IRError (the IR's
ops) naming the file and the problem.
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError, PackageNotFoundError
from .jsonnum import number_from_json, number_to_json  # noqa: F401 (number_to_json: the writer's)
from .validation import (
    ARTIFACT_DIR,
    MANIFEST_KEYS,
    check_file_name,
    check_keys,
    is_int,
    short,
    validate_spec,
)
from .validation import IR_FORMAT as IR_FORMAT  # re-exported: this module was their import path
from .validation import IR_VERSION as IR_VERSION
from .validation import read_ir as read_ir

SCHEMA = 2  # what enigma writes; 2 added jit entries (FORMAT.md section 7)
SCHEMAS = (1, 2)  # what this runtime reads
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")

# Bounds of the files (FORMAT.md, "Validation and bounds"; the bounds of their contents are validation.py's)
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_ARTIFACT_BYTES = 1024 * 2**20  # a .metallib, .metal or .ir.json
MAX_JSON_DEPTH = 400  # nesting of JSON arrays and objects (an IR region level takes 4)


def closest(name: str, choices: list[str], n: int = 12) -> str:
    import difflib
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.0)
    rest = sorted(c for c in choices if c not in close)
    shown = (close + rest)[:n]
    more = f", ... ({len(choices) - n} more)" if len(choices) > n else ""
    return ", ".join(shown) + more if shown else "none"


def packages_with_kernels() -> list[str]:
    """Top-level packages on sys.path that ship an `_enigma/manifest.json` (for error messages)."""
    import pkgutil
    found = []
    for info in pkgutil.iter_modules():
        path = getattr(info.module_finder, "path", None)
        if info.ispkg and path and os.path.isfile(os.path.join(path, info.name, ARTIFACT_DIR,
                                                               "manifest.json")):
            found.append(info.name)
    return sorted(set(found))


def find_artifact_dir(package: str | os.PathLike) -> Path:
    """The `_enigma/` directory of `package`: an importable package name (found without importing
    it when it is top-level), a package directory, or an `_enigma/` directory itself."""
    if isinstance(package, os.PathLike) or (isinstance(package, str) and os.sep in package):
        path = Path(package)
        for cand in (path, path / ARTIFACT_DIR):
            if os.path.lexists(cand / "manifest.json"):  # read_manifest refuses what is not a file
                return cand
        raise PackageNotFoundError(f"{path} holds no {ARTIFACT_DIR}/manifest.json; build the package "
                                   f"with enigma-build (or pass the package name)")
    if not isinstance(package, str) or not package:
        raise TypeError(f"package must be a package name or a path, not {package!r}")
    import importlib.util
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as e:  # a parent package that is missing or fails to import
        spec, why = None, f" ({type(e).__name__}: {e})"
    else:
        why = ""
    if spec is None:
        raise PackageNotFoundError(f"no installed package {package!r}{why}; packages with Enigma kernels: "
                                   f"{closest(package, packages_with_kernels())}")
    locations = list(spec.submodule_search_locations or [])
    for loc in locations:
        cand = Path(loc) / ARTIFACT_DIR
        if os.path.lexists(cand / "manifest.json"):
            return cand
    where = ", ".join(locations) or spec.origin or "?"
    raise PackageNotFoundError(f"package {package!r} ({where}) ships no {ARTIFACT_DIR}/manifest.json: it "
                               f"was not built with enigma-build, or its kernels were not included in the "
                               f"wheel (packages with Enigma kernels: "
                               f"{closest(package, packages_with_kernels())})")


# ---------------------------------------------------------------------------------------------------
# reading files and JSON

def artifact_roots(adir: Path) -> tuple[str, ...]:
    """Where the files of artifact directory `adir` may really be (after symlinks): inside the package
    (`adir`'s parent), or, when manifest.json itself is a link to a file `manifest.json` in another
    `_enigma/` directory (setuptools' strict editable installs link every file to the source tree),
    that directory's package."""
    roots = [os.path.realpath(adir.parent)]
    linked = os.path.realpath(adir / "manifest.json")
    linked_dir = os.path.dirname(linked)
    if os.path.basename(linked) == "manifest.json" and os.path.basename(linked_dir) == ARTIFACT_DIR:
        roots.append(os.path.dirname(linked_dir))
    return tuple(roots)


def read_regular(path: Path, limit: int, roots: tuple[str, ...]) -> bytes:
    """The bytes of `path`: a regular file of at most `limit` bytes whose real path (after symlinks)
    is inside one of `roots` (artifact_roots). A FIFO, a device, a directory, a symlink leaving the
    package or a larger file is a ManifestError; nothing blocks (opened non-blocking) and at most
    `limit` + 1 bytes are read."""
    import stat
    real = os.path.realpath(path)

    def inside(root: str) -> bool:
        try:
            return os.path.commonpath([real, root]) == root
        except ValueError:  # another drive (Windows)
            return False
    if not any(inside(root) for root in roots):
        raise ManifestError(f"{path}: a symlink leaving the package (to {real}); refused: reinstall the "
                            f"package or rebuild it with enigma-build")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e}); reinstall the package or rebuild "
                            f"it with enigma-build") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise ManifestError(f"{path}: {kind}, not a regular file; refused")
        if st.st_size > limit:
            raise ManifestError(f"{path}: {st.st_size} bytes, more than the bound of {limit} bytes; refused")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(2**20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ManifestError(f"{path}: grew past the bound of {limit} bytes while read; refused")
        return b"".join(chunks)
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e})") from None
    finally:
        os.close(fd)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON (FORMAT.md: non-finite numbers are written as "
                     f'{{"float": "inf"}}, {{"float": "-inf"}} or {{"float": "nan"}})')


def parse_json(raw: bytes, where: str) -> Any:
    """Strict JSON (no NaN/Infinity) of UTF-8 bytes, nested at most MAX_JSON_DEPTH deep."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{where}: corrupt or truncated JSON (not UTF-8: {e}); rebuild the package with "
                            f"enigma-build") from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ManifestError(f"{where}: JSON nested {depth} deep, more than the bound of {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: corrupt or truncated JSON ({e}); rebuild the package with "
                            f"enigma-build") from None
    except (ValueError, RecursionError) as e:  # NaN/Infinity, integers of too many digits
        raise ManifestError(f"{where}: invalid JSON ({e})") from None


def _json_depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (an upper bound of the JSON's nesting)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0
    deepest = depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        c = m.group(0)
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


@dataclass
class Manifest:
    """A validated manifest.json. `kernels` maps a kernel name to its specialisations (first = default)."""

    dir: Path
    package: str
    schema: int
    enigma_version: str
    msl_version: str
    macos_target: str
    metallib: str | None
    files: dict[str, str]
    kernels: dict[str, list[dict]]
    entries: dict[str, dict] = field(default_factory=dict)  # jit entries (schema 2), by jit name
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _verified: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path:
        return self.dir / "manifest.json"

    def read(self, name: str) -> bytes:
        """The bytes of artifact `name`, after checking its sha256 against the manifest."""
        check_file_name(name, str(self.path))
        if name not in self.files:
            raise ManifestError(f"{self.path}: {name!r} is not listed in 'files'")
        path = self.dir / name
        data = read_regular(path, MAX_ARTIFACT_BYTES, artifact_roots(self.dir))
        import hashlib
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.files[name].lower():
            raise ManifestError(f"{path}: sha256 mismatch (manifest {self.files[name][:16]}..., file "
                                f"{digest[:16]}...): the file changed after the build; reinstall the package "
                                f"or rebuild it with enigma-build")
        return data

    def read_text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{self.dir / name}: not UTF-8 text ({e})") from None

    def read_json(self, name: str) -> Any:
        return parse_json(self.read(name), str(self.dir / name))


def parse_manifest(raw: bytes, adir: Path) -> Manifest:
    """Validate the bytes of `adir`/manifest.json; every listed file must exist in `adir`."""
    path = adir / "manifest.json"
    doc = parse_json(raw, str(path))
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: the top level must be an object, not {type(doc).__name__}")
    schema = doc.get("schema")
    if schema not in SCHEMAS or not is_int(schema):
        raise ManifestError(f"{path}: manifest schema {short(schema)}, but this enigma-runtime reads schema "
                            f"{' or '.join(map(str, SCHEMAS))}; "
                            + ("upgrade enigma-runtime" if is_int(schema) and schema > SCHEMA
                               else "rebuild the package with a current enigma-build"))
    check_keys(doc, MANIFEST_KEYS, str(path))
    files = doc["files"]
    for name, digest in files.items():
        check_file_name(name, f"{path}, 'files'")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise ManifestError(f"{path}: 'files'[{name!r}] is not a sha256 hex digest: {short(digest)}")
    metallib = doc.get("metallib")
    if metallib is not None:
        check_file_name(metallib, f"{path}, 'metallib'")
        if metallib not in files:
            raise ManifestError(f"{path}: 'metallib' names {metallib!r}, which is not listed in 'files'")
    kernels = doc["kernels"]
    for kname, specs in kernels.items():
        if not isinstance(specs, list) or not specs or len(specs) > 1024:
            raise ManifestError(f"{path}: kernel {short(kname)} must map to a non-empty list of "
                                f"specialisations (at most 1024)")
        for i, spec in enumerate(specs):
            validate_spec(spec, f"{path}, kernel {short(kname)} specialisation {i}", files=files)
    entries = doc.get("entries", {}) if schema >= 2 else {}
    if not isinstance(entries, dict):
        raise ManifestError(f"{path}: 'entries' must be an object mapping jit names to entries")
    from .entry import validate_entry
    for ename, entry in entries.items():
        validate_entry(entry, f"{path}, entry {short(ename)}", kernels)
    try:
        present = set(os.listdir(adir))
    except OSError as e:
        raise ManifestError(f"{adir}: cannot list the artifact directory ({e})") from None
    missing = sorted(set(files) - present)
    if missing:
        raise ManifestError(f"{path}: missing artifact file(s) {', '.join(missing)} in {adir}; the "
                            f"package is incomplete: reinstall it or rebuild it with enigma-build")
    meta = {k: doc.get(k) for k in ("package", "enigma_version", "msl_version", "macos_target")}
    return Manifest(adir, meta["package"] or adir.parent.name, schema, meta["enigma_version"] or "",
                    meta["msl_version"] or "", meta["macos_target"] or "", metallib, dict(files), kernels,
                    dict(entries))


_cache: dict[Path, tuple[int, int, Manifest]] = {}
_cache_lock = threading.Lock()


def read_manifest(adir: Path) -> Manifest:
    """The validated manifest of artifact directory `adir` (cached on the file's mtime and size)."""
    path = adir / "manifest.json"
    try:
        st = os.stat(path)
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    with _cache_lock:
        hit = _cache.get(adir)
    if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    raw = read_regular(path, MAX_MANIFEST_BYTES, artifact_roots(adir))
    man = parse_manifest(raw, adir)
    with _cache_lock:
        _cache[adir] = (st.st_mtime_ns, st.st_size, man)
    return man
