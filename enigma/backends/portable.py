"""The portable form of a kernel (runtime/FORMAT.md section 4) and its signature metadata (section 3).

The binding ABI (which buffer carries which argument, the dims buffer) is `enigma.backends.abi`, which
this module and the MSL printer both use, so the two never disagree.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from enigma_runtime import dtypes
from enigma_runtime.jsonnum import number_from_json, number_to_json  # FORMAT.md: non-finite floats

from enigma import ir
from enigma.backends.abi import Binding, bindings, tensor_access  # noqa: F401 (re-exported)

FORMAT = "enigma-ir"
VERSION = 1
MSL_VERSION = "3.1"


# ---------------------------------------------------------------------------------------------------
# Kernel -> JSON

def _type_name(t: ir.Type) -> str:
    return t.name


def _arg_json(b: Binding) -> dict[str, Any]:
    a = b.arg
    return {"name": a.name, "kind": a.kind, "dtype": a.dtype.name, "rank": a.rank, "shape": list(a.shape),
            "access": b.access, "buffer": b.buffer, "dims_offset": b.dims_offset}


def _op_json(op: ir.Op) -> dict[str, Any]:
    d: dict[str, Any] = {"op": op.name}
    if op.operands:
        d["in"] = [v.id for v in op.operands]
    if op.results:
        d["out"] = [v.id for v in op.results]
        d["types"] = [_type_name(v.type) for v in op.results]
    if op.attrs:
        d["attrs"] = {k: (list(v) if isinstance(v, tuple) else number_to_json(v))
                      for k, v in op.attrs.items()}
    if op.regions:
        d["regions"] = [{"args": [v.id for v in r.args], "types": [_type_name(v.type) for v in r.args],
                         "body": [_op_json(o) for o in r.ops]} for r in op.regions]
    if op.line:
        d["line"] = op.line
    return d


def ir_to_json(kernel: ir.Kernel) -> dict[str, Any]:
    """The kernel as FORMAT.md section 4 JSON (plain dicts/lists/numbers/strings)."""
    binds, _ = bindings(kernel)
    return {"format": FORMAT, "version": VERSION, "name": kernel.name, "kernel_name": kernel.kernel_name,
            "file": kernel.file, "line": kernel.line, "args": [_arg_json(b) for b in binds],
            "shared": [{"name": s.name, "dtype": s.dtype.name, "shape": list(s.shape)}
                       for s in kernel.shared],
            "vec_width": kernel.vec_width, "body": [_op_json(op) for op in kernel.body.ops]}


# ---------------------------------------------------------------------------------------------------
# JSON -> Kernel (the inverse, for round-trip tests and tools)

def parse_type(name: str) -> ir.Type:
    """`float32`, `float32x4` or (a simdgroup matrix) `float32x8x8` -> Type."""
    if name in dtypes.BY_NAME:
        return ir.Type(dtypes.BY_NAME[name])
    if name.endswith("x8x8") and name[:-4] in dtypes.BY_NAME:
        return ir.Type(dtypes.BY_NAME[name[:-4]], 1, 8)
    base, sep, lanes = name.rpartition("x")
    if not sep or not lanes.isdigit():
        raise ValueError(f"bad IR type {name!r}")
    return ir.Type(dtypes.from_name(base), int(lanes))


def json_to_ir(data: dict[str, Any]) -> ir.Kernel:
    """Rebuild an `ir.Kernel` from its portable JSON. Value ids are kept."""
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"not {FORMAT} version {VERSION}: format={data.get('format')!r} "
                         f"version={data.get('version')!r}")
    values: dict[int, ir.Value] = {}

    def define(vid: int, tname: str) -> ir.Value:
        if vid in values:
            raise ValueError(f"value id {vid} is defined twice")
        values[vid] = v = ir.Value(parse_type(tname), vid)
        return v

    def use(vid: int) -> ir.Value:
        try:
            return values[vid]
        except KeyError:
            raise ValueError(f"value id {vid} is used before its definition") from None

    def block(ops: list[dict], args: Sequence[int] = (), types: Sequence[str] = ()) -> ir.Block:
        b = ir.Block(args=[define(i, t) for i, t in zip(args, types)])
        for d in ops:
            operands = [use(i) for i in d.get("in", [])]
            regions = [block(r.get("body", []), r.get("args", []), r.get("types", []))
                       for r in d.get("regions", [])]
            results = [define(i, t) for i, t in zip(d.get("out", []), d.get("types", []))]
            attrs = {k: (number_from_json(v) if isinstance(v, dict) else v)
                     for k, v in d.get("attrs", {}).items()}
            b.ops.append(ir.Op(d["op"], operands, results, attrs, regions, d.get("line", 0)))
        return b

    args = [ir.Arg(a["name"], a["kind"], dtypes.from_name(a["dtype"]), tuple(a.get("shape", ())),
                   a.get("access", "read"), a.get("buffer", i)) for i, a in enumerate(data["args"])]
    shared = [ir.Shared(s["name"], dtypes.from_name(s["dtype"]), tuple(s["shape"]))
              for s in data.get("shared", [])]
    base = f"enigma_kernel_{data['name']}"
    variant = data.get("kernel_name", base).removeprefix(base).removeprefix("_")
    return ir.Kernel(data["name"], args, block(data["body"]), shared, data.get("file", ""),
                     data.get("line", 0), data.get("vec_width", 0), variant)


# ---------------------------------------------------------------------------------------------------
# signature metadata

def _grid_json(grid: Any) -> list | None:
    if grid is None:
        return None
    g = list(grid)
    if len(g) != 3:
        raise ValueError(f"grid must have 3 entries (x, y, z), got {grid!r}")
    return [int(e) if isinstance(e, int) else e for e in g]


def source_hash(msl_source: str, ir_json: dict[str, Any]) -> str:
    """The one source hash of a compiled kernel (FORMAT.md section 3, docs/abi.md section 6): sha256 hex
    of the MSL source (UTF-8), one NUL byte, then the portable IR as canonical JSON (sorted keys,
    separators `,` and `:`), with the kernel's file path (IR key `file`, wherever the MSL repeats it)
    left out: the same kernel, specialisation and options give the same hash on every machine and in
    every checkout."""
    path = ir_json.get("file") or ""
    ir_doc = {k: v for k, v in ir_json.items() if k != "file"}
    h = hashlib.sha256((msl_source.replace(path, "") if path else msl_source).encode())
    h.update(b"\0")
    h.update(json.dumps(ir_doc, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def signature(kernel: ir.Kernel, *, block: Any, grid: Any, msl_source: str | None = None,
              msl_version: str = MSL_VERSION, ir_json: dict[str, Any] | None = None) -> dict[str, Any]:
    """FORMAT.md section 3 without the `metal`/`ir` file keys. `block`: 3 ints or None; `grid`: 3 grid
    expressions (ints or dicts, FORMAT.md "Grid expressions") or None. `msl_source` defaults to
    `backends.msl.emit(kernel)` and `ir_json` to `ir_to_json(kernel)` (pass them when already made)."""
    if msl_source is None:
        from enigma.backends import msl
        msl_source = msl.emit(kernel)
    if ir_json is None:
        ir_json = ir_to_json(kernel)
    binds, dims_buffer = bindings(kernel)
    if block is not None:
        block = [int(b) for b in block]
        if len(block) != 3:
            raise ValueError(f"block must have 3 entries (x, y, z), got {block!r}")
    sig = {"name": kernel.name, "kernel_name": kernel.kernel_name, "file": kernel.file, "line": kernel.line,
           "args": [_arg_json(b) for b in binds], "dims_buffer": dims_buffer, "block": block,
           "grid": _grid_json(grid), "grid_unit": "threadgroups",
           "threadgroup_memory": kernel.threadgroup_memory, "vec_width": kernel.vec_width,
           "msl_version": msl_version, "source_hash": source_hash(msl_source, ir_json)}
    if any(op.name in ir.SIMD or op.name.startswith("simd_") for op in ir.walk(kernel.body)):
        sig["simd_width"] = 32  # simd-group ops assume 32-wide SIMD groups (FORMAT.md section 3)
    return sig
