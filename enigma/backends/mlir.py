"""IR -> Enigma-dialect MLIR text: a `module` holding one `func.func @enigma_kernel_<name>`.

Tensor arguments are memrefs (`memref<?xf32>`, static sizes static, shared arrays in memory space 3),
scalars their element type (integers signless: `i32` for int32 and uint32; the op picks the signedness,
e.g. `arith.minui`). Every op can print in generic form, e.g. `%v3 = "enigma.thread_idx"() {dim = 0 : i32}
: () -> i32`, so a new op of the op table never breaks the printer; standard `arith`/`math`/`scf`/
`vector` ops are used where their semantics are exactly the op table's (MLIR_FLOAT, MLIR_INT, CMP).
Every op carries `loc("file":line:0)` of the kernel author's line. The text parses and verifies with
`mlir-opt --allow-unregistered-dialect` (MLIR 19), and what mlir-opt prints parses again.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from enigma_runtime.dtypes import bool_, float32, int8, int16, int32

from enigma import ir

# Every op prints in generic form, `"enigma.<name>"(operands) {attrs} : (types) -> type`, unless one of
# these optional tables spells it with a standard op whose semantics are exactly the op table's
# (enigma_runtime/ops.py): integer division and remainder (guarded), shifts (amount modulo the width),
# float min/max (signed-zero rule) and float->int casts (saturating) differ from arith's and stay generic.
MLIR_FLOAT = {"add": "arith.addf", "sub": "arith.subf", "mul": "arith.mulf", "div": "arith.divf",
              "mod": "arith.remf", "neg": "arith.negf", "abs": "math.absf", "exp": "math.exp",
              "exp2": "math.exp2", "log": "math.log", "log2": "math.log2", "sqrt": "math.sqrt",
              "rsqrt": "math.rsqrt", "sin": "math.sin", "cos": "math.cos", "tanh": "math.tanh",
              "floor": "math.floor", "ceil": "math.ceil", "fma": "math.fma"}
# int op -> (signed spelling, unsigned and bool spelling)
MLIR_INT = {"add": ("arith.addi",) * 2, "sub": ("arith.subi",) * 2, "mul": ("arith.muli",) * 2,
            "min": ("arith.minsi", "arith.minui"), "max": ("arith.maxsi", "arith.maxui"),
            "and": ("arith.andi",) * 2, "or": ("arith.ori",) * 2, "xor": ("arith.xori",) * 2,
            "abs": ("math.absi", None)}
CMP = {"lt": ("olt", "slt", "ult"), "le": ("ole", "sle", "ule"), "gt": ("ogt", "sgt", "ugt"),
       "ge": ("oge", "sge", "uge"), "eq": ("oeq", "eq", "eq"), "ne": ("une", "ne", "ne")}
INT_OF_BITS = {1: bool_, 8: int8, 16: int16, 32: int32}
_FLOAT_BITS = {"float32": ("<f4", "<u4", 8), "float16": ("<f2", "<u2", 4)}


def elem(dtype: Any) -> str:
    """MLIR element type: f32 f16 bf16, signless iN, i1 for bool."""
    return dtype.short if dtype.is_float else f"i{dtype.bits}"


def mtype(t: ir.Type) -> str:
    if t.matrix:  # an opaque type of the enigma dialect (mlir-opt --allow-unregistered-dialect)
        return f"!enigma.simdgroup_matrix<{t.matrix}x{t.matrix}x{elem(t.dtype)}>"
    return elem(t.dtype) if t.lanes == 1 else f"vector<{t.lanes}x{elem(t.dtype)}>"


def memref(shape: tuple, dtype: Any, space: int | None = None) -> str:
    dims = "x".join(str(s) if isinstance(s, int) else "?" for s in shape)
    return f"memref<{dims}x{elem(dtype)}{'' if space is None else f', {space}'}>"


def round_to(x: float, dtype: Any) -> float:
    """`x` rounded to nearest-even in `dtype` (float32, float16, bfloat16: `DType.round`; others
    unchanged)."""
    if getattr(dtype, "is_float", False):
        return float(dtype.round(x))
    return x


def float_literal(x: float, dtype: Any) -> str:
    """An exact MLIR float literal of `x` rounded to `dtype` (hex bit pattern for inf/nan, else the
    shortest decimal with a dot)."""
    x = round_to(x, dtype)
    if math.isfinite(x):
        short = {"float32": np.float32, "float16": np.float16}.get(dtype.name)
        s = str(short(x)) if short is not None else repr(float(x))  # shortest digits that round-trip
        return s if "." in s else s.replace("e", ".0e") if "e" in s else s + ".0"
    if dtype.name == "bfloat16":
        bits = int(np.array(x, "<f4").view("<u4")) >> 16
        return f"0x{bits:04X}"
    f, u, width = _FLOAT_BITS[dtype.name]
    return f"0x{int(np.array(x, f).view(u)):0{width}X}"


def int_literal(n: int, bits: int) -> int:
    """`n` wrapped to a signless `bits`-bit integer, read as signed (MLIR's literal form)."""
    return int(INT_OF_BITS[bits].wrap(int(n)))


def mlir_string(s: str) -> str:
    """A string literal for MLIR: `"` and `\\` escaped, control bytes as `\\XX` hex, UTF-8 kept."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def attr(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v} : i32" if -(1 << 31) <= v < 1 << 31 else f"{v} : i64"
    if isinstance(v, float):
        return f"{float_literal(v, _F64)} : f64"
    if isinstance(v, str):
        return mlir_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(int(x)) if isinstance(x, int) and not isinstance(x, bool) else attr(x)
                               for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r} in MLIR")


class _F64:
    name = "float64"


_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.]*$")


class _Printer:
    def __init__(self, kernel: ir.Kernel):
        self.k = kernel
        self.out: list[str] = []
        self.names: dict[int, str] = {}  # value id -> %name (aliases: params, same-width casts)
        self.consts: dict[int, Any] = {}
        self.tmp = 0
        self.tensors: dict[str, tuple[str, str]] = {}  # tensor/shared name -> (%ssa, memref type)
        self.file = mlir_string(kernel.file or "<unknown>")

    # helpers ---------------------------------------------------------------------------------------
    def v(self, value: ir.Value) -> str:
        return self.names.get(value.id, f"%v{value.id}")

    def fresh(self) -> str:
        self.tmp += 1
        return f"%tmp.{self.tmp}"

    def loc(self, op: ir.Op | None) -> str:
        return f" loc({self.file}:{op.line}:0)" if op is not None and op.line else ""

    def emit(self, depth: int, text: str, op: ir.Op | None = None) -> None:
        self.out.append("  " * depth + text + self.loc(op))

    def lhs(self, op: ir.Op) -> str:
        return ", ".join(self.v(r) for r in op.results) + " = " if op.results else ""

    def generic(self, op: ir.Op, depth: int, name: str | None = None, operands: list[str] | None = None,
                types: list[str] | None = None) -> None:
        operands = [self.v(x) for x in op.operands] if operands is None else operands
        types = [mtype(x.type) for x in op.operands] if types is None else types
        attrs = {k: v for k, v in op.attrs.items()}
        a = " {" + ", ".join(f"{k} = {attr(v)}" for k, v in attrs.items()) + "}" if attrs else ""
        res = ", ".join(mtype(r.type) for r in op.results)
        res = res if len(op.results) == 1 else f"({res})"
        self.emit(depth, f'{self.lhs(op)}"enigma.{name or op.name}"({", ".join(operands)}){a} : '
                         f'({", ".join(types)}) -> {res}', op)

    def splat(self, value: Any, t: ir.Type, depth: int, op: ir.Op, name: str | None = None) -> str:
        """A constant of type `t` (scalar or vector splat) named `name` (default: a fresh name)."""
        name = name or self.fresh()
        d = t.dtype
        lit = ("true" if value else "false") if d.kind == "b" else \
            float_literal(float(value), d) if d.is_float else str(int_literal(int(value), d.bits))
        if t.lanes > 1:
            self.emit(depth, f"{name} = arith.constant dense<{lit}> : {mtype(t)}", op)
        elif t.dtype.kind == "b":
            self.emit(depth, f"{name} = arith.constant {lit}", op)
        else:
            self.emit(depth, f"{name} = arith.constant {lit} : {mtype(t)}", op)
        return name

    def tensor(self, op: ir.Op) -> tuple[str, str]:
        t = op.attrs["tensor"]
        if t not in self.tensors:
            raise ValueError(f"{self.k.file}:{op.line}: {op.name} of unknown tensor {t!r}")
        return self.tensors[t]

    # ops -------------------------------------------------------------------------------------------
    def op(self, op: ir.Op, depth: int) -> None:
        name = op.name
        x = [self.v(o) for o in op.operands]
        rt: Any = op.results[0].type if op.results else None  # None: ops without results
        if name == "const":
            v = op.attrs["value"]
            self.consts[op.result.id] = v
            self.splat(v, rt, depth, op, self.v(op.result))
        elif name == "param":
            self.names[op.result.id] = self.tensors[op.attrs["name"]][0]
        elif name in ("dim", "stride"):
            ssa, ty = self.tensor(op)
            self.generic(op, depth, operands=[ssa], types=[ty])
        elif name in ir.BUILTIN or name == "barrier" or name in ir.SIMD:
            self.generic(op, depth)
        elif name in ir.VECTOR or name in ir.SIMD_MATRIX:
            self.fast(op, depth, x, rt)
        elif name in CMP:
            d = op.operands[0].dtype
            which = CMP[name][0 if d.is_float else 2 if d.kind in "ub" else 1]
            kind, ot = "cmpf" if d.is_float else "cmpi", mtype(op.operands[0].type)
            self.emit(depth, f"{self.lhs(op)}arith.{kind} {which}, {x[0]}, {x[1]} : {ot}", op)
        elif (spelled := self.spelling(op)) is not None:
            self.emit(depth, f"{self.lhs(op)}{spelled} {', '.join(x)} : {mtype(rt)}", op)
        elif name == "neg" and not rt.dtype.is_float:
            zero = self.splat(0, rt, depth, op)
            self.emit(depth, f"{self.lhs(op)}arith.subi {zero}, {x[0]} : {mtype(rt)}", op)
        elif name == "not":
            ones = self.splat(True if rt.dtype.kind == "b" else -1, rt, depth, op)
            self.emit(depth, f"{self.lhs(op)}arith.xori {x[0]}, {ones} : {mtype(rt)}", op)
        elif name == "fma" and not rt.dtype.is_float:
            t = self.fresh()
            self.emit(depth, f"{t} = arith.muli {x[0]}, {x[1]} : {mtype(rt)}", op)
            self.emit(depth, f"{self.lhs(op)}arith.addi {t}, {x[2]} : {mtype(rt)}", op)
        elif name == "select":
            ct = op.operands[0].type
            types = mtype(rt) if ct.lanes == 1 else f"{mtype(ct)}, {mtype(rt)}"
            self.emit(depth, f"{self.lhs(op)}arith.select {x[0]}, {x[1]}, {x[2]} : {types}", op)
        elif name == "cast":
            self.cast(op, depth)
        elif name == "broadcast":
            self.emit(depth, f"{self.lhs(op)}vector.broadcast {x[0]} : {mtype(op.operands[0].type)} to "
                             f"{mtype(rt)}", op)
        elif name in ir.MEMORY:
            ssa, ty = self.tensor(op)
            self.generic(op, depth, operands=[ssa] + x, types=[ty] + [mtype(o.type) for o in op.operands])
        elif name == "if":
            self.if_(op, depth)
        elif name == "for":
            self.for_(op, depth)
        elif name == "while":
            self.while_(op, depth)
        elif not op.regions:  # every other op, and any op added to the op table: the generic form
            self.generic(op, depth)
        else:
            raise ValueError(f"{self.k.file}:{op.line}: the MLIR printer has no form for op {name!r} "
                             "with regions")

    def spelling(self, op: ir.Op) -> str | None:
        """The arith/math op spelling `op` (same operand and result types), or None."""
        d = op.operands[0].dtype
        if d.is_float:
            return MLIR_FLOAT.get(op.name)
        pair = MLIR_INT.get(op.name)
        return None if pair is None else pair[0 if d.kind == "i" else 1]

    # fast-kernel ops (issue 12) ----------------------------------------------------------------------
    def fast(self, op: ir.Op, depth: int, x: list[str], rt: Any) -> None:
        """vector.extract / vector.from_elements / arith.bitcast where MLIR has them; simdgroup matrix
        ops (and bitcasts that change the lane count) as generic `enigma.*` ops on the memref."""
        name, lhs = op.name, self.lhs(op)
        src = op.operands[0].type if op.operands else None
        if name == "extract":
            self.emit(depth, f"{lhs}vector.extract {x[0]}[{op.attrs['lane']}] : {mtype(rt)} from "
                             f"{mtype(src)}", op)  # type: ignore[arg-type]
        elif name == "pack":
            self.emit(depth, f"{lhs}vector.from_elements {', '.join(x)} : {mtype(rt)}", op)
        elif name == "bitcast" and src is not None and src.lanes == rt.lanes:
            self.emit(depth, f"{lhs}arith.bitcast {x[0]} : {mtype(src)} to {mtype(rt)}", op)
        elif name in ("simd_load", "simd_store"):
            ssa, ty = self.tensor(op)
            self.generic(op, depth, operands=[ssa] + x, types=[ty] + [mtype(o.type) for o in op.operands])
        else:
            self.generic(op, depth)

    def cast(self, op: ir.Op, depth: int) -> None:
        src, dst = op.operands[0].type, op.result.type
        s, d, x = src.dtype, dst.dtype, self.v(op.operands[0])
        st, dt = mtype(src), mtype(dst)
        lhs = self.lhs(op)
        if st == dt:  # same bits (int32 <-> uint32, or no-op): the value itself
            self.names[op.result.id] = x
        elif d.kind == "b":
            zero = self.splat(0, src, depth, op)
            cmp = f"arith.cmpf une, {x}, {zero}" if s.is_float else f"arith.cmpi ne, {x}, {zero}"
            self.emit(depth, f"{lhs}{cmp} : {st}", op)
        elif s.is_float and d.is_float:
            if s.bits == d.bits:  # f16 <-> bf16 through f32
                mid = self.fresh()
                f32 = mtype(ir.Type(float32, src.lanes))
                self.emit(depth, f"{mid} = arith.extf {x} : {st} to {f32}", op)
                self.emit(depth, f"{lhs}arith.truncf {mid} : {f32} to {dt}", op)
            else:
                how = "extf" if d.bits > s.bits else "truncf"
                self.emit(depth, f"{lhs}arith.{how} {x} : {st} to {dt}", op)
        elif s.is_float:  # saturating, NaN -> 0 (arith.fptosi would be poison out of range)
            self.generic(op, depth)
        elif d.is_float:
            self.emit(depth, f"{lhs}arith.{'sitofp' if s.kind == 'i' else 'uitofp'} {x} : {st} to {dt}", op)
        else:
            how = "trunci" if d.bits < s.bits else "extsi" if s.kind == "i" else "extui"
            self.emit(depth, f"{lhs}arith.{how} {x} : {st} to {dt}", op)

    # control flow ----------------------------------------------------------------------------------
    def block(self, b: ir.Block, depth: int) -> None:
        for op in b.ops:
            if op.name in ("yield", "condition"):
                self.terminator(op, depth)
            else:
                self.op(op, depth)

    def terminator(self, op: ir.Op, depth: int, extra: Sequence[tuple[str, str]] = ()) -> None:
        vals = [(self.v(o), mtype(o.type)) for o in op.operands]
        if op.name == "condition":
            cond, vals = vals[0][0], vals[1:]
            head = f"scf.condition({cond})"
        else:
            head = "scf.yield"
        vals = list(extra) + vals
        tail = f" {', '.join(v for v, _ in vals)} : {', '.join(t for _, t in vals)}" if vals else ""
        self.emit(depth, head + tail, op)

    def bb0(self, args: list[ir.Value]) -> str:
        return f"^bb0({', '.join(f'{self.v(a)}: {mtype(a.type)}' for a in args)}):"

    def result_types(self, op: ir.Op) -> str:
        return ", ".join(mtype(r.type) for r in op.results)

    def if_(self, op: ir.Op, depth: int) -> None:
        ret = f" -> ({self.result_types(op)})" if op.results else ""
        self.out.append("  " * depth + f"{self.lhs(op)}scf.if {self.v(op.operands[0])}{ret} {{")
        self.block(op.regions[0], depth + 1)
        self.out.append("  " * depth + "} else {")
        self.block(op.regions[1] if len(op.regions) > 1 else ir.Block([], [ir.Op("yield")]), depth + 1)
        self.emit(depth, "}", op)

    def for_(self, op: ir.Op, depth: int) -> None:
        lb, ub, step, *init = op.operands
        body = op.regions[0]
        iv, carried = body.args[0], body.args[1:]
        st = self.consts.get(step.id)
        it = mtype(iv.type)
        if isinstance(st, int) and not isinstance(st, bool) and st > 0:
            iters = ", ".join(f"{self.v(c)} = {self.v(i)}" for c, i in zip(carried, init))
            iters = f" iter_args({iters}) -> ({self.result_types(op)})" if init else ""
            head = f"scf.for {self.v(iv)} = {self.v(lb)} to {self.v(ub)} step {self.v(step)}"
            self.out.append("  " * depth + f"{self.lhs(op)}{head}{iters} : {it} {{")
            self.block(body, depth + 1)
            self.emit(depth, "}", op)
            return
        # a step that is not a positive constant: scf.for cannot express it; a while loop can
        signed = "u" if iv.dtype.kind == "u" else "s"
        ws = [self.fresh() for _ in range(1 + len(init))]
        types = ", ".join([it] + [mtype(c.type) for c in carried])
        inits = ", ".join(f"{w} = {self.v(i)}" for w, i in zip(ws, [lb, *init]))
        lhs = ", ".join([self.fresh()] + [self.v(r) for r in op.results]) + " = "
        self.out.append("  " * depth + f"{lhs}scf.while ({inits}) : ({types}) -> ({types}) {{")
        d = depth + 1
        lt, gt, cond = self.fresh(), self.fresh(), self.fresh()
        self.emit(d, f"{lt} = arith.cmpi {signed}lt, {ws[0]}, {self.v(ub)} : {it}", op)
        self.emit(d, f"{gt} = arith.cmpi {signed}gt, {ws[0]}, {self.v(ub)} : {it}", op)
        if isinstance(st, int):
            cond = gt if st < 0 else lt
        else:
            zero, pos = self.splat(0, iv.type, d, op), self.fresh()
            self.emit(d, f"{pos} = arith.cmpi sgt, {self.v(step)}, {zero} : {it}", op)
            self.emit(d, f"{cond} = arith.select {pos}, {lt}, {gt} : i1", op)
        self.emit(d, f"scf.condition({cond}) {', '.join(ws)} : {types}", op)
        self.out.append("  " * depth + "} do {")
        self.out.append("  " * depth + self.bb0(body.args))
        *ops, term = body.ops
        self.block(ir.Block([], ops), d)
        nxt = self.fresh()
        self.emit(d, f"{nxt} = arith.addi {self.v(iv)}, {self.v(step)} : {it}", op)
        self.terminator(term, d, [(nxt, it)])
        self.emit(depth, "}", op)

    def while_(self, op: ir.Op, depth: int) -> None:
        before, after = op.regions
        types = ", ".join(mtype(a.type) for a in before.args)
        inits = ", ".join(f"{self.v(a)} = {self.v(i)}" for a, i in zip(before.args, op.operands))
        self.out.append("  " * depth + f"{self.lhs(op)}scf.while ({inits}) : ({types}) -> "
                                       f"({self.result_types(op)}) {{")
        self.block(before, depth + 1)
        self.out.append("  " * depth + "} do {")
        self.out.append("  " * depth + self.bb0(after.args))
        self.block(after, depth + 1)
        self.emit(depth, "}", op)

    # the module ------------------------------------------------------------------------------------
    def module(self) -> str:
        k = self.k
        taken: set[str] = set()
        params: list[str] = []
        for a in k.args:
            if a.kind == "none":  # an optional tensor left out of this variant
                continue
            ssa = f"%{a.name}" if _ID.match(a.name) and not re.match(r"^(v\d+|tmp\..*)$", a.name) else \
                f"%arg.{len(params)}"
            while ssa in taken:
                ssa += "_"
            taken.add(ssa)
            ty = memref(a.shape, a.dtype) if a.kind == "tensor" else elem(a.dtype)
            self.tensors[a.name] = (ssa, ty)
            params.append(f"{ssa}: {ty}")
        for s in k.shared:
            self.tensors[s.name] = (f"%shared.{s.name}", memref(s.shape, s.dtype, 3))
        attrs = f"attributes {{enigma.kernel = {mlir_string(k.name)}, " \
                f"enigma.vec_width = {k.vec_width} : i32}}"
        self.out.append("module {")
        self.out.append(f"  func.func @{k.kernel_name}({', '.join(params)}) {attrs} {{")
        for s in k.shared:
            ssa, ty = self.tensors[s.name]
            self.emit(2, f'{ssa} = "enigma.shared_alloc"() {{name = {mlir_string(s.name)}, '
                         f'shape = {attr(list(s.shape))}}} : () -> {ty}')
        self.block(k.body, 2)
        self.out.append("    return" + (f" loc({self.file}:{k.line}:0)" if k.line else ""))
        self.out.append("  }")
        self.out.append("}")
        return "\n".join(self.out) + "\n"


def emit(kernel: ir.Kernel) -> str:
    """The kernel as an MLIR module (generic-form `enigma.*` ops beside arith/math/scf/vector)."""
    return _Printer(kernel).module()
