"""The artifact format as data to check (FORMAT.md section 6, "Validation and bounds"): the format's
bounds, a table of keys per object of the format (a specialisation, an argument, the manifest, the
portable IR and its ops and regions), each key with a check returning the problem or None, and the
validators that apply them: `validate_spec` (FORMAT.md section 3) and `read_ir` (section 4). Problems
raise ManifestError (manifest, specialisations, the IR's envelope) or IRError (the IR's arguments,
arrays and ops) naming where and what. Reading the files themselves is manifest.py's.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from . import grid as _grid
from .dtypes import BY_NAME
from .errors import GridError, IRError, ManifestError
from .jsonnum import number_from_json

IR_FORMAT, IR_VERSION = "enigma-ir", 1
ARTIFACT_DIR = "_enigma"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Bounds of the format (FORMAT.md, "Validation and bounds")
MAX_EXPR_DEPTH = _grid.MAX_DEPTH  # nesting of a grid expression (64; grid.validate checks it)
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


def check_file_name(name: Any, where: str) -> str:
    """`name` if it is a bare file name inside `_enigma/`; ManifestError otherwise."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or ":" in name or name != name.strip() or len(name) > MAX_NAME):
        raise ManifestError(f"{where}: file name {name!r} is not a bare file name inside {ARTIFACT_DIR}/ "
                            f"(paths, '..' and drive letters are refused)")
    return name


def is_int(v: Any) -> TypeGuard[int]:
    """An int of the format (a JSON integer; bool is not one)."""
    return isinstance(v, int) and not isinstance(v, bool)


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
        return None if is_int(v) and lo <= v <= hi else f"must be an int in [{lo}, {hi}], not {short(v)}"
    return check


def optional(check: Check) -> Check:
    def opt(v: Any) -> str | None:
        return None if v is None else check(v)
    return opt


def one_of(*choices: Any) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, str) and v in choices
        return None if ok else f"must be one of {', '.join(map(str, choices))}, not {short(v)}"
    return check


def string(max_len: int = 4096) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, str) and len(v) <= max_len
        return None if ok else f"must be a string of at most {max_len} characters, not {short(v)}"
    return check


def name_check(v: Any) -> str | None:
    ok = isinstance(v, str) and 0 < len(v) <= MAX_NAME
    return None if ok else f"must be a non-empty string of at most {MAX_NAME} characters, not {short(v)}"


def ident_check(v: Any) -> str | None:
    ok = isinstance(v, str) and len(v) <= MAX_NAME and _IDENT.match(v)
    return None if ok else f"must be an identifier of at most {MAX_NAME} characters, not {short(v)}"


def list_of(max_len: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and len(v) <= max_len
        return None if ok else f"must be a list of at most {max_len} entries, not {short(v)}"
    return check


def dtype_check(v: Any) -> str | None:
    ok = isinstance(v, str) and v in BY_NAME
    return None if ok else f"is an unknown dtype {short(v)}; expected one of {', '.join(BY_NAME)}"


def shape_check(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) <= MAX_RANK and all(
        s is None or (isinstance(s, str) and 0 < len(s) <= MAX_NAME) or (is_int(s) and 0 <= s <= MAX_SIZE)
        for s in v)
    return None if ok else (f"must be a list of at most {MAX_RANK} sizes (ints in [0, {MAX_SIZE}], names "
                            f"and nulls), not {short(v)}")


def static_shape_check(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) <= MAX_RANK and all(is_int(s) and 1 <= s <= MAX_SIZE for s in v)
    return None if ok else f"must be a list of at most {MAX_RANK} positive ints, not {short(v)}"


def expr_check(v: Any) -> str | None:
    try:
        _grid.validate(v)
    except GridError as e:
        return str(e)
    return None


def grid_check(v: Any) -> str | None:
    if not (isinstance(v, list) and len(v) == 3):
        return f"must be a list of 3 entries or null, not {short(v)}"
    for e in v:
        problem = expr_check(e)
        if problem:
            return problem
    return None


def block_check(v: Any) -> str | None:
    if not (isinstance(v, list) and len(v) == 3 and all(is_int(b) and 0 < b <= 1024 for b in v)):
        return f"must hold 3 positive ints (at most 1024), not {short(v)}"
    return None


def short(v: Any) -> str:
    """`v` as an error message shows it: at most 80 characters, huge ints by their size."""
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


def _types_check(v: Any) -> str | None:
    if not isinstance(v, list) or len(v) > 4096:
        return f"must be a list of types, not {short(v)}"
    for t in v:
        if not (isinstance(t, str) and _type_ok(t)):
            return (f"holds an unknown type {short(t)}; expected a dtype ({', '.join(BY_NAME)}), "
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
    if not isinstance(v, list) or len(v) > 4096 or not all(is_int(i) and 0 <= i <= MAX_SIZE for i in v):
        return f"must be a list of value ids (ints in [0, {MAX_SIZE}]), not {short(v)}"
    return None


def _attr_ok(v: Any, depth: int = 0) -> bool:
    if v is None or isinstance(v, (bool, str)) and (not isinstance(v, str) or len(v) <= 4096):
        return True
    if is_int(v):
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
                f"strings or short lists of them, not {short(v)}")
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
        raise ManifestError(f"{where}: IR version {short(data.get('version'))}, but this enigma-runtime "
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
            check_keys(op, OP_KEYS, f"{where}, op {short(op)}" if not isinstance(op, dict) else
                       f"{where}, op {short(op.get('op'))} at line {short(op.get('line', 0))}", IRError,
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
