"""Find a package's `_enigma/` directory and read its manifest.json (FORMAT.md sections 1-3).

Everything read here is validated as data before anything uses it (FORMAT.md, "Validation and
bounds"): regular files within a size bound only (no FIFO, device or symlink leaving the package),
strict JSON within a nesting bound, the schema version, every key of the manifest, of each
specialisation and of the portable IR against tables of rules with bounds (KEYS below: other
modules add their keys there), bare file names only (no path can leave `_enigma/`), every listed
file present, and each artifact's sha256 when it is read. Problems raise ManifestError (manifest and
artifacts) or IRError (the IR's ops) naming the file and the problem.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from . import grid as _grid
from .dtypes import BY_NAME
from .errors import GridError, IRError, ManifestError, PackageNotFoundError
from .jsonnum import number_from_json, number_to_json  # noqa: F401 (number_to_json: the writer's)

SCHEMA = 2  # what enigma writes; 2 added jit entries (FORMAT.md section 7)
SCHEMAS = (1, 2)  # what this runtime reads
IR_FORMAT, IR_VERSION = "enigma-ir", 1
ARTIFACT_DIR = "_enigma"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Bounds of the format (FORMAT.md, "Validation and bounds")
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_ARTIFACT_BYTES = 1024 * 2**20  # a .metallib, .metal or .ir.json
MAX_JSON_DEPTH = 400  # nesting of JSON arrays and objects (an IR region level takes 4)
MAX_EXPR_DEPTH = 64  # nesting of a grid expression
MAX_REGION_DEPTH = 64  # nesting of IR regions (if / for / while)
MAX_IR_OPS = 1_000_000
MAX_NAME = 256  # characters of a name
MAX_RANK = 16
MAX_LANES = 16
MAX_BUFFERS = 31  # Metal's buffer argument table: [[buffer(0)]] .. [[buffer(30)]]
MAX_DIMS_INTS = 65536  # ints of the dims buffer
MAX_THREADGROUP_MEMORY = 65536  # bytes (Apple GPUs have 32 KiB; a device checks its own limit)
MAX_SHARED_ELEMENTS = 2**24
MAX_INT = 2**63 - 1  # any integer of the format (ids, lines, sizes, constants of grid expressions)
MAX_CONST = 2**64  # |integer constant| of the IR (uint64 range)
MAX_SIZE = 2**31 - 1  # a static size (kernels index with int32)


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


def check_file_name(name: Any, where: str) -> str:
    """`name` if it is a bare file name inside `_enigma/`; ManifestError otherwise."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or ":" in name or name != name.strip() or len(name) > MAX_NAME):
        raise ManifestError(f"{where}: file name {name!r} is not a bare file name inside {ARTIFACT_DIR}/ "
                            f"(paths, '..' and drive letters are refused)")
    return name


def _int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


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


# ---------------------------------------------------------------------------------------------------
# validation as data: a table of keys per object, each with a check returning the problem or None

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Key:
    """A key of an object of the format: its check (returns what is wrong, or None) and whether it is
    required (absent optional keys take FORMAT.md's defaults)."""

    check: Check
    required: bool = False


def int_in(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        return None if _int(v) and lo <= v <= hi else f"must be an int in [{lo}, {hi}], not {_short(v)}"
    return check


def optional(check: Check) -> Check:
    def opt(v: Any) -> str | None:
        return None if v is None else check(v)
    return opt


def one_of(*choices: Any) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, str) and v in choices
        return None if ok else f"must be one of {', '.join(map(str, choices))}, not {_short(v)}"
    return check


def string(max_len: int = 4096) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, str) and len(v) <= max_len
        return None if ok else f"must be a string of at most {max_len} characters, not {_short(v)}"
    return check


def name_check(v: Any) -> str | None:
    ok = isinstance(v, str) and 0 < len(v) <= MAX_NAME
    return None if ok else f"must be a non-empty string of at most {MAX_NAME} characters, not {_short(v)}"


def ident_check(v: Any) -> str | None:
    ok = isinstance(v, str) and len(v) <= MAX_NAME and _IDENT.match(v)
    return None if ok else f"must be an identifier of at most {MAX_NAME} characters, not {_short(v)}"


