"""IR -> Metal Shading Language source (MSL 3.1 by default), one `kernel void` per Kernel.

Conventions (docs/abi.md): bindings come from `abi.bindings` (FORMAT.md section 5); every SSA value
is a local `vN` (N = its id) assigned once, except the results of if/for/while, declared before the
construct and assigned by its yields; constants, scalar parameters, sizes and builtins are inlined as
atoms. Every statement ends with `// line N` (the kernel author's line). The output stays in a plain
subset (no lambdas or direct-initialisation; template arguments only in Metal's `as_type<T>(x)` and
`make_filled_simdgroup_matrix<T, 8, 8>(v)`) so a clang-based compatibility header compiles it.

Elementwise ops are printed from spelling tables keyed by the op table's names (MSL_FLOAT, MSL_INT,
MSL_BOOL); methods remain only for structure (constants, builtins, casts, memory, atomics, barriers,
simd ops, control flow). Every printed op is free of C++ undefined behaviour and computes the op
table's result (docs/abi.md): small `enigma_*` helper functions, printed before the kernel when used,
hold the guarded cases (division, float->int conversion, signed-zero min/max, abs).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from enigma_runtime import ops
from enigma_runtime.dtypes import BY_NAME, DType, float32

from enigma import ir, options
from enigma.backends import abi
from enigma.errors import EnigmaError
from enigma.version import __version__

INDENT = "    "
BUILTINS = {  # op -> (parameter name, MSL type, attribute)
    "thread_idx": ("enigma_tid", "uint3", "thread_position_in_threadgroup"),
    "block_idx": ("enigma_bid", "uint3", "threadgroup_position_in_grid"),
    "block_dim": ("enigma_bdim", "uint3", "threads_per_threadgroup"),
    "grid_dim": ("enigma_gdim", "uint3", "threadgroups_per_grid"),
    "simd_lane_id": ("enigma_simd_lane", "uint", "thread_index_in_simdgroup"),
    "simd_group_id": ("enigma_simd_group", "uint", "simdgroup_index_in_threadgroup"),
}
# Elementwise ops: op -> MSL expression. "{0}" "{1}" "{2}" are the operands, "{T}" the result type
# ("int", "int4"), "{U}" the 32-bit unsigned type of the same lanes ("uint", "uint4"), "{W}" the
# operand width in bits minus 1. A spelling calling an `enigma_*` helper (HELPERS, printed before the
# kernel when used) is applied lane by lane to vectors. Every spelling computes the op table's result
# (enigma_runtime/ops.py, docs/abi.md) for every input: no C++ undefined behaviour.
MSL_FLOAT = {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}", "mod": "fmod({0}, {1})",
    "min": "enigma_min({0}, {1})", "max": "enigma_max({0}, {1})",
    "lt": "{0} < {1}", "le": "{0} <= {1}", "gt": "{0} > {1}", "ge": "{0} >= {1}", "eq": "{0} == {1}",
    "ne": "{0} != {1}",
    "neg": "-{0}", "abs": "abs({0})", "exp": "exp({0})", "exp2": "exp2({0})", "log": "log({0})",
    "log2": "log2({0})", "sqrt": "sqrt({0})", "rsqrt": "rsqrt({0})", "sin": "sin({0})", "cos": "cos({0})",
    "tanh": "tanh({0})", "floor": "floor({0})", "ceil": "ceil({0})", "pow": "pow({0}, {1})",
    "sinh": "sinh({0})", "cosh": "cosh({0})", "asin": "asin({0})", "acos": "acos({0})", "atan": "atan({0})",
    "atan2": "atan2({0}, {1})", "erf": "enigma_erf({0})",
    "fma": "fma({0}, {1}, {2})",
}
MSL_INT = {  # signed and unsigned: wrap-around through 32-bit unsigned arithmetic, guarded division
    "add": "{T}({U}({0}) + {U}({1}))", "sub": "{T}({U}({0}) - {U}({1}))", "mul": "{T}({U}({0}) * {U}({1}))",
    "div": "enigma_div({0}, {1})", "mod": "enigma_rem({0}, {1})", "min": "min({0}, {1})",
    "max": "max({0}, {1})", "and": "{0} & {1}", "or": "{0} | {1}", "xor": "{0} ^ {1}",
    "shl": "{T}({U}({0}) << ({U}({1}) & {W}u))", "shr": "{T}({0} >> ({U}({1}) & {W}u))",
    "lt": "{0} < {1}", "le": "{0} <= {1}", "gt": "{0} > {1}", "ge": "{0} >= {1}", "eq": "{0} == {1}",
    "ne": "{0} != {1}",
    "neg": "{T}(0u - {U}({0}))", "not": "{T}(~{0})", "abs": "enigma_abs({0})",
    "fma": "{T}({U}({0}) * {U}({1}) + {U}({2}))",
}
MSL_BOOL = {  # bool as a 1-bit integer: + is or, - is xor, * is and, shifts by (b mod 1) == 0 keep a
    "add": "{0} || {1}", "sub": "{0} != {1}", "mul": "{0} && {1}", "and": "{0} && {1}", "or": "{0} || {1}",
    "xor": "{0} != {1}", "shl": "{0}", "shr": "{0}", "not": "!{0}", "lt": "!{0} && {1}", "le": "!{0} || {1}",
    "gt": "{0} && !{1}", "ge": "{0} || !{1}", "eq": "{0} == {1}", "ne": "{0} != {1}"}
MSL_BOOL_VECTOR = {  # boolN: lane-wise logic only (Metal has no ordering of bool vectors)
    "add": "{0} | {1}", "sub": "{0} ^ {1}", "mul": "{0} & {1}", "and": "{0} & {1}", "or": "{0} | {1}",
    "xor": "{0} ^ {1}", "shl": "{0}", "shr": "{0}", "not": "!{0}", "lt": "!{0} & {1}", "le": "!{0} | {1}",
    "gt": "{0} & !{1}", "ge": "{0} | !{1}", "eq": "!({0} ^ {1})", "ne": "{0} ^ {1}"}
FLOAT32_HELPERS = frozenset(("erf",))  # helpers defined on float only: float16 and bfloat convert
NATIVE_BFLOAT = frozenset(("add", "sub", "mul", "div", "neg", "lt", "le", "gt", "ge", "eq", "ne"))
# ops printed by a method (structure: constants, builtins, memory, atomics, barriers, simd, control flow)
STRUCTURE = frozenset(("const", "param", "dim", "stride", "select", "cast", "broadcast", "load", "store",
                       "vload", "vstore", "atomic_add", "atomic_max", "atomic_min", "barrier", "simd_sum",
                       "simd_max", "simd_min", "simd_shuffle_down", "simd_broadcast", "if", "for", "while",
                       "yield", "condition") + tuple(BUILTINS) + ir.VECTOR + ir.SIMD_MATRIX)  # + fast()
# MSL versions the emitter can target, with the macOS release that introduced each: enigma.options
# holds the one table (CompileOptions offers exactly these; xcrun spells them from it)
MSL_VERSIONS = {v.version: str(v.macos[0]) for v in options.MSL_VERSIONS.values()}
BFLOAT_MIN_VERSION = options.FEATURES["bfloat"][0]
ATOMIC = {"int32": "atomic_int", "uint32": "atomic_uint", "float32": "atomic_float"}
# names an argument or shared array may not take in MSL (keywords, types, functions we call, OpenCL
# keywords the Linux compatibility header maps); such names get a trailing underscore
RESERVED = frozenset("""
    kernel device constant threadgroup thread vertex fragment using namespace metal include return if else
    for while do break continue switch case default struct class union enum typedef template typename
    const volatile static extern inline auto register signed unsigned void true false sizeof this new
    delete operator public private protected virtual friend goto main local global private read_write
    read_only write_only half float double int uint short ushort char uchar bool bfloat long ulong size_t
    ptrdiff_t atomic_int atomic_uint atomic_float memory_order mem_flags select fma fmod fmin fmax min
    max abs exp exp2 log log2 sqrt rsqrt sin cos tanh floor ceil clamp signbit simd_sum simd_max simd_min
    simd_shuffle_down simd_broadcast threadgroup_barrier atomic_fetch_add_explicit
    atomic_fetch_max_explicit atomic_fetch_min_explicit memory_order_relaxed INFINITY NAN
