"""The op table: every op of the portable IR (FORMAT.md section 4), defined once.

One `OpInfo` row per op name: its group, arity, result-type rule, operand restrictions, whether it is
pure and whether constant folding may evaluate it, and, for elementwise ops, ONE numpy function with
the op's exact semantics, every edge case included (docs/abi.md, "Semantics of every op"). Everything
that needs to know an op reads this table:

- the compiler's op groups (`enigma.ir.BINARY`, `UNARY`, ..., `ALL_OPS`, `NOT_PURE`);
- constant folding (`enigma.passes.fold`), which calls `fn` on constants;
- the CPU executor (`enigma_runtime.cpu`), which calls `fn` on whole thread-space arrays;
- the frontend's math on Python numbers (`py`) and its list of math functions (`enigma.exp`, ...);
- the printers (enigma.backends.msl / mlir), whose spelling tables are keyed by these names and are
  tested to cover every row;
- differential fuzzers, which use `fn` as their model of the IR.

Values. `fn(src, dst, *xs)` takes numpy arrays (or numpy scalars) of any shapes that broadcast, each
holding its operand's *value dtype* (`DType.value_np`: the numpy dtype, except bfloat16, which is
computed in float32 holding bfloat16 values), and returns the result in the value dtype of `dst`
(bool for comparisons), rounded to `dst`. `src` is the type of the (value) operands, `dst` the result
type; they differ only for comparisons (bool), `cast` (any) and `select` (whose first operand is bool).
`apply(name, src, dst, *xs)` is the same with warnings silenced.

Extending. A new op is `register(OpInfo(...))` here (an elementwise op with `fn` and, if it is math
on floats, `py` and `frontend=True` so that `enigma.<name>` exists), a spelling in each printer
(enigma/backends/msl.py `MSL_FLOAT`/`MSL_INT`; mlir.py prints any op generically), the function in the
Metal compatibility header (enigma/verify/include) if Metal's stdlib has it, a row in FORMAT.md
section 4 and docs/abi.md, and tests. Ops that are not elementwise (memory, simd, control, simdgroup
matrices) are registered with `fn=None` and the flags that tell passes how to treat them; their
printing is a method of each printer (msl.py lists those names in `STRUCTURE`; mlir.py prints any op
in generic form), and the CPU executor needs an `_op_<name>` handler. The tests check that every row
is covered: tests/backends (each printer, every dtype, clang and mlir-opt) and
runtime/tests/test_rt_cpu_ops.py (the functions and the executor's catalogue).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dtypes import DType

GROUPS = ("binary", "compare", "unary", "ternary", "builtin", "memory", "simd", "control", "other",
          "vector", "simd_matrix")


@dataclass(frozen=True)
class OpInfo:
    """One op of the IR.

    group: one of GROUPS (the IR's op classes). arity: number of operands (-1: variable).
    result: the result-type rule: "same" (the operands' type), "bool" (bool of the operands' lanes),
    "declared" (the type the op declares: cast, loads, builtins), "none" (no result).
    operands: which operand kinds the op accepts: "any", "float" (math: ints are converted to float32
    by the frontend and refused by the executor), "int" (ints and bools: bitwise ops), "number" (no
    bool). pure: no effect and no dependence on memory or on other threads (may be merged or removed).
    side_effect: never removed. foldable: `fn` is what every device computes bit for bit (exactly
    rounded), so constant folding may evaluate it. fn / py: see the module docstring. frontend: the
    frontend exposes `enigma.<name>` as a math function. doc: one line of semantics.
    """

    name: str
    group: str
    arity: int
    result: str = "same"
    operands: str = "any"
    pure: bool = True
    side_effect: bool = False
    foldable: bool = False
    fn: Callable[..., Any] | None = None
    py: Callable[..., Any] | None = None
    frontend: bool = False
    doc: str = ""

    @property
    def float_only(self) -> bool:
        return self.operands == "float"

    @property
    def elementwise(self) -> bool:
        return self.fn is not None


OPS: dict[str, OpInfo] = {}


def register(op: OpInfo) -> OpInfo:
    """Add a row to the table (a name may be registered once)."""
    if op.group not in GROUPS:
        raise ValueError(f"op {op.name!r}: group {op.group!r} is not one of {GROUPS}")
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is already in the op table")
    OPS[op.name] = op
    return op


def group(name: str) -> tuple[str, ...]:
    """The names of one group, in table order."""
    return tuple(n for n, o in OPS.items() if o.group == name)


def apply(name: str, src: DType, dst: DType, *xs: Any) -> Any:
    """`OPS[name].fn(src, dst, *xs)` with numpy's floating-point and overflow warnings silenced (wrap-
    around, inf and NaN are the defined results, not errors)."""
    fn = OPS[name].fn
    if fn is None:
        raise ValueError(f"op {name!r} is not elementwise")
    with np.errstate(all="ignore"):
        return fn(src, dst, *xs)


# ---------------------------------------------------------------------------------------------------
# helpers: results rounded to the destination type

def _out(d: DType, r: Any) -> Any:
    """`r` as a value of `d`: floats rounded to `d` (bfloat16 too), ints wrapped, bools as bool."""
    if isinstance(r, (np.ndarray, np.generic)) and r.dtype == d.np and d.name != "bfloat16":
        return r  # already a value of d (the common case: no copy, no call)
    if d.kind == "b":
        return np.asarray(r).astype(np.bool_)[()]
    if d.is_int:
        return d.wrap(r)
    return d.round(r)


def _f(d: DType, np_fn: Callable[..., Any]) -> Callable[..., Any]:
    """A float op computed by numpy in the value dtype and rounded to `d` (bfloat16: float32 result
    rounded once more, which for + - * / is exact rounding, as on the GPU)."""
    def fn(*xs: Any) -> Any:
        return _out(d, np_fn(*xs))
    return fn


def _uint(d: DType) -> np.dtype:
    return np.dtype(f"uint{max(8, d.bits)}")


# ---------------------------------------------------------------------------------------------------
# elementwise semantics

def _arith(np_fn: Callable[..., Any]) -> Callable[..., Any]:
    """+ - *: IEEE on floats; integers wrap at their width (computed in the unsigned type)."""
    def fn(src: DType, dst: DType, a: Any, b: Any) -> Any:
        if src.is_int:  # numpy's integer arithmetic wraps (its overflow warnings are silenced by apply)
            return src.wrap(np_fn(a, b))
        if src.kind == "b":
            return _out(dst, np_fn(np.asarray(a, np.uint8), np.asarray(b, np.uint8)))
        return _out(dst, np_fn(a, b))
    return fn


def _int_guard(src: DType, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """(bad, a, b with a safe divisor): bad where b == 0 or (signed) a == MIN and b == -1."""
    a, b = np.asarray(a), np.asarray(b)
    bad = b == 0
    if src.kind == "i":
        bad = bad | ((a == src.min) & (b == -1))
    return bad, a, np.where(bad, np.ones_like(b), b)


def _div(src: DType, dst: DType, a: Any, b: Any) -> Any:
    """float: IEEE division. int: truncates toward zero; x / 0 = x and MIN / -1 = MIN (WGSL's rule)."""
    if not src.is_int:
        return _out(dst, np.divide(a, b))
    bad, a, sb = _int_guard(src, a, b)
    q = np.floor_divide(a, sb)
    if src.kind == "i":  # floor -> truncation where the signs differ and the division is inexact
        q = q + ((np.remainder(a, sb) != 0) & ((a < 0) != (sb < 0))).astype(src.np)
    return np.where(bad, a, q).astype(src.np)[()]


def _mod(src: DType, dst: DType, a: Any, b: Any) -> Any:
    """float: C fmod (sign of a; fmod(x, 0) is NaN). int: C remainder (sign of a); x % 0 = 0 and
    MIN % -1 = 0."""
    if not src.is_int:
        return _out(dst, np.fmod(a, b))
    bad, a, sb = _int_guard(src, a, b)
    return np.where(bad, np.zeros_like(a), np.fmod(a, sb)).astype(src.np)[()]


def _minmax(is_min: bool) -> Callable[..., Any]:
    """float: IEEE 754-2019 minimumNumber/maximumNumber: a NaN operand yields the other operand (NaN
    only if both are), and -0 < +0 (min(+0, -0) = -0, max(+0, -0) = +0). int: the smaller/larger."""
    def fn(src: DType, dst: DType, a: Any, b: Any) -> Any:
        if not src.is_float:
            return (np.minimum if is_min else np.maximum)(a, b)
        r = (np.fmin if is_min else np.fmax)(a, b)
        tie = np.asarray(a) == np.asarray(b)  # equal values: only the zeros' signs can differ
        if np.any(tie):
            neg_a = np.signbit(a)
            pick_a = neg_a if is_min else ~neg_a
            r = np.where(tie, np.where(pick_a, a, b), r)
        return _out(dst, r)
    return fn


def _bitwise(np_fn: Callable[..., Any]) -> Callable[..., Any]:
    def fn(src: DType, dst: DType, a: Any, b: Any) -> Any:
        return np_fn(a, b)
    return fn


def _shift(left: bool) -> Callable[..., Any]:
    """Shift amounts are taken modulo the width (b & (bits - 1), b read as unsigned). shl: bits shifted
    out are lost (negative values too); shr: arithmetic on signed types, logical on unsigned."""
    def fn(src: DType, dst: DType, a: Any, b: Any) -> Any:
        if src.kind == "b":  # a 1-bit value shifted by (b mod 1) == 0
            return np.broadcast_to(np.asarray(a, np.bool_), np.broadcast_shapes(np.shape(a), np.shape(b)))[()]
        u = _uint(src)
        s = (np.asarray(b).astype(u) & u.type(src.bits - 1))
        if left:
            return (np.asarray(a).astype(u) << s).astype(src.np)[()]
        return np.right_shift(np.asarray(a), s.astype(src.np))[()]
    return fn


def _compare(np_fn: Callable[..., Any]) -> Callable[..., Any]:
    """IEEE comparisons (every comparison with NaN is false except ne)."""
    def fn(src: DType, dst: DType, a: Any, b: Any) -> Any:
        return np_fn(a, b)
    return fn


def _neg(src: DType, dst: DType, a: Any) -> Any:
    """float: sign flipped (also of 0 and NaN). int: 0 - a, wrapping (neg(MIN) = MIN; numpy wraps)."""
    return np.negative(a)


def _not(src: DType, dst: DType, a: Any) -> Any:
    """Bitwise not (logical not on bool)."""
    return np.invert(a)


def _abs(src: DType, dst: DType, a: Any) -> Any:
    """float: sign cleared. Signed int: wraps (abs(MIN) = MIN); unsigned: the value."""
    if src.kind == "u":
        return a
    if src.kind == "i":
        return np.where(np.asarray(a) < 0, _neg(src, dst, a), a).astype(src.np)[()]
    return np.abs(a)


def _math(np_fn: Callable[..., Any]) -> Callable[..., Any]:
    def fn(src: DType, dst: DType, *xs: Any) -> Any:
        return _out(dst, np_fn(*xs))
    return fn


def _rsqrt(x: Any) -> Any:
    return np.reciprocal(np.sqrt(x))


def _py_pow(x: float, y: float) -> float:
    """pow on Python numbers, with C's results where Python raises (NaN, inf)."""
    odd = y % 2 == 1  # an odd integer exponent keeps the sign of x
    try:
        return math.pow(x, y)
    except ValueError:  # 0 to a negative power (C: +-inf), or a negative x to a fractional power (NaN)
        return (math.copysign(math.inf, x) if odd else math.inf) if x == 0 else math.nan
    except OverflowError:
        return math.copysign(math.inf, x) if odd else math.inf


def _py64(np_fn: Callable[..., Any]) -> Callable[..., float]:
    """A numpy function on Python numbers, in float64 (C's NaN and inf where Python's math raises)."""
    def fn(*xs: float) -> float:
        with np.errstate(all="ignore"):
            return float(np_fn(*(np.float64(x) for x in xs)))
    return fn


# erf: Metal's standard library has none, so Enigma defines it (the MSL printer emits `enigma_erf`,
# built from these constants with the same fma steps): for |x| < 0.5 the Taylor series of erf(x)/x in
# x^2 (7 terms); otherwise 1 - erfc(|x|) with Numerical Recipes' erfc (t = 1/(1 + |x|/2), erfc =
# t * exp(-x^2 + P(t))), sign of x. Within 3e-7 relative (2.5 ulp) of erf for float32 (tested).
ERF_SMALL = (1.1283791670955126, -0.37612638903183754, 0.11283791670955126, -0.026866170645131252,
             0.005223977625442188, -0.0008548327023450853, 0.00012055332981789664)
ERF_BIG = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
           1.48851587, -0.82215223, 0.17087277)


