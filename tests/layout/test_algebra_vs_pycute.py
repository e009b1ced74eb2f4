"""Property tests: every function of enigma.layout against pycute (NVIDIA's pure-Python CuTe) on
random layouts up to depth 3: same mode structure (shape and stride tuples), size, cosize, rank,
and the same offset for every index. Where pycute raises, or silently returns a layout whose size is
not the one CuTe's post-condition promises (C++ CuTe rejects those statically), we must raise."""
from __future__ import annotations

import pycute as P
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import enigma.layout as L
from enigma.layout.int_tuple import LayoutError

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# strategies

def _nest(draw, leaves: list, max_depth: int):
    """Group a flat list of leaves into a random tree of depth <= max_depth (a rank >= 1 tuple or int)."""
    if len(leaves) == 1 and (max_depth == 0 or draw(st.booleans())):
        return leaves[0]
    if max_depth == 0:
        return leaves[0]
    cuts = sorted(draw(st.sets(st.integers(1, len(leaves) - 1), max_size=len(leaves) - 1))) \
        if len(leaves) > 1 else []
    parts = [leaves[a:b] for a, b in zip([0, *cuts], [*cuts, len(leaves)])]
    return tuple(_nest(draw, p, max_depth - 1) for p in parts)


def _unflatten(flat: list, profile):
    it = iter(flat)

    def go(p):
        return tuple(go(e) for e in p) if isinstance(p, tuple) else next(it)
    return go(profile)


@st.composite
def shapes(draw, max_leaves: int = 4, max_size: int = 256):
    n = draw(st.integers(1, max_leaves))
    leaves = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    while _prod(leaves) > max_size:
        leaves[leaves.index(max(leaves))] //= 2
    return _nest(draw, leaves, 3)


def _prod(xs):
    r = 1
    for x in xs:
        r *= x
    return r


@st.composite
def layouts(draw, max_leaves: int = 4, injective: bool = False, max_size: int = 256):
    """(pycute layout, enigma layout). Injective: strides from a random permutation of the compact
    column-major strides with random gaps; else arbitrary small strides (including 0)."""
    shape = draw(shapes(max_leaves, max_size))
    flat = list(P.flatten(shape))
    if injective or draw(st.booleans()):
        order = draw(st.permutations(range(len(flat))))
        strides = [0] * len(flat)
        cur = 1
        for i in order:
            cur *= draw(st.sampled_from([1, 1, 1, 2, 3]))
            strides[i] = cur
            cur *= flat[i]
    else:
        strides = draw(st.lists(st.integers(0, 12), min_size=len(flat), max_size=len(flat)))
    stride = _unflatten(strides, shape) if isinstance(shape, tuple) else strides[0]
    return P.Layout(shape, stride), L.make_layout(shape, stride)


def same(p, e) -> None:
    """Same mode structure, size, cosize, rank and offsets."""
    assert isinstance(e, L.Layout)
    assert e.shape == p.shape and e.stride == p.stride, f"enigma {e} vs pycute {p}"
    assert L.size(e) == P.size(p)
    assert L.rank(e) == len(p)
    assert L.depth(e) == _depth(p.shape)
    if P.size(p) > 0:
        assert L.cosize(e) == P.cosize(p)
    for i in range(P.size(p)):
        assert e(i) == p(i)


def _depth(s):
    return 1 + max(map(_depth, s), default=0) if isinstance(s, tuple) else 0


def both(fp, fe, *args_p, args_e=None, post=None):
    """Run pycute and enigma and compare. If pycute raises, or returns a layout breaking the
    post-condition `post(p)` (CuTe C++ rejects those statically, pycute does not check), enigma must
    raise LayoutError. Returns (pycute, enigma) results, or (None, None) when both rejected."""
    try:
        p = fp(*args_p)
        ok = post is None or post(p)
    except (AssertionError, ZeroDivisionError, IndexError, TypeError):
        ok = False
    if not ok:
        with pytest.raises(LayoutError):
            fe(*args_e)
        return None, None
    e = fe(*args_e)
    same(p, e)
    return p, e


# ---------------------------------------------------------------------------------------------
# basics

@SETTINGS
@given(layouts())
def test_make_layout_call_size_cosize(pe):
    p, e = pe
    same(p, e)
    for i in range(len(p)):
        same(p[i], e[i])
    assert L.make_layout(p.shape).stride == P.Layout(p.shape).stride  # column-major default


