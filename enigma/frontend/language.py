"""The kernel language: thread indices, threadgroup memory, barriers, simd-group and atomic ops, math.
Every function also accepts Python numbers where that makes sense (computed at trace time)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from enigma_runtime import dtypes as dt
from enigma_runtime import ops
from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import error_here
from enigma.frontend.builder import current
from enigma.frontend.grid import Expr, ceil_div_expr
from enigma.frontend.tensors import TensorRef
from enigma.frontend.values import (
    PyNum,
    Undefined,
    Val,
    as_val,
    common,
    describe,
    pymath,
    show,
    to_bool,
    to_val,
    type_error,
    unary,
)


class Dim3:
    """x/y/z of a builtin index (`thread_idx().x`, or `tx, ty, tz = thread_idx()`); int32 values."""

    __slots__ = ("op",)

    def __init__(self, op: str) -> None:
        self.op = op

    def __getitem__(self, d: int) -> Val:
        if not isinstance(d, int) or not 0 <= d <= 2:
            raise type_error(f"{self.op}() has components 0..2 (x, y, z), got {show(d)}")
        return Val(current().entry(self.op, ir.Type(dt.int32), {"dim": d}))

    x = property(lambda self: self[0])
    y = property(lambda self: self[1])
    z = property(lambda self: self[2])

    def __iter__(self) -> Any:
        return iter((self[0], self[1], self[2]))

    def __len__(self) -> int:
        return 3


def thread_idx() -> Dim3:
    """Thread position in its threadgroup."""
    return Dim3("thread_idx")


def block_idx() -> Dim3:
    """Threadgroup position in the grid."""
    return Dim3("block_idx")


def block_dim() -> Dim3:
    """Threads per threadgroup."""
    return Dim3("block_dim")


def grid_dim() -> Dim3:
    """Threadgroups in the grid."""
    return Dim3("grid_dim")


def simd_lane_id() -> Val:
    return Val(current().entry("simd_lane_id", ir.Type(dt.int32)))


def simd_group_id() -> Val:
    return Val(current().entry("simd_group_id", ir.Type(dt.int32)))


# ---------------------------------------------------------------------------------------------------
# memory

def shared_tensor(dtype: DType, shape: tuple[int, ...] | int, name: str | None = None) -> TensorRef:
    """A threadgroup array (one per threadgroup, uninitialised); static shape, row-major."""
    b = current()
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not isinstance(dtype, DType):
        raise type_error(f"shared_tensor's first argument is an enigma dtype, got {describe(dtype)}")
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise error_here(f"shared_tensor needs a static shape of positive Python ints, got {show(shape)}",
                         "threadgroup memory is sized at compile time: use constants or Constexpr values")
    if len(b.blocks) > 1:
        raise error_here("shared_tensor must be declared at the top level of the kernel, not inside "
                         "dynamic control flow", "move the declaration before the `if`/loop")
    name = name or f"shared{len(b.shared)}"
    if not name.isidentifier() or name.startswith("enigma_"):
        raise error_here(f"threadgroup array name {name!r} is not a plain identifier (or uses the reserved "
                         "prefix enigma_)", "use a name like tile")
    b.add_shared(ir.Shared(name, dtype, shape))
    total = sum(s.nbytes for s in b.shared)
    if total > ir.MAX_THREADGROUP_MEMORY:
        names = ", ".join(s.name for s in b.shared)
        raise error_here(f"threadgroup memory of {total} bytes ({names}) exceeds "
                         f"Metal's {ir.MAX_THREADGROUP_MEMORY} bytes per threadgroup",
                         "use smaller tiles, or a smaller element type")
    return TensorRef(name, dtype, shape, "shared")


def barrier() -> None:
    """Threadgroup barrier: every thread arrives before any continues; memory before it is visible."""
    current().emit("barrier")


def _atomic(op: str, t: Any, index: Any, value: Any) -> Val:
    if not isinstance(t, TensorRef):
        raise type_error(f"enigma.{op}'s first argument is a tensor, got {describe(t)}")
    allowed = ("int32", "uint32", "float32") if op == "atomic_add" else ("int32", "uint32")
    if t.dtype.name not in allowed:
        raise error_here(f"enigma.{op} on a {t.dtype.name} tensor ({t.name}) is not supported by Metal",
                         f"{op} works on {', '.join(allowed)} tensors")
    off = t.offset(index)
    v = as_val(value, t.dtype)
    if t.kind == "arg":
        current().record(t.name, "r")
        current().record(t.name, "w")
    return Val(current().emit(op, [off.v, v.v], [ir.Type(t.dtype)], {"tensor": t.name}).result)


def atomic_add(t: TensorRef, index: Any, value: Any) -> Val:
    """Atomically add `value` to t[index]; returns the old value (int32, uint32, float32)."""
    return _atomic("atomic_add", t, index, value)


def atomic_max(t: TensorRef, index: Any, value: Any) -> Val:
    return _atomic("atomic_max", t, index, value)


def atomic_min(t: TensorRef, index: Any, value: Any) -> Val:
    return _atomic("atomic_min", t, index, value)


# ---------------------------------------------------------------------------------------------------
# simd-group

def _simd_reduce(op: str, v: Any) -> Val:
    v = to_val(v)
    if v.dtype.kind == "b":
        raise type_error(f"enigma.{op} of a {describe(v)}: Metal's simdgroup reductions take numbers, not "
                         "bools", f"count true lanes with enigma.{op}(flag.to(enigma.int32))")
    return Val(current().emit(op, [v.v], [v.v.type]).result)


def simd_sum(v: Any) -> Val:
    """Sum over the active lanes of the simdgroup, in every lane (numbers only: bools are refused)."""
    return _simd_reduce("simd_sum", v)


def simd_max(v: Any) -> Val:
    return _simd_reduce("simd_max", v)


def simd_min(v: Any) -> Val:
    return _simd_reduce("simd_min", v)


def simd_shuffle_down(v: Any, delta: Any) -> Val:
    """Lane `lane + delta`'s value (lanes past 31 keep their own)."""
    v, d = to_val(v), as_val(delta, dt.int32)
    return Val(current().emit("simd_shuffle_down", [v.v, d.v], [v.v.type]).result)


