"""Tensors inside a kernel body: arguments (device memory) and threadgroup arrays. `t[i, j]` computes a
linear int32 element offset through the strides and emits `load`/`store`.

Strides are row-major. The innermost axis is contiguous (stride 1); an outer axis' stride is the
product of the later sizes when they are all static, else it is read with a `stride` op (the runtime
passes it in the dims buffer). 1-D tensors are contiguous.
"""
from __future__ import annotations

from typing import Any

from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import error_here
from enigma.frontend.builder import current
from enigma.frontend.values import PyNum, Undefined, Val, as_val, describe, show, type_error


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if isinstance(b, int) and b == 1:
        return a
    if isinstance(a, int) and a == 1:
        return b
    return a * b


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(b, int) and b == 0:
        return a
    if isinstance(a, int) and a == 0:
        return b
    return a + b


class ShapeView:
    """`t.shape`: indexing or unpacking it reads only the sizes used."""

    __slots__ = ("t",)

    def __init__(self, t: TensorRef) -> None:
        self.t = t

    def __len__(self) -> int:
        return self.t.ndim

    def __getitem__(self, axis: int) -> int | Val:
        if not isinstance(axis, int) or not -self.t.ndim <= axis < self.t.ndim:
            raise error_here(f"{self.t.name}.shape has {self.t.ndim} entries; index {show(axis)} is out of "
                             "range")
        return self.t.size(axis % self.t.ndim)

    def __iter__(self) -> Any:
        return (self.t.size(a) for a in range(self.t.ndim))

    def __repr__(self) -> str:
        return f"{self.t.name}.shape{list(self.t.static_shape)}"


