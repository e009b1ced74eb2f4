"""Find a package's `_enigma/` directory and read its manifest.json (FORMAT.md sections 1-3).

Everything read here is validated before use: the schema version, the structure of every
specialisation, bare file names only (no path can leave `_enigma/`), every listed file present, and
each artifact's sha256 when it is read. Problems raise ManifestError naming the file and the problem.
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from . import grid as _grid
from .dtypes import BY_NAME
from .errors import ManifestError, PackageNotFoundError

SCHEMA = 1
IR_FORMAT, IR_VERSION = "enigma-ir", 1
ARTIFACT_DIR = "_enigma"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")


def _closest(name: str, choices: list[str], n: int = 12) -> str:
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
            if (cand / "manifest.json").is_file():
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
                                   f"{_closest(package, packages_with_kernels())}")
    locations = list(spec.submodule_search_locations or [])
    for loc in locations:
        cand = Path(loc) / ARTIFACT_DIR
        if (cand / "manifest.json").is_file():
            return cand
    where = ", ".join(locations) or spec.origin or "?"
    raise PackageNotFoundError(f"package {package!r} ({where}) ships no {ARTIFACT_DIR}/manifest.json: it "
                               f"was not built with enigma-build, or its kernels were not included in the "
                               f"wheel (packages with Enigma kernels: "
                               f"{_closest(package, packages_with_kernels())})")


def check_file_name(name: Any, where: str) -> str:
    """`name` if it is a bare file name inside `_enigma/`; ManifestError otherwise."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or ":" in name or name != name.strip()):
        raise ManifestError(f"{where}: file name {name!r} is not a bare file name inside {ARTIFACT_DIR}/ "
                            f"(paths, '..' and drive letters are refused)")
    return name


def _int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_spec(spec: Any, where: str, *, files: dict[str, str] | None = None) -> dict:
    """Check one specialisation (FORMAT.md section 3); `files` (manifest) requires `metal`/`ir`."""
    def bad(msg: str) -> ManifestError:
        return ManifestError(f"{where}: {msg}")
    if not isinstance(spec, dict):
        raise bad(f"a specialisation must be an object, not {type(spec).__name__}")
    for key in ("name", "kernel_name"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise bad(f"{key!r} must be a non-empty string")
    args = spec.get("args")
    if not isinstance(args, list):
        raise bad("'args' must be a list")
    names = set()
    for i, a in enumerate(args):
        w = f"argument {i}"
        if not isinstance(a, dict) or not isinstance(a.get("name"), str) or not a["name"]:
            raise bad(f"{w} must be an object with a 'name'")
        w = f"argument {a['name']!r}"
        if a["name"] in names:
            raise bad(f"{w} appears twice")
        names.add(a["name"])
        if a.get("kind") not in ("tensor", "scalar", "none"):
            raise bad(f"{w}: 'kind' must be 'tensor', 'scalar' or 'none', not {a.get('kind')!r}")
        if a.get("dtype") not in BY_NAME:
            raise bad(f"{w}: unknown dtype {a.get('dtype')!r}; expected one of {', '.join(BY_NAME)}")
        shape = a.get("shape", [])
        if not isinstance(shape, list) or not all(s is None or isinstance(s, str) or (_int(s) and s >= 0)
                                                  for s in shape):
            raise bad(f"{w}: 'shape' must be a list of ints, names and nulls, not {shape!r}")
        if a["kind"] == "scalar" and shape:
            raise bad(f"{w}: a scalar has shape []")
        if a.get("rank", len(shape)) != len(shape):
            raise bad(f"{w}: rank {a.get('rank')} disagrees with shape {shape}")
        if a.get("access", "read") not in ("read", "write", "readwrite"):
            raise bad(f"{w}: 'access' must be read, write or readwrite, not {a.get('access')!r}")
        if not _int(a.get("buffer", i)) or a.get("dims_offset") is not None and not _int(a["dims_offset"]):
            raise bad(f"{w}: 'buffer' and 'dims_offset' must be ints (dims_offset may be null)")
    for key in ("block", "grid"):
        v = spec.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 3):
            raise bad(f"{key!r} must be a list of 3 entries or null, not {v!r}")
    if spec.get("block") is not None and not all(_int(b) and b > 0 for b in spec["block"]):
        raise bad(f"'block' must hold 3 positive ints, not {spec['block']!r}")
    for e in spec.get("grid") or ():
        try:
            _grid.validate(e)
        except Exception as err:
            raise bad(str(err)) from None
    requires = spec.get("requires", [])
    if not isinstance(requires, list):
        raise bad(f"'requires' must be a list, not {type(requires).__name__}")
    for r in requires:
        if not (isinstance(r, dict) and isinstance(r.get("text"), str) and isinstance(r.get("message"), str)
                and _int(r.get("line", 0))):
            raise bad(f"'requires' entry {r!r} must be an object with 'expr', 'text', 'message', 'line'")
        try:
            _grid.validate(r.get("expr"))
        except Exception as err:
            raise bad(f"'requires' entry {r.get('text')!r}: {err}") from None
    if spec.get("grid_unit", "threadgroups") != "threadgroups":
        raise bad(f"'grid_unit' {spec.get('grid_unit')!r} is not supported (this runtime reads "
                  f"'threadgroups')")
    tgm = spec.get("threadgroup_memory", 0)
    if not _int(tgm) or tgm < 0:
        raise bad(f"'threadgroup_memory' must be a non-negative int, not {tgm!r}")
    if spec.get("dims_buffer") is not None and not _int(spec["dims_buffer"]):
        raise bad("'dims_buffer' must be an int or null")
    if files is not None:
        for key in ("metal", "ir"):
            name = check_file_name(spec.get(key), f"{where}, key {key!r}")
            if name not in files:
                raise bad(f"{key!r} names {name!r}, which is not listed in 'files'")
    return spec


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
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ManifestError(f"{path}: cannot read artifact ({e.strerror or e}); reinstall the package "
                                f"or rebuild it with enigma-build") from None
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
        try:
            return json.loads(self.read_text(name))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{self.dir / name}: corrupt or truncated JSON ({e})") from None


