"""Vector values (float4, half4, ...) and bit casts in kernel bodies.

`t.load_vec(index, width)` reads `width` (2, 3 or 4) consecutive elements along the last axis starting at
`t[index]`; `t.store_vec(index, v)` writes them. Both are `vload`/`vstore` ops with `packed=True`: the
MSL printer reads and writes them through Metal's packed_<type>N (aligned like one element), so an
index that is not a multiple of the width is still a defined access. Vectors support + - * / and
unary minus lane by lane (a scalar operand is broadcast), `v[k]` with a Python int k, `v.to(dtype)`,
`v.bitcast(dtype)`, `enigma.dot(a, b)` and `enigma.vec(x0, x1, ...)`.
"""
from __future__ import annotations

from typing import Any

from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import error_here
from enigma.frontend.builder import current
from enigma.frontend.values import (
    EXTENSIONS,
    PyNum,
    Undefined,
    Val,
    as_val,
    common,
    describe,
    join,
    type_error,
    wrap,
)

WIDTHS = (2, 3, 4)
# element types Metal has vector (and packed vector) types of
VECTOR_DTYPES = ("float32", "float16", "int32", "uint32", "int16", "uint16", "int8", "uint8")


def check_vector_dtype(d: DType, what: str) -> None:
    if d.name not in VECTOR_DTYPES:
        raise type_error(f"{what}: Metal has no packed vectors of {d.name}",
                         f"vectors hold {', '.join(VECTOR_DTYPES)}")


def check_width(width: Any, what: str) -> int:
    if not isinstance(width, int) or isinstance(width, bool) or width not in WIDTHS:
        raise error_here(f"{what}: the vector width must be a Python int 2, 3 or 4, got {describe(width)}",
                         "Metal vectors have 2, 3 or 4 lanes")
    return width


def _vec_of(x: Any, d: DType, lanes: int) -> ir.Value:
    """`x` (a Vector, a scalar Val or a Python number) as a `lanes`-vector of `d`."""
    if isinstance(x, Vector):
        if x.lanes != lanes:
            raise type_error(f"vectors of {x.lanes} and {lanes} lanes cannot be combined")
        return x.to(d).v
    s = as_val(x, d)
    return current().emit("broadcast", [s.v], [ir.Type(d, lanes)], {"lanes": lanes}).result


def _binary(op: str, a: Any, b: Any, symbol: str) -> Vector:
    for x in (a, b):
        if isinstance(x, Undefined):
            x.fail()
        if not isinstance(x, (Val, *PyNum)):
            raise type_error(f"unsupported operand for vector {symbol}: {describe(x)}")
    lanes = a.lanes if isinstance(a, Vector) else b.lanes
    d = join(a.dtype, b.dtype) if isinstance(a, Val) and isinstance(b, Val) else \
        common(*(x if not isinstance(x, Vector) else Val(x.v) for x in (a, b)), op=symbol)
    if op == "div" and not d.is_float:
        raise type_error(f"vector {symbol} needs float vectors", "convert with .to(enigma.float32) first")
    x, y = _vec_of(a, d, lanes), _vec_of(b, d, lanes)
    return Vector(current().emit(op, [x, y], [ir.Type(d, lanes)]).result)


