"""CPU executor: memory. Tensor arguments and threadgroup arrays, loads and stores (strided views
for affine indices, checked gathers and scatters otherwise: an out-of-bounds access raises
OutOfBoundsError naming the kernel, the tensor, the index, the thread and the line) and atomics."""
from __future__ import annotations

import sys
from typing import Any, Protocol

import numpy as np

from .cpu_space import Aff, Geo, as_matrix, bf16_from_bits, bf16_to_bits, value_dtype
from .dtypes import DType
from .errors import KernelExecutionError, OutOfBoundsError


class State(Protocol):
    """What memory access needs of a launch's state (enigma_runtime.cpu_state.State): its thread space and
    how to name a line in errors."""

    geo: Geo

    def where(self, line: int) -> str: ...

# ---------------------------------------------------------------------------------------------------
# threadgroup memory and tensor arguments

class Memory:
    """A tensor argument or a threadgroup array: flat storage and how to check and offset indices."""

    __slots__ = ("name", "flat", "dt", "size", "shared", "written", "views", "loaned")

    def __init__(self, name: str, flat: np.ndarray, dt: DType, size: int, shared: bool,
                 written: bool) -> None:
        self.name, self.flat, self.dt, self.size, self.shared = name, flat, dt, size, shared
        self.written = written
        self.views: dict[Any, tuple[Any, Any]] = {}  # views: (coefs, lanes) -> (shape, strides)
        self.loaned = False  # SSA values may be views of `flat`: the next write copies it first

    def before_write(self) -> None:
        """Copy-on-write of threadgroup memory: values loaded as views keep the old contents. Every
        live view references `flat` (its base), so a reference count of 2 (this attribute and the
        call's argument) means no loaded value can see the write."""
        if self.loaned:
            if sys.getrefcount(self.flat) > 2:
                self.flat = self.flat.copy()
            self.loaned = False


# ---------------------------------------------------------------------------------------------------
# memory access

def _oob(st: State, m: Memory, kind: str, idx: Any, bad: Any, line: int, lanes: int) -> OutOfBoundsError:
    geo = st.geo
    badf = np.broadcast_to(bad, geo.full) if np.ndim(bad) else np.broadcast_to(bad, geo.full)
    pos = int(np.flatnonzero(badf.reshape(-1))[0])
    i = int(np.broadcast_to(idx, geo.full).reshape(-1)[pos])
    n = int(badf.sum())
    span = f"index {i}" + (f" (.. {i + lanes - 1}, {lanes} lanes)" if lanes else "")
    what = f"threadgroup array {m.name!r} of {m.size} elements" if m.shared else \
        f"tensor {m.name!r} of {m.size} elements"
    return OutOfBoundsError(f"{st.where(line)}: out-of-bounds {kind} of {what} at {span} by {geo.lane(pos)}"
                            f"{f' (and {n - 1} more threads)' if n > 1 else ''}; check the bounds test "
                            f"guarding the access at line {line}")


def _aff_view(st: State, m: Memory, idx: Aff, lanes: int) -> np.ndarray | None:
    """A strided view of the elements an in-bounds affine index addresses, or None."""
    lo, hi = idx.range()
    if not idx.exact() or lo < 0 or hi + max(lanes, 1) > m.size:
        return None
    if lanes and (idx.c % lanes or any(k % lanes for k in idx.k)):
        return None  # possibly misaligned: the checked path names the thread
    item = m.flat.itemsize
    geom = m.views.get((idx.k, lanes))
    if geom is None:
        k = idx.k
        if m.shared:
            k = tuple(a + m.size * g for a, g in zip(k, st.geo.group_coefs))
        shape = tuple(n if ki else 1 for n, ki in zip(st.geo.full, k))
        strides = tuple(ki * item if ki else 0 for ki in k)
        if lanes:
            shape, strides = shape + (lanes,), strides + (item,)
        geom = m.views[(idx.k, lanes)] = (shape, strides)
    shape, strides = geom
    c = idx.c
    return np.ndarray(shape, m.flat.dtype, m.flat, c * item, strides)


