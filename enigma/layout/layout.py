"""CuTe layouts and their algebra, with CuTe's semantics (pycute is the test oracle).

A `Layout` is a pair of congruent hierarchical int tuples (shape, stride): a function from a coordinate
(an int index, or a nested tuple) to an offset, sum(coord_i * stride_i). Every function here works
on Python ints at trace time (no IR at all) and on traced values (index arithmetic goes through the
tracer); decisions that need a dynamic value are taken conservatively (a mode that might be 1 is
kept) or recorded as a run-time condition (see `enigma.layout.checks`).
"""
from __future__ import annotations

from typing import Any

from enigma.layout.checks import require
from enigma.layout.int_tuple import (
    CoordVec,
    IntTuple,
    LayoutError,
    add,
    ceil_div,
    congruent,
    crd2idx,
    flatten,
    floordiv,
    has_none,
    is_const,
    is_static,
    maximum,
    minimum,
    mod,
    mul,
    prefix_product,
    product,
    slice_,
    static_eq,
    sub,
)
from enigma.layout.int_tuple import depth as _tuple_depth


def fmt(t: Any) -> str:
    if isinstance(t, tuple):
        return "(" + ",".join(fmt(e) for e in t) + ("," if len(t) == 1 else "") + ")"
    return str(t) if isinstance(t, (int, CoordVec)) else "?"  # "?" : a dynamic (traced) value


class Layout:
    """A CuTe layout: `shape` and `stride`, congruent int tuples. Immutable.

    `layout(c)` maps a coordinate (an int index or a tuple congruent to a prefix of the shape) to an
    offset; a coordinate containing None slices instead and returns the sub-layout of the None modes.
    `layout[i]` is mode i, `len(layout)` its rank.
    """

    __slots__ = ("shape", "stride")

    def __init__(self, shape: IntTuple, stride: IntTuple | None = None) -> None:
        if stride is None:
            stride = prefix_product(shape)
        elif not congruent(shape, stride):
            raise LayoutError(f"shape {fmt(shape)} and stride {fmt(stride)} are not congruent")
        self.shape = shape
        self.stride = stride

    def __call__(self, *crd: Any) -> Any:
        c = crd[0] if len(crd) == 1 else crd
        if has_none(c):
            return Layout(slice_(c, self.shape), slice_(c, self.stride))
        return crd2idx(c, self.shape, self.stride)

    def __getitem__(self, i: int) -> Layout:
        if isinstance(self.shape, tuple):
            return Layout(self.shape[i], self.stride[i])
        if i not in (0, -1):
            raise IndexError(f"mode {i} of rank-1 layout {self}")
        return self

    def __len__(self) -> int:
        return len(self.shape) if isinstance(self.shape, tuple) else 1

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Layout) and _same(self.shape, other.shape)
                and _same(self.stride, other.stride))

    def __hash__(self) -> int:
        return hash((fmt(self.shape), fmt(self.stride)))

    def __repr__(self) -> str:
        return f"{fmt(self.shape)}:{fmt(self.stride)}"

    def size(self) -> Any:
        return product(self.shape)

    def cosize(self) -> Any:
        return add(self(sub(product(self.shape), 1)), 1)

    @property
    def is_static(self) -> bool:
        return is_static(self.shape) and is_static(self.stride)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return not isinstance(b, tuple) and bool(static_eq(a, b))


def unwrap1(t: tuple) -> Any:
    return t[0] if len(t) == 1 else t


def is_layout(x: Any) -> bool:
    return isinstance(x, Layout)