def _fma32(a: Any, b: Any, c: Any) -> Any:
    """float32 fma (one rounding: exact in float64 first)."""
    f64 = np.float64
    return (np.asarray(a, f64) * np.asarray(b, f64) + np.asarray(c, f64)).astype(np.float32)


def _erf32(x: Any) -> Any:
    """Enigma's erf in float32, step by step as the emitted `enigma_erf` computes it."""
    f = np.float32
    x = np.asarray(x, f)
    z = np.abs(x)
    s = x * x
    p = np.full_like(x, f(ERF_SMALL[-1]))
    for c in ERF_SMALL[-2::-1]:
        p = _fma32(p, s, f(c))
    t = f(1) / _fma32(f(0.5), z, f(1))
    q = np.full_like(x, f(ERF_BIG[-1]))
    for c in ERF_BIG[-2::-1]:
        q = _fma32(q, t, f(c))
    big = np.copysign(_fma32(-t, np.exp(_fma32(-z, z, q)), f(1)), x)
    return np.where(z < f(0.5), x * p, big)


def _fma(src: DType, dst: DType, a: Any, b: Any, c: Any) -> Any:
    """float: a*b + c with ONE rounding (computed in float64, where the product of two float32/float16
    values is exact and the one float64 addition rounds innocuously: 53 >= 2*24 + 2 bits). int: a*b + c
    wrapping."""
    if src.is_int:
        return src.wrap(np.add(np.multiply(a, b), c))
    f64 = np.float64
    return _out(dst, np.asarray(a, f64) * np.asarray(b, f64) + np.asarray(c, f64))