def read_ir(data: Any, where: str) -> dict:
    """Check the envelope of a portable IR document (FORMAT.md section 4)."""
    if not isinstance(data, dict) or data.get("format") != IR_FORMAT:
        raise ManifestError(f"{where}: not an Enigma IR document (expected \"format\": \"{IR_FORMAT}\")")
    if data.get("version") != IR_VERSION:
        raise ManifestError(f"{where}: IR version {data.get('version')!r}, but this enigma-runtime reads "
                            f"version {IR_VERSION}; upgrade enigma-runtime or rebuild the package")
    if not isinstance(data.get("body"), list) or not isinstance(data.get("args"), list):
        raise ManifestError(f"{where}: 'body' and 'args' must be lists")
    return data


def parse_manifest(raw: bytes, adir: Path) -> Manifest:
    """Validate the bytes of `adir`/manifest.json; every listed file must exist in `adir`."""
    path = adir / "manifest.json"
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: corrupt or truncated JSON ({e}); rebuild the package with "
                            f"enigma-build") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: the top level must be an object, not {type(doc).__name__}")
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise ManifestError(f"{path}: manifest schema {schema!r}, but this enigma-runtime reads schema "
                            f"{SCHEMA}; " + ("upgrade enigma-runtime" if _int(schema) and schema > SCHEMA
                               else "rebuild the package with a current enigma-build"))
    files = doc.get("files")
    if not isinstance(files, dict):
        raise ManifestError(f"{path}: 'files' must be an object mapping file names to sha256 hex digests")
    for name, digest in files.items():
        check_file_name(name, f"{path}, 'files'")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise ManifestError(f"{path}: 'files'[{name!r}] is not a sha256 hex digest: {digest!r}")
    metallib = doc.get("metallib")
    if metallib is not None:
        check_file_name(metallib, f"{path}, 'metallib'")
        if metallib not in files:
            raise ManifestError(f"{path}: 'metallib' names {metallib!r}, which is not listed in 'files'")
    kernels = doc.get("kernels")
    if not isinstance(kernels, dict):
        raise ManifestError(f"{path}: 'kernels' must be an object mapping kernel names to specialisations")
    for kname, specs in kernels.items():
        if not isinstance(specs, list) or not specs:
            raise ManifestError(f"{path}: kernel {kname!r} must map to a non-empty list of specialisations")
        for i, spec in enumerate(specs):
            validate_spec(spec, f"{path}, kernel {kname!r} specialisation {i}", files=files)
    try:
        present = set(os.listdir(adir))
    except OSError as e:
        raise ManifestError(f"{adir}: cannot list the artifact directory ({e})") from None
    missing = sorted(set(files) - present)
    if missing:
        raise ManifestError(f"{path}: missing artifact file(s) {', '.join(missing)} in {adir}; the "
                            f"package is incomplete: reinstall it or rebuild it with enigma-build")
    meta = {k: doc.get(k) for k in ("package", "enigma_version", "msl_version", "macos_target")}
    for k, v in meta.items():
        if v is not None and not isinstance(v, str):
            raise ManifestError(f"{path}: {k!r} must be a string")
    return Manifest(adir, meta["package"] or adir.parent.name, schema, meta["enigma_version"] or "",
                    meta["msl_version"] or "", meta["macos_target"] or "", metallib, dict(files), kernels)


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
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    man = parse_manifest(raw, adir)
    with _cache_lock:
        _cache[adir] = (st.st_mtime_ns, st.st_size, man)
    return man
