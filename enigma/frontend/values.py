"""Traced values and type promotion.

A `Val` wraps an SSA value of the kernel being traced; Python operators on it emit IR. Python numbers
mixed with a Val are "weak": they take the Val's type (a Python float next to an int Val gives float32).
Two Vals promote as: bool < any number; float beats int; the wider type wins; equal-width float16 and
bfloat16 meet at float32; equal-width signed and unsigned ints meet at the unsigned one.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from enigma_runtime import dtypes as dt
from enigma_runtime import ops
from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import EnigmaTypeError, error_here
from enigma.frontend.builder import current

PyNum = (bool, int, float)


def describe(x: Any) -> str:
    if isinstance(x, Val):
        return f"traced {x.dtype.name} (a run-time value)"
    if isinstance(x, Undefined):
        return f"undefined variable {x.name!r}"
    return f"Python {type(x).__name__} (a compile-time value)"


def show(x: Any) -> str:
    """`repr(x)` for messages, with traced values (whose repr is refused) written as <traced dtype>."""
    if isinstance(x, Val):
        return f"<traced {x.dtype.name}>"
    if isinstance(x, tuple):
        return "(" + ", ".join(show(e) for e in x) + ("," if len(x) == 1 else "") + ")"
    if isinstance(x, list):
        return "[" + ", ".join(show(e) for e in x) + "]"
    return repr(x)


def type_error(message: str, hint: str = "") -> EnigmaTypeError:
    return error_here(message, hint, EnigmaTypeError)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------
# promotion

def join(a: DType, b: DType) -> DType:
    if a == b:
        return a
    if a.kind == "b" or b.kind == "b":
        return b if a.kind == "b" else a
    if a.is_float != b.is_float:
        return a if a.is_float else b
    if a.itemsize != b.itemsize:
        return a if a.itemsize > b.itemsize else b
    if a.is_float:
        return dt.float32  # float16 vs bfloat16
    return a if a.kind == "u" else b


def weak_join(d: DType, x: bool | int | float) -> DType:
    if isinstance(x, bool):
        return d
    if isinstance(x, int):
        return dt.int32 if d.kind == "b" else d
    return d if d.is_float else dt.float32


def default_dtype(x: bool | int | float) -> DType:
    return dt.bool_ if isinstance(x, bool) else dt.int32 if isinstance(x, int) else dt.float32


def const(x: bool | int | float, d: DType) -> Val:
    if d.is_float:
        value: bool | int | float = float(x)
    elif d.kind == "b":
        value = bool(x)
    else:
        if isinstance(x, float):
            raise type_error(f"the Python float {x!r} cannot become a {d.name} constant without losing "
                             "its fraction", f"write int({x!r}) or use a float tensor")
        value = wrapped(int(x), d)
    return Val(current().entry("const", ir.Type(d), {"value": value}))


def as_val(x: Any, d: DType) -> Val:
    """x as a Val of dtype d (casting a Val, materialising a Python number)."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, Val):
        return x if x.dtype == d else x.to(d)
    if isinstance(x, PyNum):
        return const(x, d)
    raise type_error(f"expected a number, got {describe(x)}")


def to_val(x: Any) -> Val:
    if isinstance(x, Val):
        return x
    if isinstance(x, PyNum):
        return const(x, default_dtype(x))
    raise type_error(f"expected a number, got {describe(x)}")


def common(*xs: Any, op: str = "") -> DType:
    xs = tuple(x.item() if isinstance(x, np.generic) else x for x in xs)  # numpy scalars act like Python's
    d: DType | None = None
    for x in xs:
        if isinstance(x, Val):
            d = x.dtype if d is None else join(d, x.dtype)
        elif isinstance(x, Undefined):
            x.fail()
        elif not isinstance(x, PyNum):
            others = " and ".join(describe(y) for y in xs)
            raise type_error(f"unsupported operand types for {op or 'this operation'}: {others}",
                             "kernel arithmetic works on traced values and Python numbers only")
    for x in xs:
        if not isinstance(x, Val):
            d = default_dtype(x) if d is None else weak_join(d, x)
    assert d is not None
    if d.is_int:
        for x in xs:
            if isinstance(x, int) and not isinstance(x, bool) and not fits(x, d):
                raise type_error(f"the Python int {x} does not fit {d.name}, the type of the other operand "
                                 f"of {op or 'this operation'} (it would wrap to {wrapped(x, d)})",
                                 "cast the traced value to a wider type first, e.g. x.to(enigma.int32)")
    if d.is_float:
        for x in xs:
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                becomes = float_literal_rounds_to(x, d)
                if becomes is not None:
                    raise type_error(f"the Python {type(x).__name__} {x!r} does not fit {d.name}, the type "
                                     f"of the other operand of {op or 'this operation'} (it would become "
                                     f"{becomes})", "cast the traced value to a wider type first, e.g. "
                                     "x.to(enigma.float32), or write float('inf') / 0.0 if that is meant")
    return d