def _checked_index(st: State, m: Memory, idx: Any, mask: Any, kind: str, line: int, lanes: int) -> Any:
    """The index as an array, every active lane checked; inactive lanes clamped into bounds."""
    idx = as_matrix(idx)
    if lanes and np.any(np.asarray(idx) % lanes):
        bad = (np.asarray(idx) % lanes != 0) if mask is None else (np.asarray(idx) % lanes != 0) & mask
        if np.any(bad):
            pos = np.broadcast_to(bad, st.geo.full).reshape(-1).argmax()
            raise KernelExecutionError(f"{st.where(line)}: {kind} of {lanes} lanes from tensor {m.name!r} at "
                                       f"index {int(np.broadcast_to(idx, st.geo.full).reshape(-1)[pos])}, "
                                       f"which is not a multiple of {lanes} ({st.geo.lane(int(pos))})")
    hi_ok = m.size - max(lanes, 1)
    if np.size(idx) and (np.min(idx) < 0 or np.max(idx) > hi_ok):
        bad = (idx < 0) | (idx > hi_ok)
        if mask is not None:
            bad = bad & mask
        if np.any(bad):
            raise _oob(st, m, kind, idx, bad, line, lanes)
        idx = np.clip(idx, 0, max(hi_ok, 0))
    idx = np.asarray(idx, np.intp)
    if m.shared:
        idx = idx + st.geo.gid * m.size
    if lanes:
        idx = idx[..., None] + np.arange(lanes)
    return idx


def load_op(st: State, m: Memory, idx: Any, mask: Any, lanes: int, line: int, kind: str) -> Any:
    if type(idx) is Aff:
        v = _aff_view(st, m, idx, lanes)
        if v is not None:
            if m.dt.name == "bfloat16":
                return bf16_from_bits(v)
            if m.shared:  # no copy: the next store to the array copies the array instead
                m.loaned = True
                return v
            return v.copy() if m.written else v
    i = _checked_index(st, m, idx, mask, kind, line, lanes)
    if m.size == 0:
        return np.zeros(np.shape(i), value_dtype(m.dt))
    v = m.flat[i]
    return bf16_from_bits(v) if m.dt.name == "bfloat16" else v


def store_op(st: State, m: Memory, idx: Any, v: Any, mask: Any, lanes: int, line: int, kind: str) -> None:
    if m.dt.name == "bfloat16":
        v = bf16_to_bits(v)
    elif np.asarray(v).dtype != m.flat.dtype:
        v = np.asarray(v).astype(m.flat.dtype)
    if not m.flat.flags.writeable:
        raise KernelExecutionError(f"{st.where(line)}: {kind} to tensor {m.name!r}, which is read-only")
    m.before_write()
    mk = None if mask is None else (mask[..., None] if lanes else mask)
    if type(idx) is Aff:
        view = _aff_view(st, m, idx, lanes)
        if view is not None:
            shapes = [view.shape, np.shape(v)] + ([] if mk is None else [np.shape(mk)])
            if np.broadcast_shapes(*shapes) == view.shape:
                np.copyto(view, v, where=True if mk is None else mk)
                return
    i = _checked_index(st, m, idx, mask, kind, line, lanes)
    shape = np.broadcast_shapes(np.shape(i), np.shape(v), () if mk is None else np.shape(mk))
    ib, vb = np.broadcast_to(i, shape), np.broadcast_to(v, shape)
    if mk is None:
        m.flat[ib.reshape(-1)] = vb.reshape(-1)
    else:
        sel = np.broadcast_to(mk, shape)
        m.flat[ib[sel]] = vb[sel]


def atomic_op(st: State, m: Memory, idx: Any, v: Any, mask: Any, ufunc: np.ufunc, line: int,
              kind: str) -> Any:
    """Atomic read-modify-write applied in thread order; each thread gets the value before its own
    update (a segmented scan over the threads that hit the same element)."""
    geo = st.geo
    i = _checked_index(st, m, idx, mask, kind, line, 0)
    m.before_write()
    i, v = np.broadcast_to(i, geo.full), np.broadcast_to(v.astype(m.flat.dtype), geo.full)
    if mask is None:
        e, x, sel = i.reshape(-1), v.reshape(-1), None
    else:
        sel = np.broadcast_to(mask, geo.full)
        e, x = i[sel], v[sel]
    order = np.argsort(e, kind="stable")
    es, scan = e[order], x[order].copy()
    d = 1
    while d < es.size:
        same = es[d:] == es[:-d]
        if not same.any():
            break
        scan[d:] = np.where(same, ufunc(scan[d:], scan[:-d]), scan[d:])
        d *= 2
    start = np.ones(es.size, bool)
    start[1:] = es[1:] != es[:-1]
    init = m.flat[es]
    old_sorted = init.copy()
    old_sorted[~start] = ufunc(init[~start], scan[:-1][~start[1:]])
    end = np.ones(es.size, bool)
    end[:-1] = start[1:]
    m.flat[es[end]] = ufunc(init[end], scan[end])
    old = np.empty_like(old_sorted)
    old[order] = old_sorted
    if sel is None:
        return old.reshape(geo.full)
    out = np.zeros(geo.full, m.flat.dtype)
    out[sel] = old
    return out


