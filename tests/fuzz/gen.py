"""Random kernels: a `Program` (typed expression trees and statements), generated from a seed, and its
rendering as @enigma.kernel source. model.py evaluates the same Program with numpy."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType
from enigma_runtime.ops import OPS

from .ops_adapter import int_range

FLOATS = (dt.float32, dt.float16, dt.bfloat16)
INTS = (dt.int32, dt.uint32, dt.int16, dt.uint16, dt.int8, dt.uint8)
NUMBERS = FLOATS + INTS
ALL = NUMBERS + (dt.bool_,)
ATOMIC = (dt.int32, dt.uint32)

# op -> Python spelling (binary operators and functions of the kernel language)
BIN_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "mod": "%", "and": "&", "or": "|", "xor": "^",
              "shl": "<<", "shr": ">>"}
CMP_SYMBOL = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
# from the op table, so that a new op is fuzzed as soon as it is a row: the float math functions
# (enigma.exp, ...), binary math functions (enigma.pow), and the ops whose result is not bit for bit the
# same everywhere (not `foldable`: exp, sin, ...), whose results are only stored and compared with a tolerance
MATH = tuple(n for n, o in OPS.items() if o.frontend and o.group == "unary" and o.operands == "float")
MATH2 = tuple(n for n, o in OPS.items() if o.frontend and o.group == "binary" and o.operands == "float")
INEXACT = frozenset(n for n, o in OPS.items() if o.fn is not None and not o.foldable)
# int32 leaves: builtins, a tensor size, the scalar parameter
LEAF_SOURCE = {"bdim": "enigma.block_dim().x", "gdim": "enigma.grid_dim().x", "lane": "enigma.simd_lane_id()",
               "sgid": "enigma.simd_group_id()", "size": "in0.shape[0]", "param": "p0"}
FLOAT_LITERALS = (0.0, -0.0, 0.5, 1.0, -1.5, 2.0, 3.0, 0.25, 100.0, -7.0, float("inf"), float("nan"))


@dataclass
class E:
    """An expression of dtype `dtype`: op is an IR op name, or load/var/const/tid/gid/simd_*."""

    op: str
    dtype: DType
    args: tuple[E, ...] = ()
    value: Any = None  # const: the number; var: its name; load: the input's index; simd: lane/delta
    exact: bool = True  # False: its rounding may differ by a few ulps between implementations


@dataclass
class S:
    """A statement: assign(name, e) | store(out, e) | if(cond, body, orelse) | for(var, bound, body) |
    while(var, bound, body) | shared(name, e, shift) | simd(name, e) (e is the simd op) |
    atomic(op, e)."""

    kind: str
    name: str = ""
    e: E | None = None
    body: list[S] = field(default_factory=list)
    orelse: list[S] = field(default_factory=list)
    value: Any = None


@dataclass
class Program:
    seed: int
    block: int
    groups: int
    inputs: list[DType]
    outputs: list[DType]
    counter: DType | None  # the atomics' buffer (4 elements), if any
    atomic_op: str
    body: list[S]
    scalar: DType | None = None  # a scalar parameter `p0`, if any
    vec: int = 0  # compiled with vec_width=vec: no threadgroup/simd/atomic ops, the body in `if g < n:`

    @property
    def threads(self) -> int:
        return self.block * self.groups


class Generator:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.seed = seed
        self.n = 0
        self.loop_vars: set[str] = set()
        self.scalar: DType | None = None
        self.vec = 0

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    # -- expressions
    def literal(self, d: DType) -> Any:
        r = self.r
        if d.kind == "b":
            return r.random() < 0.5
        if d.is_float:
            return r.choice(FLOAT_LITERALS)
        lo, hi = int_range(d)
        return r.choice([0, 1, 2, 3, 7, lo, hi, hi // 2, r.randint(lo, hi), r.randint(max(lo, -9), 9)])

    def leaf(self, d: DType, scope: dict[str, DType]) -> E:
        r = self.r
        names = [n for n, t in scope.items() if t == d]
        inputs = [k for k, t in enumerate(self.inputs) if t == d]
        choices = []
        if names:
            choices += ["var"] * 3
        if inputs:
            choices += ["load"] * 2
        if d == dt.int32:
            choices += ["size"] if self.vec else \
                ["tid", "gid", self.r.choice(["bdim", "gdim", "lane", "sgid", "size"])]
        if self.scalar == d:
            choices += ["param"]
        if not choices:
            return self.cast_of_something(d, scope)
        c = r.choice(choices)
        if c == "var":
            return E("var", d, value=r.choice(names))
        if c == "load":
            return E("load", d, value=r.choice(inputs))
        return E(c, d)

    def cast_of_something(self, d: DType, scope: dict[str, DType]) -> E:
        src = [t for t in set(scope.values()) | set(self.inputs) if t != d] or [dt.int32]
        s = self.r.choice(sorted(src, key=lambda t: t.name))
        return E("cast", d, (self.leaf(s, scope),))

    def expr(self, d: DType, scope: dict[str, DType], depth: int, inexact_ok: bool = False) -> E:
        r = self.r
        if depth <= 0 or r.random() < 0.25:
            return self.leaf(d, scope)
        sub = depth - 1
        kinds = ["binary"] * 4 + ["unary"] * 2 + ["cast", "select", "literal"]
        if d.kind == "b":
            kinds += ["compare"] * 4
        if d.is_float:
            kinds += ["fma"] + (["math2"] if inexact_ok and MATH2 else [])
        k = r.choice(kinds)
        if k == "math2":  # e.g. enigma.pow: inexact, so only at the root of a stored value
            op = r.choice(MATH2)
            return E(op, d, (self.expr(d, scope, sub), self.expr(d, scope, sub)), exact=False)
        if k == "literal":
            a = self.expr(d, scope, sub)
            op = self.binary_op(d)
            if op is None:
                return a
            lit = self.literal(d)
            if op in ("shl", "shr"):
                lit = r.randrange(d.itemsize * 8)
            return E(op, d, (a, E("const", d, value=lit))) if r.random() < 0.7 or op in ("shl", "shr") \
                else E(op, d, (E("const", d, value=lit), a))
        if k == "binary":
            op = self.binary_op(d)
            if op is None:
                return self.leaf(d, scope)
            b = self.expr(d, scope, sub)
            if op in ("shl", "shr") and r.random() < 0.7:  # mostly in range; sometimes any amount
                b = E("and", d, (b, E("const", d, value=d.itemsize * 8 - 1)))
            return E(op, d, (self.expr(d, scope, sub), b))
        if k == "compare":
            s = r.choice(ALL)
            ops = ["eq", "ne"] if s.kind == "b" else list(CMP_SYMBOL)
            return E(r.choice(ops), d, (self.expr(s, scope, sub), self.expr(s, scope, sub)))
        if k == "unary":
            if d.kind == "b":
                return E("not", d, (self.expr(d, scope, sub),))
            ops = ["neg", "abs"] + (["not"] if d.is_int else list(MATH))
            if not inexact_ok:
                ops = [o for o in ops if o not in INEXACT]
            op = r.choice(ops)
            return E(op, d, (self.expr(d, scope, sub),), exact=op not in INEXACT)
        if k == "fma":
            return E("fma", d, tuple(self.expr(d, scope, sub) for _ in range(3)))
        if k == "select":
            return E("select", d, (self.expr(dt.bool_, scope, sub), self.expr(d, scope, sub),
                                   self.expr(d, scope, sub)))
        s = r.choice(ALL)
        return E("cast", d, (self.expr(s, scope, sub),))

    def binary_op(self, d: DType) -> str | None:
        if d.kind == "b":
            return self.r.choice(["and", "or", "xor"])
        ops = ["add", "sub", "mul", "div", "mod", "min", "max"]
        if d.is_int:
            ops += ["and", "or", "xor", "shl", "shr"]
        return self.r.choice(ops)

    # -- statements
    def block_of(self, scope: dict[str, DType], depth: int, n: int, top: bool) -> list[S]:
        r = self.r
        out: list[S] = []
        local = dict(scope)
        for _ in range(n):
            kinds = ["assign"] * 4 + ["store"] * 2
            if depth > 0:
                kinds += ["if", "if", "for", "while"]
            if top and not self.vec:  # vectorised kernels see elements, not threads
                kinds += ["shared", "simd", "simd"]
            if self.counter is not None:
                kinds += ["atomic"]
            k = r.choice(kinds)
            if k == "assign":
                existing = [n for n in local if n in scope and n not in self.loop_vars] if not top else []
                if existing and r.random() < 0.6:  # reassign a variable of the enclosing scope
                    name = r.choice(existing)
                    d = local[name]
                else:
                    name, d = self.fresh("v"), r.choice(ALL)
                out.append(S("assign", name, self.expr(d, local, 3)))
                local[name] = d
            elif k == "store":
                j = r.randrange(len(self.outputs))
                d = self.outputs[j]
                out.append(S("store", value=j, e=self.expr(d, local, 3, inexact_ok=True)))
            elif k == "atomic":
                assert self.counter is not None
                out.append(S("atomic", value=self.atomic_op, e=self.expr(self.counter, local, 2)))
            elif k == "if":
                cond = self.expr(dt.bool_, local, 2)
                body = self.block_of(local, depth - 1, r.randint(1, 3), False)
                orelse = self.block_of(local, depth - 1, r.randint(0, 2), False)
                out.append(S("if", e=cond, body=body, orelse=orelse))
            elif k in ("for", "while"):
                bound = E("and", dt.int32, (self.expr(dt.int32, local, 2), E("const", dt.int32, value=3)))
                var = self.fresh("j" if k == "for" else "w")
                self.loop_vars.add(var)  # never reassigned in the body: the loop must end
                inner = dict(local)
                inner[var] = dt.int32
                body = self.block_of(inner, depth - 1, r.randint(1, 3), False)
                out.append(S(k, var, bound, body=body))
            elif k == "shared":
                d = r.choice(NUMBERS)
                name = self.fresh("sh")
                out.append(S("shared", name, self.expr(d, local, 2), value=r.randrange(1, self.block)))
                local[name] = d
            else:
                op = r.choice(["simd_sum", "simd_max", "simd_min", "simd_shuffle_down", "simd_broadcast"])
                d = r.choice(NUMBERS)
                arg = self.expr(d, local, 2)
                lane = r.randrange(32) if op in ("simd_shuffle_down", "simd_broadcast") else None
                name = self.fresh("s")  # simd_sum adds in lane order (FORMAT.md): exact, bit for bit
                out.append(S("simd", name, E(op, d, (arg,), value=lane)))
                local[name] = d
        return out

    def program(self) -> Program:
        r = self.r
        self.vec = r.choice([2, 4]) if r.random() < 0.25 else 0
        self.block = r.choice([32, 64])
        groups = r.choice([1, 2, 3])
        self.inputs = [r.choice(ALL) for _ in range(r.randint(1, 3))]
        self.outputs = [r.choice(ALL) for _ in range(r.randint(1, 3))]
        self.counter = r.choice(ATOMIC) if r.random() < 0.3 and not self.vec else None
        self.atomic_op = r.choice(["atomic_add", "atomic_max", "atomic_min"])
        self.scalar = r.choice(ALL) if r.random() < 0.4 else None
        # vectorised: straight-line code (the vectorize pass refuses branches on per-element data)
        body = self.block_of({}, 0 if self.vec else 2, r.randint(3, 8), True)
        j = r.randrange(len(self.outputs))
        body.append(S("store", value=j, e=self.expr(self.outputs[j], self.scope_of(body), 3)))
        return Program(self.seed, self.block, groups, self.inputs, self.outputs, self.counter, self.atomic_op,
                       body, self.scalar, self.vec)

    @staticmethod
    def scope_of(body: list[S]) -> dict[str, DType]:
        scope: dict[str, DType] = {}
        for s in body:
            if s.kind in ("assign", "shared") and s.e is not None:
                scope[s.name] = s.e.dtype
            elif s.kind == "simd" and s.e is not None:
                scope[s.name] = s.e.dtype
        return scope


def generate(seed: int) -> Program:
    return Generator(seed).program()


# ---------------------------------------------------------------------------------------------------
# rendering as kernel source

def _lit(v: Any) -> str:
    if isinstance(v, float) and v != v:
        return 'float("nan")'
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return 'float("inf")' if v > 0 else 'float("-inf")'
    return repr(v)


def dtype_attr(d: DType) -> str:
    """The name of `d` in the enigma namespace."""
    return "bool_" if d.kind == "b" else d.name


def render_expr(e: E) -> str:
    a = [render_expr(x) for x in e.args]
    if e.op == "var":
        return str(e.value)
    if e.op == "load":
        return f"in{e.value}[g]"
    if e.op == "const":
        return _lit(e.value)
    if e.op == "tid":
        return "t"
    if e.op == "gid":
        return "g"
    if e.op in LEAF_SOURCE:
        return LEAF_SOURCE[e.op]
    if e.op == "div":
        return f"({a[0]} {'/' if e.dtype.is_float else '//'} {a[1]})"
    if e.op in BIN_SYMBOL:
        return f"({a[0]} {BIN_SYMBOL[e.op]} {a[1]})"
    if e.op in CMP_SYMBOL:
        return f"({a[0]} {CMP_SYMBOL[e.op]} {a[1]})"
    if e.op in ("min", "max"):
        return f"enigma.{'minimum' if e.op == 'min' else 'maximum'}({a[0]}, {a[1]})"
    if e.op == "neg":
        return f"(-{a[0]})"
    if e.op == "not":
        return f"(~{a[0]})"
    if e.op == "abs" or e.op in MATH or e.op in MATH2 or e.op == "fma":
        return f"enigma.{e.op}({', '.join(a)})"
    if e.op == "select":
        return f"enigma.where({a[0]}, {a[1]}, {a[2]})"
    if e.op == "cast":
        return f"{a[0]}.to(enigma.{dtype_attr(e.dtype)})"
    if e.op in ("simd_sum", "simd_max", "simd_min"):
        return f"enigma.{e.op}({a[0]})"
    if e.op in ("simd_shuffle_down", "simd_broadcast"):
        return f"enigma.{e.op}({a[0]}, {e.value})"
    raise ValueError(f"cannot render {e.op}")


def _render_block(body: list[S], p: Program, pad: str, lines: list[str]) -> None:
    if not body:
        lines.append(pad + "pass")
    for s in body:
        if s.kind == "assign":
            lines.append(f"{pad}{s.name} = {render_expr(s.e)}")  # type: ignore[arg-type]
        elif s.kind == "store":
            lines.append(f"{pad}out{s.value}[g] = {render_expr(s.e)}")  # type: ignore[arg-type]
        elif s.kind == "atomic":
            lines.append(f"{pad}enigma.{s.value}(cnt, t % 4, {render_expr(s.e)})")  # type: ignore[arg-type]
        elif s.kind == "if":
            lines.append(f"{pad}if {render_expr(s.e)}:")  # type: ignore[arg-type]
            _render_block(s.body, p, pad + "    ", lines)
            if s.orelse:
                lines.append(f"{pad}else:")
                _render_block(s.orelse, p, pad + "    ", lines)
        elif s.kind == "for":
            lines.append(f"{pad}for {s.name} in range({render_expr(s.e)}):")  # type: ignore[arg-type]
            _render_block(s.body, p, pad + "    ", lines)
        elif s.kind == "while":
            lines.append(f"{pad}{s.name} = g * 0")
            lines.append(f"{pad}while {s.name} < {render_expr(s.e)}:")  # type: ignore[arg-type]
            _render_block(s.body, p, pad + "    ", lines)
            lines.append(f"{pad}    {s.name} = {s.name} + 1")
        elif s.kind == "shared":
            assert s.e is not None
            lines.append(f"{pad}{s.name}_t = enigma.shared_tensor(enigma.{s.e.dtype.name}, ({p.block},))")
            lines.append(f"{pad}{s.name}_t[t] = {render_expr(s.e)}")
            lines.append(f"{pad}enigma.barrier()")
            lines.append(f"{pad}{s.name} = {s.name}_t[(t + {s.value}) % {p.block}]")
            lines.append(f"{pad}enigma.barrier()")
        elif s.kind == "simd":
            lines.append(f"{pad}{s.name} = {render_expr(s.e)}")  # type: ignore[arg-type]
        else:
            raise ValueError(s.kind)


def render(p: Program, name: str = "fuzz_kernel") -> str:
    params = [f"in{k}: Tensor[enigma.{dtype_attr(d)}]" for k, d in enumerate(p.inputs)]
    params += [f"out{k}: Tensor[enigma.{dtype_attr(d)}]" for k, d in enumerate(p.outputs)]
    if p.counter is not None:
        params.append(f"cnt: Tensor[enigma.{p.counter.name}]")
    if p.scalar is not None:
        params.append(f"p0: enigma.{dtype_attr(p.scalar)}")
    lines = [f"# fuzz seed {p.seed}: block {p.block}, {p.groups} group(s)"
             + (f", vec_width={p.vec}" if p.vec else ""),
             "import enigma", "from enigma import Tensor", "", "",
             "@enigma.kernel", f"def {name}({', '.join(params)}):"]
    if p.vec:  # the shape the vectorize pass needs: the linear index and a bounds check around the body
        lines += ["    g = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x",
                  "    if g < in0.shape[0]:"]
        _render_block(p.body, p, "        ", lines)
    else:
        lines += ["    t = enigma.thread_idx().x", f"    g = enigma.block_idx().x * {p.block} + t"]
        _render_block(p.body, p, "    ", lines)
    return "\n".join(lines) + "\n"
