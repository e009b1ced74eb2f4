"""Dynamic sizes: the algebra on opaque run-time values gives the same function as on ints.

`Sym` stands for a traced value: it carries a concrete value only so the test can evaluate the
result afterwards, but the layout code cannot see it (no int, no bool: comparisons give a SymBool
that refuses `bool()`, as the tracer's values do). Every function is run twice, on ints and with some
leaves replaced by Syms; the results must agree at every index, and every check that needed a Sym
must have been recorded as a run-time condition that holds.
"""
from __future__ import annotations

import pycute as P
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_algebra_vs_pycute import layouts, tilers, to_enigma

import enigma.layout as L
from enigma.layout import checks as C


class SymBool:
    def __init__(self, v: bool) -> None:
        self.v = v

    def __bool__(self) -> bool:
        raise TypeError("a run-time bool has no Python truth value")

    def __and__(self, o):
        return SymBool(self.v and _val(o))

    __rand__ = __and__

    def __or__(self, o):
        return SymBool(self.v or _val(o))

    __ror__ = __or__


class Sym:
    def __init__(self, v: int) -> None:
        self.v = v

    def _op(f):  # noqa: N805 - a decorator building the operators
        def op(self, o):
            return Sym(f(self.v, _val(o)))

        def rop(self, o):
            return Sym(f(_val(o), self.v))
        return op, rop

    __add__, __radd__ = _op(lambda a, b: a + b)
    __sub__, __rsub__ = _op(lambda a, b: a - b)
    __mul__, __rmul__ = _op(lambda a, b: a * b)
    __floordiv__, __rfloordiv__ = _op(lambda a, b: a // b)
    __mod__, __rmod__ = _op(lambda a, b: a % b)

    def __lt__(self, o):
        return SymBool(self.v < _val(o))

    def __le__(self, o):
        return SymBool(self.v <= _val(o))

    def __gt__(self, o):
        return SymBool(self.v > _val(o))

    def __ge__(self, o):
        return SymBool(self.v >= _val(o))

    def __eq__(self, o):  # type: ignore[override]
        return SymBool(self.v == _val(o))

    def __ne__(self, o):  # type: ignore[override]
        return SymBool(self.v != _val(o))

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise TypeError("a run-time value has no Python truth value")

    def __index__(self) -> int:
        raise TypeError("a run-time value is not a Python int")

    def layout_min(self, o):
        return Sym(min(self.v, _val(o)))

    def layout_max(self, o):
        return Sym(max(self.v, _val(o)))


def _val(x):
    if isinstance(x, (Sym, SymBool)):
        return x.v
    if isinstance(x, tuple):
        return tuple(_val(e) for e in x)
    return x


def symbolize(t, mask):
    """Replace the leaves of `t` whose bit in `mask` is set by Syms."""
    it = iter(range(10**6))

    def go(x):
        if isinstance(x, tuple):
            return tuple(go(e) for e in x)
        return Sym(x) if (mask >> (next(it) % 16)) & 1 else x
    return go(t)


def agree(static: L.Layout, dynamic: L.Layout) -> None:
    n = L.size(static)
    assert _val(L.size(dynamic)) == n
    for i in range(n):
        assert _val(dynamic(i)) == static(i), (static, dynamic, i)


def conditions_hold() -> bool:
    """Whether every run-time condition recorded since the last call holds (then clears them)."""
    ok = all(_val(c.value) for c in C._outside)
    C._outside.clear()
    return ok


def agree_unless_flagged(static: L.Layout, make_dynamic) -> None:
    """The dynamic result equals the static one, unless a recorded run-time condition fails (then the
    launch is documented as invalid: never a silent disagreement) or a LayoutError says why."""
    C._outside.clear()
    try:
        dynamic = make_dynamic()
    except L.LayoutError:
        C._outside.clear()
        return
    if conditions_hold():
        agree(static, dynamic)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(layouts(max_size=128), st.integers(1, 2**16 - 1), st.data())
def test_divides_with_dynamic_shapes_and_strides(a, mask, data):
    pa, ea = a
    tiler = to_enigma(data.draw(tilers(pa)))
    try:
        static = L.zipped_divide(ea, tiler)
    except L.LayoutError:
        return
    if L.size(static) != L.size(ea):
        return
    dyn = L.make_layout(symbolize(ea.shape, mask), symbolize(ea.stride, mask >> 3))
    for fn in (L.logical_divide, L.zipped_divide, L.tiled_divide, L.flat_divide):
        agree_unless_flagged(fn(ea, tiler), lambda: fn(dyn, tiler))  # noqa: B023


@SETTINGS
@given(layouts(max_size=64), layouts(max_leaves=2, max_size=32), st.integers(1, 2**16 - 1))
def test_composition_with_dynamic_lhs(a, b, mask):
    (_, ea), (_, eb) = a, b
    try:
        static = L.composition(ea, eb)
    except L.LayoutError:
        return
    if L.size(static) != L.size(eb) or L.cosize(eb) > L.size(ea):  # (outside lhs's domain: unspecified)
        return
    dyn = L.make_layout(symbolize(ea.shape, mask), symbolize(ea.stride, mask >> 5))
    agree_unless_flagged(static, lambda: L.composition(dyn, eb))


@SETTINGS
@given(layouts(injective=True, max_leaves=1, max_size=16), st.integers(1, 100))
def test_complement_with_dynamic_stride_and_cotarget(a, cotarget):
    pa, ea = a
    static = L.complement(ea, cotarget)
    # (a dynamic size that happens to be 1 cannot be filtered out: the complement then also covers the
    # gap below its stride -- still a complement, but another function; so sizes > 1 here)
    dyn = L.make_layout(Sym(ea.shape) if isinstance(ea.shape, int) and ea.shape > 1 else ea.shape,
                        Sym(ea.stride) if isinstance(ea.stride, int) else ea.stride)
    C._outside.clear()
    agree(static, L.complement(dyn, Sym(cotarget)))
    assert conditions_hold()
    same_as_pycute = P.complement(pa, cotarget)
    assert (static.shape, static.stride) == (same_as_pycute.shape, same_as_pycute.stride)


def test_dynamic_tiler_check_is_recorded_not_skipped():
    M = Sym(100)
    t = L.make_identity_tensor((M, 64))
    C._outside.clear()
    L.local_tile(t, (128, 16), (0, 1))
    msgs = [c for c in C._outside if "tiler exceeds tensor" in c.message]
    assert msgs and not all(_val(c.value) for c in msgs)  # the run-time condition fails for M = 100
    assert "mode 0" in msgs[0].message and "128" in msgs[0].message
    C._outside.clear()


def test_static_decisions_stay_static():
    """A Sym stride never blocks a decision that only needs the (static) shapes."""
    K = Sym(37)
    layout = L.make_layout((128, 64), stride=(K, 1))
    z = L.zipped_divide(layout, (16, 16))
    assert z.shape == ((16, 16), (8, 4))
    assert _val(z.stride[0][0]) == 37 and z.stride[0][1] == 1 and _val(z.stride[1][0]) == 16 * 37
