"""Helpers shared by the passes and hand-built test kernels: `OpBuilder` makes ops (not to be confused
with the tracer's enigma.frontend.builder.Builder), cloning blocks with fresh values, substituting values."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from enigma_runtime.dtypes import DType, bool_

from enigma import ir


def as_type(t: ir.Type | DType) -> ir.Type:
    return t if isinstance(t, ir.Type) else ir.Type(t)


def result_type(name: str, operands: Iterable[ir.Value]) -> ir.Type:
    """The result type an op of the catalogue gets from its operands (for ops whose result type is
    implied: arithmetic, comparisons, math, select)."""
    ops = list(operands)
    if name in ir.COMPARE:
        return ir.Type(bool_, ops[0].type.lanes)
    if name == "select" or name.startswith("atomic_"):
        return ops[1].type
    return ops[0].type


class OpBuilder:
    """Appends ops to a list; `line` is stamped on every op made."""

    def __init__(self, line: int = 0):
        self.ops: list[ir.Op] = []
        self.line = line

    def op(self, name: str, operands: Iterable[ir.Value] = (), types: Iterable[ir.Type | DType] = (),
           attrs: dict[str, Any] | None = None, regions: Iterable[ir.Block] = (),
           line: int | None = None) -> ir.Op:
        op = ir.Op(name, list(operands), [ir.Value(as_type(t)) for t in types], dict(attrs or {}),
                   list(regions), self.line if line is None else line)
        self.ops.append(op)
        return op

    def val(self, op: str, /, *operands: ir.Value, type: ir.Type | DType | None = None,
            **attrs: Any) -> ir.Value:
        """A one-result op; its type is implied by the operands unless given."""
        t = as_type(type) if type is not None else result_type(op, operands)
        return self.op(op, operands, [t], attrs).result

    def const(self, value: Any, t: ir.Type | DType) -> ir.Value:
        return self.op("const", (), [t], {"value": value}).result


def region(args: list[ir.Value], build: Callable[[OpBuilder], None], line: int = 0) -> ir.Block:
    b = OpBuilder(line)
    build(b)
    return ir.Block(args, b.ops)


def clone_block(block: ir.Block, vmap: dict[int, ir.Value]) -> ir.Block:
    """A deep copy of `block` whose values are fresh (new ids); operands defined outside the block are
    looked up in `vmap` (value id -> replacement) and kept when absent. `vmap` gains old -> new."""
    args = []
    for a in block.args:
        vmap[a.id] = n = ir.Value(a.type)
        args.append(n)
    return ir.Block(args, [clone_op(op, vmap) for op in block.ops])


def clone_op(op: ir.Op, vmap: dict[int, ir.Value]) -> ir.Op:
    operands = [vmap.get(v.id, v) for v in op.operands]
    regions = [clone_block(r, vmap) for r in op.regions]
    results = []
    for r in op.results:
        vmap[r.id] = n = ir.Value(r.type)
        results.append(n)
    return ir.Op(op.name, operands, results, dict(op.attrs), regions, op.line)


def with_body(kernel: ir.Kernel, body: ir.Block, **changes: Any) -> ir.Kernel:
    """A new Kernel that shares everything with `kernel` but its body (and `changes`)."""
    return dataclasses.replace(kernel, body=body, args=list(kernel.args), shared=list(kernel.shared),
                               **changes)


def uses(block: ir.Block) -> dict[int, int]:
    """How many times each value id is used as an operand in `block` and the blocks nested in it."""
    out: dict[int, int] = {}
    for op in ir.walk(block):
        for v in op.operands:
            out[v.id] = out.get(v.id, 0) + 1
    return out