def float_literal_rounds_to(x: int | float, d: DType) -> str | None:
    """"inf" / "0.0" (signed) when the finite, non-zero Python number `x` overflows / underflows to that in
    the float type `d` (`DType.round`: nearest even); None when it stays a finite non-zero value (or is
    0, inf or nan to begin with)."""
    try:
        f = float(x)
    except OverflowError:  # an int beyond any float
        return "-inf" if x < 0 else "inf"
    if f == 0.0 or f != f or f in (float("inf"), float("-inf")):
        return None
    r = float(d.round(f))
    if r in (float("inf"), float("-inf")):
        return "-inf" if f < 0 else "inf"
    if r == 0.0:
        return "-0.0" if f < 0 else "0.0"
    return None


def fits(x: int, d: DType) -> bool:
    """True when the Python int `x` is a value of the integer type `d`."""
    lo, hi = d.min, d.max
    return lo <= x <= hi


def wrapped(x: int, d: DType) -> int:
    """`x` reduced to the integer type `d` (two's complement wrap-around: `DType.wrap`)."""
    return int(d.wrap(int(x)))


def to_bool(x: Any) -> Val:
    if isinstance(x, Val):
        return x if x.dtype.kind == "b" else x != 0
    return const(bool(x), dt.bool_)


# ---------------------------------------------------------------------------------------------------
# operators

def binary(op: str, a: Any, b: Any, symbol: str) -> Val:
    d = common(a, b, op=symbol)
    x, y = as_val(a, d), as_val(b, d)
    return Val(current().emit(op, [x.v, y.v], [ir.Type(d)]).result)


_SWAP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def compare(op: str, a: Any, b: Any, symbol: str) -> Val:
    if isinstance(b, Val) and not isinstance(a, Val):
        return compare(_SWAP[op], b, a, symbol)
    if isinstance(a, Val) and a.dtype.is_int and isinstance(b, int) and not isinstance(b, bool) \
            and not fits(b, a.dtype):  # e.g. int8 < 300: decided by the type's range, as in NumPy 2
        above = b > 0  # b is above the type's largest value (else below its smallest)
        result = {"lt": above, "le": above, "gt": not above, "ge": not above, "eq": False, "ne": True}[op]
        return const(result, dt.bool_)
    d = common(a, b, op=symbol)
    x, y = as_val(a, d), as_val(b, d)
    return Val(current().emit(op, [x.v, y.v], [ir.Type(dt.bool_)]).result)


def integer_only(op: str, a: Any, b: Any, symbol: str) -> Val:
    d = common(a, b, op=symbol)
    if d.is_float:
        raise type_error(f"{symbol} needs integer or bool operands, got {describe(a)} and {describe(b)}",
                         "cast with .to(enigma.int32) first")
    if op in ("shl", "shr") and isinstance(b, int) and not isinstance(b, bool) and not 0 <= b < d.bits:
        raise error_here(f"shift amount {b} is outside 0..{d.bits - 1} for {d.name} (the result would be "
                         "unspecified: FORMAT.md section 4)", f"shift by less than {d.bits}, or cast to a "
                         "wider type first")
    return binary(op, a, b, symbol)


def true_div(a: Any, b: Any) -> Val:
    d = common(a, b, op="/")
    if not d.is_float:
        d = dt.float32  # int / int is float32 division, as in Python
    return binary("div", as_val(a, d), as_val(b, d), "/")