def _select(src: DType, dst: DType, c: Any, a: Any, b: Any) -> Any:
    """cond ? a : b (both evaluated)."""
    return np.where(c, a, b)[()]


# float -> int conversions saturate: the largest float below each integer type's bound
def _cast(src: DType, dst: DType, x: Any) -> Any:
    """To `dst`: ->bool is x != 0 (NaN -> true); bool -> number is 0/1; int -> int wraps; float -> int
    truncates toward zero and saturates to the type's range, NaN -> 0; int -> float rounds to nearest
    even (float16/bfloat16 through float32; past float16's range: +-inf); float -> float rounds to
    nearest even (overflow: +-inf)."""
    x = np.asarray(x)
    if dst.kind == "b":
        return (x != 0)[()]
    if src.kind == "b":
        return _out(dst, x.astype(np.uint8))
    if dst.is_int:
        if src.is_int:
            return dst.wrap(x)
        t = np.trunc(x.astype(np.float64))
        t = np.where(np.isnan(t), 0.0, np.clip(t, dst.min, dst.max))
        return t.astype(dst.np)[()]
    if src.is_int:
        return _out(dst, x.astype(np.float32) if dst.name != "float32" else x)
    return _out(dst, x.astype(np.float32) if src.name != "float32" and dst.name != "float32" else x)


