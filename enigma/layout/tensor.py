"""Tensors with layouts in kernel bodies (CuTe's Tensor = engine + layout).

`make_tensor(t, layout)` views a tensor argument or a `shared_tensor` through a layout: element `c` is
the element at linear offset `offset + layout(c)` of the underlying buffer, loaded and stored through
the tracer's `load`/`store` ops. Indexing with None slices (`t[(None, None), bid]`), keeping the None
modes and folding the fixed coordinates into the offset. An identity tensor
(`make_identity_tensor(shape)`) has no memory: element `c` is the natural coordinate of `c` in
`shape`, through any tiling or partitioning, which is what predication of partial tiles compares
against the real shape (`elem_less(coord, shape)`).

Static layouts compute offsets at trace time; only the coordinates that are traced values (thread and
block indices, loop variables) become IR: one multiply-add per traced coordinate and access.
"""
from __future__ import annotations

from typing import Any

from enigma_runtime import dtypes as dt

from enigma import ir
from enigma.errors import error_here
from enigma.frontend.builder import current
from enigma.frontend.values import PyNum, Val, as_val, describe, show, type_error
from enigma.layout import layout as L
from enigma.layout.checks import require
from enigma.layout.int_tuple import (
    CoordVec,
    IntTuple,
    add,
    crd2idx,
    dice,
    has_none,
    idx2crd,
    product,
    zeros_of,
)
from enigma.layout.layout import Layout, fmt, fmt_tiler, make_layout, unwrap1


class LayoutTensor:
    """A tensor argument, threadgroup array or identity (coordinate) engine viewed through a Layout.

    CuTe calls this a Tensor; it is `LayoutTensor` here because `enigma.Tensor` is the kernel
    parameter annotation. `t[c]` loads (or, for an identity tensor, gives the coordinate), `t[c] = v`
    stores, `t[c_with_None]` slices. `t.layout`, `t.shape`, `t.stride`, `size(t)`, `rank(t)` as in CuTe.
    """

    __slots__ = ("engine", "layout", "offset")

    def __init__(self, engine: Any, layout: Layout, offset: Any = 0) -> None:
        self.engine, self.layout, self.offset = engine, layout, offset

    @property
    def shape(self) -> IntTuple:
        return self.layout.shape

    @property
    def stride(self) -> IntTuple:
        return self.layout.stride

    def __len__(self) -> int:
        return len(self.layout)

    def __repr__(self) -> str:
        what = getattr(self.engine, "name", "?")
        return f"LayoutTensor({what}, {self.layout}, offset={show(self.offset)})"

    def __iter__(self) -> Any:
        raise TypeError("a LayoutTensor cannot be iterated: index it (t[i], t[i, j]) or slice it with None")

    def _check_bounds(self, crd: Any) -> None:
        """Static coordinates must lie inside the layout's (static) modes: a bug on every path."""
        shape = self.shape
        if isinstance(crd, int):
            n = product(shape)
            if isinstance(n, int) and not 0 <= crd < n:
                raise error_here(f"index {crd} is out of bounds for a tensor of shape {fmt(shape)} "
                                 f"(size {n})", "layout tensors are not wrapped like Python sequences")
        elif isinstance(crd, tuple) and isinstance(shape, tuple) and len(crd) == len(shape):
            for i, (c, s) in enumerate(zip(crd, shape)):
                n = product(s)
                if isinstance(c, int) and isinstance(n, int) and not 0 <= c < n:
                    raise error_here(f"coordinate {c} is out of bounds for mode {i} (size {n}) of a "
                                     f"tensor of shape {fmt(shape)}")

    def __getitem__(self, crd: Any) -> Any:
        self._check_bounds(crd)
        if has_none(crd):
            sliced = self.layout(crd)
            return LayoutTensor(self.engine, sliced, add(self.offset, crd2idx(crd, self.shape, self.stride)))
        off = add(self.offset, self.layout(crd))
        if isinstance(self.engine, _Identity):
            return off.t if isinstance(off, CoordVec) else self.engine.zero
        return _load(self.engine, off)

    def __setitem__(self, crd: Any, value: Any) -> None:
        if isinstance(self.engine, _Identity):
            raise TypeError("an identity tensor holds coordinates and cannot be stored to")
        if has_none(crd):
            raise TypeError("store one element at a time: every coordinate of t[...] = v must be given")
        self._check_bounds(crd)
        _store(self.engine, add(self.offset, self.layout(crd)), value)


