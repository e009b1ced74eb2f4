"""Hierarchical integer tuples (CuTe's IntTuple) over Python ints and traced values.

A leaf is anything that is not a tuple: a Python int (static, decided at trace time) or a traced value
(dynamic, any object with + - * // % and comparisons). The helpers fold statically known operands
(x*1, x+0, x//1, x%1, 0*x) so a fully static computation never touches the tracer and a mixed one
emits only the arithmetic that really depends on run-time values.

Dynamic integer arithmetic assumes non-negative operands (coordinates, sizes and strides of
tensors), where C's truncating division (the IR's `div`) equals Python's floor division.
"""
from __future__ import annotations

from typing import Any

from enigma.errors import EnigmaError, user_frame

IntTuple = Any  # an int, a traced value, or a (nested) tuple of them


class LayoutError(EnigmaError, ValueError):
    """An operation of the layout algebra got arguments outside its domain (CuTe's static asserts),
    located at the kernel author's (or caller's) file:line."""

    def __init__(self, message: str, hint: str = "") -> None:
        file, line = user_frame(2)
        super().__init__(message, file, line, hint=hint)


def is_int(x: Any) -> bool:
    """True for a static (Python) integer."""
    return isinstance(x, int)


def is_static(x: Any) -> bool:
    """True if every leaf of `x` is a Python int."""
    if isinstance(x, tuple):
        return all(is_static(e) for e in x)
    return isinstance(x, int)


def is_const(x: Any, value: int) -> bool:
    """True if `x` is statically known to equal `value`."""
    return isinstance(x, int) and x == value


# ------------------------------------------------------------------------------------------------
# leaf arithmetic with static folding

class CoordVec:
    """A vector-valued stride/offset (CuTe's ScaledBasis): a tuple `t` of leaves, added leafwise and
    scaled by a scalar. The strides of an identity layout are unit CoordVecs, so the layout maps a
    coordinate to the coordinate itself, through any division, slicing or composition."""

    __slots__ = ("t",)

    def __init__(self, t: tuple) -> None:
        self.t = t

    @staticmethod
    def unit(shape: IntTuple) -> IntTuple:
        """Strides congruent to `shape` whose leaf i is the unit vector e_i (e_i has `shape`'s profile)."""
        zero = zeros_of(shape)
        out = []

        def go(s: Any, path: tuple) -> Any:
            if isinstance(s, tuple):
                return tuple(go(x, (*path, i)) for i, x in enumerate(s))
            out.append(path)
            return CoordVec(_set(zero, path, 1))
        return go(shape, ())

    def __add__(self, o: Any) -> Any:
        if isinstance(o, CoordVec):
            return CoordVec(_leafwise(add, self.t, o.t))
        if isinstance(o, int) and o == 0:
            return self
        return NotImplemented

    __radd__ = __add__

    def scale(self, k: Any) -> Any:
        if isinstance(k, int) and k == 0:
            return 0
        return CoordVec(_leafwise(lambda x, _: mul(x, k), self.t, self.t))

    def __eq__(self, o: object) -> bool:
        return isinstance(o, CoordVec) and _same_leaves(self.t, o.t)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"E{self.t}"


def zeros_of(s: Any) -> Any:
    return tuple(zeros_of(x) for x in s) if isinstance(s, tuple) else 0


def _set(t: Any, path: tuple, v: Any) -> Any:
    if not path:
        return v
    return tuple(_set(x, path[1:], v) if i == path[0] else x for i, x in enumerate(t))


def _leafwise(f: Any, a: Any, b: Any) -> Any:
    if isinstance(a, tuple):
        return tuple(_leafwise(f, x, y) for x, y in zip(a, b))
    return f(a, b)