# ---------------------------------------------------------------------------------------------------
# the table

def _elementwise() -> None:
    def row(name: str, grp: str, arity: int, fn: Callable[..., Any], doc: str, **kw: Any) -> None:
        kw.setdefault("foldable", True)
        register(OpInfo(name, grp, arity, fn=fn, doc=" ".join(doc.split()), **kw))

    B, C, U, T = "binary", "compare", "unary", "ternary"
    row("add", B, 2, _arith(np.add), "a + b (int: wraps)")
    row("sub", B, 2, _arith(np.subtract), "a - b (int: wraps)")
    row("mul", B, 2, _arith(np.multiply), "a * b (int: wraps)")
    row("div", B, 2, _div, _div.__doc__ or "", operands="number")
    row("mod", B, 2, _mod, _mod.__doc__ or "", operands="number")
    row("min", B, 2, _minmax(True), _minmax.__doc__ or "", operands="number")
    row("max", B, 2, _minmax(False), _minmax.__doc__ or "", operands="number")
    row("and", B, 2, _bitwise(np.bitwise_and), "bitwise (logical on bool)", operands="int")
    row("or", B, 2, _bitwise(np.bitwise_or), "bitwise (logical on bool)", operands="int")
    row("xor", B, 2, _bitwise(np.bitwise_xor), "bitwise (logical on bool)", operands="int")
    row("shl", B, 2, _shift(True), _shift.__doc__ or "", operands="int")
    row("shr", B, 2, _shift(False), _shift.__doc__ or "", operands="int")
    compares: list[tuple[str, Callable[..., Any]]] = [
        ("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
        ("eq", np.equal), ("ne", np.not_equal)]
    for name, f in compares:
        row(name, C, 2, _compare(f), "IEEE comparison (false on NaN, except ne)", result="bool")
    row("neg", U, 1, _neg, _neg.__doc__ or "", operands="number")
    row("not", U, 1, _not, _not.__doc__ or "", operands="int")
    row("abs", U, 1, _abs, _abs.__doc__ or "", operands="number", py=abs, frontend=True)
    math_ops: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
        ("exp", np.exp, math.exp), ("exp2", np.exp2, lambda x: 2.0 ** x), ("log", np.log, math.log),
        ("log2", np.log2, math.log2), ("sqrt", np.sqrt, math.sqrt),
        ("rsqrt", _rsqrt, lambda x: 1.0 / math.sqrt(x)), ("sin", np.sin, math.sin), ("cos", np.cos, math.cos),
        ("tanh", np.tanh, math.tanh)]
    for name, f, py in math_ops:
        row(name, U, 1, _math(f), "float math: the device's precise function, within a few ulp (not folded)",
            operands="float", py=py, frontend=True, foldable=False)
    rounding: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
        ("floor", np.floor, math.floor), ("ceil", np.ceil, math.ceil)]
    for name, f, py in rounding:
        row(name, U, 1, _math(f), "rounds to an integral float (exact)", operands="float", py=py,
            frontend=True)
    row("pow", B, 2, _math(np.power), "C's pow: x to the power y (a negative x gives NaN unless y is an "
        "integer); the device's precise function, within a few ulp (not folded)", operands="float",
        py=_py_pow, frontend=True, foldable=False)
    more_math: list[tuple[str, Callable[..., Any]]] = [
        ("sinh", np.sinh), ("cosh", np.cosh), ("asin", np.arcsin), ("acos", np.arccos), ("atan", np.arctan)]
    for name, f in more_math:
        row(name, U, 1, _math(f), "float math: the device's precise function, within a few ulp (not folded)",
            operands="float", py=_py64(f), frontend=True, foldable=False)
    row("atan2", B, 2, _math(np.arctan2), "C's atan2(y, x): the angle of (x, y) in [-pi, pi]; within a few "
        "ulp", operands="float", py=_py64(np.arctan2), frontend=True, foldable=False)
    row("erf", U, 1, _math(_erf32), "the error function, Enigma's own definition (Metal has none): see "
        "ERF_SMALL; within 3e-7 relative of erf, float16/bfloat16 computed in float32", operands="float",
        py=math.erf, frontend=True, foldable=False)
    row("fma", T, 3, _fma, _fma.__doc__ or "", operands="number")
    row("select", T, 3, _select, _select.__doc__ or "")
    row("cast", "other", 1, _cast, _cast.__doc__ or "", result="declared")