class _Identity:
    """The engine of an identity tensor: no memory; `zero` is the all-zero coordinate of its shape."""

    name = "identity"

    def __init__(self, shape: IntTuple) -> None:
        self.zero = zeros_of(shape)


def _load(engine: Any, off: Any) -> Any:
    o = as_val(off, dt.int32)
    engine.record_access("r")
    return Val(current().emit("load", [o.v], [ir.Type(engine.dtype)], {"tensor": engine.name}).result)


def _store(engine: Any, off: Any, value: Any) -> None:
    if not isinstance(value, (Val, *PyNum)):
        raise type_error(f"cannot store a {describe(value)} into {engine.name} ({engine.dtype.name})")
    o, v = as_val(off, dt.int32), as_val(value, engine.dtype)
    engine.record_access("w")
    current().emit("store", [o.v, v.v], [], {"tensor": engine.name})


def natural_layout(t: Any) -> Layout:
    """The layout of a tensor argument or threadgroup array as the tracer indexes it: its shape with
    row-major strides (static where the sizes are, `stride` values of the dims buffer otherwise)."""
    shape = tuple(t.shape)
    return Layout(unwrap1(shape), unwrap1(tuple(t.stride(a) for a in range(len(shape)))))


def make_tensor(engine: Any, layout: Any = None) -> LayoutTensor:
    """A LayoutTensor over `engine` (a kernel's tensor argument, an `enigma.shared_tensor`, or a
    LayoutTensor whose memory and offset it reuses) with `layout` (a Layout, or a shape: column-major
    as make_layout). Without a layout, a tensor argument keeps its own (row-major) layout."""
    if isinstance(engine, LayoutTensor):
        base, offset = engine.engine, engine.offset
    else:
        if not hasattr(engine, "stride") or not hasattr(engine, "dtype"):
            raise TypeError(f"make_tensor needs a kernel tensor argument or a shared_tensor, got "
                            f"{type(engine).__name__}")
        base, offset = engine, 0
    if layout is None:
        if isinstance(engine, LayoutTensor):
            return engine
        layout = natural_layout(engine)
    elif not isinstance(layout, Layout):
        layout = make_layout(layout)
    return LayoutTensor(base, layout, offset)


def make_identity_tensor(shape: IntTuple) -> LayoutTensor:
    """A tensor whose element at coordinate c is c itself (natural coordinates of `shape`): tile and
    partition it like the data tensor, then predicate with `elem_less(coord, real_shape)`."""
    return LayoutTensor(_Identity(shape), Layout(shape, CoordVec.unit(shape)), 0)


def _as_layout_tensor(t: Any) -> LayoutTensor:
    return t if isinstance(t, LayoutTensor) else make_tensor(t)


# ------------------------------------------------------------------------------------------------
# divisions of tensors, with the "tiler exceeds tensor" check

def check_tiler(layout: Layout, tiler: Any, tensor_desc: str = "") -> None:
    """Raise EnigmaError("tiler exceeds tensor ...") if a mode of `tiler` reaches beyond the tensor's
    mode (statically); record it as a run-time condition when the sizes are traced values."""
    _check(layout, tiler, tiler, (), layout)


def _check(layout: Layout, t: Any, whole: Any, path: tuple, full: Layout) -> None:
    if t is None:
        return
    if isinstance(t, tuple):
        for i, ti in enumerate(t):
            if i < len(layout):
                _check(layout[i], ti, whole, (*path, i), full)
        return
    need = t.cosize() if isinstance(t, Layout) else product(t)
    have = L.size(layout)
    mode = "mode " + ".".join(map(str, path)) if path else "the whole tensor"
    if isinstance(need, int) and isinstance(have, int):
        if need > have:
            raise error_here(f"tiler exceeds tensor: {mode} of the tiler ({fmt_tiler(t)}, extent {need}) "
                             f"is larger than that mode of the tensor (size {have}); tiler "
                             f"{fmt_tiler(whole)}, tensor shape {fmt(full.shape)}", _HINT)
        return
    require(have >= need, f"the tiler fits the tensor: {mode} of the tiler ({fmt_tiler(t)}, extent "
                          f"{fmt(need)}) is at most that mode of the tensor (else: tiler exceeds tensor); "
                          f"tiler {fmt_tiler(whole)}, tensor shape {fmt(full.shape)}")


_HINT = ("tiles may not be larger than the tensor. For partial tiles, round the tensor's shape up to whole "
         "tiles and predicate every access with an identity tensor: padded = (ceil_div(M, BM) * BM, ...); "
         "g = local_tile(make_tensor(t, make_layout(padded, stride=...)), tiler, coord); "
         "c = local_tile(make_identity_tensor(padded), tiler, coord); "
         "then access g[i] only `if elem_less(c[i], real_shape)` (docs/layout.md, 'Partial tiles')")


