"""Constant folding. Pure scalar ops whose operands are all constants become `const` ops, computed by
the op table's own function (enigma_runtime/ops.py: integers wrap at their width, division truncates,
IEEE float32/float16 arithmetic, saturating float->int casts). Only ops the table marks foldable
(exactly rounded) fold: transcendental math (exp, sin, ...), sqrt and bfloat16 arithmetic are left to
the device, so folding never changes a result. Also: algebraic identities
(x+0, x-0, x*1, x/1, int x*0), `select` on a constant condition, `dim`/`stride` of static tensors, `if`
on a constant condition (the branch taken is inlined) and `for` loops that run zero times."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from enigma_runtime import ops
from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.passes.opbuilder import with_body


def wrap(n: int, d: DType) -> int:
    """`n` wrapped to the integer type `d` (two's complement): `DType.wrap`."""
    return int(d.wrap(int(n)))


def normalise(value: Any, d: DType) -> Any:
    """A constant's Python value as the type holds it (bool, wrapped int, or float rounded to the type)."""
    if d.kind == "b":
        return bool(value)
    if d.is_int:
        return d.wrap(int(value))
    return float(d.round(value))


def evaluate(name: str, args: list[Any], src: DType, dst: DType) -> Any:
    """The value of a pure scalar op on constant operands (the op table's own function, so folding
    computes exactly what the devices compute), or None when it must not be folded: ops the table does
    not mark foldable (transcendental math is only within a few ulp on the device) and bfloat16."""
    info = ops.OPS.get(name)
    if name == "select":
        src = dst  # the value operands' type (the condition is bool)
    if info is None or not info.foldable or info.fn is None or "bfloat16" in (src.name, dst.name):
        return None
    xs = [np.asarray(a, bool if name == "select" and i == 0 else src.value_np) for i, a in enumerate(args)]
    r = ops.apply(name, src, dst, *xs)
    return np.asarray(r).item()


class _Folder:
    def __init__(self, kernel: ir.Kernel):
        self.k = kernel
        self.consts: dict[int, Any] = {}  # value id -> constant value
        self.env: dict[int, ir.Value] = {}  # value id -> the value replacing it

    def block(self, block: ir.Block) -> ir.Block:
        out: list[ir.Op] = []
        for op in block.ops:
            self.op(op, out)
        return ir.Block(block.args, out)

    def const(self, op: ir.Op, value: Any, out: list[ir.Op]) -> None:
        r = op.result
        value = normalise(value, r.dtype)
        self.consts[r.id] = value
        out.append(ir.Op("const", [], [r], {"value": value}, [], op.line))

    def alias(self, op: ir.Op, value: ir.Value) -> bool:
        if value.type != op.result.type:
            return False
        self.env[op.result.id] = value
        return True

    def op(self, op: ir.Op, out: list[ir.Op]) -> None:
        operands = [self.env.get(v.id, v) for v in op.operands]
        c: list[Any] = [self.consts.get(v.id) for v in operands]
        known = all(x is not None for x in c)
        name = op.name
        if name == "const":
            self.consts[op.result.id] = op.attrs["value"]
        elif name in ("dim", "stride") and op.attrs["tensor"] in {a.name for a in self.k.args}:
            arg = self.k.arg(op.attrs["tensor"])
            if arg.is_static:
                shape = ir.static_strides(arg.shape) if name == "stride" else arg.shape  # type: ignore[arg-type]
                return self.const(op, shape[op.attrs["axis"]], out)
        elif name == "if" and c[0] is not None:
            taken = op.regions[0 if c[0] else 1]
            inner = self.block(taken)
            *body, term = inner.ops
            out.extend(body)
            for r, y in zip(op.results, term.operands):
                self.env[r.id] = y
            return
        elif name == "for" and all(isinstance(x, int) for x in c[:3]) and c[2] != 0 and not range(*c[:3]):
            for r, init in zip(op.results, operands[3:]):
                self.env[r.id] = init
            return
        elif name not in ir.NOT_PURE and op.results and all(v.type.lanes == 1 for v in operands) and \
                name not in ("param", "broadcast") and name not in ir.BUILTIN and operands:
            rt = op.result.dtype
            if known:
                value = evaluate(name, c, operands[-1].dtype if name == "select" else operands[0].dtype, rt)
                if value is not None:
                    return self.const(op, value, out)
            if self.identity(op, operands, c, out):
                return
        regions = [self.block(r) for r in op.regions]
        out.append(ir.Op(op.name, operands, op.results, op.attrs, regions, op.line))

    def identity(self, op: ir.Op, operands: list[ir.Value], c: list[Any], out: list[ir.Op]) -> bool:
        """Fold x+0, x-0, x*1, x/1, x|0, x^0, x<<0, x>>0, int x*0 and select on a constant condition
        (float x+0 is not folded: -0.0 + 0.0 is +0.0)."""
        name = op.name
        if name == "select":
            return c[0] is not None and self.alias(op, operands[1] if c[0] else operands[2])
        if len(operands) != 2 or op.result.dtype.kind == "b":
            return False
        (x, y), (cx, cy) = operands, c
        is_int = x.dtype.is_int
        if is_int and name in ("add", "or", "xor") and cx == 0:
            return self.alias(op, y)
        if (is_int and name in ("add", "or", "xor", "shl", "shr") or name == "sub") and cy == 0 \
                and math.copysign(1, cy) > 0:  # x - (-0.0) is x + 0.0, not x
            return self.alias(op, x)
        if name == "mul" and cx == 1:
            return self.alias(op, y)
        if name in ("mul", "div") and cy == 1:
            return self.alias(op, x)
        if is_int and name == "mul" and 0 in (cx, cy):
            self.const(op, 0, out)
            return True
        return False


def fold(kernel: ir.Kernel) -> ir.Kernel:
    return with_body(kernel, _Folder(kernel).block(kernel.body))