@SETTINGS
@given(layouts(), st.data())
def test_call_with_natural_and_hierarchical_coordinates(pe, data):
    p, e = pe
    i = data.draw(st.integers(0, P.size(p) - 1))
    crd = P.idx2crd(i, p.shape)
    assert e(crd) == p(crd) == p(i)
    assert L.idx2crd(i, e.shape) == crd
    if isinstance(p.shape, tuple):  # a coordinate per mode, each an int index into that mode
        crd1 = tuple(P.idx2crd(i, p.shape)[m] for m in range(len(p)))
        flat = tuple(P.crd2idx(c, s) for c, s in zip(crd1, p.shape))
        assert e(*flat) == p(*flat)


@SETTINGS
@given(layouts(), st.data())
def test_slicing_with_none(pe, data):
    p, e = pe
    assume(isinstance(p.shape, tuple))
    crd = tuple(data.draw(st.one_of(st.none(), st.integers(0, P.size(s) - 1))) for s in p.shape)
    assume(any(c is None for c in crd))
    same(p(*crd), e(*crd))


@SETTINGS
@given(layouts())
def test_coalesce_and_filter(pe):
    p, e = pe
    same(P.coalesce(p), L.coalesce(e))
    same(P.filter(p), L.filter(e))
    if isinstance(p.shape, tuple):
        prof = tuple(1 for _ in p.shape)
        same(P.coalesce(p, prof), L.coalesce(e, prof))


# ---------------------------------------------------------------------------------------------
# composition, complement, inverses

@SETTINGS
@given(layouts(), layouts(max_leaves=3, max_size=64))
def test_composition(a, b):
    (pa, ea), (pb, eb) = a, b
    p, e = both(P.composition, L.composition, pa, pb, args_e=(ea, eb), post=lambda p: P.size(p) == P.size(pb))
    if e is not None:
        for i in range(P.size(pb)):  # the defining property, for a single-mode rhs inside lhs's domain
            if len(P.flatten(pb.shape)) == 1 and eb(i) < L.size(ea):
                assert e(i) == ea(eb(i))


@SETTINGS
@given(layouts(), st.data())
def test_composition_with_int_and_tuple_tilers(a, data):
    pa, ea = a
    n = data.draw(st.sampled_from([d for d in range(1, P.size(pa) + 1) if P.size(pa) % d == 0]))
    both(P.composition, L.composition, pa, n, args_e=(ea, n), post=lambda p: P.size(p) == n)
    if isinstance(pa.shape, tuple):
        tiler = tuple(data.draw(st.sampled_from([None, *(d for d in range(1, P.size(s) + 1)
                                                          if P.size(s) % d == 0)])) for s in pa.shape)
        both(P.composition, L.composition, pa, tiler, args_e=(ea, tiler),
             post=lambda p: all(P.size(p[i]) == (t or P.size(pa[i])) for i, t in enumerate(tiler)))


@SETTINGS
@given(layouts(injective=True, max_size=64), st.integers(1, 300))
def test_complement(a, cotarget):
    pa, ea = a
    same(P.complement(pa, cotarget), L.complement(ea, cotarget))
    same(P.complement(pa), L.complement(ea))


@SETTINGS
@given(layouts())
def test_complement_rejects_or_agrees(a):
    pa, ea = a
    both(P.complement, L.complement, pa, 64, args_e=(ea, 64),
         post=lambda p: all(s > 0 for s in P.flatten(p.shape)))  # pycute: zero-size modes, C++: rejects


@SETTINGS
@given(layouts())
def test_right_and_left_inverse(a):
    pa, ea = a
    ri = L.right_inverse(ea)
    same(P.right_inverse(pa), ri)
    for i in range(L.size(ri)):
        assert ea(ri(i)) == i
    if _injective(pa):
        _, li = both(P.left_inverse, L.left_inverse, pa, args_e=(ea,),
                     post=lambda p: all(s > 0 for s in P.flatten(P.complement(pa).shape)))
        if li is not None and L.cosize(ea) == L.size(ea):  # a bijection: a true inverse
            for i in range(P.size(pa)):
                assert li(ea(i)) == i


def _injective(p) -> bool:
    offs = [p(i) for i in range(P.size(p))]
    return len(set(offs)) == len(offs) and all(d >= 0 for d in P.flatten(p.stride))