def list_of(max_len: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and len(v) <= max_len
        return None if ok else f"must be a list of at most {max_len} entries, not {_short(v)}"
    return check


def dtype_check(v: Any) -> str | None:
    ok = isinstance(v, str) and v in BY_NAME
    return None if ok else f"is an unknown dtype {_short(v)}; expected one of {', '.join(BY_NAME)}"


def shape_check(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) <= MAX_RANK and all(
        s is None or (isinstance(s, str) and 0 < len(s) <= MAX_NAME) or (_int(s) and 0 <= s <= MAX_SIZE)
        for s in v)
    return None if ok else (f"must be a list of at most {MAX_RANK} sizes (ints in [0, {MAX_SIZE}], names "
                            f"and nulls), not {_short(v)}")


def static_shape_check(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) <= MAX_RANK and all(_int(s) and 1 <= s <= MAX_SIZE for s in v)
    return None if ok else f"must be a list of at most {MAX_RANK} positive ints, not {_short(v)}"


def expr_check(v: Any) -> str | None:
    try:
        _grid.validate(v)
    except GridError as e:
        return str(e)
    return None


def grid_check(v: Any) -> str | None:
    if not (isinstance(v, list) and len(v) == 3):
        return f"must be a list of 3 entries or null, not {_short(v)}"
    for e in v:
        problem = expr_check(e)
        if problem:
            return problem
    return None


def block_check(v: Any) -> str | None:
    if not (isinstance(v, list) and len(v) == 3 and all(_int(b) and 0 < b <= 1024 for b in v)):
        return f"must hold 3 positive ints (at most 1024), not {_short(v)}"
    return None


def _short(v: Any) -> str:
    if isinstance(v, int) and abs(v) >= 10**30:
        return f"an int of about {v.bit_length() * 3 // 10} digits"  # str() of a huge int is slow
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


ARG_KEYS: dict[str, Key] = {
    "name": Key(name_check, True),
    "kind": Key(one_of("tensor", "scalar", "none"), True),  # none: an optional tensor left out
    "dtype": Key(dtype_check, True),
    "shape": Key(shape_check),
    "rank": Key(int_in(0, MAX_RANK)),
    "access": Key(one_of("read", "write", "readwrite")),
    "buffer": Key(int_in(0, MAX_BUFFERS - 1)),
    "dims_offset": Key(optional(int_in(0, MAX_DIMS_INTS))),
}
REQUIRE_KEYS: dict[str, Key] = {
    "expr": Key(expr_check, True), "text": Key(string(), True), "message": Key(string(), True),
    "line": Key(int_in(0, MAX_INT)),
}
SPEC_KEYS: dict[str, Key] = {
    "name": Key(name_check, True),
    "kernel_name": Key(ident_check, True),
    "args": Key(list_of(MAX_BUFFERS), True),
    "block": Key(optional(block_check)),
    "grid": Key(optional(grid_check)),
    "grid_unit": Key(one_of("threadgroups")),
    "threadgroup_memory": Key(int_in(0, MAX_THREADGROUP_MEMORY)),
    "dims_buffer": Key(optional(int_in(0, MAX_BUFFERS - 1))),
    "requires": Key(list_of(1024)),
    "file": Key(optional(string())), "line": Key(int_in(0, MAX_INT)),
    "vec_width": Key(int_in(0, MAX_LANES)), "msl_version": Key(optional(string(16))),
    "source_hash": Key(optional(string(128))), "simd_width": Key(optional(int_in(1, 128))),
}
MANIFEST_KEYS: dict[str, Key] = {  # "schema" is checked first, with its own message
    "files": Key(lambda v: None if isinstance(v, dict) else "must be an object mapping file names to "
                 "sha256 hex digests", True),
    "kernels": Key(lambda v: None if isinstance(v, dict) else "must be an object mapping kernel names to "
                   "specialisations", True),
    "metallib": Key(optional(string(MAX_NAME))),
    "package": Key(optional(string(MAX_NAME))), "enigma_version": Key(optional(string(64))),
    "msl_version": Key(optional(string(16))), "macos_target": Key(optional(string(16))),
}


def check_keys(obj: Any, table: dict[str, Key], where: str, error: type[Exception] = ManifestError,
               what: str = "an object") -> dict:
    """`obj` checked against `table` (error naming `where` and the key otherwise)."""
    if not isinstance(obj, dict):
        raise error(f"{where}: must be {what}, not {type(obj).__name__}")
    for key, rule in table.items():
        if key not in obj:
            if rule.required:
                raise error(f"{where}: {key!r} is required")
            continue
        problem = rule.check(obj[key])
        if problem:
            raise error(f"{where}: {key!r} {problem}")
    return obj


def check_args(args: list, where: str, error: type[Exception] = ManifestError) -> None:
    """Each argument against ARG_KEYS, and what relates them: unique names and buffer indices, rank
    equal to len(shape), scalars of shape [], dims buffer slots that do not overlap."""
    names: set[str] = set()
    buffers: dict[int, str] = {}
    slots: list[tuple[int, int, str]] = []
    for i, a in enumerate(args):
        check_keys(a, ARG_KEYS, f"{where}, argument {i}", error)
        w = f"{where}, argument {a['name']!r}"
        if a["name"] in names:
            raise error(f"{w} appears twice")
        names.add(a["name"])
        shape = a.get("shape", [])
        if a["kind"] == "scalar" and shape:
            raise error(f"{w}: a scalar has shape []")
        if a.get("rank", len(shape)) != len(shape):
            raise error(f"{w}: rank {a.get('rank')} disagrees with shape {shape}")
        b = a.get("buffer", i)
        if b in buffers:
            raise error(f"{w}: 'buffer' {b} is also the buffer of argument {buffers[b]!r}")
        buffers[b] = a["name"]
        if a.get("dims_offset") is not None:
            off = a["dims_offset"]
            if a["kind"] != "tensor" or off + 2 * len(shape) > MAX_DIMS_INTS:
                raise error(f"{w}: 'dims_offset' {off} is not a slot of the dims buffer for this argument")
            for lo, hi, other in slots:
                if off < hi and lo < off + 2 * len(shape):
                    raise error(f"{w}: its dims buffer slots overlap those of argument {other!r}")
            slots.append((off, off + 2 * len(shape), a["name"]))


def validate_spec(spec: Any, where: str, *, files: dict[str, str] | None = None) -> dict:
    """Check one specialisation (FORMAT.md section 3); `files` (manifest) requires `metal`/`ir`."""
    check_keys(spec, SPEC_KEYS, where, what="a specialisation object")
    args = spec["args"]
    check_args(args, where)
    dims_buffer = spec.get("dims_buffer")
    used = {a.get("buffer", i): a["name"] for i, a in enumerate(args)}
    if dims_buffer is not None and dims_buffer in used:
        raise ManifestError(f"{where}: 'dims_buffer' {dims_buffer} is also the buffer of argument "
                            f"{used[dims_buffer]!r}")
    if dims_buffer is None and any(a.get("dims_offset") is not None for a in args):
        raise ManifestError(f"{where}: arguments have a 'dims_offset' but 'dims_buffer' is null")
    if spec.get("block") is not None and spec["block"][0] * spec["block"][1] * spec["block"][2] > 1024:
        raise ManifestError(f"{where}: 'block' {spec['block']} has more than 1024 threads")
    for i, r in enumerate(spec.get("requires", [])):
        check_keys(r, REQUIRE_KEYS, f"{where}, 'requires' entry {i}")
    if files is not None:
        for key in ("metal", "ir"):
            name = check_file_name(spec.get(key), f"{where}, key {key!r}")
            if name not in files:
                raise ManifestError(f"{where}: {key!r} names {name!r}, which is not listed in 'files'")
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


def _types_check(v: Any) -> str | None:
    if not isinstance(v, list) or len(v) > 4096:
        return f"must be a list of types, not {_short(v)}"
    for t in v:
        if not (isinstance(t, str) and _type_ok(t)):
            return (f"holds an unknown type {_short(t)}; expected a dtype ({', '.join(BY_NAME)}), "
                    f"<dtype>x<lanes> with 2 to {MAX_LANES} lanes, or a simdgroup matrix <dtype>x8x8")
    return None


def _type_ok(t: str) -> bool:
    if t in BY_NAME:
        return True
    if t.endswith("x8x8") and t[:-4] in ("float32", "float16", "bfloat16"):  # simdgroup matrices
        return True
    base, _, lanes = t.rpartition("x")
    return base in BY_NAME and lanes.isdigit() and len(lanes) <= 2 and 2 <= int(lanes) <= MAX_LANES


def _ids_check(v: Any) -> str | None:
    if not isinstance(v, list) or len(v) > 4096 or not all(_int(i) and 0 <= i <= MAX_SIZE for i in v):
        return f"must be a list of value ids (ints in [0, {MAX_SIZE}]), not {_short(v)}"
    return None


def _attr_ok(v: Any, depth: int = 0) -> bool:
    if v is None or isinstance(v, (bool, str)) and (not isinstance(v, str) or len(v) <= 4096):
        return True
    if _int(v):
        return -MAX_CONST <= v <= MAX_CONST
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, dict):
        try:
            number_from_json(v)
        except ValueError:
            return False
        return True
    if isinstance(v, list) and depth < 2 and len(v) <= 64:
        return all(_attr_ok(x, depth + 1) for x in v)
    return False