""".split()) | frozenset(re.findall(r"([A-Za-z_]\w*)\(", " ".join(
    list(MSL_FLOAT.values()) + list(MSL_INT.values()))))  # every function a spelling calls


def msl_type(t: ir.Type) -> str:
    if t.matrix:
        return f"simdgroup_{t.dtype.msl}{t.matrix}x{t.matrix}"
    return t.dtype.msl if t.lanes == 1 else f"{t.dtype.msl}{t.lanes}"


def literal(value: Any, t: ir.Type) -> str:
    """An MSL literal of scalar type `t` that holds exactly `value` (rounded to the type)."""
    d = t.dtype
    if t.lanes != 1:
        return f"{msl_type(t)}({literal(value, ir.Type(d))})"
    if d.kind == "b":
        return "true" if value else "false"
    if d.kind == "f":
        x = float(d.round(value) if d.name == "float16" else float32.round(value))  # past the range: inf
        if math.isnan(x) or math.isinf(x):
            s = "NAN" if math.isnan(x) else "INFINITY" if x > 0 else "(-INFINITY)"
            return s if d.name == "float32" else f"{d.msl}({s})"
        s = str(np.float16(x) if d.name == "float16" else np.float32(x))  # shortest exact digits
        if not any(c in s for c in ".e"):
            s += ".0"
        s += "h" if d.name == "float16" else "f"
        s = f"({s})" if s.startswith("-") else s
        return f"bfloat({s})" if d.name == "bfloat16" else s
    n = int(d.wrap(int(value)))  # wrap to the type's width
    if d.name == "int32":
        return "(-2147483647 - 1)" if n == -(1 << 31) else f"({n})" if n < 0 else str(n)
    if d.name == "uint32":
        return f"{n}u"
    return f"{d.msl}({n})"


def _int_literal(n: int, d: DType) -> str:
    return literal(n, ir.Type(d))


def helper(name: str, d: DType) -> str:
    """The MSL source of helper `name` for the scalar type `d` (the op table's semantics, UB-free)."""
    t = d.msl
    if name in ("enigma_div", "enigma_rem"):
        bad = f"b == {_int_literal(0, d)}"
        if d.kind == "i":
            bad += f" || (a == {_int_literal(d.min, d)} && b == {_int_literal(-1, d)})"
        res = "a" if name == "enigma_div" else _int_literal(0, d)
        op = "/" if name == "enigma_div" else "%"
        return f"inline {t} {name}({t} a, {t} b) {{ return {bad} ? {res} : {t}(a {op} b); }}"
    if name == "enigma_abs":  # abs(MIN) = MIN, negated in unsigned arithmetic
        body = f"a < {_int_literal(0, d)} ? {t}(0u - uint(a)) : a" if d.kind == "i" else "a"
        return f"inline {t} enigma_abs({t} a) {{ return {body}; }}"
    if name in ("enigma_min", "enigma_max"):  # equal operands: only the zeros' signs differ; -0 < +0
        pick = "signbit(a) ? a : b" if name == "enigma_min" else "signbit(a) ? b : a"
        fn = "fmin" if name == "enigma_min" else "fmax"
        return f"inline {t} {name}({t} a, {t} b) {{ return a == b ? ({pick}) : {fn}(a, b); }}"
    if name in ("enigma_simd_min", "enigma_simd_max"):  # which zero a zero result is: -0 < +0
        red = name[len("enigma_"):]
        has = "signbit(x)" if red == "simd_min" else "!signbit(x)"
        z, other = ("-0.0f", "0.0f") if red == "simd_min" else ("0.0f", "-0.0f")
        return (f"inline {t} {name}({t} x) {{ {t} r = {red}(x); return r == {t}(0.0f) ? "
                f"(simd_any(x == {t}(0.0f) && {has}) ? {t}({z}) : {t}({other})) : r; }}")
    if name == "enigma_erf":  # the op table's erf (enigma_runtime.ops.ERF_SMALL), step by step
        f = lambda c: f"{np.float32(c)}f"  # noqa: E731  (shortest digits of the float32 constant)
        small = "".join(f"p = fma(p, s, {f(c)}); " for c in ops.ERF_SMALL[-2::-1])
        big = "".join(f"q = fma(q, t, {f(c)}); " for c in ops.ERF_BIG[-2::-1])
        return (f"inline float enigma_erf(float x) {{ float z = fabs(x); float s = x * x; "
                f"float p = {f(ops.ERF_SMALL[-1])}; {small}float t = 1.0f / fma(0.5f, z, 1.0f); "
                f"float q = {f(ops.ERF_BIG[-1])}; {big}"
                f"float big = copysign(fma(-t, exp(fma(-z, z, q)), 1.0f), x); "
                f"return z < 0.5f ? x * p : big; }}")
    if name.startswith("enigma_cvt_"):  # float -> int: truncate, saturate, NaN -> 0
        lo, hi = float(d.min), float(d.max + 1)
        lo_s = f"{lo:.1f}f"
        hi_s = f"{hi:.1f}f"
        return (f"inline {t} {name}(float x) {{ return x != x ? {_int_literal(0, d)} : x <= {lo_s} ? "
                f"{_int_literal(d.min, d)} : x >= {hi_s} ? {_int_literal(d.max, d)} : {t}(x); }}")
    raise ValueError(f"no MSL helper {name!r}")


def c_names(kernel: ir.Kernel) -> dict[str, str]:
    """MSL identifier of every argument and shared array (the Python name unless it is reserved)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in [a.name for a in kernel.args] + [s.name for s in kernel.shared]:
        c = name
        while c in RESERVED or c in taken or c.startswith("enigma_") or (c[:1] == "v" and c[1:].isdigit()):
            c += "_"
        out[name] = c
        taken.add(c)
    return out


class _Emitter:
    def __init__(self, kernel: ir.Kernel):
        self.k = kernel
        self.binds, self.dims_buffer = abi.bindings(kernel)
        self.names = c_names(kernel)
        self.bind = {b.arg.name: b for b in self.binds}
        self.access = {b.arg.name: b.access for b in self.binds}
        self.shared = {s.name: s for s in kernel.shared}
        self.atoms: dict[int, str] = {}  # value id -> inlined expression
        self.builtins: set[str] = set()
        self.version = "3.1"
        self.helpers: dict[tuple[str, str], DType] = {}  # (helper, dtype name) -> dtype, in first-use order
        self.consts: dict[int, Any] = {}  # value id -> constant value
        self.out: list[str] = []

    # values ----------------------------------------------------------------------------------------
    def v(self, value: ir.Value) -> str:
        return self.atoms.get(value.id, f"v{value.id}")

    def line(self, depth: int, text: str, op: ir.Op | None = None) -> None:
        loc = f"  // line {op.line}" if op is not None and op.line else ""
        self.out.append(f"{INDENT * depth}{text}{loc}")

    def define(self, depth: int, op: ir.Op, expr: str) -> None:
        r = op.result
        self.line(depth, f"{msl_type(r.type)} {self.v(r)} = {expr};", op)

    def space(self, tensor: str) -> str:
        return "threadgroup" if tensor in self.shared else "device"

    def tensor(self, op: ir.Op) -> str:
        t = op.attrs["tensor"]
        if t not in self.names:
            raise ValueError(f"{self.k.file}:{op.line}: {op.name} of unknown tensor {t!r}")
        return self.names[t]

    # ops -------------------------------------------------------------------------------------------
    def op(self, op: ir.Op, depth: int) -> None:
        name, a = op.name, [self.v(x) for x in op.operands]
        rt: Any = op.results[0].type if op.results else None  # None: ops without results
        if name == "const":
            self.atoms[op.result.id] = literal(op.attrs["value"], rt)
            self.consts[op.result.id] = op.attrs["value"]
        elif name == "param":
            self.atoms[op.result.id] = self.names[op.attrs["name"]]
        elif name in ("dim", "stride"):
            self.atoms[op.result.id] = self.dim(op)
        elif name in BUILTINS:
            pname, ptype, _ = BUILTINS[name]
            self.builtins.add(name)
            lane = f".{'xyz'[op.attrs['dim']]}" if ptype == "uint3" else ""
            self.atoms[op.result.id] = f"(int){pname}{lane}"
        elif name in MSL_FLOAT or name in MSL_INT:
            self.define(depth, op, self.elementwise(op, a))
        elif name == "select":
            vec = f"select({a[2]}, {a[1]}, {a[0]})"  # MSL select(if_false, if_true, cond)
            if rt.lanes > 1 and rt.dtype.kind == "b":  # no select of bool vectors: logic
                vec = f"({a[0]} & {a[1]}) | (!{a[0]} & {a[2]})"
            self.define(depth, op, f"{a[0]} ? {a[1]} : {a[2]}" if rt.lanes == 1 else vec)
        elif name == "cast":
            self.define(depth, op, self.cast(op, a[0]))
        elif name == "broadcast":
            self.define(depth, op, f"{msl_type(rt)}({a[0]})")
        elif name == "load":
            self.define(depth, op, f"{self.base(op)}[{a[0]}]")
        elif name == "store":
            self.line(depth, f"{self.base(op)}[{a[0]}] = {a[1]};", op)
        elif name in ("vload", "vstore"):
            t, vt = op.attrs["tensor"], op.operands[1].type if name == "vstore" else rt
            const = " const" if name == "vload" and self.access.get(t) == "read" else ""
            packed = "packed_" if op.attrs.get("packed") else ""  # aligned like one element
            ptr = f"*(({self.space(t)}{const} {packed}{msl_type(vt)}*)({self.base(op)} + {a[0]}))"
            if name == "vload":
                self.define(depth, op, ptr)
            else:
                self.line(depth, f"{ptr} = {a[1]};", op)
        elif name.startswith("atomic_"):
            t, dt = op.attrs["tensor"], op.operands[1].dtype
            if dt.name not in ATOMIC or (dt.is_float and name != "atomic_add"):
                raise ValueError(f"{self.k.file}:{op.line}: {name} on {dt.name} is not supported by Metal "
                                 f"(int32 and uint32; atomic_add also float32)")
            fn = f"atomic_fetch_{name[7:]}_explicit"
            ptr = f"({self.space(t)} {ATOMIC[dt.name]}*)&{self.tensor(op)}[{a[0]}]"
            call = f"{fn}({ptr}, {a[1]}, memory_order_relaxed)"
            if op.results:
                self.define(depth, op, call)
            else:
                self.line(depth, f"{call};", op)
        elif name == "barrier":
            self.line(depth, "threadgroup_barrier(mem_flags::mem_threadgroup | mem_flags::mem_device);", op)
        elif name in ("simd_max", "simd_min") and op.results[0].type.dtype.is_float:
            d = op.results[0].type.dtype  # a zero result is -0 or +0 by the rule of min/max (-0 < +0)
            self.helpers.setdefault((f"enigma_{name}", d.name), d)
            self.define(depth, op, f"enigma_{name}({a[0]})")
        elif name in ("simd_sum", "simd_max", "simd_min"):
            self.define(depth, op, f"{name}({a[0]})")
        elif name in ("simd_shuffle_down", "simd_broadcast"):
            self.define(depth, op, f"{name}({a[0]}, (ushort){a[1]})")
        elif name in ir.VECTOR or name in ir.SIMD_MATRIX:
            self.fast(op, depth, a, rt)
        elif name == "if":
            self.if_(op, depth)
        elif name == "for":
            self.for_(op, depth)
        elif name == "while":
            self.while_(op, depth)
        else:
            raise ValueError(f"{self.k.file}:{op.line}: the MSL printer does not know op {name!r}")

    # fast-kernel ops (issue 12): vectors, bit casts, views, simdgroup matrices -------------------------
    def base(self, op: ir.Op) -> str:
        """The pointer a memory op indexes: the tensor, or `((device const half*)t)` for a view."""
        view = op.attrs.get("view")
        if view is None:
            return self.tensor(op)
        t = op.attrs["tensor"]
        const = " const" if self.access.get(t) == "read" else ""
        return f"(({self.space(t)}{const} {BY_NAME[view].msl}*)({self.tensor(op)}))"

    def fast(self, op: ir.Op, depth: int, a: list[str], rt: Any) -> None:
        name = op.name
        if name == "extract":
            self.define(depth, op, f"{a[0]}[{op.attrs['lane']}]")
        elif name == "pack":
            self.define(depth, op, f"{msl_type(rt)}({', '.join(a)})")
        elif name == "bitcast":
            self.define(depth, op, f"as_type<{msl_type(rt)}>({a[0]})")
        elif name == "simd_fill":
            d = rt.dtype
            self.define(depth, op, f"make_filled_simdgroup_matrix<{d.msl}, {rt.matrix}, {rt.matrix}>("
                                   f"{literal(op.attrs['value'], ir.Type(d))})")
        elif name == "simd_mma":
            self.line(depth, f"{msl_type(rt)} {self.v(op.result)};", op)
            args = ", ".join([self.v(op.result)] + a)
            self.line(depth, f"simdgroup_multiply_accumulate({args});", op)
        elif name in ("simd_load", "simd_store"):
            off, ld = (a[0], a[1]) if name == "simd_load" else (a[1], a[2])
            origin = op.attrs.get("origin", 0)
            ptr = f"{self.base(op)} + {off}" + (f" + {origin}" if origin else "")
            args = f"{ptr}, (ulong){ld}, ulong2(0, 0), {'true' if op.attrs.get('transpose') else 'false'}"
            if name == "simd_load":
                self.line(depth, f"{msl_type(rt)} {self.v(op.result)};", op)
                self.line(depth, f"simdgroup_load({self.v(op.result)}, {args});", op)
            else:
                self.line(depth, f"simdgroup_store({a[0]}, {args});", op)
        else:
            raise ValueError(f"{self.k.file}:{op.line}: the MSL printer does not know op {name!r}")

    def spelling(self, op: ir.Op) -> str:
        """The op's MSL spelling for its operand type (the tables above)."""
        t = op.operands[-1].type
        d = t.dtype
        table = (MSL_BOOL if t.lanes == 1 else MSL_BOOL_VECTOR) if d.kind == "b" else \
            MSL_FLOAT if d.is_float else MSL_INT
        if op.name not in table:
            raise ValueError(f"{self.k.file}:{op.line}: {op.name} on {d.name} has no MSL spelling")
        if op.name == "abs" and d.kind == "u":
            return "{0}"
        return table[op.name]

    def elementwise(self, op: ir.Op, a: list[str]) -> str:
        t = op.operands[-1].type
        rt = op.results[0].type
        d = t.dtype
        text = self.spelling(op)
        lanes = t.lanes
        via_float = d.name == "bfloat16" and op.name not in NATIVE_BFLOAT or \
            op.name in FLOAT32_HELPERS and d.name != "float32"  # bfloat math is done in float
        if via_float:
            ft = "float" if lanes == 1 else f"float{lanes}"
            a = [f"{ft}({x})" for x in a]
            d = float32
        fill = {"T": msl_type(ir.Type(d, lanes)), "U": "uint" if lanes == 1 else f"uint{lanes}",
                "W": str(max(d.bits, 1) - 1)}
        if text.startswith("enigma_"):
            self.helpers.setdefault((text.split("(")[0], d.name), d)
            if lanes > 1:  # helpers are scalar: lane by lane
                parts = [text.format(*(f"{x}.{'xyzw'[i]}" for x in a), **fill) for i in range(lanes)]
                expr = f"{fill['T']}({', '.join(parts)})"
            else:
                expr = text.format(*a, **fill)
        else:
            expr = text.format(*a, **fill)
        return f"{msl_type(rt)}({expr})" if via_float else expr

    def cast(self, op: ir.Op, x: str) -> str:
        """A conversion defined for every input (docs/abi.md): float -> int saturates (NaN -> 0) through
        a helper; int -> float16/bfloat16 goes through float (IEEE: past float16's range is inf), and so does
        float16 <-> bfloat16 (no direct conversion)."""
        s, t = op.operands[0].type, op.results[0].type
        if s.dtype.is_float and t.dtype.is_int:
            name = f"enigma_cvt_{t.dtype.msl}"
            self.helpers.setdefault((name, t.dtype.name), t.dtype)
            conv = (lambda v: v) if s.dtype.name == "float32" else (lambda v: f"float({v})")
            if t.lanes == 1:
                return f"{name}({conv(x)})"
            lanes = [f"{name}({conv(x + '.' + c)})" for c in "xyzw"[:t.lanes]]
            return f"{msl_type(t)}({', '.join(lanes)})"
        halves = ("float16", "bfloat16")
        if t.dtype.name in halves and (s.dtype.is_int or s.dtype.name in halves and s.dtype != t.dtype):
            ft = "float" if t.lanes == 1 else f"float{t.lanes}"
            return f"{msl_type(t)}({ft}({x}))"
        return f"{msl_type(t)}({x})"

    def dim(self, op: ir.Op) -> str:
        t, axis, stride = op.attrs["tensor"], op.attrs["axis"], op.name == "stride"
        shape: tuple[Any, ...]
        if t in self.shared:
            shape = self.shared[t].shape
        else:
            b = self.bind[t]
            if b.dims_offset is not None:
                return f"enigma_dims[{b.dims_offset + (b.arg.rank if stride else 0) + axis}]"
            shape = b.arg.shape
        return str((ir.static_strides(shape) if stride else shape)[axis])  # static: all ints

    # control flow ----------------------------------------------------------------------------------
    def block(self, b: ir.Block, depth: int, term: Callable[[ir.Op, int], None] | None = None) -> None:
        for op in b.ops:
            if op.name in ("yield", "condition"):
                if term is None:
                    raise ValueError(f"{self.k.file}:{op.line}: {op.name} outside a region")
                term(op, depth)
            else:
                self.op(op, depth)

    def assign(self, targets: list[ir.Value], values: list[ir.Value], depth: int, op: ir.Op) -> None:
        for t, x in zip(targets, values):
            self.line(depth, f"{self.v(t)} = {self.v(x)};", op)

    def declare(self, values: list[ir.Value], depth: int, op: ir.Op,
                init: list[ir.Value] | None = None) -> None:
        """`T vN;` (or `T vN = init;`) for each of `values`."""
        for i, r in enumerate(values):
            rhs = f" = {self.v(init[i])};" if init else ";"
            self.line(depth, f"{msl_type(r.type)} {self.v(r)}{rhs}", op)

    def if_(self, op: ir.Op, depth: int) -> None:
        self.declare(op.results, depth, op)
        self.line(depth, f"if ({self.v(op.operands[0])}) {{", op)
        yields = lambda y, d: self.assign(op.results, y.operands, d, y)  # noqa: E731
        self.block(op.regions[0], depth + 1, yields)
        other = op.regions[1] if len(op.regions) > 1 else ir.Block()
        if any(o.name != "yield" for o in other.ops) or op.results:
            self.line(depth, "} else {")
            self.block(other, depth + 1, yields)
        self.line(depth, "}")

    def for_(self, op: ir.Op, depth: int) -> None:
        lb, ub, step, *init = op.operands
        body = op.regions[0]
        iv, carried = body.args[0], body.args[1:]
        self.declare(op.results, depth, op, init)
        s = self.v(step)
        if step.id in self.atoms and s.lstrip("(-").replace(")", "").isdigit():
            cond = f"{self.v(iv)} {'>' if s.startswith('(-') else '<'} {self.v(ub)}"
        else:
            cond = f"({s} > 0 ? {self.v(iv)} < {self.v(ub)} : {self.v(iv)} > {self.v(ub)})"
        i = self.v(iv)
        inc = self.step(iv, ub, step)
        self.line(depth, f"for ({msl_type(iv.type)} {i} = {self.v(lb)}; {cond}; {inc}) {{", op)
        for c, r in zip(carried, op.results):
            self.line(depth + 1, f"{msl_type(c.type)} {self.v(c)} = {self.v(r)};", op)
        self.block(body, depth + 1, lambda y, d: self.assign(op.results, y.operands, d, y))
        self.line(depth, "}")

    def step(self, iv: ir.Value, ub: ir.Value, step: ir.Value) -> str:
        """The loop increment, without signed overflow: `i += s` when `i + s` cannot pass the type's
        range (constant step and bound), else `i = <s would reach ub> ? ub : i + s`, the distance to
        `ub` measured in unsigned arithmetic (the loop ends at ub exactly as range() would)."""
        i, u, s = self.v(iv), self.v(ub), self.v(step)
        d = iv.dtype
        cs, cu = self.consts.get(step.id), self.consts.get(ub.id)
        if d.kind != "i" or isinstance(cs, int) and isinstance(cu, int) and (
                cs > 0 and cu <= d.max - cs + 1 or cs < 0 and cu >= d.min - cs - 1):
            return f"{i} += {s}"
        up = f"uint({u}) - uint({i}) <= uint({s})"
        down = f"uint({i}) - uint({u}) <= 0u - uint({s})"
        near = up if isinstance(cs, int) and cs > 0 else down if isinstance(cs, int) else \
            f"({s} > 0 ? {up} : {down})"
        return f"{i} = {near} ? {u} : {d.msl}({i} + {s})"

    def while_(self, op: ir.Op, depth: int) -> None:
        before, after = op.regions
        self.declare(before.args, depth, op, op.operands)
        self.declare(op.results, depth, op)
        self.line(depth, "while (true) {", op)

        def condition(c: ir.Op, d: int) -> None:
            self.assign(op.results, c.operands[1:], d, c)
            self.line(d, f"if (!{self.v(c.operands[0])}) break;", c)
            for x, r in zip(after.args, op.results):
                self.line(d, f"{msl_type(x.type)} {self.v(x)} = {self.v(r)};", c)
            self.block(after, d, lambda y, dd: self.assign(before.args, y.operands, dd, y))

        self.block(before, depth + 1, condition)
        self.line(depth, "}")

    # the kernel ------------------------------------------------------------------------------------
    def emit(self) -> str:
        k = self.k
        body_start = len(self.out)
        for s in k.shared:
            n = 1
            for d in s.shape:
                n *= d
            self.line(1, f"threadgroup {s.dtype.msl} {self.names[s.name]}[{n}];  // {s.name}: "
                         f"{s.dtype.name}{list(s.shape)}, row-major")
        self.block(k.body, 1)
        body = self.out[body_start:]
        params = []
        for b in self.binds:
            a, c = b.arg, self.names[b.arg.name]
            if a.kind == "none":  # an optional tensor left out: no parameter (its buffer index stays free)
                continue
            if a.kind == "tensor":
                const = "const " if b.access == "read" else ""
                params.append(f"{const}device {a.dtype.msl}* {c} [[buffer({b.buffer})]]")
            else:
                params.append(f"constant {a.dtype.msl}& {c} [[buffer({b.buffer})]]")
        if self.dims_buffer is not None:
            params.append(f"constant int* enigma_dims [[buffer({self.dims_buffer})]]")
        for name, (pname, ptype, attr) in BUILTINS.items():
            if name in self.builtins:
                params.append(f"{ptype} {pname} [[{attr}]]")
        src = (k.file or "<unknown>").replace("\n", " ")
        helpers = [helper(name, d) for (name, _), d in self.helpers.items()]
        head = [f"// {k.kernel_name}: generated by Enigma {__version__} from {src}:{k.line}"
                f" (vec_width={k.vec_width}).",
                f"// Targets Metal Shading Language {self.version} (macOS {MSL_VERSIONS[self.version]}+). "
                "Binding ABI: docs/abi.md.",
                "#include <metal_stdlib>", "using namespace metal;", ""]
        if helpers:
            head += ["// op semantics defined for every input (docs/abi.md)"] + helpers + [""]
        head += [f"kernel void {k.kernel_name}(", ",\n".join(INDENT + p for p in params) + ")", "{"]
        return "\n".join(head + body + ["}"]) + "\n"


def _uses_bfloat(kernel: ir.Kernel) -> int | None:
    """The line of the first use of bfloat16 in the kernel (its `def` line for arguments), or None."""
    if any(a.dtype.name == "bfloat16" for a in kernel.args) or \
            any(s.dtype.name == "bfloat16" for s in kernel.shared):
        return kernel.line
    for op in ir.walk(kernel.body):
        if any(v.dtype.name == "bfloat16" for v in op.results + op.operands):
            return op.line
    return None


def emit(kernel: ir.Kernel, msl_version: str = "3.1") -> str:
    """The kernel as one Metal Shading Language compute function `enigma_kernel_<name>` for MSL
    `msl_version` (a key of MSL_VERSIONS; bfloat needs 3.1 or later)."""
    if msl_version not in MSL_VERSIONS:
        raise EnigmaError(f"MSL version {msl_version!r} cannot be targeted", kernel.file, kernel.line,
                          hint=f"use one of {', '.join(MSL_VERSIONS)}")
    line = _uses_bfloat(kernel) if _version(msl_version) < _version(BFLOAT_MIN_VERSION) else None
    if line is not None:
        raise EnigmaError(f"kernel {kernel.name!r} uses bfloat16, which Metal Shading Language has only "
                          f"from version {BFLOAT_MIN_VERSION} (macOS {MSL_VERSIONS[BFLOAT_MIN_VERSION]}); "
                          f"the target is MSL {msl_version}", kernel.file, line,
                          hint=f"target MSL {BFLOAT_MIN_VERSION} or later, or use float16/float32")
    e = _Emitter(kernel)
    e.version = msl_version
    return e.emit()


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))