# ---------------------------------------------------------------------------------------------
# divide and product

@st.composite
def tilers(draw, layout):
    """A tiler for `layout`: a layout, an int, or a by-mode tuple of ints / layouts / None."""
    def mode_tiler(m):
        n = P.size(m)
        divs = [d for d in range(1, n + 1) if n % d == 0]
        kind = draw(st.sampled_from(["int", "layout", "none"]))
        if kind == "none":
            return None
        d = draw(st.sampled_from(divs))
        if kind == "int":
            return d
        q = n // d
        stride = draw(st.sampled_from([s for s in range(1, q + 1) if q % s == 0] or [1]))
        return P.Layout(d, stride)
    if isinstance(layout.shape, tuple) and draw(st.booleans()):
        return tuple(mode_tiler(layout[i]) for i in range(draw(st.integers(1, len(layout)))))
    t = mode_tiler(layout)
    return t if t is not None else P.size(layout)


def to_enigma(t):
    if isinstance(t, tuple):
        return tuple(to_enigma(x) for x in t)
    if isinstance(t, P.Layout):
        return L.make_layout(t.shape, t.stride)
    return t


DIVIDES = [(P.logical_divide, L.logical_divide), (P.zipped_divide, L.zipped_divide),
           (P.tiled_divide, L.tiled_divide)]


@SETTINGS
@given(layouts(max_size=128), st.data())
def test_divides(a, data):
    pa, ea = a
    tiler = data.draw(tilers(pa))
    for fp, fe in DIVIDES:
        both(fp, fe, pa, tiler, args_e=(ea, to_enigma(tiler)), post=lambda p: P.size(p) == P.size(pa))
    try:
        z = P.zipped_divide(pa, tiler)
    except AssertionError:
        return
    if P.size(z) == P.size(pa):  # flat_divide = zipped_divide with both modes unpacked (C++ CuTe)
        flat = L.flat_divide(ea, to_enigma(tiler))
        assert len(flat) == len(z[0]) + len(z[1])
        same(P.make_layout([z[0][i] for i in range(len(z[0]))] + [z[1][i] for i in range(len(z[1]))]),
             flat)


@SETTINGS
@given(layouts(injective=True, max_leaves=3, max_size=32), layouts(max_leaves=3, max_size=16))
def test_logical_product(a, b):
    (pa, ea), (pb, eb) = a, b
    both(P.logical_product, L.logical_product, pa, pb, args_e=(ea, eb), post=_product_size(pa, pb))
    if P.size(pb) > 1:  # an int tiler is the layout n:1 (C++ CuTe; pycute's int branch divides)
        n = P.size(pb)
        both(P.logical_product, L.logical_product, pa, P.Layout(n), args_e=(ea, n),
             post=_product_size(pa, pb))


def _product_size(pa, pb):
    return lambda p: P.size(p) == P.size(pa) * P.size(pb)


def _tsize(t):
    if isinstance(t, tuple):
        return _prod(_tsize(x) for x in t)
    return 1 if t is None else P.size(t)


def _append(p, r):
    modes = [p[i] for i in range(len(p))] if isinstance(p.shape, tuple) else [p]
    return P.make_layout(modes + [P.Layout(1, 0)] * (r - len(modes)))


@SETTINGS
@given(layouts(injective=True, max_leaves=3, max_size=32), layouts(injective=True, max_leaves=3, max_size=16))
def test_blocked_and_raked_product(a, b):
    """C++ CuTe: logical_product of both padded to the larger rank, then zipped mode by mode."""
    (pa, ea), (pb, eb) = a, b
    r = max(len(pa), len(pb))
    try:
        prod = P.logical_product(_append(pa, r), _append(pb, r))
        assert P.size(prod) == P.size(pa) * P.size(pb)
    except AssertionError:
        with pytest.raises(LayoutError):
            L.blocked_product(ea, eb)
        return
    blocked = P.make_layout([P.make_layout(prod[0][i], prod[1][i]) for i in range(r)])
    raked = P.make_layout([P.make_layout(prod[1][i], prod[0][i]) for i in range(r)])
    same(blocked, L.blocked_product(ea, eb))
    same(raked, L.raked_product(ea, eb))
    assert L.rank(L.blocked_product(ea, eb)) == r