def _divide(fn: Any, t: Any, tiler: Any) -> Any:
    if isinstance(t, Layout):
        return fn(t, tiler)
    t = _as_layout_tensor(t)
    check_tiler(t.layout, tiler)
    return LayoutTensor(t.engine, fn(t.layout, tiler), t.offset)


def logical_divide(target: Any, tiler: Any) -> Any:
    """enigma.layout.logical_divide on a Layout, or on a tensor (checking the tiler fits)."""
    return _divide(L.logical_divide, target, tiler)


def zipped_divide(target: Any, tiler: Any) -> Any:
    return _divide(L.zipped_divide, target, tiler)


def tiled_divide(target: Any, tiler: Any) -> Any:
    return _divide(L.tiled_divide, target, tiler)


def flat_divide(target: Any, tiler: Any) -> Any:
    return _divide(L.flat_divide, target, tiler)


def composition(lhs: Any, rhs: Any) -> Any:
    if isinstance(lhs, LayoutTensor):
        return LayoutTensor(lhs.engine, L.composition(lhs.layout, rhs), lhs.offset)
    return L.composition(lhs, rhs)


def local_tile(tensor: Any, tiler: Any, coord: Any, proj: Any = None) -> LayoutTensor:
    """The tile at `coord` of `tensor` divided by `tiler` (CuTe's inner partition): zipped_divide, then
    keep the tile modes and index the rest modes with `coord` (None keeps a rest mode, e.g. the k-tiles:
    local_tile(A, (BM, BK), (bm, None)) has shape (BM, BK, k_tiles)). `proj` (a tuple with None at
    the modes to drop) selects modes of tiler and coord, as CuTe DSL's proj."""
    if proj is not None:
        tiler, coord = unwrap1(dice(proj, tiler)), unwrap1(dice(proj, coord))
    t = zipped_divide(_as_layout_tensor(tensor), tiler)
    r1 = _rank_of(t.layout[1])
    if isinstance(coord, tuple) and len(coord) < r1:
        coord = (*coord, *([None] * (r1 - len(coord))))
    return t[(_all_modes(t.layout[0]), coord)]


def local_partition(tensor: Any, thr_layout: Any, index: Any, proj: Any = None) -> LayoutTensor:
    """The elements of `tensor` owned by thread `index` of `thr_layout` (CuTe's outer partition):
    zipped_divide by the thread layout's shape, then index the tile mode with the thread's coordinate
    (`index` an int or traced thread index, mapped through thr_layout's inverse as CuTe's
    get_flat_coord; or directly a coordinate tuple, which avoids the div/mod of that mapping) and keep
    every rest mode. Thread (i, j) of an (TM, TN) layout gets elements (i + TM*a, j + TN*b)."""
    if not isinstance(thr_layout, Layout):
        thr_layout = make_layout(thr_layout)
    if proj is not None:
        thr_layout = Layout(unwrap1(dice(proj, thr_layout.shape)), unwrap1(dice(proj, thr_layout.stride)))
    shape = thr_layout.shape
    tiler = tuple(product(s) for s in shape) if isinstance(shape, tuple) else product(shape)
    if isinstance(index, tuple):
        crd = index
    else:
        hier = idx2crd(index, shape, thr_layout.stride)
        crd = tuple(crd2idx(c, s) if isinstance(c, tuple) else c for c, s in zip(hier, shape)) \
            if isinstance(shape, tuple) else (crd2idx(hier, shape) if isinstance(hier, tuple) else hier)
    t = zipped_divide(_as_layout_tensor(tensor), tiler)
    return t[(crd, _all_modes(t.layout[1]))]


def _all_modes(layout: Layout) -> Any:
    """The slice keeping every top-level mode of `layout` as a mode of the result (one None per mode:
    like pycute's tiled_divide, a rank-1 tuple mode is unpacked; C++ CuTe's repeat<1>(_) keeps it)."""
    return tuple([None] * len(layout.shape)) if isinstance(layout.shape, tuple) else None


def _rank_of(layout: Layout) -> int:
    return len(layout.shape) if isinstance(layout.shape, tuple) else 1


__all__ = ["LayoutTensor", "composition", "flat_divide", "local_partition", "local_tile",
           "logical_divide", "make_identity_tensor", "make_tensor", "natural_layout", "tiled_divide",
           "zipped_divide"]