class TensorRef:
    """A tensor argument (`kind="arg"`) or threadgroup array (`kind="shared"`) in a kernel body.

    `view` is set on what `t.view(dtype)` returns: the same buffer's bytes read as `dtype` (the loads
    and stores carry the attribute `view`); `base` is then the viewed tensor."""

    def __init__(self, name: str, dtype: DType, shape: tuple[int | str | None, ...], kind: str,
                 base: TensorRef | None = None) -> None:
        self.name, self.dtype, self.kind = name, dtype, kind
        self.static_shape = shape
        self.ndim = len(shape)
        self.base = base

    def attrs(self) -> dict[str, Any]:
        """The attributes of this tensor's memory ops: its name, and the element type of a view."""
        return {"tensor": self.name} if self.base is None else {"tensor": self.name, "view": self.dtype.name}

    def __repr__(self) -> str:
        return f"TensorRef({self.name}: {self.dtype.name}{list(self.static_shape)})"

    @property
    def shape(self) -> ShapeView:
        """Sizes: Python ints where static, int32 `dim` values otherwise (read when indexed)."""
        return ShapeView(self)

    def size(self, axis: int) -> int | Val:
        s = self.static_shape[axis]
        if isinstance(s, int):
            return s
        if self.base is not None:  # a 1-D view of a dynamic size: the bytes that fill whole elements
            n = self.base.size(0)
            return n * self.base.dtype.itemsize // self.dtype.itemsize
        return Val(current().entry("dim", ir.Type(dt.int32), {"tensor": self.name, "axis": axis}))

    def stride(self, axis: int) -> int | Val:
        if self.base is not None and not all(isinstance(s, int) for s in self.static_shape[axis + 1:]):
            return self.base.stride(axis) * self.base.dtype.itemsize // self.dtype.itemsize  # type: ignore[return-value]
        n: int | Val = 1
        for s in self.static_shape[axis + 1:]:
            if not isinstance(s, int):
                return Val(current().entry("stride", ir.Type(dt.int32), {"tensor": self.name, "axis": axis}))
            n *= s
        return n

    def offset(self, index: Any) -> Val:
        idx = index if isinstance(index, tuple) else (index,)
        if len(idx) != self.ndim:
            raise error_here(f"{self.name} has rank {self.ndim} but is indexed with {len(idx)} "
                             f"index{'es' if len(idx) != 1 else ''}",
                             f"write {self.name}[{', '.join('i' + str(k) for k in range(self.ndim))}]")
        off: Any = 0
        for axis, i in enumerate(idx):
            if isinstance(i, slice):
                raise error_here(f"slicing {self.name} is not supported in kernels",
                                 "index one element at a time: t[i] or t[i, j]")
            if isinstance(i, Undefined):
                i.fail()
            if isinstance(i, Val):
                if not i.dtype.is_int:
                    raise type_error(f"index {axis} of {self.name} is a {describe(i)}; indices are integers",
                                     "cast it with .to(enigma.int32)")
                i = as_val(i, dt.int32)
            elif isinstance(i, int) and not isinstance(i, bool):
                size = self.static_shape[axis]
                if i < 0 or (isinstance(size, int) and i >= size):
                    raise error_here(f"index {i} is out of bounds for axis {axis} of {self.name} "
                                     f"(size {size})", "kernel indices are not wrapped like Python's")
            else:
                raise type_error(f"index {axis} of {self.name} is a {describe(i)}; indices are integers")
            off = _add(off, _mul(i, self.stride(axis)))
        return as_val(off, dt.int32)

    def record_access(self, mode: str) -> None:
        if self.kind == "arg":
            current().record(self.name, mode)

    def __getitem__(self, index: Any) -> Val:
        off = self.offset(index)
        self.record_access("r")
        return Val(current().emit("load", [off.v], [ir.Type(self.dtype)], self.attrs()).result)

    def __setitem__(self, index: Any, value: Any) -> None:
        off = self.offset(index)
        if isinstance(value, Undefined):
            value.fail()
        if not isinstance(value, (Val, *PyNum)):
            raise type_error(f"cannot store a {describe(value)} into {self.name} ({self.dtype.name})")
        if isinstance(value, Val) and (value.v.type.lanes > 1 or value.v.type.matrix):
            raise type_error(f"cannot store a vector into one element of {self.name}",
                             f"use {self.name}.store_vec(index, v)")
        v = as_val(value, self.dtype)  # stores convert to the tensor's element type
        self.record_access("w")
        current().emit("store", [off.v, v.v], [], self.attrs())

    # -- vectors and views (enigma/frontend/vectors.py) ----------------------------------------------
    def _vec_offset(self, index: Any, width: int, what: str) -> Val:
        from enigma.frontend.vectors import check_vector_dtype, check_width
        check_width(width, f"{self.name}.{what}")
        check_vector_dtype(self.dtype, f"{self.name}.{what}")
        off = self.offset(index)
        idx = index if isinstance(index, tuple) else (index,)
        last, size = idx[-1], self.static_shape[-1]
        if isinstance(last, int) and isinstance(size, int) and last + width > size:
            raise error_here(f"{self.name}.{what} of {width} elements from index {last} runs past the end of "
                             f"the last axis (size {size})", "vectors are read along the last axis")
        return off

    def load_vec(self, index: Any, width: int) -> Any:
        """`width` (2, 3 or 4) consecutive elements along the last axis from `self[index]`, as a vector
        (any index: the access is aligned like one element, through Metal's packed vector types)."""
        from enigma.frontend.vectors import Vector
        off = self._vec_offset(index, width, "load_vec")
        self.record_access("r")
        attrs = {**self.attrs(), "packed": True}
        return Vector(current().emit("vload", [off.v], [ir.Type(self.dtype, width)], attrs).result)

    def store_vec(self, index: Any, value: Any) -> None:
        """Write the lanes of the vector `value` to `self[index]` and the elements after it along the last
        axis (converted to the tensor's element type)."""
        from enigma.frontend.vectors import Vector
        if isinstance(value, Undefined):
            value.fail()
        if not isinstance(value, Vector):
            raise type_error(f"{self.name}.store_vec stores a vector, got {describe(value)}",
                             f"build one with enigma.vec(...) or {self.name}[i] = x for one element")
        off = self._vec_offset(index, value.lanes, "store_vec")
        self.record_access("w")
        v = value.to(self.dtype)
        current().emit("vstore", [off.v, v.v], [], {**self.attrs(), "packed": True})

    def view(self, dtype: DType) -> TensorRef:
        """This tensor's bytes read as `dtype`, like numpy's `.view` (a uint8 buffer read as float16,
        uint16, int32, ...). Element `i` of the view is at byte offset `i * dtype.itemsize`, so every
        access is aligned for `dtype`. Only 1-D tensor arguments (or static shapes whose last axis holds
        whole elements of `dtype`) can be viewed."""
        if not isinstance(dtype, DType):
            raise type_error(f"{self.name}.view() takes an enigma dtype, got {describe(dtype)}")
        base = self.base or self
        if dtype.kind == "b" or base.dtype.kind == "b":
            raise type_error(f"{self.name}.view({dtype.name}): bool has no defined bytes to reinterpret")
        if base.kind != "arg":
            raise error_here(f"{self.name}.view(): only tensor arguments can be viewed, not threadgroup "
                             "arrays",
                             "declare the threadgroup array with the element type you need")
        if dtype == base.dtype:
            return base
        shape = base.static_shape
        last = shape[-1]
        if isinstance(last, int):
            nbytes = last * base.dtype.itemsize
            if nbytes % dtype.itemsize:
                raise error_here(f"{self.name}.view({dtype.name}): the last axis holds {nbytes} bytes, not a "
                                 f"whole number of {dtype.itemsize}-byte elements",
                                 "view a tensor whose last axis fills whole elements")
            new = (*shape[:-1], nbytes // dtype.itemsize)
        elif len(shape) == 1:
            new = (None,)
        else:
            raise error_here(f"{self.name}.view({dtype.name}) of a rank-{len(shape)} tensor with a dynamic "
                             "last axis", "pass the buffer as a 1-D tensor, or give its last axis a static "
                             "size")
        return TensorRef(base.name, dtype, new, "arg", base)

    def __len__(self) -> int:
        s = self.static_shape[0]
        if not isinstance(s, int):
            raise type_error(f"len() of {self.name}: its size is only known at run time",
                             f"use {self.name}.shape[0]")
        return s

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Any:
        raise type_error(f"a tensor ({self.name}) cannot be iterated in a kernel",
                         "loop over indices with range(...)")