def make_layout(*args: Any, stride: IntTuple | None = None) -> Layout:
    """make_layout(shape, stride=None) -> Layout; or make_layout(L0, L1, ...) concatenating layouts
    into the modes of a new one.

    The default stride is column-major (CuTe's LayoutLeft: the exclusive prefix product of the
    shape, so the leftmost mode is contiguous). For row-major pass the strides or use
    `make_ordered_layout(shape, order)`.
    """
    if args and all(isinstance(a, Layout) for a in args):
        if stride is not None:
            raise TypeError("make_layout(layouts...) takes no stride")
        return Layout(tuple(a.shape for a in args), tuple(a.stride for a in args))
    if len(args) == 1 and isinstance(args[0], (list,)) and all(isinstance(a, Layout) for a in args[0]):
        return make_layout(*args[0])
    if len(args) == 2 and stride is None and not isinstance(args[1], Layout):
        return Layout(args[0], args[1])
    if len(args) != 1:
        raise TypeError("make_layout(shape, stride=None) or make_layout(layout, layout, ...)")
    return Layout(args[0], stride)


def _as_layout(x: Any) -> Layout:
    if isinstance(x, Layout):
        return x
    layout = getattr(x, "layout", None)  # a Tensor
    if isinstance(layout, Layout):
        return layout
    return Layout(x)


def _shape_at(a: Any, mode: Any) -> Any:
    """The shape of a layout, tensor or int tuple, or of its mode `mode` (an int or a path of ints)."""
    shape = a.shape if not isinstance(a, tuple) and hasattr(a, "shape") else a
    for m in ([] if mode is None else mode if isinstance(mode, (list, tuple)) else [mode]):
        if isinstance(shape, tuple):
            shape = shape[m]
        elif m not in (0, -1):
            raise IndexError(f"mode {m} of the rank-1 shape {fmt(shape)}")
    return shape


def size(a: Any, mode: Any = None) -> Any:
    """Number of coordinates of a layout, tensor or shape (of its mode `mode`: an int or a path list)."""
    return product(_shape_at(a, mode))


def rank(a: Any, mode: Any = None) -> int:
    """Number of top-level modes (1 for an int shape)."""
    shape = _shape_at(a, mode)
    return len(shape) if isinstance(shape, tuple) else 1


def depth(a: Any, mode: Any = None) -> int:
    """Nesting depth of the shape (0 for an int)."""
    return _tuple_depth(_shape_at(a, mode))


def cosize(a: Any) -> Any:
    """Size of the codomain: layout(size - 1) + 1 (as CuTe)."""
    return _as_layout(a).cosize()


def flatten_layout(layout: Layout) -> Layout:
    s, d = flatten(layout.shape), flatten(layout.stride)
    return Layout(unwrap1(s), unwrap1(d))


# ------------------------------------------------------------------------------------------------
# coalesce, filter

def coalesce(layout: Layout, target_profile: IntTuple | None = None) -> Layout:
    """Flatten and merge modes while keeping the same int -> int function (by-mode for a tuple profile)."""
    if isinstance(target_profile, tuple):
        return _by_mode(layout, target_profile, coalesce)
    rs: list = [1]
    rd: list = [0]
    for s, d in zip(flatten(layout.shape), flatten(layout.stride)):
        if is_const(s, 1):
            continue
        if is_const(rs[-1], 1):
            rs[-1], rd[-1] = s, d
        elif static_eq(mul(rs[-1], rd[-1]), d):
            rs[-1] = mul(rs[-1], s)
        else:
            rs.append(s)
            rd.append(d)
    return Layout(unwrap1(tuple(rs)), unwrap1(tuple(rd)))


def filter(layout: Layout, target_profile: IntTuple | None = None) -> Layout:  # noqa: A001 (CuTe name)
    """Drop stride-0 and size-1 modes, then coalesce."""
    if isinstance(target_profile, tuple):
        return _by_mode(layout, target_profile, filter)
    keep = [(s, d) for s, d in zip(flatten(layout.shape), flatten(layout.stride))
            if not (is_const(s, 1) or is_const(d, 0))]
    if not keep:
        return Layout(1, 0)
    return coalesce(Layout(tuple(s for s, _ in keep), tuple(d for _, d in keep)))


def _by_mode(layout: Layout, tiler: tuple, fn: Any) -> Layout:
    if len(tiler) > len(layout):
        raise LayoutError(f"{fn.__name__}: tiler {fmt_tiler(tiler)} has more modes than layout {layout}")
    modes = [fn(layout[i], t) for i, t in enumerate(tiler)]
    modes += [layout[i] for i in range(len(tiler), len(layout))]
    return make_layout(*modes)