def _same_leaves(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return all(_same_leaves(x, y) for x, y in zip(a, b))
    return a is b or (isinstance(a, int) and isinstance(b, int) and a == b)


def add(a: Any, b: Any) -> Any:
    if isinstance(b, CoordVec):
        return b + a if not isinstance(a, CoordVec) else a + b
    if isinstance(a, CoordVec):
        return a + b
    if isinstance(a, int):
        if isinstance(b, int):
            return a + b
        if a == 0:
            return b
    elif isinstance(b, int) and b == 0:
        return a
    return a + b


def sub(a: Any, b: Any) -> Any:
    if isinstance(b, int):
        if isinstance(a, int):
            return a - b
        if b == 0:
            return a
    return a - b


def mul(a: Any, b: Any) -> Any:
    if isinstance(b, CoordVec):
        return b.scale(a)
    if isinstance(a, CoordVec):
        return a.scale(b)
    if isinstance(a, int):
        if isinstance(b, int):
            return a * b
        if a == 1:
            return b
        if a == 0:
            return 0
    elif isinstance(b, int):
        if b == 1:
            return a
        if b == 0:
            return 0
    return a * b


def floordiv(a: Any, b: Any) -> Any:
    if isinstance(b, int):
        if isinstance(a, int):
            return a // b
        if b == 1:
            return a
    elif isinstance(a, int) and a == 0:
        return 0
    return a // b


def mod(a: Any, b: Any) -> Any:
    if isinstance(b, int):
        if isinstance(a, int):
            return a % b
        if b == 1:
            return 0
    elif isinstance(a, int) and a == 0:
        return 0
    return a % b


def ceil_div(a: Any, b: Any) -> Any:
    """ceil(a / b) for non-negative a and positive b; elementwise over tuples (CuTe's ceil_div)."""
    if isinstance(a, tuple):
        if isinstance(b, tuple):
            return tuple(ceil_div(x, y) for x, y in zip(a, b))
        return tuple(ceil_div(x, b) for x in a)
    if isinstance(b, tuple):
        b = product(b)
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    if is_const(b, 1):
        return a
    return floordiv(add(a, sub(b, 1)), b)


def _dyn(name: str) -> Any:
    from enigma.frontend import language  # late: the layout algebra works without the tracer

    return getattr(language, name)


def minimum(a: Any, b: Any) -> Any:
    """min(a, b); on traced values enigma.minimum (or a value's own `layout_min`, for other tracers)."""
    if isinstance(a, int) and isinstance(b, int):
        return a if a <= b else b
    for x, y in ((a, b), (b, a)):
        if hasattr(x, "layout_min"):
            return x.layout_min(y)
    return _dyn("minimum")(a, b)


def maximum(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a if a >= b else b
    for x, y in ((a, b), (b, a)):
        if hasattr(x, "layout_max"):
            return x.layout_max(y)
    return _dyn("maximum")(a, b)


def static_eq(a: Any, b: Any) -> bool | None:
    """a == b if it can be decided at trace time (ints, or the same traced object), else None."""
    if a is b:
        return True
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return None


# ------------------------------------------------------------------------------------------------
# tuple algorithms (CuTe int_tuple.hpp)

def flatten(t: IntTuple) -> tuple:
    if isinstance(t, tuple):
        out: list = []
        for e in t:
            if isinstance(e, tuple):
                out.extend(flatten(e))
            else:
                out.append(e)
        return tuple(out)
    return (t,)


def product(a: IntTuple) -> Any:
    if isinstance(a, tuple):
        r: Any = 1
        for e in a:
            r = mul(r, product(e))
        return r
    return a


def depth(a: IntTuple) -> int:
    if isinstance(a, tuple):
        return 1 + max((depth(e) for e in a), default=0)
    return 0


def rank(a: IntTuple) -> int:
    return len(a) if isinstance(a, tuple) else 1


def congruent(a: IntTuple, b: IntTuple) -> bool:
    """Same hierarchical profile."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(congruent(x, y) for x, y in zip(a, b))
    return not isinstance(b, tuple)


def prefix_product(a: IntTuple, init: IntTuple = 1) -> IntTuple:
    """Exclusive prefix product, congruent to `a` (the column-major strides of shape `a`)."""
    if isinstance(a, tuple):
        if isinstance(init, tuple):
            if len(init) != len(a):
                raise LayoutError(f"prefix_product: {a} and {init} differ in rank")
            return tuple(prefix_product(x, i) for x, i in zip(a, init))
        out = []
        for v in a:
            out.append(prefix_product(v, init))
            init = mul(init, product(v))
        return tuple(out)
    if isinstance(init, tuple):
        raise LayoutError(f"prefix_product: int shape {a} with tuple init {init}")
    return init


def inner_product(a: IntTuple, b: IntTuple) -> Any:
    if isinstance(a, tuple):
        r: Any = 0
        for x, y in zip(a, b):
            r = add(r, inner_product(x, y))
        return r
    return mul(a, b)


def crd2idx(crd: Any, shape: IntTuple, stride: IntTuple | None = None) -> Any:
    """The offset of coordinate `crd` (an int index, or a tuple congruent to part of `shape`)."""
    if stride is None:
        stride = prefix_product(shape)
    if isinstance(crd, tuple):
        if not isinstance(shape, tuple) or len(crd) != len(shape):
            raise LayoutError(f"coordinate {crd} does not match shape {shape}")
        r: Any = 0
        for c, s, d in zip(crd, shape, stride):
            r = add(r, crd2idx(c, s, d))
        return r
    if crd is None:
        crd = 0
    if isinstance(shape, tuple):  # an index into a tuple shape: colexicographic split
        r = 0
        last = len(shape) - 1
        for i, (s, d) in enumerate(zip(shape, stride)):
            if i == last:
                return add(r, crd2idx(crd, s, d))
            n = product(s)
            r = add(r, crd2idx(mod(crd, n), s, d))
            crd = floordiv(crd, n)
        return r
    return mul(crd, stride)


def idx2crd(idx: Any, shape: IntTuple, stride: IntTuple | None = None) -> Any:
    """The natural coordinate (congruent to `shape`) of index `idx` (column-major)."""
    if stride is None:
        stride = prefix_product(shape)
    if isinstance(idx, tuple):
        return tuple(idx2crd(i, s, d) for i, s, d in zip(idx, shape, stride))
    if isinstance(shape, tuple):
        return tuple(idx2crd(idx, s, d) for s, d in zip(shape, stride))
    return mod(floordiv(idx, stride), shape)


def has_none(a: Any) -> bool:
    if isinstance(a, tuple):
        return any(has_none(v) for v in a)
    return a is None


def slice_(crd: Any, trg: IntTuple) -> tuple:
    """Keep the parts of `trg` paired with None in `crd` (CuTe's slice with `_`), flattened one level."""
    if isinstance(crd, tuple):
        if not isinstance(trg, tuple) or len(crd) != len(trg):
            raise LayoutError(f"slice {crd} does not match {trg}")
        out: list = []
        for c, s in zip(crd, trg):
            out.extend(slice_(c, s))
        return tuple(out)
    return (trg,) if crd is None else ()


def dice(crd: Any, trg: IntTuple) -> tuple:
    """The complement of slice_: keep the parts of `trg` paired with a non-None coordinate."""
    if isinstance(crd, tuple):
        if not isinstance(trg, tuple) or len(crd) != len(trg):
            raise LayoutError(f"slice {crd} does not match {trg}")
        out: list = []
        for c, s in zip(crd, trg):
            out.extend(dice(c, s))
        return tuple(out)
    return () if crd is None else (trg,)


def elem_less(a: IntTuple, b: IntTuple) -> Any:
    """a < b in every leaf (for predication with identity tensors); a traced bool if dynamic."""
    if isinstance(a, tuple):
        r: Any = True
        for x, y in zip(a, b):
            c = elem_less(x, y)
            if c is False:
                return False
            r = c if r is True else (r if c is True else r & c)
        return r
    if isinstance(b, tuple):
        raise LayoutError(f"elem_less: {a} is not congruent to {b}")
    c = a < b
    return bool(c) if isinstance(c, bool) else c