def _attrs_check(v: Any) -> str | None:
    if not isinstance(v, dict) or len(v) > 64 or not all(isinstance(k, str) and _attr_ok(x)
                                                         for k, x in v.items()):
        return (f"must be an object of names to numbers (finite, or {{\"float\": \"inf\"}} etc.), bools, "
                f"strings or short lists of them, not {_short(v)}")
    return None


IR_KEYS: dict[str, Key] = {  # "format" and "version" are checked first, with their own messages
    "name": Key(name_check), "kernel_name": Key(optional(ident_check)), "file": Key(optional(string())),
    "line": Key(int_in(0, MAX_INT)), "args": Key(list_of(MAX_BUFFERS), True),
    "shared": Key(list_of(1024)), "vec_width": Key(int_in(0, MAX_LANES)),
    "body": Key(list_of(MAX_IR_OPS), True),
}
SHARED_KEYS: dict[str, Key] = {
    "name": Key(name_check, True), "dtype": Key(dtype_check, True), "shape": Key(static_shape_check, True),
}
OP_KEYS: dict[str, Key] = {
    "op": Key(name_check, True), "in": Key(_ids_check), "out": Key(_ids_check), "types": Key(_types_check),
    "attrs": Key(_attrs_check), "regions": Key(list_of(8)), "line": Key(int_in(0, MAX_INT)),
}
ATTR_KEYS: dict[str, Key] = {  # the attributes the catalogue's ops read, wherever they appear
    "name": Key(name_check), "tensor": Key(name_check), "axis": Key(int_in(0, MAX_RANK - 1)),
    "dim": Key(int_in(0, 2)), "lanes": Key(int_in(1, MAX_LANES)),
}
REGION_KEYS: dict[str, Key] = {
    "args": Key(_ids_check), "types": Key(_types_check), "body": Key(list_of(MAX_IR_OPS), True),
}