def floor_div(a: Any, b: Any) -> Val:
    d = common(a, b, op="//")
    q = binary("div", a, b, "//")
    return unary("floor", q) if d.is_float else q  # ints: C division (truncates toward zero)


def unary(op: str, a: Val, d: DType | None = None) -> Val:
    return Val(current().emit(op, [a.v], [ir.Type(d or a.dtype)]).result)


class Val:
    """A traced run-time value of one dtype."""

    __slots__ = ("v",)
    __array_ufunc__ = None  # numpy scalars defer to our reflected operators

    def __init__(self, v: ir.Value) -> None:
        self.v = v

    @property
    def dtype(self) -> DType:
        return self.v.type.dtype

    def to(self, d: DType) -> Val:
        """Cast to `d` (float->int truncates toward zero; ->bool is != 0)."""
        if not isinstance(d, DType):
            raise type_error(f".to() takes an enigma dtype such as enigma.float16, got {describe(d)}")
        return self if d == self.dtype else unary("cast", self, d)

    # text and hashing would freeze a run-time value into a trace-time constant: refused
    def _as_text(self, what: str) -> Any:
        raise type_error(f"{what} of a {describe(self)}: its value is only known at run time, so the text "
                         "would be a trace-time constant", "kernels cannot build strings from run-time "
                         "values; compute with the value and write it to an output tensor")

    def __repr__(self) -> str:
        return self._as_text("repr()")

    def __str__(self) -> str:
        return self._as_text("str() (or an f-string)")

    def __format__(self, spec: str) -> str:
        return self._as_text("format() (or an f-string)")

    def __hash__(self) -> int:
        raise type_error(f"hash() of a {describe(self)} (a dict key or set member): its value is only known "
                         "at run time", "key dicts and sets by Python values, not traced ones")

    def bitcast(self, d: DType) -> Val:
        """The same bits read as dtype `d` (Metal's as_type; the sizes must match): frontend/vectors.py."""
        return EXTENSIONS["bitcast"](self, d)  # type: ignore[no-any-return]

    # arithmetic
    def __add__(self, o: Any) -> Val: return binary("add", self, o, "+")
    def __radd__(self, o: Any) -> Val: return binary("add", o, self, "+")
    def __sub__(self, o: Any) -> Val: return binary("sub", self, o, "-")
    def __rsub__(self, o: Any) -> Val: return binary("sub", o, self, "-")
    def __mul__(self, o: Any) -> Val: return binary("mul", self, o, "*")
    def __rmul__(self, o: Any) -> Val: return binary("mul", o, self, "*")
    def __truediv__(self, o: Any) -> Val: return true_div(self, o)
    def __rtruediv__(self, o: Any) -> Val: return true_div(o, self)
    def __floordiv__(self, o: Any) -> Val: return floor_div(self, o)
    def __rfloordiv__(self, o: Any) -> Val: return floor_div(o, self)
    def __mod__(self, o: Any) -> Val: return binary("mod", self, o, "%")
    def __rmod__(self, o: Any) -> Val: return binary("mod", o, self, "%")
    def __and__(self, o: Any) -> Val: return integer_only("and", self, o, "&")
    def __rand__(self, o: Any) -> Val: return integer_only("and", o, self, "&")
    def __or__(self, o: Any) -> Val: return integer_only("or", self, o, "|")
    def __ror__(self, o: Any) -> Val: return integer_only("or", o, self, "|")
    def __xor__(self, o: Any) -> Val: return integer_only("xor", self, o, "^")
    def __rxor__(self, o: Any) -> Val: return integer_only("xor", o, self, "^")
    def __lshift__(self, o: Any) -> Val: return integer_only("shl", self, o, "<<")
    def __rlshift__(self, o: Any) -> Val: return integer_only("shl", o, self, "<<")
    def __rshift__(self, o: Any) -> Val: return integer_only("shr", self, o, ">>")
    def __rrshift__(self, o: Any) -> Val: return integer_only("shr", o, self, ">>")

    def __pow__(self, o: Any) -> Val:
        if not isinstance(o, int) or isinstance(o, bool) or not 1 <= o <= 8:
            raise type_error(f"** on a traced value needs a Python int exponent 1..8, got {describe(o)}",
                             "use enigma.pow(x, y) for general powers")
        r = self
        for _ in range(o - 1):
            r = r * self
        return r

    def __neg__(self) -> Val: return unary("neg", self)
    def __pos__(self) -> Val: return self

    def __invert__(self) -> Val:
        if self.dtype.is_float:
            raise type_error(f"~ needs an integer or bool operand, got {describe(self)}")
        return unary("not", self)

    def __abs__(self) -> Val:
        return self if self.dtype.kind in "ub" else unary("abs", self)

    # comparisons give bool
    def __lt__(self, o: Any) -> Val: return compare("lt", self, o, "<")  # type: ignore[override]
    def __le__(self, o: Any) -> Val: return compare("le", self, o, "<=")  # type: ignore[override]
    def __gt__(self, o: Any) -> Val: return compare("gt", self, o, ">")  # type: ignore[override]
    def __ge__(self, o: Any) -> Val: return compare("ge", self, o, ">=")  # type: ignore[override]
    def __eq__(self, o: Any) -> Val: return compare("eq", self, o, "==")  # type: ignore[override]
    def __ne__(self, o: Any) -> Val: return compare("ne", self, o, "!=")  # type: ignore[override]

    # a run-time value has no compile-time Python meaning
    def __bool__(self) -> bool:
        raise type_error(f"a {describe(self)} cannot be used as a Python bool",
                         "`if`/`while` statements on traced values are compiled in kernels and in helpers "
                         "decorated with @enigma.func; for expressions use enigma.where(cond, a, b), and "
                         "`&`/`|` instead of chained comparisons and `and`/`or` outside kernels")

    def __index__(self) -> int:
        raise type_error(f"a {describe(self)} cannot be used as a Python int (list index, range_constexpr"
                         ", slice)", "index enigma tensors (t[i]) or use enigma.range(...) loops")

    def __int__(self) -> int:
        raise type_error(f"int() of a {describe(self)}: its value is only known at run time",
                         "use .to(enigma.int32) to cast in the kernel")

    def __float__(self) -> float:
        raise type_error(f"float() of a {describe(self)} (e.g. math.sqrt of it): its value is only known at"
                         " run time", "use the enigma functions (enigma.sqrt, enigma.exp, ...) in kernels")

    def __iter__(self) -> Any:
        raise type_error(f"a {describe(self)} is a scalar and cannot be iterated")