def fmt_tiler(t: Any) -> str:
    if isinstance(t, tuple):
        return "(" + ",".join(fmt_tiler(e) for e in t) + ")"
    return "None" if t is None else repr(t) if isinstance(t, Layout) else fmt(t)


# ------------------------------------------------------------------------------------------------
# composition

def composition(lhs: Layout, rhs: Any) -> Layout:
    """lhs o rhs: the layout c -> lhs(rhs(c)), with rhs's shape. rhs may be a Layout, an int (n:1),
    None (identity) or a tuple of those (applied mode by mode)."""
    if rhs is None:
        return lhs
    if isinstance(rhs, tuple):
        return _by_mode(lhs, rhs, composition)
    if not isinstance(rhs, Layout):
        rhs = Layout(rhs)
    if isinstance(rhs.shape, tuple):
        return make_layout(*(composition(lhs, r) for r in rhs))
    return _compose_mode(lhs, rhs.shape, rhs.stride)


def _compose_mode(lhs: Layout, rest_shape: Any, rest_stride: Any) -> Layout:
    if is_const(rest_stride, 0):
        return Layout(rest_shape, 0)
    flat = coalesce(lhs)
    shapes, strides = flatten(flat.shape), flatten(flat.stride)
    rs: list = []
    rd: list = []
    for curr_shape, curr_stride in zip(shapes[:-1], strides[:-1]):
        if isinstance(curr_shape, int) and isinstance(rest_stride, int) and isinstance(rest_shape, int):
            if curr_shape % rest_stride and rest_stride % curr_shape:
                raise LayoutError(f"composition: stride divisibility condition fails: {lhs} o "
                                  f"{fmt(rest_shape)}:{fmt(rest_stride)} (stride {rest_stride} vs "
                                  f"shape {curr_shape})")
            new_shape = min(max(1, curr_shape // rest_stride), rest_shape)
            if rest_shape % new_shape:
                raise LayoutError(f"composition: shape divisibility condition fails: {lhs} o "
                                  f"{fmt(rest_shape)}:{fmt(rest_stride)} ({rest_shape} by {new_shape})")
        else:
            require(_either_divides(curr_shape, rest_stride),
                    f"composition: {fmt(curr_shape)} and {fmt(rest_stride)} divide one another")
            new_shape = minimum(maximum(1, floordiv(curr_shape, rest_stride)), rest_shape)
            require(_divides(new_shape, rest_shape),
                    f"composition: {fmt(new_shape)} divides {fmt(rest_shape)}")
        if not is_const(new_shape, 1):
            rs.append(new_shape)
            rd.append(mul(rest_stride, curr_stride))
        rest_shape = floordiv(rest_shape, new_shape)
        neg = isinstance(rest_stride, int) and rest_stride < 0
        rest_stride = -ceil_div(-rest_stride, curr_shape) if neg else ceil_div(rest_stride, curr_shape)
    if not is_const(rest_shape, 1) or not rs:
        rs.append(rest_shape)
        rd.append(mul(rest_stride, strides[-1]))
    return Layout(unwrap1(tuple(rs)), unwrap1(tuple(rd)))


def _either_divides(a: Any, b: Any) -> Any:
    x, y = mod(a, b), mod(b, a)
    if is_const(x, 0) or is_const(y, 0):
        return True
    return (x == 0) | (y == 0)


def _divides(d: Any, n: Any) -> Any:
    r = mod(n, d)
    return True if is_const(r, 0) else r == 0


# ------------------------------------------------------------------------------------------------
# complement and inverses

def complement(layout: Any, cotarget: IntTuple = 1) -> Layout:
    """The layout of the offsets in [0, cotarget) that `layout` does not reach, ordered (CuTe)."""
    layout = _as_layout(layout) if not isinstance(layout, int) else Layout(layout)
    cotarget = product(cotarget)
    modes = [(d, s) for s, d in zip(flatten(layout.shape), flatten(layout.stride))
             if not (is_const(d, 0) or is_const(s, 1))]
    if any(isinstance(d, int) and d < 0 for d, _ in modes):
        raise LayoutError(f"complement: layout {layout} has negative strides")
    if len(modes) > 1 and not all(isinstance(d, int) for d, _ in modes):
        raise LayoutError(f"complement: layout {layout} has dynamic strides (only rank-1 allowed)")
    modes.sort(key=lambda m: (m[0], m[1] if isinstance(m[1], int) else 0))
    rs: list = []
    rd: list = []
    current = 1
    for d, s in modes:
        if isinstance(d, int) and isinstance(current, int):
            if d < current:
                raise LayoutError(f"complement: layout {layout} is not injective")
        else:
            require(current <= d, f"complement: layout {layout} is injective")
        new_shape = floordiv(d, current)
        rs.append(new_shape)
        rd.append(current)
        current = mul(s, d)
    rs.append(ceil_div(cotarget, current))
    rd.append(current)
    return coalesce(Layout(tuple(rs), tuple(rd)))


def right_inverse(layout: Any) -> Layout | None:
    """A layout R with layout(R(i)) == i for i < size(R) (as large as possible). Static layouts only."""
    if layout is None:
        return None
    if isinstance(layout, int):
        return Layout(layout)
    layout = _as_layout(layout)
    if not layout.is_static:
        raise LayoutError(f"right_inverse needs a static layout, got {layout}")
    shapes = flatten(layout.shape)
    modes = sorted(zip(flatten(layout.stride), shapes, flatten(prefix_product(shapes))))
    rs: list = []
    rd: list = []
    current = 1
    for d, s, r in modes:
        if s == 1:
            continue
        if current != d:
            break
        rs.append(s)
        rd.append(r)
        current = s * d
    return coalesce(Layout(tuple(rs), tuple(rd)))


def left_inverse(layout: Any) -> Layout | None:
    """A layout L with L(layout(i)) == i for every i (layout injective). Static layouts only."""
    if layout is None:
        return None
    if isinstance(layout, int):
        return Layout(layout)
    layout = _as_layout(layout)
    return right_inverse(make_layout(layout, complement(layout)))


# ------------------------------------------------------------------------------------------------
# divide and product

def logical_divide(layout: Layout, tiler: Any) -> Layout:
    """Split `layout` into (tile, rest): composition(layout, (tiler, complement(tiler, size(layout)))).
    A tuple tiler applies mode by mode (None leaves a mode alone)."""
    if tiler is None:
        return layout
    if isinstance(tiler, tuple):
        return _by_mode(layout, tiler, logical_divide)
    if not isinstance(tiler, Layout):
        tiler = Layout(tiler)
    return composition(layout, make_layout(tiler, complement(tiler, size(layout))))


def logical_product(block: Layout, tiler: Any) -> Layout:
    """(block, complement(block, size(block)*cosize(tiler)) o tiler): `block` repeated over `tiler`."""
    if tiler is None:
        return block
    if isinstance(tiler, tuple):
        return _by_mode(block, tiler, logical_product)
    if not isinstance(tiler, Layout):
        tiler = Layout(tiler)
    return make_layout(block, composition(complement(block, mul(size(block), cosize(tiler))), tiler))


def _unzip(split: Any, layout: Layout, tiler: Any) -> Layout:
    """Apply `split` by mode following `tiler` and gather into ((tiles...), (rests..., untouched...))."""
    if tiler is None:
        return make_layout(Layout(1, 0), layout)
    if isinstance(tiler, tuple):
        if len(tiler) > len(layout):
            raise LayoutError(f"tiler {fmt_tiler(tiler)} has more modes than layout {layout}")
        parts = [_unzip(split, layout[i], t) for i, t in enumerate(tiler)]
        first = make_layout(*(p[0] for p in parts))
        rest = [p[1] for p in parts] + [layout[i] for i in range(len(tiler), len(layout))]
        return make_layout(first, make_layout(*rest))
    return split(layout, tiler)


def zipped_divide(layout: Layout, tiler: Any) -> Layout:
    """((tile modes...), (rest modes...)): logical_divide with tiles gathered in mode 0."""
    return _unzip(logical_divide, layout, tiler)


def tiled_divide(layout: Layout, tiler: Any) -> Layout:
    """((tile modes...), rest0, rest1, ...)."""
    r = zipped_divide(layout, tiler)
    return make_layout(r[0], *r[1])


def flat_divide(layout: Layout, tiler: Any) -> Layout:
    """(tile0, tile1, ..., rest0, rest1, ...)."""
    r = zipped_divide(layout, tiler)
    return make_layout(*r[0], *r[1])


def zipped_product(block: Layout, tiler: Any) -> Layout:
    return _unzip(logical_product, block, tiler)


def tiled_product(block: Layout, tiler: Any) -> Layout:
    r = zipped_product(block, tiler)
    return make_layout(r[0], *r[1])


def flat_product(block: Layout, tiler: Any) -> Layout:
    r = zipped_product(block, tiler)
    return make_layout(*r[0], *r[1])


def _append(layout: Layout, n: int) -> Layout:
    """`layout` as a rank-n layout, padded with 1:0 modes (CuTe's append<N>)."""
    modes = list(layout) if isinstance(layout.shape, tuple) else [layout]
    modes += [Layout(1, 0)] * (n - len(modes))
    return make_layout(*modes)


def _zip_modes(a: Layout, b: Layout) -> Layout:
    return make_layout(*(make_layout(x, y) for x, y in zip(a, b)))


def blocked_product(block: Layout, tiler: Any) -> Layout:
    """`block` repeated over `tiler`, mode by mode: result mode i is (block_i, tiler_i)."""
    tiler = _as_layout(tiler)
    r = max(len(block), len(tiler))
    p = logical_product(_append(block, r), _append(tiler, r))
    return _zip_modes(p[0], p[1])


def raked_product(block: Layout, tiler: Any) -> Layout:
    """Like blocked_product with the block interleaved: result mode i is (tiler_i, block_i)."""
    tiler = _as_layout(tiler)
    r = max(len(block), len(tiler))
    p = logical_product(_append(block, r), _append(tiler, r))
    return _zip_modes(p[1], p[0])


def make_ordered_layout(shape: IntTuple, order: IntTuple) -> Layout:
    """A compact layout of `shape` whose modes get strides in increasing `order` (CuTe's
    compact_order): the mode with the smallest order has stride 1. order=(1, 0) is row-major for a
    rank-2 shape; `order` is congruent to `shape` or a coarser profile of it."""
    flat_order = flatten(order)
    ref_shape = flatten(_product_like(shape, order))
    if not all(isinstance(o, int) for o in flat_order):
        raise LayoutError(f"make_ordered_layout: order {order} must be static")

    def strides(s: Any, o: Any) -> Any:
        if isinstance(o, tuple):
            if not isinstance(s, tuple) or len(s) != len(o):
                raise LayoutError(f"make_ordered_layout: order {fmt(order)} does not match shape "
                                  f"{fmt(shape)}")
            return tuple(strides(x, y) for x, y in zip(s, o))
        start: Any = 1
        for rs, ro in zip(ref_shape, flat_order):
            if ro < o:
                start = mul(start, rs)
        return prefix_product(s, start)

    return Layout(shape, strides(shape, order))


def _product_like(shape: Any, profile: Any) -> Any:
    if isinstance(profile, tuple):
        return tuple(_product_like(s, p) for s, p in zip(shape, profile))
    return product(shape)


__all__ = [
    "Layout", "LayoutError", "blocked_product", "coalesce", "complement", "composition", "cosize", "depth",
    "filter", "flat_divide", "flat_product", "flatten_layout", "is_layout", "left_inverse",
    "logical_divide", "logical_product", "make_layout", "make_ordered_layout", "raked_product", "rank",
    "right_inverse", "size", "tiled_divide", "tiled_product", "zipped_divide", "zipped_product",
]