class Vector(Val):
    """A traced vector of 2, 3 or 4 lanes of one dtype (Metal's float4, half2, int3, ...)."""

    __slots__ = ()

    @property
    def lanes(self) -> int:
        return self.v.type.lanes

    def __repr__(self) -> str:
        return f"Vector({self.v!r})"

    def __len__(self) -> int:
        return self.lanes

    def __getitem__(self, k: Any) -> Val:
        if isinstance(k, bool) or not isinstance(k, int):
            raise error_here(f"a vector lane must be a Python int (0..{self.lanes - 1}), got {describe(k)}",
                             "index vectors with constants or enigma.range_constexpr variables")
        if not -self.lanes <= k < self.lanes:
            raise error_here(f"lane {k} is out of range for a {self.lanes}-lane vector")
        k %= self.lanes
        return Val(current().emit("extract", [self.v], [ir.Type(self.dtype)], {"lane": k}).result)

    def __iter__(self) -> Any:
        return iter([self[k] for k in range(self.lanes)])

    def to(self, d: DType) -> Vector:
        if not isinstance(d, DType):
            raise type_error(f".to() takes an enigma dtype such as enigma.float16, got {describe(d)}")
        if d == self.dtype:
            return self
        check_vector_dtype(d, ".to()")
        return Vector(current().emit("cast", [self.v], [ir.Type(d, self.lanes)]).result)

    def __add__(self, o: Any) -> Vector: return _binary("add", self, o, "+")
    def __radd__(self, o: Any) -> Vector: return _binary("add", o, self, "+")
    def __sub__(self, o: Any) -> Vector: return _binary("sub", self, o, "-")
    def __rsub__(self, o: Any) -> Vector: return _binary("sub", o, self, "-")
    def __mul__(self, o: Any) -> Vector: return _binary("mul", self, o, "*")
    def __rmul__(self, o: Any) -> Vector: return _binary("mul", o, self, "*")
    def __truediv__(self, o: Any) -> Vector: return _binary("div", self, o, "/")
    def __rtruediv__(self, o: Any) -> Vector: return _binary("div", o, self, "/")

    def __neg__(self) -> Vector:
        return Vector(current().emit("neg", [self.v], [self.v.type]).result)

    def _unsupported(self, *a: Any) -> Any:
        raise type_error(f"this operator is not supported on vectors ({self.dtype.name}x{self.lanes})",
                         "work on the lanes (v[0], v[1], ...) or use + - * / on whole vectors")

    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __and__ = __rand__ = __or__ = __ror__ = _unsupported
    __xor__ = __rxor__ = __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = __pow__ = _unsupported
    __lt__ = __le__ = __gt__ = __ge__ = __invert__ = __abs__ = _unsupported
    __eq__ = __ne__ = _unsupported  # type: ignore[assignment]
    __hash__ = Val.__hash__


def vec(*xs: Any) -> Vector:
    """A vector of the given 2, 3 or 4 scalars (promoted to one dtype), e.g. `enigma.vec(a, b, c, d)`."""
    check_width(len(xs), "enigma.vec")
    if any(isinstance(x, Vector) for x in xs):
        raise type_error("enigma.vec takes scalars", "take lanes of a vector with v[k]")
    d = common(*xs, op="enigma.vec")
    check_vector_dtype(d, "enigma.vec")
    vs = [as_val(x, d).v for x in xs]
    return Vector(current().emit("pack", vs, [ir.Type(d, len(xs))]).result)


def dot(a: Any, b: Any) -> Val:
    """The dot product of two float vectors of the same width (sum of the lane products, in lane
    order: a[0]*b[0] + a[1]*b[1] + ...)."""
    if not isinstance(a, Vector) or not isinstance(b, Vector):
        raise type_error(f"enigma.dot takes two vectors, got {describe(a)} and {describe(b)}")
    if a.lanes != b.lanes:
        raise type_error(f"enigma.dot of vectors of {a.lanes} and {b.lanes} lanes")
    p = a * b
    if not p.dtype.is_float:
        raise type_error("enigma.dot needs float vectors", "convert with .to(enigma.float32)")
    acc = p[0]
    for k in range(1, p.lanes):
        acc = acc + p[k]
    return acc


def bitcast(x: Any, d: DType) -> Val:
    """The bits of `x` read as dtype `d` (Metal's as_type). A scalar becomes a scalar of the same size
    (float32 <-> int32/uint32, float16 <-> int16/uint16/bfloat16); a vector may change its lane count
    when the total size is kept (uchar4 -> uint32, half2 -> float32)."""
    if isinstance(x, Undefined):
        x.fail()
    if not isinstance(d, DType):
        raise type_error(f".bitcast() takes an enigma dtype, got {describe(d)}")
    if not isinstance(x, Val) or x.v.type.matrix:
        raise type_error(f".bitcast() needs a traced scalar or vector, got {describe(x)}")
    t = x.v.type
    if d.kind == "b" or x.dtype.kind == "b":
        raise type_error("bool has no defined bit pattern to reinterpret", "use .to(...) instead")
    bits = x.dtype.bits * t.lanes
    if bits % d.bits or bits // d.bits not in (1, *WIDTHS) or (t.lanes == 1 and bits != d.bits):
        size = f"{x.dtype.name}x{t.lanes}" if t.lanes > 1 else x.dtype.name
        raise type_error(f"bitcast of a {size} ({bits // 8} bytes) to {d.name} ({d.bits // 8} bytes): the "
                         "sizes differ", "bitcast to a type of the same size (float32 <-> int32/uint32, "
                         "float16 <-> int16/uint16)")
    lanes = bits // d.bits
    if lanes > 1:
        check_vector_dtype(d, ".bitcast()")
    if x.dtype == d and lanes == t.lanes:
        return x
    return wrap(current().emit("bitcast", [x.v], [ir.Type(d, lanes)]).result)


EXTENSIONS["vector"] = Vector
EXTENSIONS["bitcast"] = bitcast