# Traced values that are not scalars, registered by their modules when imported (enigma imports both):
# "vector" -> frontend/vectors.Vector, "matrix" -> frontend/simdgroup.SimdMatrix, and "bitcast" ->
# frontend/vectors.bitcast (Val.bitcast). A registry, so that this module imports none of them.
EXTENSIONS: dict[str, Any] = {}


def wrap(v: ir.Value) -> Val:
    """The traced value of the right class for an SSA value: Val (scalar), a vector or a simdgroup
    matrix (what control flow rebuilds for its results and region arguments)."""
    kind = "matrix" if v.type.matrix else "vector" if v.type.lanes > 1 else ""
    return EXTENSIONS[kind](v) if kind else Val(v)  # type: ignore[no-any-return]


class Undefined:
    """A variable that has no single value after dynamic control flow (assigned in one branch only,
    or only inside a loop body). Using it is an error at the line of the use."""

    __slots__ = ("name", "why")

    def __init__(self, name: str, why: str) -> None:
        self.name, self.why = name, why

    def fail(self) -> None:
        raise error_here(f"variable {self.name!r} is used but has no value here: {self.why}",
                         f"assign {self.name!r} before the `if`/loop (or in every branch) so it has a value "
                         "on every path")

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        self.fail()

    def _fail(self, *a: Any) -> Any:
        self.fail()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _fail
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __lt__ = __le__ = __gt__ = __ge__ = _fail
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __neg__ = __bool__ = __index__ = _fail
    __getitem__ = __setitem__ = __call__ = __iter__ = _fail
    __eq__ = __ne__ = _fail  # type: ignore[assignment]
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<undefined {self.name}>"


def pymath(name: str, *xs: float) -> float:
    """A math op of the op table on Python numbers (compile-time values): its `py` function."""
    py = ops.OPS[name].py
    assert py is not None, f"op {name!r} has no Python-number form"
    return py(*xs)
