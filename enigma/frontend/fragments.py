"""Register fragments (CuTe's `make_fragment`): a per-thread tensor held in registers.

A fragment is a trace-time object: a static layout and one SSA value per element (cell). Indexing with
Python ints (or `range_constexpr` variables) reads or replaces a cell, so a fragment adds no IR of its
own and no index arithmetic: `acc[i, j] = acc[i, j] + a * b` is one add in the IR. Run-time loops and
`if`s carry the cells that their bodies change (frontend/control.py asks `live_fragments` which
fragments exist around the construct: Builder.live_fragments), so fragments are updated in place as in
Python.

`enigma.copy(src, dst)` copies element by element between fragments and tensors (tensor arguments,
threadgroup arrays, and their `make_tensor`/`local_tile`/`local_partition` views) of the same size:
element `i` (in the fragment's layout order) of one goes to element `i` of the other.
"""
from __future__ import annotations

from typing import Any

from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import error_here
from enigma.frontend.builder import Builder, current
from enigma.frontend.tensors import TensorRef
from enigma.frontend.values import PyNum, Undefined, Val, as_val, describe, type_error
from enigma.layout.int_tuple import idx2crd, product
from enigma.layout.layout import Layout, make_layout
from enigma.layout.tensor import LayoutTensor

MAX_CELLS = 1024  # registers are few: a bigger fragment is almost surely a mistake


class Fragment:
    """A per-thread tensor in registers: `f[i]`, `f[i, j]` (Python ints), `f.fill(v)`, `f.shape`,
    `f.layout`, `len(f)` (its size)."""

    __slots__ = ("layout", "dtype", "cells", "block")

    def __init__(self, layout: Layout, dtype: DType, b: Builder) -> None:
        self.layout, self.dtype = layout, dtype
        n = layout.cosize()
        zero = as_val(0, dtype).v
        self.cells: list[ir.Value] = [zero] * n
        self.block = b.blocks[-1]  # the block it lives in: constructs inside it carry its cells
        b.fragments.append(self)

    @property
    def shape(self) -> Any:
        return self.layout.shape

    def __len__(self) -> int:
        return int(self.layout.size())

    def __repr__(self) -> str:
        return f"Fragment({self.dtype.name}, {self.layout})"

    def _cell(self, crd: Any) -> int:
        def check(c: Any) -> None:
            if isinstance(c, tuple):
                for x in c:
                    check(x)
            elif isinstance(c, Undefined):
                c.fail()
            elif isinstance(c, Val):
                raise error_here(f"a fragment is indexed with a {describe(c)}: its elements are registers, "
                                 "chosen at compile time", "index fragments with Python ints or "
                                 "enigma.range_constexpr(...) loop variables")
            elif not isinstance(c, int) or isinstance(c, bool):
                raise type_error(f"a fragment index is a Python int or a tuple of them, got {describe(c)}")
        check(crd)
        n = len(self)
        if isinstance(crd, int) and not 0 <= crd < n:
            raise error_here(f"index {crd} is out of range for a fragment of {n} elements")
        if isinstance(crd, tuple):
            shape = self.shape if isinstance(self.shape, tuple) else (self.shape,)
            if len(crd) != len(shape):
                raise error_here(f"a fragment of shape {shape} is indexed with {len(crd)} coordinates")
            for k, (c, s) in enumerate(zip(crd, shape)):
                if isinstance(c, int) and not 0 <= c < product(s):
                    raise error_here(f"coordinate {c} is out of range for mode {k} (size {product(s)}) of a "
                                     f"fragment of shape {shape}")
        return int(self.layout(crd))

    def __getitem__(self, crd: Any) -> Val:
        return Val(self.cells[self._cell(crd)])

    def __setitem__(self, crd: Any, value: Any) -> None:
        i = self._cell(crd)
        if isinstance(value, Undefined):
            value.fail()
        if not isinstance(value, (Val, *PyNum)) or (isinstance(value, Val) and value.v.type.lanes > 1):
            raise type_error(f"a fragment element of {self.dtype.name} cannot hold a {describe(value)}")
        self.cells[i] = as_val(value, self.dtype).v

    def fill(self, value: Any) -> Fragment:
        """Set every element to `value` (converted to the fragment's dtype); returns the fragment."""
        if isinstance(value, Undefined):
            value.fail()
        if not isinstance(value, (Val, *PyNum)):
            raise type_error(f"fill takes a number, got {describe(value)}")
        v = as_val(value, self.dtype).v
        self.cells = [v] * len(self.cells)
        return self

    def __iter__(self) -> Any:
        raise type_error("a fragment cannot be iterated", "loop over enigma.range_constexpr(len(f))")

    def __bool__(self) -> bool:
        return True