def simd_broadcast(v: Any, lane: Any) -> Val:
    """Lane `lane`'s value in every lane."""
    v, d = to_val(v), as_val(lane, dt.int32)
    return Val(current().emit("simd_broadcast", [v.v, d.v], [v.v.type]).result)


# ---------------------------------------------------------------------------------------------------
# math

def _float_math(op: str, *xs: Any) -> Any:
    """A math op of the op table: Python numbers give a Python number (computed at trace time), traced
    values a traced value; integer arguments of float math become float32."""
    for x in xs:
        if isinstance(x, Undefined):
            x.fail()
    if all(isinstance(x, PyNum) for x in xs):
        return pymath(op, *xs)
    for x in xs:
        if not isinstance(x, (Val, *PyNum)):
            raise type_error(f"enigma.{op} takes numbers, got {describe(x)}")
    if op == "abs":
        return abs(xs[0])
    if len(xs) == 1 and op in ("floor", "ceil") and not xs[0].dtype.is_float:
        return xs[0]
    d = common(*xs, op=f"enigma.{op}")
    if not d.is_float:
        d = dt.float32  # integer arguments of float math become float32
    vals = [as_val(x, d) for x in xs]
    if len(vals) == 1:
        return unary(op, vals[0])
    return Val(current().emit(op, [v.v for v in vals], [ir.Type(d)]).result)


def _math_function(op: str) -> Callable[..., Any]:
    info = ops.OPS[op]

    def f(*xs: Any) -> Any:
        if len(xs) != info.arity:
            raise type_error(f"enigma.{op} takes {info.arity} argument{'s' if info.arity > 1 else ''}, "
                             f"got {len(xs)}")
        return _float_math(op, *xs)
    f.__name__ = f.__qualname__ = op
    f.__doc__ = f"enigma.{op}: {info.doc}"
    return f


# one function per math op of the op table (enigma_runtime/ops.py, rows with frontend=True):
# enigma.exp, enigma.sqrt, enigma.abs, ... (enigma/__init__.py exports them)
MATH_FUNCTIONS: dict[str, Callable[..., Any]] = {
    n: _math_function(n) for n, o in ops.OPS.items() if o.frontend}


def _minmax(op: str, a: Any, b: Any) -> Any:
    if isinstance(a, Expr) or isinstance(b, Expr):
        return Expr.apply(op, a, b)
    if isinstance(a, PyNum) and isinstance(b, PyNum):
        return min(a, b) if op == "min" else max(a, b)
    d = common(a, b, op=f"enigma.{op}imum")
    return Val(current().emit(op, [as_val(a, d).v, as_val(b, d).v], [ir.Type(d)]).result)


def minimum(a: Any, b: Any) -> Any:
    """Elementwise smaller (also on Python numbers and launch-size expressions)."""
    return _minmax("min", a, b)


def maximum(a: Any, b: Any) -> Any:
    return _minmax("max", a, b)


def fma(a: Any, b: Any, c: Any) -> Any:
    """a * b + c in one rounding."""
    if all(isinstance(x, PyNum) for x in (a, b, c)):
        return a * b + c
    d = common(a, b, c, op="enigma.fma")
    return Val(current().emit("fma", [as_val(a, d).v, as_val(b, d).v, as_val(c, d).v], [ir.Type(d)]).result)


def where(cond: Any, a: Any, b: Any) -> Any:
    """cond ? a : b, evaluating both sides (use `if` to guard memory accesses)."""
    if isinstance(cond, PyNum):
        return a if cond else b
    c = to_bool(cond)
    d = common(a, b, op="enigma.where")
    return Val(current().emit("select", [c.v, as_val(a, d).v, as_val(b, d).v], [ir.Type(d)]).result)


def ceil_div(a: Any, b: Any) -> Any:
    """-(-a // b): on Python ints, launch-size expressions, or traced ints ((a + b - 1) // b)."""
    if isinstance(a, Expr) or isinstance(b, Expr):
        return ceil_div_expr(a, b)
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    return (a + b - 1) // b


def const_expr(x: Any) -> Any:
    """Mark a condition as compile-time: `if enigma.const_expr(BLOCK > 128):` is decided while tracing."""
    if isinstance(x, Val):
        raise error_here(f"const_expr needs a compile-time value, got a {describe(x)}",
                         "const_expr conditions may only use Python values and Constexpr parameters")
    return x


def range_constexpr(*args: int) -> range:
    """A loop unrolled at trace time; its bounds must be Python ints."""
    for a in args:
        if not isinstance(a, int) or isinstance(a, bool):
            raise error_here(f"range_constexpr bounds must be Python ints, got {describe(a)}",
                             "use range(...) for a loop with run-time bounds")
    return range(*args)