def _structural() -> None:
    def add(names: str, grp: str, arity: int, result: str = "declared", pure: bool = True,
            effect: bool = False) -> None:
        for n in names.split():
            register(OpInfo(n, grp, arity, result=result, pure=pure and not effect, side_effect=effect))
    add("thread_idx block_idx block_dim grid_dim simd_lane_id simd_group_id", "builtin", 0)
    add("load vload", "memory", 1, pure=False)
    add("store vstore", "memory", 2, result="none", effect=True)
    add("atomic_add atomic_max atomic_min", "memory", 2, effect=True)
    add("simd_sum simd_max simd_min", "simd", 1, result="same", pure=False)
    add("simd_shuffle_down simd_broadcast", "simd", 2, result="same", pure=False)
    add("if for while yield condition", "control", -1, effect=True)
    add("const param dim stride", "other", 0)
    add("broadcast", "other", 1)
    add("barrier", "other", 0, result="none", effect=True)
    # fast kernels (issue 12; executed by cpu_simdgroup.py, FORMAT.md "Vectors, bit views and
    # simdgroup matrices"): vector lanes, bit casts (a vector may change its lane count: not
    # elementwise), simdgroup matrices (collective: never merged or folded)
    add("extract bitcast", "vector", 1)
    add("pack", "vector", -1)
    add("simd_fill", "simd_matrix", 0, pure=False)
    add("simd_load", "simd_matrix", 2, pure=False)
    add("simd_mma", "simd_matrix", 3, pure=False)
    add("simd_store", "simd_matrix", 3, result="none", effect=True)


_elementwise()
_structural()