def make_fragment(shape_or_layout: Any, dtype: DType) -> Fragment:
    """A per-thread tensor in registers of a static shape (ints or a tuple of them; CuTe's
    column-major compact layout) or a static Layout; elements start at 0."""
    b = current()
    if not isinstance(dtype, DType):
        raise type_error(f"make_fragment's second argument is an enigma dtype, got {describe(dtype)}")
    layout = shape_or_layout if isinstance(shape_or_layout, Layout) else None
    if layout is None:
        try:
            layout = make_layout(shape_or_layout)
        except Exception as e:  # noqa: BLE001 - a shape the layout algebra refuses
            raise error_here(f"make_fragment needs a static shape or layout, got {shape_or_layout!r} ({e})",
                             "use Python ints: enigma.make_fragment((4, 4), enigma.float32)") from e
    if not layout.is_static:
        raise error_here(f"make_fragment needs a static layout, got {layout}",
                         "fragments live in registers: their shape is fixed at compile time")
    n = layout.cosize()
    if n > MAX_CELLS:
        raise error_here(f"a fragment of {n} elements is too big for registers (at most {MAX_CELLS})",
                         "keep per-thread tiles small (e.g. 4x4 or 8x8)")
    return Fragment(layout, dtype, b)


# ---------------------------------------------------------------------------------------------------
# copies

def _coords(n: int, shape: Any) -> list[Any]:
    return [idx2crd(i, shape) for i in range(n)]


def copy(src: Any, dst: Any) -> None:
    """Copy element `i` of `src` to element `i` of `dst` for every `i`, in the fragment's layout order.
    One side is a fragment; the other a fragment, a tensor argument or threadgroup array, or a
    LayoutTensor view of one (`make_tensor`, `local_tile`, `local_partition`); sizes must agree."""
    frag = dst if isinstance(dst, Fragment) else src
    other = src if frag is dst else dst
    if not isinstance(frag, Fragment):
        raise type_error(f"enigma.copy copies to or from a fragment, got {describe(src)} and {describe(dst)}",
                         "index tensors directly (t[i] = u[i]) to copy between tensors")
    if not isinstance(other, (Fragment, TensorRef, LayoutTensor)):
        raise type_error(f"enigma.copy: cannot copy between a fragment and a {describe(other)}")
    n = len(frag)
    if isinstance(other, TensorRef):
        shape = other.static_shape
        if not all(isinstance(s, int) for s in shape):
            raise error_here(f"enigma.copy: {other.name} has a dynamic shape",
                             "view it through a static tile first: enigma.local_tile(...)")
        m = 1
        for s in shape:
            assert isinstance(s, int)
            m *= s
        other_shape: Any = tuple(shape) if len(shape) > 1 else shape[0]
    elif isinstance(other, Fragment):
        m, other_shape = len(other), other.shape
    else:
        m, other_shape = product(other.shape), other.shape
        if not isinstance(m, int):
            raise error_here("enigma.copy: the tensor view has a dynamic size",
                             "tile it with static sizes first (enigma.local_tile)")
    if m != n:
        raise error_here(f"enigma.copy between a fragment of {n} elements and a tensor of {m}",
                         "copy between tiles of the same size")
    fcrd = _coords(n, frag.shape)
    ocrd = _coords(n, other_shape)
    for fc, oc in zip(fcrd, ocrd):
        if frag is dst:
            dst[fc] = other[oc]
        else:
            other[oc] = frag[fc]