@SETTINGS
@given(layouts(injective=True, max_leaves=3, max_size=32), st.data())
def test_zipped_and_tiled_product(a, data):
    pa, ea = a
    pb = data.draw(tilers(pa))
    for fp, fe in [(P.zipped_product, L.zipped_product), (P.tiled_product, L.tiled_product)]:
        if isinstance(pb, int) or (isinstance(pb, tuple) and any(isinstance(t, int) for t in pb)):
            continue  # pycute's int branch of logical_product divides instead (a pycute bug)
        both(fp, fe, pa, pb, args_e=(ea, to_enigma(pb)), post=lambda p: P.size(p) == P.size(pa) * _tsize(pb))


# ---------------------------------------------------------------------------------------------
# make_ordered_layout (not in pycute: checked against its definition, CuTe's compact_order)

@SETTINGS
@given(shapes(), st.data())
def test_make_ordered_layout(shape, data):
    flat = P.flatten(shape)
    order = data.draw(st.permutations(range(len(flat))))
    prof_order = _unflatten(list(order), shape) if isinstance(shape, tuple) else order[0]
    e = L.make_ordered_layout(shape, prof_order)
    assert e.shape == shape
    # compact: a bijection onto [0, size), and leaves with a smaller order have smaller strides
    assert sorted(e(i) for i in range(L.size(e))) == list(range(P.size(shape)))
    strides = P.flatten(e.stride)
    expect = [_prod(flat[j] for j in range(len(flat)) if order[j] < order[i]) for i in range(len(flat))]
    assert list(strides) == expect


def test_make_ordered_layout_examples():
    assert repr(L.make_ordered_layout((4, 8), (1, 0))) == "(4,8):(8,1)"
    assert repr(L.make_ordered_layout((4, 8), (0, 1))) == "(4,8):(1,4)"
    assert repr(L.make_ordered_layout(((2, 3), 4), ((2, 0), 1))) == "((2,3),4):((12,1),3)"
    assert repr(L.make_ordered_layout(((2, 3), 4), (1, 0))) == "((2,3),4):((4,8),1)"  # coarse order
    assert repr(L.make_ordered_layout((2, 3, 4), (2, 2, 0))) == "(2,3,4):(4,4,1)"  # ties: same start


# ---------------------------------------------------------------------------------------------
# local_tile / local_partition: a tensor's layout and offset against pycute's divide + slice


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _all_modes(mode):
    """Slice keeping every top-level mode of `mode` (unpacked, as pycute's tiled_divide does)."""
    return tuple([None] * len(mode.shape)) if isinstance(mode.shape, tuple) else None


class _Memory:
    """A stand-in engine: these tests only look at the LayoutTensor's layout and offset."""

    name, dtype = "mem", None

    def stride(self, axis):
        raise AssertionError("not used")


@SETTINGS
@given(layouts(max_size=128), st.data())
def test_local_tile_and_local_partition(a, data):
    pa, ea = a
    assume(isinstance(pa.shape, tuple))
    tiler = tuple(data.draw(st.sampled_from(_divisors(P.size(pa[i])))) for i in range(len(pa)))
    try:
        z = P.zipped_divide(pa, tiler)
    except AssertionError:  # (rejected divisions: test_divides)
        assume(False)
    assume(P.size(z) == P.size(pa))
    t = L.LayoutTensor(_Memory(), ea)
    # local_tile: keep the tile, index the rest modes (some kept with None)
    coord = tuple(data.draw(st.one_of(st.none(), st.integers(0, P.size(z[1][i]) - 1)))
                  for i in range(len(tiler)))
    crd = (_all_modes(z[0]), coord)
    want, off = P.slice_and_offset(crd, z)
    got = L.local_tile(t, tiler, coord)
    same(want, got.layout)
    assert got.offset == off
    # local_partition: thread index -> coordinate in a (row-major) thread layout, every rest mode kept
    thr = P.Layout(tiler, P.prefix_product(tuple(reversed(tiler))))
    thr = P.Layout(tiler, tuple(reversed(thr.stride)))
    tid = data.draw(st.integers(0, P.size(thr) - 1))
    tcrd = tuple(P.idx2crd(tid, thr.shape, thr.stride))
    want, off = P.slice_and_offset((tcrd, _all_modes(z[1])), z)
    got = L.local_partition(t, L.make_layout(thr.shape, thr.stride), tid)
    same(want, got.layout)
    assert got.offset == off