def read_ir(data: Any, where: str, *, envelope_only: bool = False) -> dict:
    """Check a portable IR document (FORMAT.md section 4) as data: the envelope (ManifestError), then
    every key of the arguments, shared arrays, ops and regions against IR_KEYS, ARG_KEYS,
    SHARED_KEYS, OP_KEYS and REGION_KEYS, region nesting, the number of ops, that every value id is
    defined once and `const` values are numbers (IRError naming `where`)."""
    if not isinstance(data, dict) or data.get("format") != IR_FORMAT:
        raise ManifestError(f"{where}: not an Enigma IR document (expected \"format\": \"{IR_FORMAT}\")")
    if data.get("version") != IR_VERSION:
        raise ManifestError(f"{where}: IR version {_short(data.get('version'))}, but this enigma-runtime "
                            f"reads version {IR_VERSION}; upgrade enigma-runtime or rebuild the package")
    if not isinstance(data.get("body"), list) or not isinstance(data.get("args"), list):
        raise ManifestError(f"{where}: 'body' and 'args' must be lists")
    if envelope_only:
        return data
    check_keys(data, IR_KEYS, where, IRError)
    check_args(data["args"], f"{where}, 'args'", IRError)
    for i, sh in enumerate(data.get("shared", [])):
        w = f"{where}, shared array {i}"
        check_keys(sh, SHARED_KEYS, w, IRError)
        if math.prod(sh["shape"]) > MAX_SHARED_ELEMENTS:
            raise IRError(f"{w}: more than {MAX_SHARED_ELEMENTS} elements")
    defined: set[int] = set()
    count = 0
    # an explicit stack (no recursion): (ops, depth)
    stack: list[tuple[list, int]] = [(data["body"], 0)]
    while stack:
        ops, depth = stack.pop()
        for op in ops:
            count += 1
            if count > MAX_IR_OPS:
                raise IRError(f"{where}: more than {MAX_IR_OPS} ops")
            check_keys(op, OP_KEYS, f"{where}, op {_short(op)}" if not isinstance(op, dict) else
                       f"{where}, op {_short(op.get('op'))} at line {_short(op.get('line', 0))}", IRError,
                       what="an op object")
            w = f"{where}, op {op['op']!r} at line {op.get('line', 0)}"
            outs, types = op.get("out", []), op.get("types", [])
            if len(outs) != len(types):
                raise IRError(f"{w}: {len(outs)} results but {len(types)} types")
            for v in outs:
                if v in defined:
                    raise IRError(f"{w}: value id %{v} is defined twice")
                defined.add(v)
            if op.get("attrs"):
                check_keys(op["attrs"], ATTR_KEYS, f"{w}, 'attrs'", IRError)
            if op["op"] == "const":
                try:
                    number_from_json((op.get("attrs") or {}).get("value"))
                except ValueError as e:
                    raise IRError(f"{w}: 'value' {e}") from None
            for j, reg in enumerate(op.get("regions", [])):
                rw = f"{w}, region {j}"
                check_keys(reg, REGION_KEYS, rw, IRError, what="a region object")
                if len(reg.get("args", [])) != len(reg.get("types", [])):
                    raise IRError(f"{rw}: {len(reg.get('args', []))} arguments but "
                                  f"{len(reg.get('types', []))} types")
                for v in reg.get("args", []):
                    if v in defined:
                        raise IRError(f"{rw}: value id %{v} is defined twice")
                    defined.add(v)
                if depth + 1 > MAX_REGION_DEPTH:
                    raise IRError(f"{rw}: regions nested more than {MAX_REGION_DEPTH} deep")
                stack.append((reg["body"], depth + 1))
    return data


