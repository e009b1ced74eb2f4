"""A tiny builder of portable IR (FORMAT.md section 4) and signatures (section 3) for the runtime's
tests and benchmarks: no compiler involved."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from enigma_runtime.jsonnum import number_to_json


def tensor(name: str, dtype: str, shape: list, access: str = "read") -> dict:
    return {"name": name, "kind": "tensor", "dtype": dtype, "rank": len(shape), "shape": list(shape),
            "access": access}


def scalar(name: str, dtype: str = "int32") -> dict:
    return {"name": name, "kind": "scalar", "dtype": dtype, "rank": 0, "shape": [], "access": "read"}


class B:
    """Build a kernel body op by op: `x = b.v("add", a, c, t="float32")`."""

    def __init__(self) -> None:
        self.next_id = 1
        self.stack: list[list[dict]] = [[]]
        self.line = 0

    def new(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def op(self, name: str, *ins: int, types: tuple = (), attrs: dict | None = None,
           regions: list | None = None, line: int | None = None) -> list[int]:
        outs = [self.new() for _ in types]
        op: dict[str, Any] = {"op": name, "in": list(ins), "out": outs, "types": list(types)}
        if attrs:
            op["attrs"] = attrs
        if regions:
            op["regions"] = regions
        op["line"] = self.line if line is None else line
        self.stack[-1].append(op)
        return outs

    def v(self, opname: str, *ins: int, t: str, line: int | None = None, **attrs: Any) -> int:
        return self.op(opname, *ins, types=(t,), attrs=attrs or None, line=line)[0]

    def c(self, value: Any, t: str = "int32") -> int:
        return self.v("const", t=t, value=number_to_json(value))  # FORMAT.md: {"float": "-inf"} etc.

    def region(self, types: list[str], fn: Callable, term: str = "yield") -> dict:
        args = [self.new() for _ in types]
        self.stack.append([])
        ys = fn(*args)
        body = self.stack.pop()
        body.append({"op": term, "in": list(ys or [])})
        return {"args": args, "types": list(types), "body": body}

    def if_(self, cond: int, types: list[str], then: Callable, other: Callable | None = None) -> list[int]:
        r = [self.region([], then), self.region([], other or (lambda: []))]
        return self.op("if", cond, types=tuple(types), regions=r)

    def for_(self, lb: int, ub: int, step: int, inits: list[int], types: list[str], body: Callable,
             iv_type: str = "int32") -> list[int]:
        r = [self.region([iv_type, *types], body)]
        return self.op("for", lb, ub, step, *inits, types=tuple(types), regions=r)

    def while_(self, inits: list[int], types: list[str], before: Callable, after: Callable,
               result_types: list[str] | None = None) -> list[int]:
        rt = result_types or types
        r = [self.region(types, before, "condition"), self.region(rt, after)]
        return self.op("while", *inits, types=tuple(rt), regions=r)


def kernel(name: str, args: list[dict], body: Callable[[B], None], *, block: Any = (256, 1, 1),
           grid: Any = None, shared: list[dict] | None = None, file: str = "kern.py") -> tuple[dict, dict]:
    """(signature, IR) of a kernel whose body `body(b)` builds."""
    b = B()
    body(b)
    args = [dict(a) for a in args]
    off = 0
    for i, a in enumerate(args):
        a["buffer"] = i
        a["dims_offset"] = None
        if a["kind"] == "tensor" and not all(isinstance(s, int) for s in a["shape"]):
            a["dims_offset"], off = off, off + 2 * len(a["shape"])
    shared = shared or []
    tgm = sum(4 * _prod(s["shape"]) for s in shared)
    spec = {"name": name, "kernel_name": f"enigma_kernel_{name}", "file": file, "line": 1, "args": args,
            "dims_buffer": len(args) if off else None, "block": None if block is None else list(block),
            "grid": None if grid is None else list(grid), "grid_unit": "threadgroups",
            "threadgroup_memory": tgm, "vec_width": 0, "msl_version": "3.1", "source_hash": "0" * 64}
    ir = {"format": "enigma-ir", "version": 1, "name": name, "kernel_name": spec["kernel_name"],
          "file": file, "line": 1, "args": args, "shared": shared, "vec_width": 0, "body": b.stack[0]}
    return spec, ir


def _prod(xs: list) -> int:
    p = 1
    for x in xs:
        p *= x
    return p


def ceil_div(a: Any, b: Any) -> dict:
    return {"op": "ceil_div", "args": [a, b]}


def gid(b: B, dim: int = 0) -> int:
    """block_idx * block_dim + thread_idx along `dim`."""
    bi = b.v("block_idx", t="int32", dim=dim)
    bd = b.v("block_dim", t="int32", dim=dim)
    ti = b.v("thread_idx", t="int32", dim=dim)
    return b.v("add", b.v("mul", bi, bd, t="int32"), ti, t="int32")
