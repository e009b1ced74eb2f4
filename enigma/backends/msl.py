"""IR -> Metal Shading Language source (MSL 3.1), one `kernel void` per Kernel.

Conventions (docs/abi.md): bindings come from `portable.bindings` (FORMAT.md section 5); every SSA value
is a local `vN` (N = its id) assigned once, except the results of if/for/while, declared before the
construct and assigned by its yields; constants, scalar parameters, sizes and builtins are inlined as
atoms. Every statement ends with `// line N` (the kernel author's line). The output stays in a plain
subset (no lambdas or direct-initialisation; template arguments only in Metal's `as_type<T>(x)` and
`make_filled_simdgroup_matrix<T, 8, 8>(v)`) so a clang-based compatibility header compiles it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from enigma_runtime.dtypes import BY_NAME

from enigma import __version__, ir
from enigma.backends import portable

INDENT = "    "
BUILTINS = {  # op -> (parameter name, MSL type, attribute)
    "thread_idx": ("enigma_tid", "uint3", "thread_position_in_threadgroup"),
    "block_idx": ("enigma_bid", "uint3", "threadgroup_position_in_grid"),
    "block_dim": ("enigma_bdim", "uint3", "threads_per_threadgroup"),
    "grid_dim": ("enigma_gdim", "uint3", "threadgroups_per_grid"),
    "simd_lane_id": ("enigma_simd_lane", "uint", "thread_index_in_simdgroup"),
    "simd_group_id": ("enigma_simd_group", "uint", "simdgroup_index_in_threadgroup"),
}
BINOP = {"add": "+", "sub": "-", "mul": "*", "div": "/", "and": "&", "or": "|", "xor": "^", "shl": "<<",
         "shr": ">>", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
MATH = {"abs": "abs", "exp": "exp", "exp2": "exp2", "log": "log", "log2": "log2", "sqrt": "sqrt",
        "rsqrt": "rsqrt", "sin": "sin", "cos": "cos", "tanh": "tanh", "floor": "floor", "ceil": "ceil"}
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
    max abs exp exp2 log log2 sqrt rsqrt sin cos tanh floor ceil clamp simd_sum simd_max simd_min
    simd_shuffle_down simd_broadcast threadgroup_barrier atomic_fetch_add_explicit
    atomic_fetch_max_explicit atomic_fetch_min_explicit memory_order_relaxed INFINITY NAN
""".split())


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
        with np.errstate(over="ignore"):  # values past the type's range round to infinity
            x = float(np.float16(value) if d.name == "float16" else np.float32(value))
        if math.isnan(x) or math.isinf(x):
            s = "NAN" if math.isnan(x) else "INFINITY" if x > 0 else "(-INFINITY)"
            return s if d.name == "float32" else f"{d.msl}({s})"
        s = str(np.float16(x) if d.name == "float16" else np.float32(x))  # shortest exact digits
        if not any(c in s for c in ".e"):
            s += ".0"
        s += "h" if d.name == "float16" else "f"
        s = f"({s})" if s.startswith("-") else s
        return f"bfloat({s})" if d.name == "bfloat16" else s
    n = int(value) % (1 << d.bits)  # wrap to the type's width
    if d.kind == "i" and n >= 1 << (d.bits - 1):
        n -= 1 << d.bits
    if d.name == "int32":
        return "(-2147483647 - 1)" if n == -(1 << 31) else f"({n})" if n < 0 else str(n)
    if d.name == "uint32":
        return f"{n}u"
    return f"{d.msl}({n})"


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
        self.binds, self.dims_buffer = portable.bindings(kernel)
        self.names = c_names(kernel)
        self.bind = {b.arg.name: b for b in self.binds}
        self.access = {b.arg.name: b.access for b in self.binds}
        self.shared = {s.name: s for s in kernel.shared}
        self.atoms: dict[int, str] = {}  # value id -> inlined expression
        self.builtins: set[str] = set()
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
        elif name == "param":
            self.atoms[op.result.id] = self.names[op.attrs["name"]]
        elif name in ("dim", "stride"):
            self.atoms[op.result.id] = self.dim(op)
        elif name in BUILTINS:
            pname, ptype, _ = BUILTINS[name]
            self.builtins.add(name)
            lane = f".{'xyz'[op.attrs['dim']]}" if ptype == "uint3" else ""
            self.atoms[op.result.id] = f"(int){pname}{lane}"
        elif name in BINOP:
            dt = op.operands[0].dtype
            if dt.kind == "b" and rt.lanes == 1 and name in ("and", "or", "xor"):
                self.define(depth, op, f"{a[0]} {({'and': '&&', 'or': '||', 'xor': '!='})[name]} {a[1]}")
            elif dt.is_float and name in ("and", "or", "xor", "shl", "shr"):
                raise ValueError(f"{self.k.file}:{op.line}: {name} on floats")
            else:
                self.define(depth, op, f"{a[0]} {BINOP[name]} {a[1]}")
        elif name in ("mod", "min", "max"):
            if rt.dtype.is_float:
                self.define(depth, op, self.call({"mod": "fmod", "min": "fmin", "max": "fmax"}[name], op, a))
            elif name == "mod":
                self.define(depth, op, f"{a[0]} % {a[1]}")
            else:
                self.define(depth, op, f"{name}({a[0]}, {a[1]})")
        elif name in MATH:
            self.define(depth, op, self.call(MATH[name], op, a))
        elif name == "neg":
            self.define(depth, op, f"-{a[0]}")
        elif name == "not":
            self.define(depth, op, f"!{a[0]}" if rt.dtype.kind == "b" else f"~{a[0]}")
        elif name == "fma":
            is_f = rt.dtype.is_float
            self.define(depth, op, self.call("fma", op, a) if is_f else f"{a[0]} * {a[1]} + {a[2]}")
        elif name == "select":
            vec = f"select({a[2]}, {a[1]}, {a[0]})"  # MSL select(if_false, if_true, cond)
            self.define(depth, op, f"{a[0]} ? {a[1]} : {a[2]}" if rt.lanes == 1 else vec)
        elif name in ("cast", "broadcast"):
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

    def call(self, fn: str, op: ir.Op, a: list[str]) -> str:
        t = op.results[0].type
        if t.dtype.name != "bfloat16":
            return f"{fn}({', '.join(a)})"
        ft = "float" if t.lanes == 1 else f"float{t.lanes}"  # bfloat math is done in float
        return f"{msl_type(t)}({fn}({', '.join(f'{ft}({x})' for x in a)}))"

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
        return str((portable.static_strides(shape) if stride else shape)[axis])  # static: all ints

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
        self.line(depth, f"for ({msl_type(iv.type)} {i} = {self.v(lb)}; {cond}; {i} += {s}) {{", op)
        for c, r in zip(carried, op.results):
            self.line(depth + 1, f"{msl_type(c.type)} {self.v(c)} = {self.v(r)};", op)
        self.block(body, depth + 1, lambda y, d: self.assign(op.results, y.operands, d, y))
        self.line(depth, "}")

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
        head = [f"// {k.kernel_name}: generated by Enigma {__version__} from {src}:{k.line}"
                f" (vec_width={k.vec_width}).",
                "// Targets Metal Shading Language 3.1 (macOS 14+). Binding ABI: docs/abi.md.",
                "#include <metal_stdlib>", "using namespace metal;", "",
                f"kernel void {k.kernel_name}(", ",\n".join(INDENT + p for p in params) + ")", "{"]
        return "\n".join(head + body + ["}"]) + "\n"


def emit(kernel: ir.Kernel) -> str:
    """The kernel as one MSL 3.1 compute function `enigma_kernel_<name>`."""
    return _Emitter(kernel).emit()