def parse_manifest(raw: bytes, adir: Path) -> Manifest:
    """Validate the bytes of `adir`/manifest.json; every listed file must exist in `adir`."""
    path = adir / "manifest.json"
    doc = parse_json(raw, str(path))
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: the top level must be an object, not {type(doc).__name__}")
    schema = doc.get("schema")
    if schema not in SCHEMAS or not _int(schema):
        raise ManifestError(f"{path}: manifest schema {_short(schema)}, but this enigma-runtime reads schema "
                            f"{' or '.join(map(str, SCHEMAS))}; "
                            + ("upgrade enigma-runtime" if _int(schema) and schema > SCHEMA
                               else "rebuild the package with a current enigma-build"))
    check_keys(doc, MANIFEST_KEYS, str(path))
    files = doc["files"]
    for name, digest in files.items():
        check_file_name(name, f"{path}, 'files'")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise ManifestError(f"{path}: 'files'[{name!r}] is not a sha256 hex digest: {_short(digest)}")
    metallib = doc.get("metallib")
    if metallib is not None:
        check_file_name(metallib, f"{path}, 'metallib'")
        if metallib not in files:
            raise ManifestError(f"{path}: 'metallib' names {metallib!r}, which is not listed in 'files'")
    kernels = doc["kernels"]
    for kname, specs in kernels.items():
        if not isinstance(specs, list) or not specs or len(specs) > 1024:
            raise ManifestError(f"{path}: kernel {_short(kname)} must map to a non-empty list of "
                                f"specialisations (at most 1024)")
        for i, spec in enumerate(specs):
            validate_spec(spec, f"{path}, kernel {_short(kname)} specialisation {i}", files=files)
    entries = doc.get("entries", {}) if schema >= 2 else {}
    if not isinstance(entries, dict):
        raise ManifestError(f"{path}: 'entries' must be an object mapping jit names to entries")
    from .entry import validate_entry
    for ename, entry in entries.items():
        validate_entry(entry, f"{path}, entry {_short(ename)}", kernels)
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
